"""A customer's selfie taken in: checked on the spot, stored clean, recorded.

The stored file is the decoded image re-encoded as PNG: upright (EXIF orientation
applied), sRGB, with every metadata field dropped, so GPS tags and camera serials never
reach storage. The customer hears "no face found" at once, not after a paid run.

Nothing is taken without consent: the caller says the person pictured agreed to this use
(`consent`), and the upload keeps when; the caller's key is the upload's own.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import UploadRow
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.generation.safety import SafetyGate, check_photo
from photogen_pipelines.generation.stages import selfie_face
from photogen_pipelines.imaging.cutout import cut_out_product
from photogen_pipelines.imaging.images import decode_upload, png_bytes
from photogen_pipelines.storage.stores import ArtifactStore


@dataclass(frozen=True)
class Upload:
    id: str
    storage_key: str
    width: int
    height: int
    source_format: str
    source_bytes: int
    face_score: float
    api_key_id: str | None
    created_at: datetime
    customer_ref: str | None = None  # the shop's own reference of the customer it was uploaded for
    consented_at: datetime | None = None  # when the caller said the person pictured agreed (None: taken before 0009)
    purpose: str = "person"  # person | product (a product's or garment's photo, no face)


def new_upload_id() -> str:
    return "upl_" + secrets.token_hex(8)


def _to_upload(row: UploadRow) -> Upload:
    created = as_utc(row.created_at)
    return Upload(
        row.id,
        row.storage_key,
        row.width,
        row.height,
        row.source_format,
        row.source_bytes,
        row.face_score,
        row.api_key_id,
        created,
        row.customer_ref,
        as_utc(row.consented_at) if row.consented_at is not None else None,
        row.purpose,
    )


def require_consent(consent: bool | None) -> None:
    """A photo of a person is taken only when the caller says that person agreed; checked
    before the file is read, so a refused upload costs nothing."""
    if consent is not True:
        raise BadInput(
            "consent is required: send consent=true to say the person pictured agreed to this use of the photo",
            code="consent_required",
        )


def take_upload(
    database: Database,
    store: ArtifactStore,
    faces: FaceAnalyzer,
    data: bytes,
    api_key_id: str | None = None,
    customer_ref: str | None = None,
    *,
    consent: bool | None,
    safety: SafetyGate | None = None,
) -> Upload:
    """Decode, check for exactly one face, store the clean image; BadInput stores nothing.
    A `customer_ref` is kept as given: its caller checks it (credits.customers.check_ref).
    `consent` must be True (require_consent): it is recorded with its time."""
    require_consent(consent)
    image = decode_upload(data)
    if safety is not None:  # every customer-facing caller passes it (quality.yaml content_safe.upload)
        check_photo(np.asarray(image), safety)  # unsafe_content before anything is stored
    face = selfie_face(np.asarray(image), faces)
    now = utc_now()
    values = {"face_score": round(float(face.score), 4), "customer_ref": customer_ref, "consented_at": now}
    return _kept(database, store, image, data, api_key_id, created_at=now, **values)


def _kept(database: Database, store: ArtifactStore, image: Image.Image, data: bytes, api_key_id: str | None, **values) -> Upload:
    """Store a checked upload's clean PNG and record its row (`values`: what its kind adds)."""
    source_format = Image.open(io.BytesIO(data)).format  # decode_upload already trusted the bytes
    upload_id = new_upload_id()
    key = f"uploads/{upload_id}.png"
    store.put_bytes(key, png_bytes(image))
    row = UploadRow(
        id=upload_id,
        storage_key=key,
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        source_format=source_format.lower(),
        source_bytes=len(data),
        api_key_id=api_key_id,
        **{"created_at": utc_now(), **values},
    )
    with database.session() as session:
        session.add(row)
    return _to_upload(row)


def take_product_photo(
    database: Database,
    store: ArtifactStore,
    data: bytes,
    api_key_id: str | None = None,
    *,
    safety: SafetyGate | None = None,
) -> Upload:
    """A product's or garment's photo for a job (`purpose=product`): decoded and checked like
    any upload (format, size, content safety), without a face; BadInput stores nothing. The
    product lock needs a product it can cut out: `imaging/cutout.py` is tried now, so a photo
    with no product in it is refused at once (no_product_found), not after a paid job."""
    image = decode_upload(data)
    if safety is not None:
        check_photo(np.asarray(image), safety)
    cut_out_product(np.asarray(image.convert("RGB")))
    return _kept(database, store, image, data, api_key_id, face_score=0.0, purpose="product")


def get_upload(database: Database, upload_id: str, api_key_id: str | None = None) -> Upload:
    """The upload, if it exists and belongs to the caller's key."""
    with database.session() as session:
        row = session.get(UploadRow, upload_id)
        if row is None or row.api_key_id != api_key_id:
            raise NotFound(f"upload {upload_id} not found", code="upload_not_found")
        return _to_upload(row)
