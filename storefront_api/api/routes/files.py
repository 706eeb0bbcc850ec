"""Signed, short-lived links to proofs, print files and style previews in the local artifact store.
(An S3 store hands out presigned S3 URLs instead.)"""

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from photogen_pipelines.storage.stores import valid_key
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError

router = APIRouter(prefix="/files", tags=["files"], include_in_schema=False)

# only what customers are shown: their order's files and the catalog's style previews
SERVED_PREFIXES = ("orders/", "catalog/previews/")


@router.get("/{key:path}")
def get_file(key: str, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=100)], services: ServicesDep):
    if not services.signer.file_signature_valid(key, expires, signature):
        raise ApiError(403, "link_expired_or_invalid", "this link has expired or is not valid; ask for the order again")
    # a signed key is still checked: the store must never be asked for `orders/../../secret_key`
    if not valid_key(key) or not key.startswith(SERVED_PREFIXES) or not services.store.exists(key):
        raise ApiError(404, "file_not_found", "the file does not exist (any more)")
    headers = {"Cache-Control": "private, max-age=60"}
    local_path = getattr(services.store, "path", None)
    if local_path is None:  # an S3 store presigns its links; a link signed by this API still works
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(services.store.get_bytes(key), media_type=media_type, headers=headers)
    return FileResponse(local_path(key), headers=headers)
