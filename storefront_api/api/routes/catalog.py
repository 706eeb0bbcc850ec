"""The style and product catalogs, with prices and each style's latest preview."""

from fastapi import APIRouter, Request

from photogen_pipelines.previews import latest_preview
from storefront_api.api.deps import ServicesDep
from storefront_api.schemas import ProductOut, StyleOut

router = APIRouter(tags=["catalog"])


def _preview_url(services, style_id: str, base_url: str) -> str | None:
    record = latest_preview(services.store, style_id)
    if record is None:
        return None  # not rendered yet: the storefront shows its own placeholder
    ttl = services.settings.file_url_ttl_seconds
    # an S3 store hands out its own presigned URL; the local one returns None and this API serves the file
    presign = getattr(services.store, "presigned_url", None)
    return (presign(record["key"], ttl) if presign else None) or services.signer.file_url(base_url, record["key"], ttl)


@router.get("/styles", response_model=list[StyleOut])
def list_styles(request: Request, services: ServicesDep) -> list[StyleOut]:
    """The styles, each with a link (valid for minutes) to its preview on the reference faces, or null before one is rendered."""
    base_url = services.settings.public_base_url or str(request.base_url)
    return [
        StyleOut(id=s.id, name=s.name, description=s.description, preview_url=_preview_url(services, s.id, base_url))
        for s in services.styles.styles
    ]


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
