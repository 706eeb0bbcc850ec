"""The customer's browser, over real HTTP (uvicorn on loopback): CORS for the shop's own pages,
order tokens from them and never API keys, the order's bundle.zip, /docs with no internet,
and the OpenAPI document a storefront developer reads."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pytest
import requests
from PIL import Image
from pydantic import ValidationError

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import open_database
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import EngineVersions, Manifest, OrderKeys, ProofScore, Validation
from storefront_api import examples
from storefront_api.config import Settings
from storefront_api.schemas import ApproveIn, OrderIn, OrderOut
from tests.api_helpers import make_app, make_settings
from tests.servers import api_server

S = OrderState
SHOP = "https://shop.example"
ELSEWHERE = "https://evil.example"
RECIPIENT = {
    "name": "Wanjiru Mwangi",
    "email": "wanjiru@example.com",
    "phone": "+254 20 7946 000",
    "address": {"line1": "12 Riverside Drive", "city": "Nairobi", "postal_code": "00100", "country_code": "KE"},
}
PERSONAL = ("Wanjiru", "Mwangi", "wanjiru@", "7946", "Riverside", "00100")


def _cors_headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


class Shop:
    """A running API (real HTTP) and one shop's key, with orders staged straight into its
    book and store as the pipeline would leave them."""

    def __init__(self, app, base: str, settings: Settings):
        self.app, self.base, self.settings = app, base, settings
        database = open_database(settings.resolved_database_url)
        key, secret = create_api_key(database, "browser shop")
        self.key_id, self.key = key.id, {"Authorization": f"Bearer {secret}"}

    @property
    def services(self):
        return self.app.state.services

    def token(self, order_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.services.signer.order_token(order_id)}"}

    def url(self, path: str) -> str:
        return self.base + path

    def order(self, upto: OrderState, recipient: dict | None = None) -> Order:
        """An order moved to `upto` (paid, proofs_ready, approved, ready or rejected) with its files."""
        book, store = self.services.book, self.services.store
        order = Order(style_id="ink_etching", product_id="poster_a3", upload_key="k", variants=3, api_key_id=self.key_id)
        order = book.add(order, recipient=Recipient.model_validate(recipient, strict=False) if recipient else None)
        if recipient:
            book.update(order.id, lambda o: setattr(o, "shipping_method", ShippingMethod.STANDARD))
        book.transition(order.id, S.PAID)
        if upto == S.PAID:
            return book.get(order.id)
        book.transition(order.id, S.GENERATING)
        if upto == S.REJECTED:
            book.transition(order.id, S.REJECTED, "no proof kept the customer's likeness")
            return book.get(order.id)
        keys = OrderKeys(order.id)
        for variant in (0, 1, 2):  # variant 1 failed the gate: its image is stored, never shown
            store.put_bytes(keys.proof(variant), _png(variant))
        scores = [
            ProofScore(variant=v, round=0, strength=0.5, similarity=s, faces=1, passed=s >= 0.4)
            for v, s in ((0, 0.62), (1, 0.21), (2, 0.71))
        ]
        validation = Validation(
            threshold=0.4,
            encoder="sface",
            rounds=1,
            proofs={0: keys.proof(0), 2: keys.proof(2)},
            best_variant=2,
            scores=scores,
            rejected=False,
        )
        keys.save(store, validation)
        book.transition(order.id, S.PROOFS_READY)
        if upto == S.PROOFS_READY:
            return book.get(order.id)
        book.update(order.id, lambda o: (setattr(o, "approved_proof", 2), o.transition(S.APPROVED, "proof 2 approved")))
        if upto == S.APPROVED:
            return book.get(order.id)
        book.transition(order.id, S.RENDERING)
        print_file = _jpeg()
        store.put_bytes(keys.print_file("jpg"), print_file)
        manifest = Manifest(
            order_id=order.id,
            style_id=order.style_id,
            product_id=order.product_id,
            file=keys.print_file("jpg"),
            format="jpeg",
            bytes=len(print_file),
            pixel_size=(40, 60),
            dpi=300,
            effective_dpi=300.0,
            bleed_px=0,
            trim_inches=(11.69, 16.54),
            color_profile="sRGB",
            approved_proof=2,
            identity_score=0.71,
            identity_threshold=0.4,
            seeds=[1, 2, 3],
            engines=EngineVersions(faces="sface", style="magenta", upscale="ncnn", upscale_passes=[4]),
            recipient_name="Wanjiru Mwangi",  # a key a newer writer added: not vetted, not bundled
        )
        keys.save(store, manifest)
        book.transition(order.id, S.READY)
        return book.get(order.id)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 16, 3), 40 * seed, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (60, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def shop(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, cors_origins=[SHOP, "https://www.shop.example"])
    app = make_app(settings)
    with api_server(app) as base:
        yield Shop(app, base, settings)


@pytest.fixture
def sqlite_shop(tmp_path):
    """For what the orders database does not change: the CORS headers, the docs, the schema."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", cors_origins=[SHOP])
    app = make_app(settings)
    with api_server(app) as base:
        yield Shop(app, base, settings)


