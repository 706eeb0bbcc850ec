"""Saved identities over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL: made from a
person's uploads with consent and the same-person check, kept when the uploads go, and
deleted everywhere, alone or with their customer. Real photos, the embedded face engine."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from sqlalchemy import func, select

from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import IdentityRow
from photogen_pipelines.engines.base import cosine
from tests.api_helpers import jpeg_bytes, new_key


def _upload(api_client, auth, image: np.ndarray, **form) -> str:
    response = api_client.post(
        "/v1/uploads",
        headers=auth,
        data={"consent": "true", **form},
        files={"file": ("me.jpg", jpeg_bytes(np.ascontiguousarray(image)), "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _files(api_settings) -> list[str]:
    root = api_settings.paths.artifacts / "identities"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _rows(api_settings) -> int:
    with open_database(api_settings.resolved_database_url).session() as session:
        return session.scalar(select(func.count()).select_from(IdentityRow))


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and "Traceback" not in response.text, body
    return body


def test_an_identity_keeps_one_persons_photos_and_identity_until_deleted(api_client, api_settings, face_images, analyzer):
    auth = new_key(api_settings)
    person = face_images["ardern"]
    ids = [_upload(api_client, auth, person), _upload(api_client, auth, person[:, ::-1])]
    made = api_client.post("/v1/identities", headers=auth, json={"upload_ids": ids, "consent": True, "label": "model A"})
    assert made.status_code == 201, made.text
    identity = made.json()
    assert identity["id"].startswith("idn_") and identity["photos"] == 2 and identity["label"] == "model A"
    assert identity["encoder"] == analyzer.version and identity["consented_at"]
    folder = identity["id"]
    assert _files(api_settings) == [f"{folder}/identity.json", f"{folder}/photo_0.png", f"{folder}/photo_1.png"]

    # the uploads expire with retention; the identity is its own copy
    for upload in (api_settings.paths.artifacts / "uploads").iterdir():
        upload.unlink()
    stored = json.loads((api_settings.paths.artifacts / "identities" / folder / "identity.json").read_bytes())
    own = analyzer.embed(person, analyzer.detect(person, min_score=0.75)[0])
    assert cosine(np.asarray(stored["embedding"]), own) > 0.8  # the person's own identity
    assert api_client.get(f"/v1/identities/{folder}", headers=auth).json() == identity
    assert [i["id"] for i in api_client.get("/v1/identities", headers=auth).json()["identities"]] == [folder]

    other = new_key(api_settings, "another shop")
    _error(api_client.get(f"/v1/identities/{folder}", headers=other), 404, "identity_not_found")
    _error(api_client.delete(f"/v1/identities/{folder}", headers=other), 404, "identity_not_found")
    assert _files(api_settings) and _rows(api_settings) == 1

    assert api_client.delete(f"/v1/identities/{folder}", headers=auth).status_code == 204
    assert _files(api_settings) == [] and _rows(api_settings) == 0
    _error(api_client.get(f"/v1/identities/{folder}", headers=auth), 404, "identity_not_found")
    _error(api_client.delete(f"/v1/identities/{folder}", headers=auth), 404, "identity_not_found")


def test_a_refused_identity_stores_nothing(api_client, api_settings, face_images):
    auth = new_key(api_settings)
    ardern, macron = _upload(api_client, auth, face_images["ardern"]), _upload(api_client, auth, face_images["macron"])
    someone_elses = _upload(api_client, new_key(api_settings, "another shop"), face_images["ardern"])
    for body, status, code in (
        ({"upload_ids": [ardern]}, 422, "consent_required"),
        ({"upload_ids": [ardern], "consent": False}, 422, "consent_required"),
        ({"upload_ids": [ardern], "consent": "true"}, 422, "invalid_request"),  # a string is not a yes
        ({"upload_ids": [ardern, macron], "consent": True}, 422, "photos_not_same_person"),
        ({"upload_ids": [ardern, ardern], "consent": True}, 422, "invalid_request"),
        ({"upload_ids": [], "consent": True}, 422, "invalid_request"),
        ({"upload_ids": [ardern] * 5, "consent": True}, 422, "invalid_request"),
        ({"upload_ids": [someone_elses], "consent": True}, 422, "upload_not_found"),  # as an order's
        ({"upload_ids": [ardern], "consent": True, "customer_ref": "not a ref"}, 422, "invalid_customer_ref"),
    ):
        body_of = _error(api_client.post("/v1/identities", headers=auth, json=body), status, code)
        if code == "photos_not_same_person":
            assert body_of["details"]["upload_id"] == macron
    assert _files(api_settings) == [] and _rows(api_settings) == 0


def test_erasing_a_customer_exports_then_deletes_their_identities(api_client, api_settings, face_images):
    auth = new_key(api_settings)
    mine = _upload(api_client, auth, face_images["obama"], customer_ref="ann")
    kept = _upload(api_client, auth, face_images["macron"], customer_ref="bob")
    for upload, ref in ((mine, "ann"), (kept, "bob")):
        made = api_client.post(
            "/v1/identities", headers=auth, json={"upload_ids": [upload], "consent": True, "customer_ref": ref}
        )
        assert made.status_code == 201, made.text
    ann = api_client.get("/v1/identities", headers=auth, params={"customer_ref": "ann"}).json()["identities"]
    assert len(ann) == 1

    export = api_client.get("/v1/customers/ann/export", headers=auth)
    assert export.status_code == 200, export.text
    members = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    folder = f"identities/{ann[0]['id']}/"
    assert {folder + "identity.json", folder + "photo_0.png"} <= set(members)
    assert json.loads(zipfile.ZipFile(io.BytesIO(export.content)).read("customer.json"))["identities"] == [ann[0]["id"]]

    erased = api_client.delete("/v1/customers/ann", headers=auth)
    assert erased.status_code == 200, erased.text
    assert erased.json()["files"] >= 3  # the upload, and the identity's photo and embedding
    assert not any(name.startswith(ann[0]["id"]) for name in _files(api_settings))
    assert _rows(api_settings) == 1  # bob's stays
    assert api_client.get("/v1/identities", headers=auth, params={"customer_ref": "ann"}).json()["identities"] == []
