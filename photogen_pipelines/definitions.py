"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

This module and `cli` are PhotoGen's entry points; the rest of `photogen_pipelines`
is the core and never imports Dagster.
"""

from __future__ import annotations

import os

import dagster as dg

import assets
import sensors
from assets.run_tags import gpu_run_tags
from photogen_pipelines.factories import Deployment, deployment
from photogen_pipelines.generation.safety import safety_gate
from photogen_pipelines.orders.states import Order
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.workflows.intake import OrderRequest, register_order
from resources import (
    ArtifactStorage,
    CatalogResource,
    FaceEngine,
    FaceEngineConfig,
    OrdersDatabase,
    SafetyEngine,
    SafetyEngineConfig,
    StoreConfig,
    StripePayments,
    StyleEngine,
    StyleEngineConfig,
    UpscaleEngine,
    UpscaleEngineConfig,
    VideoEngine,
)
from resources.credentials import ContentCredentialsResource
from resources.fulfilment import ApprovalDeadline, PrintProviderResource
from resources.links import OperatorLinks
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


def _print_provider(settings: PhotoGenSettings) -> PrintProviderResource:
    if settings.print_provider == "none":
        return PrintProviderResource()
    return PrintProviderResource(
        provider=settings.print_provider,
        api_key=dg.EnvVar("PHOTOGEN_PRINT_PROVIDER_API_KEY") if settings.print_provider_api_key else None,
        api_base=settings.print_provider_api_base,
        store_id=settings.printful_store_id,
        confirm=settings.printful_confirm,
        public_base_url=settings.public_base_url,
        secret_key=dg.EnvVar("PHOTOGEN_SECRET_KEY") if settings.secret_key else None,
        home=settings.home,
        file_url_ttl_seconds=settings.print_file_url_ttl_seconds,
    )


def _approval_deadline(settings: PhotoGenSettings) -> ApprovalDeadline:
    return ApprovalDeadline(
        deadline_hours=settings.approval_deadline_hours,
        reminder_hours=settings.approval_reminder_hours,
        action=settings.approval_deadline_action,
    )


def _links(settings: PhotoGenSettings) -> OperatorLinks:
    # the secret as its variable's name when it is one, so the UI never shows it
    secret = settings.secret_key
    if secret and os.environ.get("PHOTOGEN_SECRET_KEY") == secret:
        secret = dg.EnvVar("PHOTOGEN_SECRET_KEY")
    return OperatorLinks(public_base_url=settings.public_base_url, secret_key=secret, home=settings.home)


def _storage(built: Deployment) -> ArtifactStorage:
    return ArtifactStorage(settings=StoreConfig(**built.store.model_dump()))


# the serverless providers' keys, by backend: the resources get them as dg.EnvVar, so the
# UI shows the variable's name, never the key
KEY_VARIABLES = {
    "replicate": "PHOTOGEN_REPLICATE_API_TOKEN",
    "runpod": "PHOTOGEN_RUNPOD_API_KEY",
    "openai-moderation": "PHOTOGEN_OPENAI_API_KEY",
}


def _secret(settings) -> dict:
    variable = KEY_VARIABLES.get(settings.backend)
    values = settings.model_dump()
    if variable and os.environ.get(variable) == values["api_key"]:
        values["api_key"] = dg.EnvVar(variable)
    return values


def _engines(built: Deployment) -> dict[str, dg.ConfigurableResource]:
    # the resources carry these settings and turn back into them to build, so they reach the
    # same cached engines
    return {
        "faces": FaceEngine(settings=FaceEngineConfig(**built.faces.model_dump())),
        "styles": StyleEngine(settings=StyleEngineConfig(**_secret(built.styles))),
        "upscale": UpscaleEngine(settings=UpscaleEngineConfig(**_secret(built.upscale))),
        "safety": SafetyEngine(settings=SafetyEngineConfig(**_secret(built.safety))),
    }


def build_defs(home: str | None = None, **settings_overrides) -> dg.Definitions:
    """Definitions with local storage under `home`, the orders database from
    PHOTOGEN_DATABASE_URL (default: SQLite under `home`) and the engines PHOTOGEN_ENGINE
    names (default: embedded). `settings_overrides` are PhotoGenSettings fields; the
    engines, the store and the GPU jobs' run tags all follow them."""
    settings = PhotoGenSettings(**({"home": home} if home else {}), **settings_overrides)
    settings.paths.make_private()  # a plain `dagster dev` on the home writes private files too
    built = deployment(settings)
    return dg.Definitions(
        assets=[
            *assets.proof_assets,
            *assets.print_assets,
            *assets.catalog_assets,
            *assets.analytics_assets,
            *assets.jobs_assets,
        ],
        asset_checks=assets.order_checks,
        jobs=assets.define_jobs(gpu_run_tags(settings)),
        # a run's steps and checks share its one process: it imports and loads once, where
        # the multiprocess default started a process per step (2-4 s each, DESIGN §3)
        executor=dg.in_process_executor,
        schedules=sensors.all_schedules,
        sensors=sensors.all_sensors,
        resources={
            "orders": OrdersDatabase(url=settings.resolved_database_url),
            "storage": _storage(built),
            "catalog": CatalogResource(
                styles_path=settings.styles_path,
                products_path=settings.products_path,
                quality_path=settings.quality_path,
                kinds_path=settings.kinds_path,
            ),
            **_engines(built),
            "video": VideoEngine(models_dir=settings.video_models_dir, memory_profile=settings.memory_profile),
            "payments": _payments(settings),
            "retention": RetentionSettings(),
            "print_provider": _print_provider(settings),
            "approval_deadline": _approval_deadline(settings),
            "links": _links(settings),
            "credentials": ContentCredentialsResource.from_settings(settings),  # C2PA on every picture
        },
    )


defs = build_defs()


def register_local_order(
    defs: dg.Definitions,
    upload: bytes,
    style_id: str,
    product_id: str,
    variants: int | None = None,
    approval: str = "customer",
    tier: str | None = None,
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
        OrderRequest(style_id, product_id, variants, approval, tier),
        proof_long_side=resources["styles"].proof_long_side,
        safety=safety_gate(resources["safety"].detector(), catalog.quality(), "upload"),
    )
