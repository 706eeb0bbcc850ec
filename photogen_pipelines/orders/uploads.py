"""A customer's selfie taken in: checked on the spot, stored clean, recorded.

The stored file is the decoded image re-encoded as PNG: upright (EXIF orientation
applied), sRGB, with every metadata field dropped, so GPS tags and camera serials never
reach storage. The customer hears "no face found" at once, not after a paid run.
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
from photogen_pipelines.errors import NotFound
from photogen_pipelines.generation.stages import selfie_face
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
    )


def take_upload(
    database: Database,
    store: ArtifactStore,
    faces: FaceAnalyzer,
    data: bytes,
    api_key_id: str | None = None,
    customer_ref: str | None = None,
) -> Upload:
    """Decode, check for exactly one face, store the clean image; BadInput stores nothing.
    A `customer_ref` is kept as given: its caller checks it (credits.customers.check_ref)."""
    image = decode_upload(data)
    source_format = Image.open(io.BytesIO(data)).format  # decode_upload already trusted the bytes
    face = selfie_face(np.asarray(image), faces)
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
        face_score=round(float(face.score), 4),
        api_key_id=api_key_id,
        customer_ref=customer_ref,
        created_at=utc_now(),
    )
    with database.session() as session:
        session.add(row)
    return _to_upload(row)


def get_upload(database: Database, upload_id: str, api_key_id: str | None = None) -> Upload:
    """The upload, if it exists and belongs to the caller's key."""
    with database.session() as session:
        row = session.get(UploadRow, upload_id)
        if row is None or row.api_key_id != api_key_id:
            raise NotFound(f"upload {upload_id} not found", code="upload_not_found")
        return _to_upload(row)
