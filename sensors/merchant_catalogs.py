"""Merchant catalogs stay shot: a SKU that is new, or whose photo, name, category, poses or
model changed, becomes a fashion shoot (workflows/merchant_catalogs.py), checked every
minute and again every Monday; the job sensors then run only that SKU's shots."""

from __future__ import annotations

import dagster as dg

from photogen_pipelines import tiers
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.workflows.jobs import Placement
from photogen_pipelines.workflows.merchant_catalogs import catalog_ids, place_catalog_shoots, stale_skus
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrdersDatabase, StyleEngine

CATALOG_SENSOR_INTERVAL_SECONDS = 30  # a merchant sees a new SKU shot within the minute


def _placement(
    orders: OrdersDatabase, storage: ArtifactStorage, catalog: CatalogResource, faces: FaceEngine, styles: StyleEngine
):
    engine = tiers.style_engine(styles.engine_settings(), "default").backend
    return Placement(
        orders.database(), storage.store(), faces.analyzer(), catalog.kinds(), catalog.styles(), catalog.products(), engine=engine
    )


def shoot_what_changed(log, orders, storage, catalog, faces, styles) -> str:
    """Place a shoot for every stale SKU of every catalog in the store; what was done, in words.
    A catalog that cannot be read is logged and skipped: the others go on."""
    place, done = None, []
    for catalog_id in catalog_ids(storage.store()):
        try:
            check = stale_skus(orders.database(), storage.store(), catalog_id, catalog.kinds())
            for sku in check.removed:
                log.info(f"catalog {catalog_id}: SKU {sku} left the catalog; its last shoot stays")
            if not check.stale:
                continue
            place = place or _placement(orders, storage, catalog, faces, styles)
            jobs = place_catalog_shoots(place, catalog_id, check.stale)
        except PhotoGenError as exc:
            log.warning(f"catalog {catalog_id} skipped: {exc.code}: {exc}")
            continue
        for sku, job in zip(check.stale, jobs, strict=True):
            log.info(f"catalog {catalog_id}: SKU {sku.sku} ({sku.reason}) -> job {job.id}, {len(job.shots)} shots")
        done.append(f"{catalog_id}: {len(jobs)} SKU(s)")
    return "shoots placed for " + ", ".join(done) if done else "every catalog's shots are current"


@dg.sensor(
    minimum_interval_seconds=CATALOG_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A merchant catalog's new or changed SKUs become fashion shoots; unchanged SKUs are not shot again.",
)
def merchant_catalog_changes(
    context: dg.SensorEvaluationContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.SkipReason:
    return dg.SkipReason(shoot_what_changed(context.log, orders, storage, catalog, faces, styles))


@dg.schedule(
    cron_schedule="0 4 * * 1",  # Mondays 04:00 UTC, after the catalog previews
    job_name="shot_job",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every Monday, every merchant catalog is checked again: what changed is shot (the sensor's work, if it was off).",
)
def weekly_catalog_shoots(
    context: dg.ScheduleEvaluationContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    faces: FaceEngine,
    styles: StyleEngine,
) -> dg.SkipReason:
    return dg.SkipReason(shoot_what_changed(context.log, orders, storage, catalog, faces, styles))
