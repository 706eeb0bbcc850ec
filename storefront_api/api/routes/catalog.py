"""The style and product catalogs, with prices and each style's latest preview."""

from fastapi import APIRouter

from photogen_pipelines.generation.previews import latest_preview
from photogen_pipelines.orders.waits import tier_wait
from storefront_api.api.deps import BaseUrlDep, ServicesDep
from storefront_api.api.views import wait_out
from storefront_api.schemas import ProductOut, StyleOut, TierOut

router = APIRouter(tags=["catalog"])


def _preview_url(services, style_id: str, base_url: str) -> str | None:
    record = latest_preview(services.store, style_id)
    # not rendered yet: the storefront shows its own placeholder
    return services.link(base_url, record.key) if record is not None else None


@router.get("/styles", response_model=list[StyleOut])
def list_styles(services: ServicesDep, base_url: BaseUrlDep) -> list[StyleOut]:
    """The styles, each with a link (valid for minutes) to its preview on the reference faces, or null before one is rendered."""
    return [
        StyleOut(id=s.id, name=s.name, description=s.description, preview_url=_preview_url(services, s.id, base_url))
        for s in services.styles.styles
    ]


@router.get("/products", response_model=list[ProductOut])
def list_products(services: ServicesDep) -> list[ProductOut]:
    """The print products, each with its price in every tier it is offered in."""
    catalog = services.products
    return [
        ProductOut.model_validate({**product.model_dump(), "pixel_size": product.pixel_size, "prices": _prices(catalog, product)})
        for product in catalog.products
    ]


def _prices(catalog, product) -> dict[str, int]:
    offered = [tier.id for tier in catalog.tiers if tier.id in product.tier_prices or tier.id == catalog.default_tier]
    return {tier_id: catalog.price(product, tier_id) for tier_id in offered}


@router.get("/tiers", response_model=list[TierOut])
def list_tiers(services: ServicesDep) -> list[TierOut]:
    """The quality tiers an order can ask for (`tier`), each with the waits to expect; the prices are in /v1/products."""
    catalog = services.products
    return [
        TierOut(
            id=t.id,
            name=t.name,
            description=t.description,
            variants=t.variants,
            default=t.id == catalog.default_tier,
            expected_wait=wait_out(tier_wait(services.book, t)),
        )
        for t in catalog.tiers
    ]
