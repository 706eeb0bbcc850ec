"""Uploads: a selfie checked on the spot, so the customer hears "no face found" at once; or a
product's or garment's photo for a studio job (purpose=product), checked for a product."""

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile, status

from photogen_pipelines.credits.customers import check_ref
from photogen_pipelines.errors import BadInput
from photogen_pipelines.orders.uploads import require_consent, take_product_photo, take_upload
from storefront_api.api.deps import ServicesDep, StorefrontDep
from storefront_api.schemas import UploadOut

router = APIRouter(prefix="/uploads", tags=["uploads"])

CHUNK = 1 << 20


def _read_limited(file: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := file.file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise BadInput(f"the file is over the {limit / 2**20:.0f} MiB limit", code="file_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadOut,
    responses={
        413: {"description": "file_too_large (over the upload limit) or image_too_large (too many pixels)"},
        422: {
            "description": "the file: empty_file, not_an_image, unsupported_format, truncated_image, image_too_small "
            "(a side under 64 px), image_too_narrow (a strip); the face: no_face, several_faces, face_too_small; "
            "invalid_customer_ref; consent_required (consent=true was not sent with a photo of a person); "
            "unsafe_content (flagged as explicit by the content-safety check); a product photo: no_product_found; "
            "invalid_request: an unknown purpose"
        },
    },
)
def create_upload(
    file: Annotated[
        UploadFile, File(description="a photo of one person, or of a product (purpose=product): JPEG, PNG, WebP, TIFF or BMP")
    ],
    caller: StorefrontDep,
    services: ServicesDep,
    consent: Annotated[
        bool | None,
        Form(
            description="required, true: the person pictured agreed to this use of the photo (recorded with its time "
            "and the caller's key, and shown in the order's audit trail)"
        ),
    ] = None,
    customer_ref: Annotated[
        str | None, Form(max_length=64, description="the shop's own reference of the customer (kept with a photo of a person)")
    ] = None,
    purpose: Annotated[
        Literal["person", "product"],
        Form(
            description="person (default): a photo of one person, with consent; product: a product's or garment's "
            "photo for a job's product_upload_id (no face, no consent: it shows no one)"
        ),
    ] = "person",
) -> UploadOut:
    """Store a selfie: its type is sniffed from the bytes, EXIF orientation applied, metadata
    stripped, and exactly one face must be found. The caller says the person pictured agreed.
    With purpose=product, a product's photo: checked like any upload and for a product the
    product lock can cut out, without a face."""
    if purpose == "person":
        require_consent(consent)  # consent_required before the file is read
    if customer_ref is not None:
        check_ref(customer_ref)  # invalid_customer_ref before the file is read
    data = _read_limited(file, services.settings.max_upload_bytes)
    if purpose == "product":
        product = take_product_photo(services.database, services.store, data, caller.api_key_id, safety=services.safety)
        return UploadOut.model_validate(product, from_attributes=True)
    upload = take_upload(
        services.database,
        services.store,
        services.faces,
        data,
        caller.api_key_id,
        customer_ref,
        consent=consent,
        safety=services.safety,
    )
    return UploadOut.model_validate(upload, from_attributes=True)
