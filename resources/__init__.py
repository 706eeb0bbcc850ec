"""Dagster resources wrapping the core's engines, stores, catalogs and payments."""

from resources.catalog import CatalogResource
from resources.engines import (
    FaceEngine,
    FaceEngineConfig,
    SafetyEngine,
    SafetyEngineConfig,
    StyleEngine,
    StyleEngineConfig,
    UpscaleEngine,
    UpscaleEngineConfig,
    VideoEngine,
)
from resources.payments import StripePayments
from resources.storage import ArtifactStorage, OrdersDatabase, StoreConfig

__all__ = [
    "ArtifactStorage",
    "CatalogResource",
    "FaceEngine",
    "FaceEngineConfig",
    "OrdersDatabase",
    "SafetyEngine",
    "SafetyEngineConfig",
    "StoreConfig",
    "StripePayments",
    "StyleEngine",
    "StyleEngineConfig",
    "UpscaleEngine",
    "UpscaleEngineConfig",
    "VideoEngine",
]
