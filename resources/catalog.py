import dagster as dg

from photogen_pipelines.catalog import ProductCatalog, QualityGates, StyleCatalog, load_products, load_quality, load_styles
from photogen_pipelines.catalog.kinds import KindCatalog, load_kinds


class CatalogResource(dg.ConfigurableResource):
    """The style and product catalogs and the quality gates: the packaged ones, or files
    an operator points to."""

    styles_path: str | None = None
    products_path: str | None = None
    quality_path: str | None = None
    kinds_path: str | None = None

    def kinds(self) -> KindCatalog:
        """The studio's job kinds (catalog/kinds.yaml)."""
        return load_kinds(self.kinds_path)

    def styles(self) -> StyleCatalog:
        return load_styles(self.styles_path)

    def products(self) -> ProductCatalog:
        return load_products(self.products_path)

    def quality(self) -> QualityGates:
        return load_quality(self.quality_path).check_tiers(self.products())
