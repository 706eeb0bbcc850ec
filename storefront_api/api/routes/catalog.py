"""The style and product catalogs, with prices and each style's latest preview."""

from fastapi import APIRouter

from photogen_pipelines.previews import latest_preview
from storefront_api.api.deps import BaseUrlDep, ServicesDep
from storefront_api.schemas import ProductOut, StyleOut

router = APIRouter(tags=["catalog"])


def _preview_url(services, style_id: str, base_url: str) -> str | None:
    record = latest_preview(services.store, style_id)
    # not rendered yet: the storefront shows its own placeholder
    return services.link(base_url, record["key"]) if record else None


@router.get("/styles", response_model=list[StyleOut])
def list_styles(services: ServicesDep, base_url: BaseUrlDep) -> list[StyleOut]:
    """The styles, each with a link (valid for minutes) to its preview on the reference faces, or null before one is rendered."""
    return [
        StyleOut(id=s.id, name=s.name, description=s.description, preview_url=_preview_url(services, s.id, base_url))
        for s in services.styles.styles
    ]


@router.get("/products", response_model=list[ProductOut])
def list_products(services: ServicesDep) -> list[ProductOut]:
    return [ProductOut.model_validate(p, from_attributes=True) for p in services.products.products]
