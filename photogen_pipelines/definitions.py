"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

This module and `cli` are PhotoGen's entry points; the rest of `photogen_pipelines`
is the core and never imports Dagster.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

import assets
import sensors
from photogen_pipelines.engines.models_folder import UPSCALER_FILE
from photogen_pipelines.errors import ModelError
from photogen_pipelines.intake import OrderRequest, register_order
from photogen_pipelines.orders import Order
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage_s3 import parse_s3_url
from resources import (
    ArtifactStorage,
    CatalogResource,
    FaceEngine,
    OrdersDatabase,
    StripePayments,
    StyleEngine,
    UpscaleEngine,
)
from resources.retention import RetentionSettings


def _payments(settings: PhotoGenSettings) -> StripePayments:
    if not settings.payments_on:
        return StripePayments()
    # secrets stay environment variables, so they never appear in the UI's resource config
    return StripePayments(
        api_key=dg.EnvVar("PHOTOGEN_STRIPE_API_KEY"),
        webhook_secret=dg.EnvVar("PHOTOGEN_STRIPE_WEBHOOK_SECRET") if settings.stripe_webhook_secret else None,
        api_base=settings.stripe_api_base,
    )


def _storage(settings: PhotoGenSettings) -> ArtifactStorage:
    # PHOTOGEN_ARTIFACTS_ROOT is a directory or s3://bucket/prefix; the S3 endpoint and
    # credentials come from boto3's own environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID…)
    root = settings.resolved_artifacts_root
    if root.startswith("s3://"):
        bucket, prefix = parse_s3_url(root)
        return ArtifactStorage(s3_bucket=bucket, s3_prefix=prefix)
    return ArtifactStorage(root=root)


def _engines(settings: PhotoGenSettings) -> dict[str, dg.ConfigurableResource]:
    if settings.engine == "embedded":
        return {"faces": FaceEngine(), "styles": StyleEngine(), "upscale": UpscaleEngine()}
    if not settings.models_dir:
        raise ModelError("PHOTOGEN_ENGINE=diffusers needs PHOTOGEN_MODELS_DIR, the models folder")
    models = str(Path(settings.models_dir).expanduser().resolve())
    return {
        # the validator keeps the embedded encoder: not the one the generator conditions on
        "faces": FaceEngine(),
        "styles": StyleEngine(backend="diffusers", model_dir=models, memory_profile=settings.memory_profile),
        "upscale": UpscaleEngine(backend="torch", model_path=str(Path(models) / UPSCALER_FILE)),
    }


def build_defs(home: str | None = None, **settings_overrides) -> dg.Definitions:
    """Definitions with local storage under `home`, the orders database from
    PHOTOGEN_DATABASE_URL (default: SQLite under `home`) and the engines PHOTOGEN_ENGINE
    names (default: embedded). `settings_overrides` are PhotoGenSettings fields."""
    settings = PhotoGenSettings(**({"home": home} if home else {}), **settings_overrides)
    settings.paths.make_private()  # a plain `dagster dev` on the home writes private files too
    return dg.Definitions(
        assets=[*assets.proof_assets, *assets.print_assets, *assets.catalog_assets, *assets.analytics_assets],
        asset_checks=assets.order_checks,
        jobs=[assets.proof_job, assets.print_job, assets.catalog_preview_job, assets.analytics_job],
        schedules=sensors.all_schedules,
        sensors=sensors.all_sensors,
        resources={
            "orders": OrdersDatabase(url=settings.resolved_database_url),
            "storage": _storage(settings),
            "catalog": CatalogResource(
                styles_path=settings.styles_path, products_path=settings.products_path, quality_path=settings.quality_path
            ),
            **_engines(settings),
            "payments": _payments(settings),
            "retention": RetentionSettings(),
        },
    )


defs = build_defs()


def register_local_order(
    defs: dg.Definitions, upload: bytes, style_id: str, product_id: str, variants: int = 4, approval: str = "customer"
) -> Order:
    """Take an order in through the same resources the assets use (CLI, tests, scripts)."""
    resources = defs.resources
    catalog = resources["catalog"]
    resources["orders"].database().migrate()
    return register_order(
        resources["orders"].book(),
        resources["storage"].store(),
        resources["faces"].analyzer(),
        catalog.styles(),
        catalog.products(),
        upload,
        OrderRequest(style_id, product_id, variants, approval),
        proof_long_side=resources["styles"].proof_long_side,
    )
