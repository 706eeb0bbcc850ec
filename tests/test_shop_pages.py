"""The customer's pages under /shop/ over HTTP (storefront_api/shop/): the session from the
shop's link, the headers on every page, CSRF, who may see an order, the words in French, the
pages' weight, the live progress stream and an access log without tokens. The same pages in a
real browser are the Playwright tests'."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from photogen_pipelines.access.signing import OPERATOR, SHOP_SESSION, Signer
from photogen_pipelines.clock import utc_now
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.storage.artifacts import EngineVersions, Manifest, OrderKeys, ProofScore, Validation
from storefront_api.server import HttpProtocol
from storefront_api.shop.headers import content_security_policy, store_origin
from storefront_api.shop.i18n import negotiate, words
from storefront_api.shop.theme import contrast
from tests.api_helpers import make_app, make_settings, new_key
from tests.servers import api_server
from tests.test_access_log import access_log  # noqa: F401 (a fixture)

PAGE_BUDGET = 200 * 1024  # bytes of HTML, CSS and JS, before images


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, dagster_ui_url="http://127.0.0.1:3000")


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(settings, client):
    return new_key(settings)


def _field(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', html).group(1)


def _token_of(url: str, name: str) -> str:
    return urlsplit(url).fragment.removeprefix(f"{name}=")


class Shop:
    """A customer's browser on the pages, as its script drives them."""

    def __init__(self, client, auth, **session):
        self.client = client
        made = client.post("/v1/shop-sessions", headers=auth, json=session)
        assert made.status_code == 201, made.text
        self.url = made.json()["url"]
        opened = client.post("/shop/session", data={"token": _token_of(self.url, "s")}, follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/shop/upload", opened.text
        self.csrf = re.search(r'data-csrf="([^"]+)"', client.get("/shop/upload").text).group(1)

    def upload(self, payload: bytes, consent: str = "true", **headers):
        """One photo as the upload page's script sends it, with the consent box's word."""
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json", **headers}
        form = {"consent": consent}
        return self.client.post("/shop/uploads", data=form, files={"photo": ("me.png", payload, "image/png")}, headers=headers)

    def style_page(self, upload_ids: list[str]):
        return self.client.get("/shop/style", params={"upload": upload_ids})

    def place(self, upload_ids: list[str], nonce: str | None = None, **fields):
        form = self.style_page(upload_ids).text
        body = {"csrf": _field(form, "csrf"), "nonce": nonce or _field(form, "nonce"), "upload": upload_ids}
        body |= {"style": "ink_etching", "product": "poster_a3", "tier": "fast", **fields}
        if "quote_id" not in fields:  # as the page's script does when the product or tier changes
            shown = self.client.get("/shop/quote", params={"product": body["product"], "tier": body["tier"]}).json()
            body["quote_id"] = shown.get("id", "")
        return self.client.post("/shop/orders", data=body, follow_redirects=False)


@pytest.fixture(scope="module")
def face() -> bytes:
    return png_bytes(data.astronaut())


def _assert_headers(response, store_origin: str | None = None):
    csp = response.headers["content-security-policy"]
    for part in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "form-action 'self'", "base-uri 'none'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp and "img-src 'self' data: blob:" in csp and "frame-ancestors " in csp
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-content-type-options"] == "nosniff"


def _placed_order(client, auth, face) -> tuple[Shop, str]:
    shop = Shop(client, auth, customer_ref="cust-1")
    upload_id = shop.upload(face).json()["upload_id"]
    placed = shop.place([upload_id])
    assert placed.status_code == 303, placed.text
    return shop, placed.headers["location"].rsplit("/", 1)[1]


# -- the session from the shop's link ---------------------------------------------------------


def test_the_shops_link_opens_a_session_whose_token_becomes_a_strict_http_only_cookie(client, auth, settings):
    made = client.post("/v1/shop-sessions", headers=auth, json={"customer_ref": "cust-1", "return_url": "https://shop.example/b"})
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    assert urlsplit(url).path == "/shop/start" and not urlsplit(url).query and urlsplit(url).fragment.startswith("s=")
    start = client.get("/shop/start")
    assert start.status_code == 200 and 'id="fragment-form"' in start.text and 'data-fragment="s"' in start.text
    opened = client.post("/shop/session", data={"token": _token_of(url, "s")}, follow_redirects=False)
    cookie = opened.headers["set-cookie"]
    assert opened.status_code == 303 and opened.headers["location"] == "/shop/upload"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/shop/" in cookie
    upload = client.get("/shop/upload")
    assert upload.status_code == 200
    assert '<input type="file" id="photos" name="photos" accept="image/*" multiple>' in upload.text
    assert '<label for="photos">' in upload.text and 'id="face-verdict" role="status" aria-live="polite"' in upload.text
    assert 'id="to-style"' in upload.text and 'href="https://shop.example/b"' in upload.text  # back to the shop
    # an API key is never a browser's: the session link is the shop backend's to make
    refused = client.post("/v1/shop-sessions", headers={**auth, "Origin": "https://shop.example"}, json={})
    assert refused.status_code == 403 and refused.json()["code"] == "api_key_from_browser"
    bad = client.post("/v1/shop-sessions", headers=auth, json={"customer_ref": "not ok!"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_customer_ref"


def test_the_front_door_works_offline_and_sends_a_customer_with_a_session_on(client, auth):
    door = client.get("/shop/", follow_redirects=False)
    assert door.status_code == 200 and "Open this page from the link your shop gave you." in door.text
    # nothing from elsewhere: every script, stylesheet and image is ours (the machines are offline)
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', door.text), door.text
    assert "script-src 'self'" in door.headers["content-security-policy"]
    url = client.post("/v1/shop-sessions", headers=auth, json={}).json()["url"]
    client.post("/shop/session", data={"token": _token_of(url, "s")}, follow_redirects=False)
    assert client.get("/shop/", follow_redirects=False).headers["location"] == "/shop/upload"


def test_an_invalid_or_expired_session_link_is_a_page_that_says_so(client, auth, settings):
    signer = Signer(settings.resolved_secret_key)
    expired = signer.expiring_token(SHOP_SESSION, ["key_x", "", ""], ttl_seconds=-10)
    forged = Signer("another-secret-of-16+").expiring_token(SHOP_SESSION, ["key_x", "", ""], ttl_seconds=600)
    operator = signer.expiring_token(OPERATOR, ["operator"], ttl_seconds=600)  # another purpose's token
    for token, status, words_shown in (
        (expired, 410, "This link has expired"),
        (forged, 400, "This link is not valid"),
        (operator, 400, "This link is not valid"),
        ("", 400, "This link is not valid"),
        ("é" * 50, 400, "This link is not valid"),
    ):
        answer = client.post("/shop/session", data={"token": token}, follow_redirects=False)
        assert answer.status_code == status and words_shown in answer.text, (token, answer.text)
        assert answer.headers["content-type"].startswith("text/html") and "set-cookie" not in answer.headers
        _assert_headers(answer)
    for path in ("/shop/upload", "/shop/style?upload=upl_0123456789abcdef"):
        missing = client.get(path)
        assert missing.status_code == 401 and "Your session has ended" in missing.text
        assert "Traceback" not in missing.text


def test_every_page_and_its_files_carry_the_security_headers(client, auth, face):
    shop, order_id = _placed_order(client, auth, face)
    upload_id = shop.upload(face).json()["upload_id"]
    paths = [
        "/shop/start",
        "/shop/upload",
        f"/shop/style?upload={upload_id}",
        "/shop/quote?product=poster_a3&tier=fast",
        f"/shop/orders/{order_id}",
        f"/shop/orders/{order_id}/status.json",
        "/shop/orders/ord_nobody",
        "/shop/operator",
        "/shop/theme.css",
        "/shop/static/shop.js",
        "/shop/static/shop.css",
        "/shop/nowhere",
    ]
    for path in paths:
        answer = client.get(path)
        _assert_headers(answer)
        assert answer.status_code < 500, (path, answer.text)
        # a customer's data is never cached; our static files may be
        cacheable = path.startswith(("/shop/static/", "/shop/theme.css"))
        assert (answer.headers.get("cache-control") == "no-store") != cacheable, path
    assert "frame-ancestors 'none'" in client.get("/shop/start").headers["content-security-policy"]


def test_frame_ancestors_are_the_shops_own_origins(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, cors_origins="https://shop.example,https://www.shop.example")
    with TestClient(make_app(settings)) as client:
        csp = client.get("/shop/start").headers["content-security-policy"]
    assert "frame-ancestors https://shop.example https://www.shop.example;" in csp


def test_images_from_an_s3_store_are_allowed_by_their_origin(tmp_path, database_url):
    class S3Like:
        def presigned_url(self, key: str, ttl_seconds: int) -> str:
            return f"https://photos.s3.eu-west-1.amazonaws.com/{key}?X-Amz-Signature=abc"

    origin = store_origin(S3Like())
    assert origin == "https://photos.s3.eu-west-1.amazonaws.com"
    csp = content_security_policy(make_settings(tmp_path, database_url), origin)
    assert "img-src 'self' data: blob: https://photos.s3.eu-west-1.amazonaws.com;" in csp


# -- photos, CSRF, the order ------------------------------------------------------------------


def test_each_photo_gets_its_verdict_at_once_in_words(client, auth, face, face_images):
    shop = Shop(client, auth)
    accepted = shop.upload(face)
    assert accepted.status_code == 200 and accepted.json()["ok"] and accepted.json()["upload_id"].startswith("upl_")
    two = np.concatenate([face_images["ardern"][:600, :400], face_images["macron"][:600, :400]], axis=1)
    for payload, code, reason in (
        (png_bytes(data.coffee()), "no_face", "No face found"),
        (png_bytes(Image.fromarray(two)), "several_faces", "Two or more faces: use a photo of one person"),
        (b"not a picture at all", "not_an_image", "This file is not a photo"),
    ):
        started = time.monotonic()
        refused = shop.upload(payload)
        assert time.monotonic() - started < 5  # at once (a second in a browser; CI machines share cores)
        body = refused.json()
        assert refused.status_code == 422 and not body["ok"] and body["code"] == code and body["reason"].startswith(reason), body


def test_a_photo_without_the_consent_box_ticked_is_refused_in_words(client, auth, face):
    shop = Shop(client, auth)
    page = client.get("/shop/upload").text
    assert '<input type="checkbox" id="consent" name="consent" value="true" required>' in page
    assert '<label for="consent">' in page
    for consent in ("false", ""):
        refused = shop.upload(face, consent=consent)
        body = refused.json()
        assert refused.status_code == 422 and not body["ok"] and body["code"] == "consent_required", body
        assert body["reason"].startswith("Tick the box first"), body
    german = shop.upload(face, consent="false", **{"Accept-Language": "de"})
    assert german.json()["reason"].startswith("Bitte zuerst das Kästchen"), german.json()
    assert shop.upload(face).json()["ok"]


def test_a_post_without_its_csrf_token_is_refused(client, auth, face):
    shop = Shop(client, auth)
    for headers in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "forged"}):
        refused = shop.upload(face, **headers)
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    cross_site = shop.upload(face, Origin="https://evil.example")
    assert cross_site.status_code == 403 and cross_site.json()["code"] == "csrf_failed"
    # an opaque origin is ours only when the browser itself says same-origin (Chromium's form
    # posts under a strict referrer policy); from another site it is refused like any other
    opaque_elsewhere = shop.upload(face, Origin="null", **{"Sec-Fetch-Site": "cross-site"})
    assert opaque_elsewhere.status_code == 403 and opaque_elsewhere.json()["code"] == "csrf_failed"
    assert shop.upload(face, Origin="null", **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    upload_id = shop.upload(face).json()["upload_id"]
    form = shop.style_page([upload_id]).text
    no_token = {"nonce": _field(form, "nonce"), "upload": upload_id, "style": "ink_etching", "product": "poster_a3"}
    refused = client.post("/shop/orders", data=no_token, follow_redirects=False)
    assert refused.status_code == 403 and "out of date or came from another site" in refused.text
    # another session (another customer's link in this browser): the first page's token is no longer good
    Shop(client, auth, customer_ref="cust-2")
    stale = client.post("/shop/orders", data={**no_token, "csrf": _field(form, "csrf")}, follow_redirects=False)
    assert stale.status_code == 403


def test_the_style_page_quotes_and_places_one_order_per_form(client, auth, face, settings):
    shop = Shop(client, auth, customer_ref="cust-1")
    upload_id = shop.upload(face).json()["upload_id"]
    page = shop.style_page([upload_id]).text
    assert page.count('name="style"') >= 2 and '<select id="product" name="product">' in page
    assert 'name="tier"' in page and 'id="quote"' in page and 'id="place-order"' in page and ">Place order<" in page
    assert "USD" in re.search(r'<div id="quote".*?</div>', page, re.S).group(0)
    quote = client.get("/shop/quote", params={"product": "poster_a3", "tier": "fast"}, headers={"Accept": "application/json"})
    assert quote.json()["ok"] and quote.json()["price"] == "25.00 USD" and "Proofs in about" in quote.json()["wait"]
    unknown = client.get("/shop/quote", params={"product": "nope"}, headers={"Accept": "application/json"})
    assert unknown.status_code == 422 and not unknown.json()["ok"]
    nonce = _field(page, "nonce")
    same_form = {"nonce": nonce, "quote_id": quote.json()["id"]}
    first, again = shop.place([upload_id], **same_form), shop.place([upload_id], **same_form)  # a double click
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    order_id = first.headers["location"].rsplit("/", 1)[1]
    cookie = first.headers["set-cookie"]
    assert f"Path=/shop/orders/{order_id}" in cookie and "HttpOnly" in cookie and "otk_" in cookie
    order = client.get(f"/v1/orders/{order_id}", headers=auth).json()
    assert order["state"] == "paid" and order["payment"]["customer_ref"] == "cust-1" and order["tier"] == "fast"
    assert shop.place([upload_id]).headers["location"] != first.headers["location"]  # a new form: a new order
    bad = shop.place(["upl_0123456789abcdef"])
    assert bad.status_code == 422 and "could not be found" in bad.text
    too_many = client.get("/shop/style", params={"upload": [f"upl_{i:016x}" for i in range(5)]})
    assert too_many.status_code == 422


def test_several_photos_make_one_order(client, auth, face):
    shop = Shop(client, auth)
    photos = [shop.upload(face).json()["upload_id"] for _ in range(2)]
    placed = shop.place(photos)
    assert placed.status_code == 303, placed.text
    order = client.get(f"/v1/orders/{placed.headers['location'].rsplit('/', 1)[1]}", headers=auth).json()
    assert order["upload_ids"] == photos


def test_an_order_page_needs_its_own_cookie(client, auth, face, settings):
    shop, order_id = _placed_order(client, auth, face)
    page = client.get(f"/shop/orders/{order_id}")
    assert page.status_code == 200 and 'id="order-state" data-state="paid"' in page.text
    assert all(f'data-stage="{s}"' in page.text for s in ("selfie", "styled_candidates", "validated_proofs"))
    assert 'form id="cancel"' in page.text
    client.cookies.clear()
    for path in (f"/shop/orders/{order_id}", f"/shop/orders/{order_id}/status.json", f"/shop/orders/{order_id}/events"):
        missing = client.get(path)
        assert missing.status_code == 404 and "not open in this browser" in missing.text, path
    _, other_id = _placed_order(client, auth, face)
    client.cookies.set("shop_order", Signer(settings.resolved_secret_key).order_token(other_id), path=f"/shop/orders/{order_id}")
    assert client.get(f"/shop/orders/{order_id}").status_code == 404  # another order's token
    # the shop's email link: #t=<order token> on the 404 page, posted back as the cookie
    client.cookies.clear()
    page = client.get(f"/shop/orders/{order_id}")
    assert f'action="/shop/orders/{order_id}/token" data-fragment="t"' in page.text
    token = Signer(settings.resolved_secret_key).order_token(order_id)
    opened = client.post(f"/shop/orders/{order_id}/token", data={"token": token}, follow_redirects=False)
    assert opened.status_code == 303 and "SameSite=lax" in opened.headers["set-cookie"]
    assert client.get(f"/shop/orders/{order_id}").status_code == 200
    wrong = client.post(f"/shop/orders/{order_id}/token", data={"token": "otk_wrong"}, follow_redirects=False)
    assert wrong.status_code == 404


def _proofs_ready(client, order_id: str) -> None:
    """The proof run's outcome, as validated_proofs stores it: two passing proofs."""
    services = client.app.state.services
    keys = OrderKeys(order_id)
    lifecycle.start_generation(services.book, order_id)
    for variant in (0, 1):
        services.store.put_bytes(keys.proof(variant), png_bytes(data.astronaut()))
    scores = [ProofScore(variant=v, round=0, strength=0.5, similarity=0.8, faces=1, passed=True) for v in (0, 1)]
    validation = Validation(
        threshold=0.4,
        encoder="sface",
        rounds=1,
        proofs={0: keys.proof(0), 1: keys.proof(1)},
        best_variant=0,
        scores=scores,
        rejected=False,
    )
    keys.save(services.store, validation)
    lifecycle.proofs_validated(services.book, services.store, order_id, 0)


def _print_made(client, order_id: str) -> None:
    """The print run's outcome, as print_file and delivery store it."""
    services = client.app.state.services
    keys = OrderKeys(order_id)
    lifecycle.start_rendering(services.book, order_id)
    services.store.put_bytes(keys.print_file("jpg"), b"the print")
    manifest = Manifest(
        order_id=order_id,
        style_id="ink_etching",
        product_id="poster_a3",
        file=keys.print_file("jpg"),
        format="jpeg",
        bytes=9,
        pixel_size=(3508, 4961),
        dpi=300,
        effective_dpi=247.7,
        bleed_px=0,
        trim_inches=(11.69, 16.54),
        color_profile="sRGB",
        approved_proof=1,
        identity_score=0.8,
        identity_threshold=0.4,
        seeds=[1],
        engines=EngineVersions(faces="f", style="s", upscale="u", upscale_passes=[4]),
    )
    keys.save(services.store, manifest)
    lifecycle.deliver(services.book, order_id)


def test_proofs_are_chosen_from_with_a_detail_at_print_size(client, auth, face):
    _, order_id = _placed_order(client, auth, face)
    _proofs_ready(client, order_id)
    page = client.get(f"/shop/orders/{order_id}").text
    figures = re.findall(r'<figure data-variant="(\d)"', page)
    assert figures == ["0", "1"] and page.count('<form class="approve"') == 2 and ">Choose this one<" in page
    assert "identity" not in page.lower() and "0.8" not in page  # no scores for customers
    first_image = re.search(r'<figure data-variant="0".*?<img src="([^"]+)"', page, re.S).group(1)
    assert first_image.startswith("/v1/files/orders/") and client.get(first_image.replace("&amp;", "&")).status_code == 200
    assert f'href="/shop/orders/{order_id}/proofs/0/detail"' in page
    detail = client.get(f"/shop/orders/{order_id}/proofs/0/detail")
    assert detail.status_code == 200 and f'src="/shop/orders/{order_id}/proofs/0/detail.jpg"' in detail.text
    image = client.get(f"/shop/orders/{order_id}/proofs/0/detail.jpg")
    shown = Image.open(io.BytesIO(image.content))
    # A3 is 3508x4961 px for a 512 px proof: ~9.7 print pixels per proof pixel, a 720 px window
    assert image.headers["content-type"] == "image/jpeg" and shown.size == (720, 720)
    assert client.get(f"/shop/orders/{order_id}/proofs/7/detail").status_code == 404
    csrf = _field(page, "csrf")
    refused = client.post(f"/shop/orders/{order_id}/approve", data={"proof": "1"}, follow_redirects=False)
    assert refused.status_code == 403
    approved = client.post(f"/shop/orders/{order_id}/approve", data={"proof": "1", "csrf": csrf}, follow_redirects=False)
    assert approved.status_code == 303 and approved.headers["location"] == f"/shop/orders/{order_id}"
    assert client.get(f"/v1/orders/{order_id}", headers=auth).json()["approved_proof"] == 1
    after = client.get(f"/shop/orders/{order_id}").text
    assert 'data-state="approved"' in after and 'form class="approve"' not in after and 'form id="cancel"' not in after
    again = client.post(f"/shop/orders/{order_id}/approve", data={"proof": "0", "csrf": csrf}, follow_redirects=False)
    assert again.status_code == 409 and "can no longer be chosen" in again.text

    # the print file is made: the downloads (the bundle through the page's cookie), no cancelling
    _print_made(client, order_id)
    ready = client.get(f"/shop/orders/{order_id}").text
    assert 'data-state="ready"' in ready and 'id="cancel"' not in ready
    print_url = re.search(r'<a id="download-print" class="button primary" href="([^"]+)"', ready).group(1)
    assert client.get(print_url.replace("&amp;", "&")).content == b"the print"
    assert f'<a id="download-bundle" class="button" href="/shop/orders/{order_id}/bundle.zip"' in ready
    bundle = client.get(f"/shop/orders/{order_id}/bundle.zip")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    client.cookies.clear()
    assert client.get(f"/shop/orders/{order_id}/bundle.zip").status_code == 404


def test_cancelling_from_the_page(client, auth, face):
    _, order_id = _placed_order(client, auth, face)
    csrf = _field(client.get(f"/shop/orders/{order_id}").text, "csrf")
    cancelled = client.post(f"/shop/orders/{order_id}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert cancelled.status_code == 303
    page = client.get(f"/shop/orders/{order_id}").text
    assert 'data-state="cancelled"' in page and 'id="cancel"' not in page


def test_with_payments_on_the_shops_checkout_takes_the_payment(tmp_path, database_url, face, stripe_base, stripe_client):
    settings = make_settings(
        tmp_path,
        database_url,
        stripe_api_key="sk_test_photogen",
        stripe_webhook_secret="whsec_test",
        stripe_api_base=stripe_base,
        shop_return_url="https://shop.example/checkout",
    )
    key = new_key(settings)
    with TestClient(make_app(settings)) as client:
        shop = Shop(client, key)
        upload_id = shop.upload(face).json()["upload_id"]
        assert ">Continue to payment<" in shop.style_page([upload_id]).text
        placed = shop.place([upload_id])
        page = client.get(placed.headers["location"]).text
        order_id = placed.headers["location"].rsplit("/", 1)[1]
        # the shop's backend, sent back with ?photogen_order=, reads what its checkout and its email need
        seen_by_the_shop = client.get(f"/v1/orders/{order_id}", headers=key).json()
    assert 'data-state="awaiting_payment"' in page
    intent = re.search(r'<section id="payment" class="card" data-payment-intent="(pi_[^"]+)"', page).group(1)
    assert stripe_client.v1.payment_intents.retrieve(intent).metadata["order_id"] == order_id
    assert f'href="https://shop.example/checkout?photogen_order={order_id}"' in page
    assert seen_by_the_shop["payment"]["client_secret"] == stripe_client.v1.payment_intents.retrieve(intent).client_secret
    assert seen_by_the_shop["customer_token"].startswith("otk_")
    with TestClient(make_app(settings)) as client:  # the customer's own token learns nothing more
        as_customer = client.get(
            f"/v1/orders/{order_id}", headers={"Authorization": f"Bearer {seen_by_the_shop['customer_token']}"}
        ).json()
    assert as_customer["payment"]["client_secret"] is None and as_customer["customer_token"] is None


def test_an_operator_link_shows_the_orders_runs_in_dagster(client, auth, face, settings, tmp_path):
    from click.testing import CliRunner

    from photogen_pipelines.cli.main import cli

    _, order_id = _placed_order(client, auth, face)
    assert 'id="dagster-run"' not in client.get(f"/shop/orders/{order_id}").text
    made = CliRunner().invoke(
        cli,
        ["shop", "operator-link", "--base-url", "http://testserver", "--hours", "1", "--home", str(tmp_path / "cli-home")],
        env={"PHOTOGEN_SECRET_KEY": settings.secret_key},
    )
    assert made.exit_code == 0, made.output
    link = made.stdout.strip()
    assert link.startswith("http://testserver/shop/operator#o=")
    opened = client.post("/shop/operator", data={"token": _token_of(link, "o")}, follow_redirects=False)
    assert opened.status_code == 303 and "SameSite=strict" in opened.headers["set-cookie"]
    page = client.get(f"/shop/orders/{order_id}").text
    runs = re.search(r'<a id="dagster-run" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert runs == f"http://127.0.0.1:3000/runs?q%5B%5D=tag%3Adagster%2Fpartition%3D{order_id}"
    assert client.post("/shop/operator", data={"token": "nope"}).status_code == 400


# -- words, brand, weight ---------------------------------------------------------------------


def test_pages_speak_the_browsers_language(client, auth, face):
    assert negotiate("fr-CH, fr;q=0.9, en;q=0.8") == "fr" and negotiate("es, de;q=0.5") == "de"
    assert negotiate("es") == negotiate(None) == negotiate("fr;q=0") == "en"
    assert set(words("fr")) == set(words("de")) == set(words("en"))  # every language has every key
    Shop(client, auth)
    french = client.get("/shop/upload", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="fr">' in french.text and "Votre photo" in french.text and french.headers["content-language"] == "fr"
    assert '<html lang="en">' in client.get("/shop/upload", headers={"Accept-Language": "ja"}).text
    refused = client.post(
        "/shop/uploads",
        files={"photo": ("c.png", png_bytes(data.coffee()), "image/png")},
        headers={"X-CSRF-Token": "x", "Accept": "application/json", "Accept-Language": "de"},
    )
    assert "Formular" in refused.json()["reason"]


def test_the_brand_comes_from_settings_and_stays_readable(tmp_path, database_url):
    settings = make_settings(
        tmp_path,
        database_url,
        shop_name="Atelier Zoé",
        shop_primary_color="#ffcc00",
        shop_logo_url="https://cdn.shop.example/logo.svg",
    )
    with TestClient(make_app(settings)) as client:
        page = client.get("/shop/start")
        theme = client.get("/shop/theme.css").text
    assert "Atelier Zoé" in page.text and 'src="https://cdn.shop.example/logo.svg"' in page.text
    assert "img-src 'self' data: blob: https://cdn.shop.example;" in page.headers["content-security-policy"]
    colours = dict(re.findall(r"--([a-z-]+):(#[0-9a-f]{6})", theme))
    assert contrast(colours["primary"], colours["on-primary"]) >= 4.5 and contrast(colours["link"], "#ffffff") >= 4.5
    assert " style=" not in page.text and "<style" not in page.text and "<script>" not in page.text


def test_each_page_weighs_under_200_kb_before_images(client, auth, face):
    shop, order_id = _placed_order(client, auth, face)
    upload_id = shop.upload(face).json()["upload_id"]
    for path in ("/shop/start", "/shop/upload", f"/shop/style?upload={upload_id}", f"/shop/orders/{order_id}"):
        html = client.get(path).text
        linked = re.findall(r'(?:href|src)="(/shop/(?:static/[\w.]+\.(?:css|js)|theme\.css))', html)
        assert len(linked) == 3, linked
        total = len(html.encode()) + sum(len(client.get(url).content) for url in linked)
        assert total < PAGE_BUDGET, (path, total)


# -- over a real server: the live stream, the access log --------------------------------------


def _browser_session(base: str, auth: dict, face: bytes) -> tuple[requests.Session, str, str]:
    """A requests session through the pages up to a placed order: (session, order id, token)."""
    made = requests.post(f"{base}/v1/shop-sessions", headers=auth, json={}, timeout=10).json()
    token = _token_of(made["url"], "s")
    browser = requests.Session()
    browser.post(f"{base}/shop/session", data={"token": token}, timeout=10)
    csrf = re.search(r'data-csrf="([^"]+)"', browser.get(f"{base}/shop/upload", timeout=10).text).group(1)
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
    photo = {"photo": ("a.png", face)}
    upload_id = browser.post(f"{base}/shop/uploads", data={"consent": "true"}, files=photo, headers=headers, timeout=30).json()[
        "upload_id"
    ]
    form = browser.get(f"{base}/shop/style", params={"upload": upload_id}, timeout=10).text
    body = {"csrf": _field(form, "csrf"), "nonce": _field(form, "nonce"), "upload": upload_id, "style": "ink_etching"}
    placed = browser.post(f"{base}/shop/orders", data={**body, "product": "poster_a3", "tier": "fast"}, timeout=30)
    return browser, placed.url.rsplit("/", 1)[1], token


def _events(lines):
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def test_the_order_page_streams_each_state_change(tmp_path, database_url, face):
    settings = make_settings(tmp_path, database_url)
    app = make_app(settings)
    with api_server(app) as base:
        browser, order_id, _ = _browser_session(base, new_key(settings), face)
        stream = browser.get(f"{base}/shop/orders/{order_id}/events", stream=True, timeout=30)
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.iter_lines(decode_unicode=True))
        first = next(events)
        assert first["state"] == "paid" and not first["proofs_ready"] and len(first["stages"]) == 5
        lifecycle.start_generation(app.state.services.book, order_id)  # the proof run begins
        moved = next(events)
        assert moved["state"] == "generating" and moved["state_text"] == "Painting your proofs…"
        stream.close()
        polled = browser.get(f"{base}/shop/orders/{order_id}/status.json", timeout=10).json()
        assert polled["state"] == "generating"


def test_no_shop_token_reaches_the_access_log(tmp_path, database_url, face, access_log):  # noqa: F811
    settings = make_settings(tmp_path, database_url)
    with api_server(make_app(settings), http=HttpProtocol.for_settings(settings)) as base:
        lines = access_log()
        browser, order_id, token = _browser_session(base, new_key(settings), face)
        browser.get(f"{base}/shop/orders/{order_id}", timeout=10)
        order_token = browser.cookies.get("shop_order")
    logged = "\n".join(lines.lines)
    assert "/shop/session" in logged and f"/shop/orders/{order_id}" in logged
    assert token not in logged and order_token and order_token not in logged and "otk_" not in logged


def test_a_shop_that_ships_asks_where_to_and_the_order_page_follows_the_parcel(tmp_path, database_url, face):
    # the print provider is named but never called here: the order only has to carry its recipient
    settings = make_settings(tmp_path, database_url, print_provider="prodigi", print_provider_api_key="test-key")
    key = new_key(settings)
    with TestClient(make_app(settings)) as client:
        shop = Shop(client, key, customer_ref="cust-1")
        upload_id = shop.upload(face).json()["upload_id"]
        form = shop.style_page([upload_id]).text
        assert 'id="shipping-address"' in form and '<label for="ship-line1">' in form
        address = {"name": "Ada Lovelace", "email": "ada@example.com", "line1": "12 St James's Square",
                   "city": "London", "postal_code": "SW1Y 4JH", "country_code": "gb", "shipping_method": "express"}  # fmt: skip
        refused = shop.place([upload_id], **{**address, "country_code": "G1"})
        assert refused.status_code == 422 and "was not right" in refused.text
        placed = shop.place([upload_id], **address)
        assert placed.status_code == 303, placed.text
        order_id = placed.headers["location"].rsplit("/", 1)[1]
        page = client.get(f"/shop/orders/{order_id}").text
        seen = client.get(f"/v1/orders/{order_id}", headers=key).json()
    assert 'id="shipping" class="card" data-status="waiting"' in page and "once your print file is ready" in page
    assert seen["shipping_method"] == "express" and seen["recipient"]["country_code"] == "GB"
    assert seen["recipient"]["city"] == "London" and seen["recipient"]["name"].startswith("A")
    history = client.get("/v1/customers/cust-1", headers=key).json()
    assert [o["id"] for o in history["orders"]["items"]] == [order_id]  # the refused form placed nothing


def test_the_order_is_charged_the_price_the_page_showed_and_an_expired_one_is_said(client, auth, face, settings):
    from photogen_pipelines.db.tables import QuoteRow

    shop = Shop(client, auth, customer_ref="cust-1")
    upload_id = shop.upload(face).json()["upload_id"]
    form = shop.style_page([upload_id]).text
    quote_id = _field(form, "quote_id")
    shown = client.get("/shop/quote", params={"product": "poster_a3", "tier": "fast"}).json()
    assert quote_id.startswith("quo_") and shown["ok"] and shown["id"].startswith("quo_")
    placed = shop.place([upload_id], quote_id=shown["id"])
    order = client.get(f"/v1/orders/{placed.headers['location'].rsplit('/', 1)[1]}", headers=auth).json()
    assert order["payment"]["quote_id"] == shown["id"] and order["payment"]["amount_cents"] == shown["amount_cents"]
    database = client.app.state.services.database
    with database.session() as session:  # half an hour later
        session.get(QuoteRow, quote_id).expires_at = utc_now() - timedelta(seconds=1)
    expired = shop.place([upload_id], nonce="another-order", quote_id=quote_id)
    assert expired.status_code == 422 and "The price shown has expired" in expired.text
