"""The storefront API over HTTP (FastAPI's TestClient), payments off, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid

import dagster as dg
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

import assets
from photogen_pipelines.db.database import Database
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(settings, client):
    return new_key(settings)


def _upload(client, auth, payload: bytes, name="selfie.jpg", content_type="image/jpeg"):
    return client.post("/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": (name, payload, content_type)})


def _place(client, auth, upload_id, key=None, **fields):
    headers = {**auth, "Idempotency-Key": key or str(uuid.uuid4())}
    return client.post("/v1/orders", headers=headers, json=order_body(upload_id, **fields))


def _assert_error(response, status: int, code: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    assert "Traceback" not in response.text
    return body


def test_upload_is_checked_upright_and_stripped_before_storage(client, auth, settings, face_images):
    portrait = face_images["ardern"]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the camera stored it on its side
    exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # a GPS position that must not survive
    sideways = np.ascontiguousarray(np.rot90(portrait, 1))
    response = _upload(client, auth, jpeg_bytes(sideways, exif=exif.tobytes()), name="holiday.png", content_type="image/png")
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["source_format"] == "jpeg"  # sniffed from the bytes, not the name or header
    assert (upload["width"], upload["height"]) == (portrait.shape[1], portrait.shape[0])
    stored = Image.open(settings.paths.artifacts / "uploads" / f"{upload['id']}.png")
    assert stored.size == (portrait.shape[1], portrait.shape[0])
    assert not stored.getexif() and "exif" not in stored.info


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"just text, named like a photo", 422, "not_an_image"),
        (b"", 422, "empty_file"),
        ("coffee", 422, "no_face"),
        ("noise", 413, "file_too_large"),
    ],
)
def test_a_bad_upload_is_refused_at_once_and_nothing_is_stored(tmp_path, database_url, payload, status, code):
    settings = make_settings(tmp_path, database_url, max_upload_bytes=2_000_000)
    if payload == "coffee":
        payload = jpeg_bytes(data.coffee())
    elif payload == "noise":
        payload = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        _assert_error(_upload(client, new_key(settings), payload), status, code)
    uploads = settings.paths.artifacts / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_catalogs_are_public_and_list_prices(client):
    # the storefront's own pages may read them straight from the browser: no key needed
    styles = client.get("/v1/styles").json()
    products = client.get("/v1/products").json()
    assert {"starry_swirl", "ink_etching"} <= {s["id"] for s in styles}
    a3 = next(p for p in products if p["id"] == "poster_a3")
    assert a3["price_cents"] > 0 and a3["pixel_size"] == [3508, 4961] and a3["currency"] == "usd"


def test_an_order_is_idempotent_per_key_and_labelled_paid_when_payments_are_off(client, auth, astronaut_png):
    upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
    key = str(uuid.uuid4())
    first = _place(client, auth, upload_id, key=key)
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["state"] == "paid" and order["payment"]["mode"] == "off"
    assert "nobody was charged" in order["payment"]["label"] and order["payment"]["client_secret"] is None
    assert order["customer_token"].startswith("otk_")
    assert [e["to_state"] for e in order["events"]] == ["awaiting_payment", "paid"]

    again = _place(client, auth, upload_id, key=key)
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    _assert_error(_place(client, auth, upload_id, key=key, variants=3), 409, "idempotency_key_reused")
    _assert_error(client.post("/v1/orders", headers=auth, json=order_body(upload_id)), 400, "idempotency_key_required")
    _assert_error(_place(client, auth, upload_id, style_id="nope"), 422, "unknown_style")
    _assert_error(_place(client, auth, "upl_missing"), 422, "upload_not_found")
    _assert_error(_place(client, auth, upload_id, variants=99), 422, "invalid_request")


def test_keys_and_order_tokens_see_only_their_own_orders(client, auth, settings, astronaut_png):
    upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
    mine, other = _place(client, auth, upload_id).json(), _place(client, auth, upload_id).json()
    token = {"Authorization": f"Bearer {mine['customer_token']}"}
    assert client.get(f"/v1/orders/{mine['id']}", headers=token).json()["id"] == mine["id"]
    _assert_error(client.get(f"/v1/orders/{other['id']}", headers=token), 404, "order_not_found")
    _assert_error(client.get(f"/v1/orders/{mine['id']}", headers=new_key(settings, "another shop")), 404, "order_not_found")
    _assert_error(
        client.post("/v1/uploads", headers=token, data={"consent": "true"}, files={"file": ("a", astronaut_png)}),
        403,
        "api_key_required",
    )
    _assert_error(client.get(f"/v1/orders/{mine['id']}"), 401, "missing_credentials")
    wrong = {"Authorization": "Bearer pgk_wrong"}
    _assert_error(
        client.post("/v1/uploads", headers=wrong, data={"consent": "true"}, files={"file": ("a", astronaut_png)}),
        401,
        "invalid_api_key",
    )
    # the other shop's key cannot use this shop's upload either
    _assert_error(_place(client, new_key(settings, "third shop"), upload_id), 422, "upload_not_found")


def test_the_customer_sees_progress_proofs_and_approves_one(client, auth, settings, astronaut_png, tmp_path, monkeypatch):
    upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
    order = _place(client, auth, upload_id, approval="customer").json()
    token = {"Authorization": f"Bearer {order['customer_token']}"}
    _assert_error(
        client.post(f"/v1/orders/{order['id']}/approve", headers=token, json={"proof": 0}), 409, "not_awaiting_approval"
    )

    # the proof run, as the paid_orders sensor would launch it, on the same database and storage
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", settings.resolved_database_url)
    defs = build_defs(settings.home)
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order["id"]])
        result = dg.materialize(
            [*assets.proof_assets, *assets.order_checks],
            partition_key=order["id"],
            instance=instance,
            resources=defs.resources,
        )
    assert result.success

    seen = client.get(f"/v1/orders/{order['id']}", headers=token).json()
    assert seen["state"] == "proofs_ready" and seen["stage"] == "validated_proofs"
    done = {s["name"]: s for s in seen["stages"]}
    assert all(done[n]["status"] == "done" for n in ("selfie", "styled_candidates", "validated_proofs"))
    assert done["print_master"]["status"] == "pending"
    passed = [p for p in seen["proofs"] if p["passed"]]
    assert passed and all(p["identity_score"] >= seen["identity_threshold"] for p in passed)
    # each proof says what sets it apart, in words a customer reads
    assert {p["variant"]: (p["take"], p["label"]) for p in seen["proofs"]}[0] == ("classic", "As catalogued")
    assert len({p["label"] for p in seen["proofs"]}) == len(seen["proofs"])

    # before approval a proof is shown as a watermarked preview, at proof size
    assert all(p["preview"] for p in passed)
    proof = client.get(passed[0]["url"])
    assert proof.status_code == 200 and Image.open(io.BytesIO(proof.content)).format == "JPEG"
    stored = (settings.paths.artifacts / "orders" / order["id"] / "proofs" / f"proof_{passed[0]['variant']}.png").read_bytes()
    assert Image.open(io.BytesIO(proof.content)).size == Image.open(io.BytesIO(stored)).size and proof.content != stored
    _assert_error(client.get(passed[0]["url"].replace("signature=", "signature=x")), 403, "link_expired_or_invalid")

    failed = [p["variant"] for p in seen["proofs"] if not p["passed"]] or [7]
    _assert_error(
        client.post(f"/v1/orders/{order['id']}/approve", headers=token, json={"proof": failed[0]}), 422, "unknown_proof"
    )
    approved = client.post(f"/v1/orders/{order['id']}/approve", headers=token, json={"proof": passed[0]["variant"]})
    assert approved.status_code == 200 and approved.json()["state"] == OrderState.APPROVED
    assert approved.json()["approved_proof"] == passed[0]["variant"]
    # approved: the approved proof itself, clean, the one the print is made from
    clean = next(p for p in approved.json()["proofs"] if p["variant"] == passed[0]["variant"])
    assert not clean["preview"] and client.get(clean["url"]).content == stored
    _assert_error(
        client.post(f"/v1/orders/{order['id']}/approve", headers=token, json={"proof": 0}), 409, "not_awaiting_approval"
    )
    _assert_error(client.post(f"/v1/orders/{order['id']}/cancel", headers=token), 409, "cannot_cancel")
    _assert_error(client.get(f"/v1/orders/{order['id']}/print-file", headers=token), 409, "print_file_not_ready")


def test_a_paid_order_can_be_cancelled_before_its_run(client, auth, astronaut_png):
    upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
    order = _place(client, auth, upload_id).json()
    cancelled = client.post(f"/v1/orders/{order['id']}/cancel", headers=auth, json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["state"] == "cancelled" and body["reason"] == "changed my mind"
    assert body["payment"]["refund_id"] is None  # payments off: nothing was charged, nothing to refund


def test_rate_limits_answer_429_with_retry_after(tmp_path, database_url, astronaut_png):
    settings = make_settings(tmp_path, database_url, rate_limit_per_key="3/minute")
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        auth = new_key(settings)
        statuses = [client.get("/v1/orders/ord_none", headers=auth).status_code for _ in range(3)]
        assert statuses == [404, 404, 404]
        limited = client.get("/v1/orders/ord_none", headers=auth)
        _assert_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert client.get("/v1/orders/ord_none", headers=new_key(settings, "another")).status_code == 404  # per key

    settings = make_settings(tmp_path, database_url, rate_limit_per_address="2/minute")
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        auth = new_key(settings)
        assert [client.get("/v1/styles").status_code for _ in range(2)] == [200, 200]
        _assert_error(client.get("/v1/orders/ord_none"), 429, "rate_limited")  # a third request without a key
        # a key's requests count against the key, not the address (a shop's backend calls from one address)
        assert client.get("/v1/orders/ord_none", headers=new_key(settings, "another")).status_code == 404


def test_every_error_is_json_with_a_code(client, auth):
    _assert_error(client.get("/v1/nothing-here", headers=auth), 404, "not_found")
    _assert_error(client.delete("/v1/styles", headers=auth), 405, "method_not_allowed")
    bad_json = client.post(
        "/v1/orders", headers={**auth, "Idempotency-Key": "k", "Content-Type": "application/json"}, content=b"{"
    )
    _assert_error(bad_json, 422, "invalid_request")
    _assert_error(client.get("/v1/orders/ord_missing", headers=auth), 404, "order_not_found")
    _assert_error(client.post("/v1/webhooks/stripe", content=b"{}"), 404, "payments_off")


def test_health_readiness_and_docs(client, tmp_path):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/uploads", "/v1/orders", "/v1/orders/{order_id}/approve", "/v1/webhooks/stripe"} <= set(paths)


def test_readiness_fails_when_the_database_is_unreachable(tmp_path):
    settings = make_settings(tmp_path, "postgresql://postgres@127.0.0.1:1/none", auto_migrate=False)
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")


@pytest.mark.slow
def test_stripe_unreachable_is_a_503_and_a_retry_with_the_key_keeps_one_order(tmp_path, database_url, astronaut_png):
    from tests.servers import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(tmp_path, database_url, stripe_api_key="sk_test_x", stripe_api_base=closed)
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        auth = new_key(settings)
        upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
        first = _place(client, auth, upload_id, key="checkout-7")
        body = _assert_error(first, 503, "payment_provider_unavailable")
        assert first.headers["Retry-After"] == "30" and "Stripe could not create the payment" in body["message"]
        _assert_error(_place(client, auth, upload_id, key="checkout-7"), 503, "payment_provider_unavailable")
    book = SqlOrderBook(Database(settings.resolved_database_url))
    (order,) = book.list()  # the retry found the first attempt's order: never two
    assert order.state == OrderState.AWAITING_PAYMENT and order.payment_intent_id is None


def test_an_upload_retired_by_retention_cannot_be_ordered(client, auth, settings, astronaut_png):
    upload_id = _upload(client, auth, astronaut_png, "a.png", "image/png").json()["id"]
    (settings.paths.artifacts / "uploads" / f"{upload_id}.png").unlink()
    _assert_error(_place(client, auth, upload_id), 422, "upload_expired")


@pytest.mark.slow
def test_the_api_keeps_uploads_in_s3_and_links_are_presigned(tmp_path, database_url, astronaut_png, monkeypatch):
    import boto3
    import requests

    from tests.servers import moto_s3_server

    with moto_s3_server(tmp_path) as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="shop-artifacts")
        settings = make_settings(tmp_path, database_url, artifacts_root="s3://shop-artifacts/photogen")
        with TestClient(make_app(settings), raise_server_exceptions=False) as client:
            assert client.get("/readyz").json()["checks"] == {"database": "ok", "storage": "ok"}
            upload = _upload(client, new_key(settings), astronaut_png, "a.png", "image/png")
            assert upload.status_code == 201, upload.text
            key = f"photogen/uploads/{upload.json()['id']}.png"
            assert s3.head_object(Bucket="shop-artifacts", Key=key)["ContentLength"] > 0
            services = client.app.state.services
            link = services.link("http://testserver", f"uploads/{upload.json()['id']}.png")
            assert link.startswith(endpoint) and "Signature" in link  # S3's own presigned URL
            downloaded = requests.get(link, timeout=10)
            assert downloaded.status_code == 200 and Image.open(io.BytesIO(downloaded.content)).format == "PNG"
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing went to local disk