# -- CORS ------------------------------------------------------------------------------------


def _preflight(base: str, path: str, origin: str, method: str = "POST", headers: str = "authorization, content-type"):
    asked = {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}
    return requests.options(base + path, headers=asked, timeout=30)


def test_the_shops_pages_get_cors_and_other_origins_get_no_cors_header(sqlite_shop):
    base = sqlite_shop.base
    allowed = _preflight(base, "/v1/orders/ord_x/approve", SHOP, headers="authorization, content-type, idempotency-key")
    assert allowed.status_code == 200, allowed.text
    cors = _cors_headers(allowed)
    assert cors["access-control-allow-origin"] == SHOP
    assert {m.strip() for m in cors["access-control-allow-methods"].split(",")} == {"GET", "POST"}
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip().lower() for h in cors["access-control-allow-headers"].split(",")
    }
    assert "access-control-allow-credentials" not in cors  # tokens go in Authorization, never cookies

    for refused in (
        _preflight(base, "/v1/orders/ord_x", ELSEWHERE, method="GET", headers="authorization"),
        _preflight(base, "/v1/orders/ord_x", SHOP, method="DELETE"),
        _preflight(base, "/v1/orders/ord_x", SHOP, headers="authorization, x-custom"),
        _preflight(base, "/v1/orders/ord_x", SHOP + "/", method="GET"),  # origins are exact
    ):
        body = _error(refused, 400, "cors_refused")
        assert _cors_headers(refused) == {}, (body, refused.headers)

    # a simple request from elsewhere is answered (CORS is the browser's to enforce) but
    # carries nothing that would let that page read it
    styles = requests.get(base + "/v1/styles", headers={"Origin": ELSEWHERE}, timeout=30)
    assert styles.status_code == 200 and _cors_headers(styles) == {}
    assert "Origin" in styles.headers["Vary"]
    mine = requests.get(base + "/v1/styles", headers={"Origin": SHOP}, timeout=30)
    assert _cors_headers(mine)["access-control-allow-origin"] == SHOP
    assert "Retry-After" in _cors_headers(mine)["access-control-expose-headers"]


