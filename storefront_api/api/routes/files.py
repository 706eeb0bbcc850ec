"""Signed, short-lived links to proofs, print files and style previews in the local artifact store.
(An S3 store hands out presigned S3 URLs instead.)"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError

router = APIRouter(prefix="/files", tags=["files"], include_in_schema=False)

# only what customers are shown: their order's files and the catalog's style previews
SERVED_PREFIXES = ("orders/", "catalog/previews/")


@router.get("/{key:path}")
def get_file(key: str, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=100)], services: ServicesDep):
    if not services.signer.file_signature_valid(key, expires, signature):
        raise ApiError(403, "link_expired_or_invalid", "this link has expired or is not valid; ask for the order again")
    if not key.startswith(SERVED_PREFIXES) or not services.store.exists(key):
        raise ApiError(404, "file_not_found", "the file does not exist (any more)")
    return FileResponse(services.store.path(key), headers={"Cache-Control": "private, max-age=60"})
