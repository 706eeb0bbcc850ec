"""The storefront API refuses what is too large or malformed with its JSON error and changes
nothing: no 500, no plain-text page from the server, no order, no stored file. And it limits
how often: an authenticated caller (API key, order token) against its own limit, whatever
address it calls from; requests without valid credentials, and failed ones, per address.

Over real HTTP, on uvicorn as `photogen serve` runs it (storefront_api.server's protocol),
and on plain uvicorn (tests/servers.py `api_server`), where the app alone must answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import numpy as np
import pydantic
import pytest
import requests
from limits import parse
from urllib3 import encode_multipart_formdata

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.storage.stores import LocalArtifactStore
from storefront_api.api.routes import uploads
from storefront_api.config import Settings
from storefront_api.server import HttpProtocol
from tests.api_helpers import make_app, make_settings, new_key, order_body
from tests.servers import api_server

MB = 1_000_000
MIB = 2**20
PROOF = "orders/o1/proofs/proof_0.png"


def served(app, settings: Settings):
    """The app behind uvicorn with the API's own HTTP protocol, as `photogen serve` runs it."""
    return api_server(app, http=HttpProtocol.for_settings(settings))


@dataclass
class Shop:
    url: str
    settings: Settings
    app: object
    auth: dict[str, str]
    upload_id: str

    def orders(self) -> list[str]:
        database = Database(self.settings.resolved_database_url)
        try:
            return [o.id for o in SqlOrderBook(database).list(limit=10_000)]
        finally:
            database.dispose()

    def place(self, body: dict | None = None, headers: dict | None = None, **options) -> requests.Response:
        """POST /v1/orders with this shop's key, a new Idempotency-Key and a good order unless told otherwise."""
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4()), **(headers or {})}
        if "data" not in options:
            options["json"] = body or order_body(self.upload_id)
        return requests.post(f"{self.url}/v1/orders", headers=headers, timeout=30, **options)


