"""The style and product catalogs, with prices."""

from fastapi import APIRouter

from storefront_api.api.deps import ServicesDep
from storefront_api.schemas import ProductOut, StyleOut

router = APIRouter(tags=["catalog"])


@router.get("/styles", response_model=list[StyleOut])
def list_styles(services: ServicesDep) -> list[StyleOut]:
    return [StyleOut(id=s.id, name=s.name, description=s.description) for s in services.styles.styles]


@router.get("/products", response_model=list[ProductOut])
def list_products(services: ServicesDep) -> list[ProductOut]:
    return [
        ProductOut(
            id=p.id,
            name=p.name,
            format=p.format,
            pixel_size=p.pixel_size,
            dpi=p.dpi,
            min_dpi=p.min_dpi,
            price_cents=p.price_cents,
        )
        for p in services.products.products
    ]