def test_without_allowed_origins_there_is_no_cors_at_all(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    assert settings.cors_origins == []
    with api_server(make_app(settings)) as base:
        preflight = _preflight(base, "/v1/orders/ord_x", SHOP, method="GET")
        assert preflight.status_code == 405 and _cors_headers(preflight) == {}
        styles = requests.get(base + "/v1/styles", headers={"Origin": SHOP}, timeout=30)
        assert styles.status_code == 200 and _cors_headers(styles) == {}


def test_cors_origins_come_from_the_environment_as_a_list_or_json(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_CORS_ORIGINS", " https://shop.example, https://WWW.shop.example:8443 ,")
    assert Settings().cors_origins == ["https://shop.example", "https://www.shop.example:8443"]
    monkeypatch.setenv("PHOTOGEN_CORS_ORIGINS", '["http://localhost:3000"]')
    assert Settings().cors_origins == ["http://localhost:3000"]
    monkeypatch.setenv("PHOTOGEN_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    for wrong in ("*", "shop.example", "https://shop.example/", "https://shop.example/checkout", "https://u@shop.example"):
        monkeypatch.setenv("PHOTOGEN_CORS_ORIGINS", wrong)
        with pytest.raises(ValidationError, match="exact origin"):
            Settings()


# -- order tokens from the page, API keys never from a browser -------------------------------


def test_the_customers_page_reads_approves_and_cancels_with_the_order_token(shop):
    waiting, another = shop.order(S.PROOFS_READY), shop.order(S.PROOFS_READY)
    page = {"Origin": SHOP}

    preflight = _preflight(shop.base, f"/v1/orders/{waiting.id}/approve", SHOP)
    assert preflight.status_code == 200 and _cors_headers(preflight)["access-control-allow-origin"] == SHOP
    seen = requests.get(shop.url(f"/v1/orders/{waiting.id}"), headers={**page, **shop.token(waiting.id)}, timeout=30)
    assert seen.status_code == 200, seen.text
    assert seen.headers["Access-Control-Allow-Origin"] == SHOP
    assert seen.json()["state"] == "proofs_ready" and [p["variant"] for p in seen.json()["proofs"] if p["passed"]] == [0, 2]

    approved = requests.post(
        shop.url(f"/v1/orders/{waiting.id}/approve"), headers={**page, **shop.token(waiting.id)}, json={"proof": 2}, timeout=30
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["approved_proof"] == 2
    assert approved.headers["Access-Control-Allow-Origin"] == SHOP

    # from the shop's other allowed origin: cancel the other order; its token is for it alone
    www = {"Origin": "https://www.shop.example"}
    wrong_token = requests.get(shop.url(f"/v1/orders/{another.id}"), headers={**www, **shop.token(waiting.id)}, timeout=30)
    _error(wrong_token, 404, "order_not_found")
    cancelled = requests.post(shop.url(f"/v1/orders/{another.id}/cancel"), headers={**www, **shop.token(another.id)}, timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    assert cancelled.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"


@pytest.mark.parametrize(
    "browser",
    [{"Origin": SHOP}, {"Origin": ELSEWHERE}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-origin"}],
    ids=["allowed-origin", "other-origin", "opaque-origin", "same-origin-docs-page"],
)
def test_an_api_key_from_a_browser_is_refused_on_every_route(shop, browser):
    order = shop.order(S.PROOFS_READY)
    for method, path, body in (
        ("GET", f"/v1/orders/{order.id}", None),
        ("POST", f"/v1/orders/{order.id}/approve", {"proof": 0}),
        ("POST", "/v1/orders", {"upload_id": "upl_x", "style_id": "ink_etching", "product_id": "poster_a3"}),
        ("GET", "/v1/styles", None),
        ("GET", "/v1/webhook-endpoints", None),
    ):
        headers = {**browser, **shop.key, "Idempotency-Key": "k1"}
        refused = requests.request(method, shop.url(path), headers=headers, json=body, timeout=30)
        message = _error(refused, 403, "api_key_from_browser")["message"]
        assert "backend" in message and "order" in message and "token" in message
        # an unknown key is refused the same way: the browser learns nothing about keys
        wrong = {**browser, "Authorization": "Bearer pgk_not_a_key"}
        _error(requests.request(method, shop.url(path), headers=wrong, json=body, timeout=30), 403, "api_key_from_browser")
    assert shop.services.book.get(order.id).state == S.PROOFS_READY  # nothing was approved

    # the shop's backend sends no Origin: the same key works
    assert requests.get(shop.url(f"/v1/orders/{order.id}"), headers=shop.key, timeout=30).status_code == 200


def test_keys_refused_from_a_browser_count_against_the_address_and_lock_nothing_out(tmp_path):
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'orders.db'}",
        cors_origins=[SHOP],
        rate_limit_per_address="3/minute",
        rate_limit_failed_auth_per_address="1/minute",
    )
    app = make_app(settings)
    with api_server(app) as base:
        shop = Shop(app, base, settings)
        browser = {**shop.key, "Origin": SHOP}
        statuses = [requests.get(shop.url("/v1/styles"), headers=browser, timeout=30).status_code for _ in range(3)]
        assert statuses == [403, 403, 403]
        limited = requests.get(shop.url("/v1/styles"), headers=browser, timeout=30)
        _error(limited, 429, "rate_limited")  # like requests without credentials: per address
        assert limited.headers["Access-Control-Allow-Origin"] == SHOP and "Retry-After" in limited.headers
        # not failed authentications (the key was never checked): the backend is not locked out,
        # and the key's own budget is untouched
        assert requests.get(shop.url("/v1/orders/ord_none"), headers=shop.key, timeout=30).status_code == 404
        assert requests.get(shop.url("/v1/styles"), headers=shop.key, timeout=30).status_code == 200


# -- bundle.zip -------------------------------------------------------------------------------


def _bundle(shop: Shop, order_id: str, headers: dict) -> requests.Response:
    return requests.get(shop.url(f"/v1/orders/{order_id}/bundle.zip"), headers=headers, timeout=60)


def _zip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


def test_the_bundle_has_what_the_customer_may_see_and_no_personal_data(shop):
    paid = shop.order(S.PAID, recipient=RECIPIENT)
    body = _error(_bundle(shop, paid.id, shop.token(paid.id)), 409, "nothing_to_bundle")
    assert "paid" in body["message"]
    rejected = shop.order(S.REJECTED)
    _error(_bundle(shop, rejected.id, shop.key), 409, "nothing_to_bundle")

    # proofs_ready: watermarked previews of the proofs that passed the gate (not variant 1), never
    # the proofs themselves; from the customer's page
    waiting = shop.order(S.PROOFS_READY, recipient=RECIPIENT)
    response = _bundle(shop, waiting.id, {"Origin": SHOP, **shop.token(waiting.id)})
    assert response.headers["Content-Disposition"] == f'attachment; filename="{waiting.id}.zip"'
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Content-Disposition" in response.headers["Access-Control-Expose-Headers"]
    assert "no-store" in response.headers["Cache-Control"]
    archive = _zip(response)
    assert sorted(archive.namelist()) == ["order.json", "previews/proof_0.jpg", "previews/proof_2.jpg"]
    _assert_watermarked(archive.read("previews/proof_2.jpg"), _png(2))
    summary = json.loads(archive.read("order.json"))
    assert summary["order_id"] == waiting.id and summary["state"] == "proofs_ready"
    assert summary["style_id"] == "ink_etching" and summary["product_id"] == "poster_a3" and summary["approved_proof"] is None
    assert shop.services.book.get(waiting.id).proofs_downloaded_at is not None  # the cancellation policy counts it

    # approved: the approved proof itself, clean, and nothing of the proofs not chosen
    approved = shop.order(S.APPROVED)
    archive = _zip(_bundle(shop, approved.id, shop.token(approved.id)))
    assert sorted(archive.namelist()) == ["order.json", "proofs/proof_2.png"]
    assert archive.read("proofs/proof_2.png") == _png(2)

    # ready: the print file and its manifest too, for the storefront's key as well
    ready = shop.order(S.READY, recipient=RECIPIENT)
    archive = _zip(_bundle(shop, ready.id, shop.key))
    names = sorted(archive.namelist())
    assert names == ["manifest.json", "order.json", "print_file.jpg", "proofs/proof_2.png"]
    stored = shop.services.store
    assert archive.read("print_file.jpg") == stored.get_bytes(OrderKeys(ready.id).print_file("jpg"))
    for info in archive.infolist():
        compressed = info.filename.endswith(".json")
        assert info.compress_type == (zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED), info
        assert not info.flag_bits & 0x08, info  # sizes in the local headers: streaming readers open it
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["order_id"] == ready.id and manifest["approved_proof"] == 2 and "recipient_name" not in manifest
    summary = json.loads(archive.read("order.json"))
    assert summary["state"] == "ready" and summary["approved_proof"] == 2
    fields = {"order_id", "state", "style_id", "product_id", "variants", "approved_proof", "created_at", "updated_at", "files"}
    assert set(summary) == fields

    # the recipient is on the order (masked in its view) and nowhere in a bundle
    view = requests.get(shop.url(f"/v1/orders/{ready.id}"), headers=shop.key, timeout=30).json()
    assert view["recipient"]["city"] == "Nairobi"
    everything = b"".join(archive.read(name) for name in names if name.endswith(".json")).decode()
    assert not [word for word in PERSONAL if word in everything], everything

    # someone else's order is a 404, as everywhere
    _error(_bundle(shop, ready.id, shop.token(waiting.id)), 404, "order_not_found")

    # a cancelled order has nothing to bundle, downloaded before or not
    cancelled = requests.post(shop.url(f"/v1/orders/{waiting.id}/cancel"), headers=shop.token(waiting.id), timeout=30)
    assert cancelled.json()["state"] == "cancelled", cancelled.text
    _error(_bundle(shop, waiting.id, shop.token(waiting.id)), 409, "nothing_to_bundle")


def _assert_watermarked(preview: bytes, proof: bytes) -> None:
    """A JPEG the proof's size, visibly not the proof (these proofs are tiny: the mark's
    coverage at proof size is tests/test_deliverables.py's)."""
    shown, clean = Image.open(io.BytesIO(preview)), Image.open(io.BytesIO(proof)).convert("RGB")
    assert shown.format == "JPEG" and shown.size == clean.size
    moved = np.abs(np.asarray(shown.convert("RGB"), np.int16) - np.asarray(clean, np.int16)).max(axis=2) > 40
    assert moved.mean() > 0.02, moved.mean()


# -- file links -------------------------------------------------------------------------------


def _proof_urls(shop: Shop, order_id: str) -> dict[int, dict]:
    seen = requests.get(shop.url(f"/v1/orders/{order_id}"), headers=shop.token(order_id), timeout=30)
    assert seen.status_code == 200, seen.text
    return {p["variant"]: p for p in seen.json()["proofs"]}


def _signed(shop: Shop, key: str) -> str:
    return shop.services.signer.file_url(shop.base, key, 900)


def test_proof_links_are_previews_until_approval_and_die_with_the_order(shop):
    waiting = shop.order(S.PROOFS_READY)
    proofs = _proof_urls(shop, waiting.id)
    assert proofs[1]["url"] is None  # failed the gate: never shown
    assert proofs[0]["preview"] and proofs[2]["preview"] and "/previews/proof_2.jpg?" in proofs[2]["url"]
    assert shop.services.book.get(waiting.id).proofs_downloaded_at is None  # a link handed out is not a download
    preview = requests.get(proofs[2]["url"], timeout=30)
    assert preview.status_code == 200 and preview.headers["Content-Type"] == "image/jpeg"
    _assert_watermarked(preview.content, _png(2))
    downloaded = shop.services.book.get(waiting.id)
    assert downloaded.proofs_downloaded_at is not None and downloaded.cancellation_fee_cents == 0  # payments off: 0 paid
    assert _proof_urls(shop, waiting.id)[2]["url"] and downloaded.cancellation_fee_cents == 0

    # the clean proof is not served before approval, even on a link signed for it; nor is any other file
    keys = OrderKeys(waiting.id)
    _error(requests.get(_signed(shop, keys.proof(2)), timeout=30), 410, "file_withdrawn")
    for key in (keys.selfie, keys.candidate(0, 2), keys.validation, keys.proof(1).replace(".png", ".jpg")):
        _error(requests.get(_signed(shop, key), timeout=30), 404, "file_not_found")
    _error(requests.get(_signed(shop, "orders/ord_nobody/previews/proof_0.jpg"), timeout=30), 404, "file_not_found")

    # approved: the approved proof comes clean, the others stay previews
    approved = requests.post(shop.url(f"/v1/orders/{waiting.id}/approve"), headers=shop.token(waiting.id), json={"proof": 2})
    assert approved.status_code == 200, approved.text
    proofs = _proof_urls(shop, waiting.id)
    assert not proofs[2]["preview"] and "/proofs/proof_2.png?" in proofs[2]["url"] and proofs[0]["preview"]
    assert requests.get(proofs[2]["url"], timeout=30).content == _png(2)
    _error(requests.get(_signed(shop, keys.proof(0)), timeout=30), 410, "file_withdrawn")  # not the approved one

    # cancelled: every link handed out before is refused, and the order shows none
    other = shop.order(S.PROOFS_READY)
    handed = _proof_urls(shop, other.id)[0]["url"]
    assert requests.get(handed, timeout=30).status_code == 200
    cancelled = requests.post(shop.url(f"/v1/orders/{other.id}/cancel"), headers=shop.token(other.id), timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert all(p["url"] is None for p in cancelled.json()["proofs"])
    body = _error(requests.get(handed, timeout=30), 410, "file_withdrawn")
    assert "cancelled" in body["message"]


# -- /docs with no internet, and the OpenAPI document ----------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_api_itself(sqlite_shop, page):
    html = requests.get(sqlite_shop.url(page), timeout=30)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdn.redoc.ly", "fonts.googleapis.com", "fastapi.tiangolo.com"):
        assert cdn not in html.text
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html.text)  # nothing from another host
    assets = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", html.text)
    kinds = {}
    for url in assets:
        answer = requests.get(sqlite_shop.url(url), timeout=30)
        assert answer.status_code == 200, url
        kinds[url.rsplit(".", 1)[-1]] = answer.headers["Content-Type"]
        assert len(answer.content) > 1000, url
    assert "javascript" in kinds["js"] and kinds["png"] == "image/png"
    if page == "/docs":
        assert kinds["css"].startswith("text/css")
        assert "SwaggerUIBundle" in requests.get(sqlite_shop.url("/static/docs/swagger-ui-bundle.js"), timeout=30).text
    assert requests.get(sqlite_shop.url("/openapi.json"), timeout=30).status_code == 200


def test_the_openapi_document_requires_the_idempotency_key_and_has_examples(sqlite_shop):
    spec = requests.get(sqlite_shop.url("/openapi.json"), timeout=30).json()
    create = spec["paths"]["/v1/orders"]["post"]
    (header,) = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header" and header["required"] is True and header["schema"]["type"] == "string"
    # still the API's own JSON 400 (not FastAPI's 422) when it is missing
    body = {"upload_id": "upl_x", "style_id": "ink_etching", "product_id": "poster_a3"}
    missing = requests.post(sqlite_shop.url("/v1/orders"), headers=sqlite_shop.key, json=body, timeout=30)
    _error(missing, 400, "idempotency_key_required")

    named = create["requestBody"]["content"]["application/json"]["examples"]
    assert set(named) == {"shipped", "download"}
    shipped = named["shipped"]["value"]
    assert set(shipped["recipient"]) == {"name", "email", "phone", "address"}
    assert set(shipped["recipient"]["address"]) == {"line1", "line2", "city", "state", "postal_code", "country_code"}
    assert shipped["shipping_method"] == "standard"
    schemas = spec["components"]["schemas"]
    assert schemas["OrderIn"]["examples"] == [examples.ORDER_IN] and schemas["ApproveIn"]["examples"] == [{"proof": 2}]
    shown = schemas["OrderOut"]["examples"][0]
    assert shown["state"] == "proofs_ready" and shown["recipient"]["name"] == "W•••• M••••"  # the masked form
    # each is a body the API really takes or gives (requests as JSON, in strict mode)
    for example in (examples.ORDER_IN, examples.ORDER_IN_DOWNLOAD, *(e["value"] for e in named.values())):
        OrderIn.model_validate_json(json.dumps(example))
    ApproveIn.model_validate_json(json.dumps(examples.APPROVE_IN))
    OrderOut.model_validate_json(json.dumps(examples.ORDER_OUT))

    bundle = spec["paths"]["/v1/orders/{order_id}/bundle.zip"]["get"]
    assert "application/zip" in bundle["responses"]["200"]["content"] and "409" in bundle["responses"]