@contextlib.contextmanager
def open_shop(tmp_path, astronaut_png, **settings_overrides) -> Iterator[Shop]:
    """A served API on a fresh database, with a key and one upload (one request on that key)."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", **settings_overrides)
    app = make_app(settings)
    with served(app, settings) as url:
        auth = new_key(settings)
        upload = requests.post(
            f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("a.png", astronaut_png, "image/png")}
        )
        assert upload.status_code == 201, upload.text
        yield Shop(url, settings, app, auth, upload.json()["id"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory, astronaut_png):
    with open_shop(tmp_path_factory.mktemp("shop"), astronaut_png) as shop:
        yield shop


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def _unchanged(shop: Shop, before: list[str]) -> None:
    assert shop.orders() == before, "a refused request created an order"


# -- the request head: headers and URL ------------------------------------------------


@pytest.mark.parametrize("size", [20_000, MB], ids=["20kB", "1MB"])
def test_headers_over_16_kib_are_a_json_431_and_place_no_order(shop, size):
    assert shop.place(headers={"X-Note": "a" * 8_000}).status_code == 201  # the same request, under the limit
    before = shop.orders()
    _assert_error(shop.place(headers={"X-Note": "a" * size}), 431, "headers_too_large")
    _unchanged(shop, before)


@pytest.mark.parametrize("size", [9_000, 100_000], ids=["9kB", "100kB"])
def test_a_url_over_8_kib_is_a_json_414_and_places_no_order(shop, size):
    # over 64 KiB httptools cannot parse a URL at all: plain uvicorn answers that with a text/plain 400
    assert shop.place(params={"note": "a" * 4_000}).status_code == 201
    before = shop.orders()
    _assert_error(shop.place(params={"note": "a" * size}), 414, "uri_too_long")
    _unchanged(shop, before)


def _raw_exchange(shop: Shop, request: bytes) -> tuple[bytes, dict]:
    """Send bytes as they are, read the answer until the server closes: its head and JSON body."""
    address = urlsplit(shop.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(request)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head, head
    return head, json.loads(body)


def test_a_head_that_never_ends_is_cut_off_at_the_limit(shop):
    # the app only ever sees a whole head: this one is the server's to stop, before it holds 1 MB
    head, body = _raw_exchange(shop, b"GET /v1/styles HTTP/1.1\r\nHost: shop\r\nX-Note: " + b"a" * MB)
    assert head.startswith(b"HTTP/1.1 431 ") and body["code"] == "headers_too_large", head


def test_bytes_that_are_not_http_get_a_json_400(shop):
    head, body = _raw_exchange(shop, b"NOT HTTP AT ALL\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and body["code"] == "bad_request", head


# -- bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_a_1_mb_json_body_is_a_413_and_places_no_order(shop, sent):
    # read to the end, and refused for its unknown field (422), not for its size
    _assert_error(shop.place(order_body(shop.upload_id, note="x" * 1_000)), 422, "invalid_request")
    before = shop.orders()
    big = order_body(shop.upload_id, note="x" * MB)
    if sent == "content-length":
        response = shop.place(big)
    else:  # no Content-Length: the bytes are counted as they arrive
        data = json.dumps(big).encode()
        chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
        response = shop.place(headers={"Content-Type": "application/json"}, data=chunks)
    _assert_error(response, 413, "body_too_large")
    _unchanged(shop, before)


def test_stripes_webhook_has_room_for_a_large_event_but_not_for_a_megabyte(shop):
    # payments are off on this shop, so a body that gets past the limit meets the route's 404
    webhook = f"{shop.url}/v1/webhooks/stripe"
    headers = {"Stripe-Signature": "t=1,v1=0", "Content-Type": "application/json"}
    event = json.dumps({"id": "evt_1", "type": "charge.refunded", "note": "x" * 200_000}).encode()
    _assert_error(requests.post(webhook, data=event, headers=headers, timeout=30), 404, "payments_off")
    _assert_error(requests.post(webhook, data=b"x" * MB, headers=headers, timeout=30), 413, "body_too_large")


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_upload_over_the_limit_is_refused_before_the_route_reads_it(tmp_path, astronaut_png, monkeypatch, sent):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", max_upload_bytes=MIB)
    read = []
    original = uploads._read_limited
    monkeypatch.setattr(uploads, "_read_limited", lambda file, limit: read.append(limit) or original(file, limit))
    noise = np.random.default_rng(0).integers(0, 256, 2 * MB, dtype=np.uint8).tobytes()
    body, content_type = encode_multipart_formdata({"consent": "true", "file": ("selfie.jpg", noise, "image/jpeg")})
    with served(make_app(settings), settings) as url:
        auth = new_key(settings)
        small = requests.post(
            f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("a.png", astronaut_png, "image/png")}
        )
        assert small.status_code == 201 and read == [MIB], small.text  # the route reads what is within the limit
        stored = sorted(p.name for p in (settings.paths.artifacts / "uploads").iterdir())
        data = body if sent == "content-length" else (body[i : i + 65536] for i in range(0, len(body), 65536))
        response = requests.post(f"{url}/v1/uploads", headers={**auth, "Content-Type": content_type}, data=data, timeout=30)
        body_of = _assert_error(response, 413, "file_too_large")
    assert "1 MiB" in body_of["message"]
    assert read == [MIB], "the route read the oversize upload"
    assert sorted(p.name for p in (settings.paths.artifacts / "uploads").iterdir()) == stored


# -- signed file links ----------------------------------------------------------------

BAD_KEYS = {
    "dot-dot": "orders/../../secret_key",
    "dot-dot-deeper": "orders/o1/../../../secret_key",
    "leading-slash": "/" + PROOF,
    "backslashes": "orders/o1\\..\\..\\..\\secret_key",
    "nul": PROOF + "\0.txt",
    "empty-segment": "orders/o1//proofs/proof_0.png",
    "dot-segment": "orders/o1/./proofs/proof_0.png",
}


@dataclass
class Answer:
    status_code: int
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


def _signed_get(shop: Shop, key: str) -> Answer:
    """GET the API's signed link to `key`, its path sent byte for byte (requests would fold `..` away)."""
    address = urlsplit(shop.url)
    query = Signer(shop.settings.resolved_secret_key).file_query(key, 900)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", f"/v1/files/{quote(key, safe='/')}?{query}")
        answer = connection.getresponse()
        return Answer(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


@pytest.fixture
def touched(monkeypatch) -> list[str]:
    """The keys the local artifact store is asked about (every method goes through `path`)."""
    keys: list[str] = []
    original = LocalArtifactStore.path
    monkeypatch.setattr(LocalArtifactStore, "path", lambda store, key: keys.append(key) or original(store, key))
    return keys


def test_a_signed_link_serves_its_file(shop, touched):
    # a style preview: an order's files are served only as its state allows (tests/test_api_browser.py)
    preview = "catalog/previews/ink_etching/1.png"
    shop.app.state.services.store.put_bytes(preview, b"\x89PNG preview")
    touched.clear()
    response = _signed_get(shop, preview)
    assert response.status_code == 200 and response.content == b"\x89PNG preview"
    assert preview in touched


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_signed_key_that_is_not_a_plain_path_is_a_404_before_the_store_is_touched(shop, touched, caplog, key):
    shop.app.state.services.store.put_bytes(PROOF, b"\x89PNG proof")
    touched.clear()
    with caplog.at_level(logging.WARNING):
        response = _signed_get(shop, key)
    _assert_error(response, 404, "file_not_found")  # not 403: the signature is right, the key is not
    assert touched == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- strict integers --------------------------------------------------------------------


@pytest.mark.parametrize("variants", ["2", True, 2.0], ids=["string", "true", "float"])
def test_variants_must_be_an_integer(shop, variants):
    before = shop.orders()
    body = _assert_error(shop.place(order_body(shop.upload_id, variants=variants)), 422, "invalid_request")
    assert body["details"]["problems"][0]["field"] == "variants", body
    _unchanged(shop, before)
    assert shop.place(order_body(shop.upload_id, variants=2)).json()["variants"] == 2


@pytest.mark.parametrize("proof", ["0", False, 0.0], ids=["string", "false", "float"])
def test_the_approved_proof_must_be_an_integer(shop, proof):
    order = shop.place().json()
    approve = f"{shop.url}/v1/orders/{order['id']}/approve"
    # an integer gets as far as the order's state (paid, not proofs_ready)
    _assert_error(requests.post(approve, headers=shop.auth, json={"proof": 0}), 409, "not_awaiting_approval")
    body = _assert_error(requests.post(approve, headers=shop.auth, json={"proof": proof}), 422, "invalid_request")
    assert body["details"]["problems"][0]["field"] == "proof", body
    assert requests.get(f"{shop.url}/v1/orders/{order['id']}", headers=shop.auth).json()["state"] == "paid"


# -- any ASGI server ------------------------------------------------------------------


def test_on_plain_uvicorn_the_app_itself_answers_with_json(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        place = f"{url}/v1/orders"
        headers = {**auth, "Idempotency-Key": "k1"}
        _assert_error(requests.post(place, headers={**headers, "X-Note": "a" * MB}, json={}), 431, "headers_too_large")
        _assert_error(requests.post(place, headers=headers, params={"note": "a" * 9_000}, json={}), 414, "uri_too_long")
        _assert_error(requests.post(place, headers=headers, json={"note": "x" * MB}), 413, "body_too_large")


# -- rate limits: per caller when authenticated, per client address otherwise ----------

RATE_LIMITS = ("rate_limit_per_key", "rate_limit_per_order_token", "rate_limit_per_address", "rate_limit_failed_auth_per_address")
WRONG_KEY = {"Authorization": "Bearer pgk_" + "x" * 43}
WRONG_TOKEN = {"Authorization": "Bearer otk_" + "x" * 43}


def _get(shop: Shop, path: str, auth: dict[str, str] | None = None, source: str = "127.0.0.1") -> Answer:
    """GET `path` on a new connection from the loopback address `source`: any address in
    127/8 reaches the server, so one test can call as several clients."""
    address = urlsplit(shop.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=auth or {})
        answer = connection.getresponse()
        return Answer(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def _statuses(shop: Shop, paths: list[str], auth: dict[str, str] | None = None, source: str = "127.0.0.1") -> list[int]:
    return [_get(shop, path, auth, source).status_code for path in paths]


def _assert_rate_limited(response) -> None:
    _assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60, response.headers


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_backend_polling_with_its_key_is_not_held_to_the_address_limit(tmp_path, astronaut_png):
    # a shop's backend calls from one address for all its customers: its key's requests count
    # against the key, never against the address (which was 60/minute, the old default)
    with open_shop(tmp_path, astronaut_png, rate_limit_per_address="60/minute") as shop:
        orders = [shop.place().json()["id"] for _ in range(4)]
        assert _statuses(shop, [f"/v1/orders/{orders[i % 4]}" for i in range(150)], shop.auth) == [200] * 150
        # nor did they spend any of the address's budget: requests without a key still get all 60
        assert _statuses(shop, ["/v1/styles"] * 60) == [200] * 60
        _assert_rate_limited(_get(shop, "/v1/styles"))
        assert _get(shop, f"/v1/orders/{orders[0]}", shop.auth).status_code == 200


def test_each_api_key_is_held_to_its_own_limit(tmp_path, astronaut_png):
    with open_shop(tmp_path, astronaut_png, rate_limit_per_key="3/minute", rate_limit_per_address="60/minute") as shop:
        busy, other = new_key(shop.settings, "busy shop"), new_key(shop.settings, "other shop")
        # the catalog read with a key counts against the key as well
        assert _statuses(shop, ["/v1/styles", "/v1/orders/ord_none", "/v1/products"], busy) == [200, 404, 200]
        _assert_rate_limited(_get(shop, "/v1/orders/ord_none", busy))
        _assert_rate_limited(_get(shop, "/v1/styles", busy))
        _assert_rate_limited(_get(shop, "/v1/orders/ord_none", busy, source="127.0.0.2"))  # wherever it calls from
        assert _get(shop, "/v1/orders/ord_none", other).status_code == 404  # another key, the same address
        assert _get(shop, "/v1/styles").status_code == 200  # the address's own budget is untouched


def test_requests_without_valid_credentials_are_limited_per_address(tmp_path, astronaut_png):
    with open_shop(tmp_path, astronaut_png, rate_limit_per_address="5/minute") as shop:
        anonymous = [
            _get(shop, "/v1/styles"),
            _get(shop, "/v1/products"),
            _get(shop, "/v1/orders/ord_none"),  # no credentials
            _get(shop, f"/v1/files/{PROOF}?expires=1&signature=x"),  # a signed link, an expired one
            _get(shop, "/v1/styles", WRONG_TOKEN),  # an order token outside an order's path is not checked
        ]
        assert [a.status_code for a in anonymous] == [200, 200, 401, 403, 200]
        _assert_rate_limited(_get(shop, "/v1/styles"))
        _assert_rate_limited(_get(shop, "/v1/orders/ord_none"))
        _assert_rate_limited(_get(shop, f"/v1/files/{PROOF}?expires=1&signature=x"))
        assert _get(shop, "/v1/styles", source="127.0.0.2").status_code == 200  # another address, its own budget
        assert _get(shop, "/v1/styles", shop.auth).status_code == 200  # a key from this address: the key's budget


def test_failed_authentication_is_limited_tightly_and_then_nothing_is_checked(tmp_path, astronaut_png):
    limits = {"rate_limit_failed_auth_per_address": "3/minute", "rate_limit_per_address": "60/minute"}
    with open_shop(tmp_path, astronaut_png, **limits) as shop:
        order = shop.place().json()
        path = f"/v1/orders/{order['id']}"
        _assert_error(_get(shop, path, WRONG_KEY), 401, "invalid_api_key")
        _assert_error(_get(shop, path, WRONG_TOKEN), 404, "order_not_found")
        assert _get(shop, "/v1/styles", WRONG_KEY).status_code == 200  # the catalog is public: served, still counted
        # spent: no credentials from this address are checked, so a guess cannot learn it was right
        for auth in (WRONG_KEY, WRONG_TOKEN, _auth(order["customer_token"]), shop.auth):
            _assert_rate_limited(_get(shop, path, auth))
        assert _get(shop, "/v1/styles").status_code == 200  # requests without credentials: the address's other budget
        assert _get(shop, path, shop.auth, source="127.0.0.2").status_code == 200  # another address is not locked out


def test_an_order_token_is_a_caller_with_its_own_limit(tmp_path, astronaut_png):
    limits = {"rate_limit_per_order_token": "3/minute", "rate_limit_per_address": "2/minute"}
    with open_shop(tmp_path, astronaut_png, **limits) as shop:
        mine, theirs = shop.place().json(), shop.place().json()
        path = f"/v1/orders/{mine['id']}"
        assert _statuses(shop, [path] * 3, _auth(mine["customer_token"])) == [200] * 3
        _assert_rate_limited(_get(shop, path, _auth(mine["customer_token"])))
        _assert_rate_limited(_get(shop, f"{path}/print-file", _auth(mine["customer_token"])))
        # another order's token from the same address, and the shop's key for this very order
        assert _statuses(shop, [f"/v1/orders/{theirs['id']}"] * 3, _auth(theirs["customer_token"])) == [200] * 3
        assert _get(shop, path, shop.auth).status_code == 200
        # the tokens' requests did not count against the address's budget either
        assert _statuses(shop, ["/v1/styles"] * 2) == [200, 200]
        _assert_rate_limited(_get(shop, "/v1/styles"))


def test_stripes_webhook_is_never_rate_limited(tmp_path, astronaut_png):
    limits = {"rate_limit_per_address": "1/minute", "rate_limit_failed_auth_per_address": "1/minute"}
    with open_shop(tmp_path, astronaut_png, **limits) as shop:
        webhook = f"{shop.url}/v1/webhooks/stripe"
        headers = {"Stripe-Signature": "t=1,v1=0", "Content-Type": "application/json", **WRONG_KEY}
        for _ in range(5):  # payments are off on this shop: the route's own 404 every time, never a 429
            _assert_error(requests.post(webhook, data=b"{}", headers=headers, timeout=30), 404, "payments_off")


def _per_minute(rate: str) -> float:
    item = parse(rate)
    return item.amount * 60 / item.get_expiry()


def test_the_default_limits_let_a_busy_shop_poll_and_slow_key_guessing(tmp_path, astronaut_png):
    defaults = {name: Settings.model_fields[name].default for name in RATE_LIMITS}
    assert _per_minute(defaults["rate_limit_per_key"]) >= 1200  # a busy shop's backend: config.py says why
    guesses_allowed = parse(defaults["rate_limit_failed_auth_per_address"]).amount
    assert _per_minute(defaults["rate_limit_failed_auth_per_address"]) <= 20
    with open_shop(tmp_path, astronaut_png, **defaults) as shop:
        orders = [shop.place().json()["id"] for _ in range(4)]
        assert _statuses(shop, [f"/v1/orders/{orders[i % 4]}" for i in range(150)], shop.auth) == [200] * 150
        guesses = _statuses(shop, ["/v1/orders/ord_none"] * (guesses_allowed + 5), WRONG_KEY)
        assert guesses == [401] * guesses_allowed + [429] * 5


def test_the_limits_are_settings_read_from_photogen_variables(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_RATE_LIMIT_PER_KEY", "5000/minute")
    monkeypatch.setenv("PHOTOGEN_RATE_LIMIT_PER_ORDER_TOKEN", "7/minute")
    monkeypatch.setenv("PHOTOGEN_RATE_LIMIT_PER_ADDRESS", "100/minute")
    monkeypatch.setenv("PHOTOGEN_RATE_LIMIT_FAILED_AUTH_PER_ADDRESS", "2/minute")
    assert [getattr(Settings(), name) for name in RATE_LIMITS] == ["5000/minute", "7/minute", "100/minute", "2/minute"]
    monkeypatch.setenv("PHOTOGEN_RATE_LIMIT_FAILED_AUTH_PER_ADDRESS", "a few")
    with pytest.raises(pydantic.ValidationError, match="rate_limit_failed_auth_per_address"):
        Settings()
