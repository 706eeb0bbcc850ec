"""Saved identities: one person's photos kept for later jobs (a fashion shop's model, a
customer's avatar), so a shop does not upload and check the same person for every job.

An identity is made from 1–4 of the caller's uploads, with the caller's word that the person
pictured agreed (`consent`, as on an upload): the photos must show one person (the check an
order's photo set gets), are copied under `identities/<id>/` (uploads expire with the
retention policy; an identity stays until it is deleted), and the identity the jobs compare
their shots with (the normalised mean of the photos' face embeddings) is stored beside them.
Deleting it removes its photos, its embedding and its row; erasing its customer deletes it
too (workflows/erasure.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import IdentityRow
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import NotFound
from photogen_pipelines.generation.references import mean_embedding
from photogen_pipelines.orders.photo_sets import MAX_PHOTOS, embeddings_of, refuse_stranger
from photogen_pipelines.orders.uploads import get_upload, require_consent
from photogen_pipelines.storage.artifacts import load_json, save_json
from photogen_pipelines.storage.stores import ArtifactStore


@dataclass(frozen=True)
class Identity:
    id: str
    label: str | None
    customer_ref: str | None
    photos: int
    encoder: str
    consented_at: datetime
    created_at: datetime


class IdentityDocument(BaseModel):
    """`identities/<id>/identity.json`: what a job compares its shots with."""

    encoder: str  # the face encoder that made it: a job with another one cannot use it
    embedding: list[float]  # the normalised mean of the photos' face embeddings


def new_identity_id() -> str:
    return "idn_" + secrets.token_hex(8)


def folder(identity_id: str) -> str:
    return f"identities/{identity_id}/"


def photo_key(identity_id: str, position: int) -> str:
    return f"{folder(identity_id)}photo_{position}.png"


def _embedding_key(identity_id: str) -> str:
    return f"{folder(identity_id)}identity.json"


def _to_identity(row: IdentityRow) -> Identity:
    return Identity(
        row.id, row.label, row.customer_ref, row.photos, row.encoder, as_utc(row.consented_at), as_utc(row.created_at)
    )


def save_identity(
    database: Database,
    store: ArtifactStore,
    faces: FaceAnalyzer,
    api_key_id: str | None,
    upload_ids: Sequence[str],
    *,
    consent: bool | None,
    label: str | None = None,
    customer_ref: str | None = None,
) -> Identity:
    """An identity from the caller's uploads (1–4, distinct: the caller's schema checks):
    consent_required, upload_not_found (another key's upload too) or photos_not_same_person
    refuse it and store nothing. A `customer_ref` is kept as given: its caller checks it."""
    require_consent(consent)
    uploads = [get_upload(database, upload_id, api_key_id) for upload_id in upload_ids[:MAX_PHOTOS]]
    embeddings = embeddings_of(store, faces, uploads)  # each photo decoded once, for the check and the identity
    refuse_stranger(uploads, embeddings, faces)
    embedding = mean_embedding(embeddings)
    pictures = [store.get_bytes(upload.storage_key) for upload in uploads]  # the clean PNGs uploads stored
    identity_id = new_identity_id()
    for position, picture in enumerate(pictures):
        store.put_bytes(photo_key(identity_id, position), picture)
    document = IdentityDocument(encoder=faces.version, embedding=[round(float(v), 6) for v in embedding])
    save_json(store, _embedding_key(identity_id), document)
    now = utc_now()
    row = IdentityRow(
        id=identity_id,
        api_key_id=api_key_id,
        customer_ref=customer_ref,
        label=label,
        photos=len(pictures),
        encoder=faces.version,
        consented_at=now,
        created_at=now,
    )
    with database.session() as session:
        session.add(row)
    return _to_identity(row)


def _row(session, identity_id: str, api_key_id: str | None, any_owner: bool = False) -> IdentityRow:
    row = session.get(IdentityRow, identity_id)
    if row is None or (row.api_key_id != api_key_id and not any_owner):
        raise NotFound(f"identity {identity_id} not found", code="identity_not_found")
    return row


def get_identity(database: Database, identity_id: str, api_key_id: str | None, *, any_owner: bool = False) -> Identity:
    """The identity, if it exists and belongs to the caller's key (`any_owner`: the shop's
    operator, whose merchant catalog names a model saved through any of the shop's keys)."""
    with database.session() as session:
        return _to_identity(_row(session, identity_id, api_key_id, any_owner))


def identities_of(database: Database, api_key_id: str | None, customer_ref: str | None = None) -> list[Identity]:
    """The key's identities, newest first; with `customer_ref`, that customer's only."""
    query = select(IdentityRow).where(IdentityRow.api_key_id == api_key_id)
    if customer_ref is not None:
        query = query.where(IdentityRow.customer_ref == customer_ref)
    with database.session() as session:
        return [_to_identity(row) for row in session.scalars(query.order_by(IdentityRow.created_at.desc()))]


def identity_embedding(store: ArtifactStore, identity_id: str) -> np.ndarray:
    """What a job compares its shots with."""
    document = load_json(store, _embedding_key(identity_id), IdentityDocument)
    return np.asarray(document.embedding, dtype=np.float32)


def identity_photos(store: ArtifactStore, identity: Identity) -> list[bytes]:
    """The identity's photos as PNG bytes, in the order they were given."""
    return [store.get_bytes(photo_key(identity.id, position)) for position in range(identity.photos)]


def delete_files(store: ArtifactStore, identity_id: str) -> int:
    """Remove every file of the identity (its photos and embedding); how many there were."""
    keys = [key for key in store.list(folder(identity_id)) if key.startswith(folder(identity_id))]
    for key in keys:
        store.delete(key)
    return len(keys)


def delete_identity(database: Database, store: ArtifactStore, identity_id: str, api_key_id: str | None) -> int:
    """Delete the identity everywhere: its files first (a failure leaves the row to retry
    with), then its row. identity_not_found for another key's or an unknown one."""
    get_identity(database, identity_id, api_key_id)
    files = delete_files(store, identity_id)
    with database.session() as session:
        session.delete(_row(session, identity_id, api_key_id))
    return files
