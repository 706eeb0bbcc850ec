"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

This module and `cli` are PhotoGen's entry points; the rest of `photogen_pipelines`
is the core and never imports Dagster.
"""

from __future__ import annotations

import dagster as dg

import assets
from photogen_pipelines.intake import register_order
from photogen_pipelines.orders import Order
from photogen_pipelines.settings import LocalPaths
from resources import ArtifactStorage, CatalogResource, FaceEngine, OrderBookResource, StyleEngine, UpscaleEngine


def build_defs(home: str | None = None) -> dg.Definitions:
    """Definitions with the embedded engines and local storage under `home`."""
    paths = LocalPaths.resolve(home)
    return dg.Definitions(
        assets=[*assets.proof_assets, *assets.print_assets],
        asset_checks=[assets.identity_preserved, assets.print_spec_met],
        jobs=[assets.proof_job, assets.print_job],
        resources={
            "orders": OrderBookResource(directory=str(paths.orders)),
            "storage": ArtifactStorage(root=str(paths.artifacts)),
            "catalog": CatalogResource(),
            "faces": FaceEngine(),
            "styles": StyleEngine(),
            "upscale": UpscaleEngine(),
        },
    )


defs = build_defs()


def register_local_order(
    defs: dg.Definitions, upload: bytes, style_id: str, product_id: str, variants: int = 4, approval: str = "customer"
) -> Order:
    """Take an order in through the same resources the assets use (CLI, tests, scripts)."""
    resources = defs.resources
    catalog = resources["catalog"]
    return register_order(
        resources["orders"].book(),
        resources["storage"].store(),
        resources["faces"].analyzer(),
        catalog.styles(),
        catalog.products(),
        upload,
        style_id,
        product_id,
        variants,
        approval=approval,
        proof_long_side=resources["styles"].proof_long_side,
    )
