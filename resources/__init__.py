"""Dagster resources wrapping the core's engines, stores and catalogs."""

from resources.catalog import CatalogResource
from resources.engines import FaceEngine, StyleEngine, UpscaleEngine
from resources.storage import ArtifactStorage, OrderBookResource

__all__ = ["ArtifactStorage", "CatalogResource", "FaceEngine", "OrderBookResource", "StyleEngine", "UpscaleEngine"]
