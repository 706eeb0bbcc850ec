"""Several photos of one customer for one order (1–4): checked to show one person when the
order is placed, recorded with it (`order_photos`), and found again by the proof run and
the retention policy.

The first photo is the primary: it is the order's `upload_key`, so every engine and stage
that reads one selfie works unchanged. An order from one photo has no rows in
`order_photos`; its upload is its whole set, exactly as before sets existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import OrderPhotoRow, OrderRow, UploadRow
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.references import face_embedding, stranger_in
from photogen_pipelines.imaging.images import decode_upload
from photogen_pipelines.orders.states import Order
from photogen_pipelines.orders.uploads import Upload
from photogen_pipelines.storage.stores import ArtifactStore

MAX_PHOTOS = 4


@dataclass(frozen=True)
class Photo:
    """One photo of an order's set: its upload (None: an order from the CLI) and its file."""

    upload_id: str | None
    key: str


def check_same_person(store: ArtifactStore, faces: FaceAnalyzer, uploads: Sequence[Upload]) -> None:
    """BadInput(photos_not_same_person) naming the photo that shows someone else, unless
    every pair of the set scores at least the encoder's verification threshold
    (generation/references.py says why that threshold). The embeddings live only in this
    call: nothing is stored, logged or returned but the verdict."""
    if len(uploads) < 2:
        return
    refuse_stranger(uploads, embeddings_of(store, faces, uploads), faces)


def embeddings_of(store: ArtifactStore, faces: FaceAnalyzer, uploads: Sequence[Upload]) -> list[np.ndarray]:
    """Each upload's face's identity, in order (BadInput as an upload's check)."""
    return [face_embedding(np.asarray(decode_upload(store.get_bytes(u.storage_key))), faces) for u in uploads]


def refuse_stranger(uploads: Sequence[Upload], embeddings: Sequence[np.ndarray], faces: FaceAnalyzer) -> None:
    """BadInput(photos_not_same_person) naming the upload whose face is someone else's."""
    stranger = stranger_in(embeddings, faces.default_threshold)
    if stranger is not None:
        odd = uploads[stranger.index]
        raise BadInput(
            f"photo {stranger.index + 1} ({odd.id}) does not show the same person as the other photos; "
            "every photo of an order must show the one customer",
            code="photos_not_same_person",
            details={"upload_id": odd.id, "position": stranger.index},
        )


def record_in(session: Session, order_id: str, uploads: Sequence[Upload]) -> None:
    """Record the set with its order, in the order's own transaction (after the order's row)."""
    if len(uploads) < 2:
        return
    for position, upload in enumerate(uploads):
        session.add(OrderPhotoRow(order_id=order_id, position=position, upload_id=upload.id, storage_key=upload.storage_key))
    session.flush()


def photos_of(database: Database, order: Order) -> list[Photo]:
    """The order's photos, the primary first."""
    with database.session() as session:
        rows = session.scalars(
            select(OrderPhotoRow).where(OrderPhotoRow.order_id == order.id).order_by(OrderPhotoRow.position)
        ).all()
        if rows:
            return [Photo(row.upload_id, row.storage_key) for row in rows]
    return [Photo(order.upload_id, order.upload_key)]


@dataclass(frozen=True)
class Consent:
    """The audit trail's record that the person in one of an order's photos agreed: when
    the caller said so, and the caller's key. `consented_at` None: an upload taken before
    consent was asked (migration 0009)."""

    upload_id: str
    consented_at: datetime | None
    api_key_id: str | None


def consents_of(database: Database, photos: Sequence[Photo]) -> list[Consent]:
    """The consent recorded with each of the photos' uploads, in the photos' order; a photo
    whose upload is gone (erased, retired) or that had none (the CLI's) has no record."""
    ids = [photo.upload_id for photo in photos if photo.upload_id]
    if not ids:
        return []
    with database.session() as session:
        rows = {row.id: row for row in session.scalars(select(UploadRow).where(UploadRow.id.in_(ids)))}
    return [
        Consent(row.id, as_utc(row.consented_at) if row.consented_at is not None else None, row.api_key_id)
        for row in (rows.get(upload_id) for upload_id in ids)
        if row is not None
    ]


def orders_using(database: Database, photo: Photo, besides: str) -> list[str]:
    """The ids of the other orders (not `besides`) placed with this photo, as their primary
    or as one of their set."""
    primary = OrderRow.upload_key == photo.key
    in_set = OrderPhotoRow.storage_key == photo.key
    if photo.upload_id:
        primary = or_(primary, OrderRow.upload_id == photo.upload_id)
        in_set = or_(in_set, OrderPhotoRow.upload_id == photo.upload_id)
    with database.session() as session:
        ids = set(session.scalars(select(OrderRow.id).where(primary, OrderRow.id != besides)))
        ids |= set(session.scalars(select(OrderPhotoRow.order_id).where(in_set, OrderPhotoRow.order_id != besides)))
    return sorted(ids)
