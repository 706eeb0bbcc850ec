"""Storefront API keys. A key is shown once, at creation; only its SHA-256 is stored, so
a leaked database does not leak working keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import ApiKeyRow

PREFIX = "pgk_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(database: Database, name: str) -> tuple[ApiKey, str]:
    """A new key; returns it and the secret to hand to the storefront (never stored)."""
    key_id = "key_" + secrets.token_hex(6)
    secret = PREFIX + secrets.token_urlsafe(32)
    with database.session() as session:
        session.add(ApiKeyRow(id=key_id, name=name, secret_hash=_hash(secret), created_at=utc_now()))
    return ApiKey(key_id, name), secret


def verify_api_key(database: Database, secret: str) -> ApiKey | None:
    if not secret.startswith(PREFIX):
        return None
    with database.session() as session:
        row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.secret_hash == _hash(secret))).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return ApiKey(row.id, row.name)


def revoke_api_key(database: Database, key_id: str) -> bool:
    with database.session() as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utc_now()
        return True


def list_api_keys(database: Database) -> list[dict]:
    with database.session() as session:
        return [
            {"id": r.id, "name": r.name, "created_at": r.created_at.isoformat(), "revoked": r.revoked_at is not None}
            for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
        ]
