"""Signed, short-lived links to proofs, print files and style previews in the artifact store.

A link to an order's file is served only while the order allows it
(`photogen_pipelines/orders/deliverables.py`): a watermarked preview from `proofs_ready` on
(small while the order is a preview not paid yet),
the approved proof once approved, the print file once made; a link signed before the order
was cancelled (or failed, or refunded) is a 410 `file_withdrawn`. (An S3 store hands out
presigned S3 URLs for the print file and the style previews instead.) A studio job's
deliverables are served too: a passing shot's picture or video and the export ZIP, never a
shot's record or a refused attempt."""

import mimetypes
import re
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import deliverables
from photogen_pipelines.orders.deliverables import PROOF_PIXELS, Deliverable, Purpose
from photogen_pipelines.storage.stores import valid_key
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError

router = APIRouter(prefix="/files", tags=["files"], include_in_schema=False)

# only what customers are shown: their order's files, the catalog's style previews, and a
# job's deliverables (jobs/keys.py: a passing shot's picture or video, the export ZIP)
SERVED_PREFIXES = ("orders/", "catalog/previews/", "jobs/")
# a job's folder also holds each shot's record (seeds, scores) and refused attempts: never handed out
JOB_DELIVERABLE = re.compile(r"jobs/job_[0-9a-f]{16}/(shots/[a-z][a-z0-9_]*\.(png|mp4)|export\.zip)")
HEADERS = {"Cache-Control": "private, max-age=60"}


def _not_found() -> ApiError:
    return ApiError(404, "file_not_found", "the file does not exist (any more)")


@router.get("/{key:path}")
def get_file(key: str, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=100)], services: ServicesDep):
    if not services.signer.file_signature_valid(key, expires, signature):
        raise ApiError(403, "link_expired_or_invalid", "this link has expired or is not valid; ask for the order again")
    # a signed key is still checked: the store must never be asked for `orders/../../secret_key`
    if not valid_key(key) or not key.startswith(SERVED_PREFIXES):
        raise _not_found()
    if key.startswith("orders/"):
        wanted = deliverables.parse(key)
        if wanted is None:  # the selfie, the candidates, the documents: never handed out
            raise _not_found()
        return _order_file(services, wanted)
    if key.startswith("jobs/") and not JOB_DELIVERABLE.fullmatch(key):
        raise _not_found()
    if not services.store.exists(key):
        raise _not_found()
    return _stored(services, key)


def _order_file(services, wanted: Deliverable) -> Response:
    """One of an order's files, if the order allows it now; the first proof handed out is
    recorded on the order (the cancellation policy counts it)."""
    try:
        order = services.book.get(wanted.order_id)
    except NotFound:
        raise _not_found() from None
    if wanted.served_to(order) and not services.store.exists(wanted.source):
        raise _not_found()
    first_download = wanted.purpose in PROOF_PIXELS and order.proofs_downloaded_at is None
    # an unpaid preview's small previews are not recorded (deliverables.py): no locked write per look
    if wanted.served_to(order) and first_download and not deliverables.unpaid_preview(order):
        order = deliverables.record_proofs_download(services.book, order.id, services.products.cancellation)
    if not wanted.served_to(order):
        raise ApiError(
            410,
            "file_withdrawn",
            f"order {order.id} is {order.state.value}: this {wanted.purpose.value} file is not served to it (any more)",
        )
    if wanted.purpose == Purpose.PREVIEW:
        try:
            long_side = deliverables.preview_long_side(order, services.products.previews)
            data = deliverables.render_preview(services.store, wanted, long_side)
        except NotFound:
            raise _not_found() from None
        return Response(data, media_type=wanted.media_type, headers=HEADERS)
    return _stored(services, wanted.source)


def _stored(services, key: str) -> Response:
    local_path = getattr(services.store, "path", None)
    if local_path is None:  # an S3 store presigns its links; a link signed by this API still works
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return Response(services.store.get_bytes(key), media_type=media_type, headers=HEADERS)
    return FileResponse(local_path(key), headers=HEADERS)
