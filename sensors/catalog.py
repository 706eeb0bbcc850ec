"""Catalog previews stay current: re-rendered every week, and at once when the catalog or the style engine changes."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from assets.catalog_previews import catalog_preview_job, styles_partitions
from photogen_pipelines.generation.previews import catalog_version, latest_preview
from photogen_pipelines.storage.stores import ArtifactStore
from resources import ArtifactStorage, CatalogResource, StyleEngine


def _style_ids(catalog: CatalogResource, log) -> list[str]:
    """The styles that are both partitions (fixed when the code loads) and in the catalog
    the resource reads now; a mismatch means the code location needs a reload."""
    partitions = styles_partitions.get_partition_keys()
    current = set(catalog.styles().ids())
    missing = sorted(current - set(partitions))
    if missing:
        log.warning(f"styles without a partition (reload the code location to preview them): {missing}")
    return [style_id for style_id in partitions if style_id in current]


def _rendered_version(store: ArtifactStore, style_id: str) -> str | None:
    """The catalog version the style's newest preview was rendered at (None: none yet)."""
    record = latest_preview(store, style_id)
    return record.version if record is not None else None


# by name: the code location defines the job with its engine's run tags (assets.define_jobs)
@dg.schedule(
    job_name=catalog_preview_job.name,
    cron_schedule="0 3 * * 1",  # Mondays 03:00 UTC, before the week's traffic
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every Monday, a backfill over every style: each style's preview is rendered again.",
)
def weekly_catalog_previews(context: dg.ScheduleEvaluationContext, catalog: CatalogResource) -> list[dg.RunRequest]:
    week = (context.scheduled_execution_time or datetime.now(UTC)).date().isoformat()
    return [
        dg.RunRequest(partition_key=style_id, run_key=f"weekly:{week}:{style_id}", tags={"photogen/preview_reason": "weekly"})
        for style_id in _style_ids(catalog, context.log)
    ]


@dg.sensor(
    job_name=catalog_preview_job.name,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Renders every style's preview again when the style catalog or the style engine changes (cursor: the version).",
)
def catalog_version_changed(
    context: dg.SensorEvaluationContext, catalog: CatalogResource, styles: StyleEngine, storage: ArtifactStorage
) -> dg.SensorResult | dg.SkipReason:
    version = catalog_version(catalog.styles(), styles.stylizer().version)
    if context.cursor == version:
        return dg.SkipReason(f"catalog version {version} unchanged")
    store = storage.store()
    # a preview already rendered at this version (by the weekly schedule, or before the
    # sensor's cursor was reset) would come out the same: only the others are rendered
    stale = [s for s in _style_ids(catalog, context.log) if _rendered_version(store, s) != version]
    context.log.info(f"catalog version {context.cursor or 'none'} -> {version}: rendering {len(stale)} preview(s): {stale}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=style_id,
                run_key=f"{version}:{style_id}",
                tags={"photogen/preview_reason": "catalog_changed", "photogen/catalog_version": version},
            )
            for style_id in stale
        ],
        cursor=version,
    )


catalog_schedules_and_sensors = [weekly_catalog_previews, catalog_version_changed]
