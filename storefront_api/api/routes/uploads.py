"""Selfie uploads: checked on the spot, so the customer hears "no face found" at once."""

from typing import Annotated

from fastapi import APIRouter, File, UploadFile, status

from photogen_pipelines.errors import BadInput
from photogen_pipelines.orders.uploads import take_upload
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
            "(a side under 64 px), image_too_narrow (a strip); the face: no_face, several_faces, face_too_small"
        },
    },
)
def create_upload(
    file: Annotated[UploadFile, File(description="a photo of one person: JPEG, PNG, WebP, TIFF or BMP")],
    caller: StorefrontDep,
    services: ServicesDep,
) -> UploadOut:
    """Store a selfie: its type is sniffed from the bytes, EXIF orientation applied, metadata
    stripped, and exactly one face must be found."""
    data = _read_limited(file, services.settings.max_upload_bytes)
    upload = take_upload(services.database, services.store, services.faces, data, caller.api_key_id)
    return UploadOut.model_validate(upload, from_attributes=True)
