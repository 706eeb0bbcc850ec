"""Dagster resources wrapping the core's engines, stores, catalogs and payments."""

from resources.catalog import CatalogResource
from resources.engines import FaceEngine, StyleEngine, UpscaleEngine
from resources.payments import StripePayments
from resources.storage import ArtifactStorage, OrdersDatabase

__all__ = [
    "ArtifactStorage",
    "CatalogResource",
    "FaceEngine",
    "OrdersDatabase",
    "StripePayments",
    "StyleEngine",
    "UpscaleEngine",
]
