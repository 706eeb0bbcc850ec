"""Consent: no photo of a person is taken unless the caller says that person agreed; the
word is kept with its time and key, and the order's audit trail shows it. The API over
HTTP (FastAPI's TestClient), payments off, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import UploadRow
from tests.api_helpers import jpeg_bytes, new_key, order_body


def _uploads(api_settings) -> tuple[int, list[str]]:
    database = open_database(api_settings.resolved_database_url)
    with database.session() as session:
        rows = session.scalar(select(func.count()).select_from(UploadRow))
    folder = api_settings.paths.artifacts / "uploads"
    return rows, sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("form", [{}, {"consent": "false"}, {"consent": "0"}], ids=["missing", "false", "zero"])
def test_an_upload_without_consent_is_refused_and_nothing_is_kept(api_client, api_settings, face_images, form):
    auth = new_key(api_settings)
    photo = jpeg_bytes(face_images["obama"])
    response = api_client.post("/v1/uploads", headers=auth, data=form, files={"file": ("me.jpg", photo, "image/jpeg")})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "consent_required" and "consent=true" in body["message"], body
    assert _uploads(api_settings) == (0, [])


def test_consent_is_kept_with_its_time_and_key_and_shown_in_the_orders_audit_trail(api_client, api_settings, face_images):
    auth = new_key(api_settings)
    before = utc_now()
    ids = []
    customer = face_images["obama"]
    for picture in (customer, customer[:, ::-1]):  # two photos of one person: the second mirrored
        photo = jpeg_bytes(picture.copy())
        response = api_client.post(
            "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", photo, "image/jpeg")}
        )
        assert response.status_code == 201, response.text
        uploaded = response.json()
        assert before <= datetime.fromisoformat(uploaded["consented_at"]) <= utc_now()
        ids.append(uploaded["id"])

    database = open_database(api_settings.resolved_database_url)
    with database.session() as session:
        rows = {row.id: row for row in session.scalars(select(UploadRow))}
    assert set(rows) == set(ids) and all(row.consented_at is not None and row.api_key_id for row in rows.values())

    body = {k: v for k, v in order_body(ids[0]).items() if k != "upload_id"} | {"upload_ids": ids}
    placed = api_client.post("/v1/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())}, json=body)
    assert placed.status_code == 201, placed.text
    order = api_client.get(f"/v1/orders/{placed.json()['id']}", headers=auth).json()
    assert [c["upload_id"] for c in order["consent"]] == ids  # the primary first, as the photos
    for record in order["consent"]:
        row = rows[record["upload_id"]]
        assert record["api_key_id"] == row.api_key_id
        assert datetime.fromisoformat(record["consented_at"]) == as_utc(row.consented_at)  # SQLite hands it back naive


def test_another_shops_order_never_shows_its_consent_records(api_client, api_settings, face_images):
    """The audit trail is the order's own: a second key reads neither the order nor its records."""
    auth, other = new_key(api_settings), new_key(api_settings, "another shop")
    photo = jpeg_bytes(face_images["obama"])
    upload = api_client.post(
        "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", photo, "image/jpeg")}
    )
    placed = api_client.post("/v1/orders", headers={**auth, "Idempotency-Key": "c1"}, json=order_body(upload.json()["id"])).json()
    assert api_client.get(f"/v1/orders/{placed['id']}", headers=other).status_code == 404
    assert len(api_client.get(f"/v1/orders/{placed['id']}", headers=auth).json()["consent"]) == 1
