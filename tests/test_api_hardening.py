"""Odd bytes and loose edges at the storefront API (hardening round 3), on SQLite and PostgreSQL.

- A control character (a NUL above all, which PostgreSQL cannot store or even compare) in an
  id or a free text is a 404 or a 422 with the usual code, wherever it comes in: a path, a
  query, a JSON string, a recipient, a provider's callback, a signed Stripe event.
- A body nested a thousand levels deep is a 400 (callbacks, Stripe) or a 422, refused before
  any parser recurses into it; an error nobody expected is one log line with the request id.
- An unknown field is refused, not dropped; the losers of an approve race hear one code; the
  OpenAPI document declares the errors the API answers, with their body.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from photogen_pipelines.orders.outbox import ALL_EVENTS, EVENT_TYPES
from photogen_pipelines.orders.recipients import Address, Recipient
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, ProofScore, Validation
from storefront_api import schemas, webhook_schemas
from storefront_api.errors import REQUEST_ID_HEADER, ErrorOut
from storefront_api.limits import MAX_JSON_DEPTH
from tests.api_helpers import make_app, make_settings, new_key, order_body

S = OrderState
WEBHOOK_SECRET = "whsec_hardening_test"
RECIPIENT = {
    "name": "Wanjiru Mwangi",
    "email": "wanjiru@example.com",
    "address": {"line1": "12 Riverside Drive", "city": "Nairobi", "postal_code": "00100", "country_code": "KE"},
}
# a NUL, an escape (a terminal's), a line break (a forged log line), a lone surrogate (no UTF-8 for it)
ODD = ["\x00", "\x1b[2J", "\n", "\ud800"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["code"] == code and body["message"], body
    ErrorOut.model_validate(body)
    return body


def _problem_fields(response) -> set[str]:
    body = _error(response, 422, "invalid_request")
    return {p["field"] for p in body["details"]["problems"]}


def _json(payload, headers: dict | None = None) -> dict:
    """A raw JSON body: json.dumps writes a lone surrogate as the escape \\ud800, as a client would."""
    return {"content": json.dumps(payload).encode(), "headers": {**(headers or {}), "Content-Type": "application/json"}}


@pytest.fixture
def settings(tmp_path, database_url):
    # a shop fulfilling through Prodigi (never reached: port 9 refuses), payments off
    return make_settings(
        tmp_path,
        database_url,
        print_provider="prodigi",
        print_provider_api_key="prodigi-test-key",
        print_provider_api_base="http://127.0.0.1:9",
    )


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings)) as client:  # raise_server_exceptions: a 500 must not even raise
        yield client


@pytest.fixture
def auth(settings, client):
    return new_key(settings)


@pytest.fixture
def upload_id(client, auth, astronaut_png) -> str:
    response = client.post(
        "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png, "image/png")}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _place(client, auth, body: dict):
    return client.post("/v1/orders", **_json(body, {**auth, "Idempotency-Key": str(uuid.uuid4())}))


def _stage(client, api_key_id: str, upto: OrderState) -> Order:
    """An order moved to `upto` (paid or proofs_ready, with its proofs) as the pipeline leaves it."""
    services = client.app.state.services
    book, store = services.book, services.store
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="k", variants=2, api_key_id=api_key_id))
    book.transition(order.id, S.PAID)
    if upto == S.PAID:
        return book.get(order.id)
    book.transition(order.id, S.GENERATING)
    keys = OrderKeys(order.id)
    for variant in (0, 1):
        buffer = io.BytesIO()
        Image.fromarray(np.full((24, 16, 3), 60 * variant, np.uint8)).save(buffer, "PNG")
        store.put_bytes(keys.proof(variant), buffer.getvalue())
    scores = [ProofScore(variant=v, round=0, strength=0.5, similarity=0.6, faces=1, passed=True) for v in (0, 1)]
    validation = Validation(
        threshold=0.4,
        encoder="sface",
        rounds=1,
        proofs={0: keys.proof(0), 1: keys.proof(1)},
        best_variant=0,
        scores=scores,
        rejected=False,
    )
    keys.save(store, validation)
    book.transition(order.id, S.PROOFS_READY)
    return book.get(order.id)


def _key_id(client) -> str:
    from photogen_pipelines.access.api_keys import list_api_keys

    return list_api_keys(client.app.state.services.database)[-1]["id"]


# -- §4: control characters in ids and free text ---------------------------------------------


PATHS = [
    ("GET", "/v1/orders/ord_%00x", "order_not_found"),
    ("POST", "/v1/orders/ord_%00x/approve", "order_not_found"),
    ("POST", "/v1/orders/ord_%1B/cancel", "order_not_found"),
    ("GET", "/v1/orders/ord_%00x/bundle.zip", "order_not_found"),
    ("GET", "/v1/webhook-endpoints/we_%00", "webhook_endpoint_not_found"),
    ("PATCH", "/v1/webhook-endpoints/we_%00", "webhook_endpoint_not_found"),
    ("DELETE", "/v1/webhook-endpoints/we_%0A", "webhook_endpoint_not_found"),
    ("GET", "/v1/webhook-events/evt_%00", "webhook_event_not_found"),
    ("POST", "/v1/webhook-events/evt_%00/redeliver", "webhook_event_not_found"),
    ("POST", "/v1/fulfilment/prod%00igi/callbacks", "unknown_provider"),
]


def test_a_control_character_in_a_path_is_a_404_before_anyone_reads_it(client, auth):
    for method, path, code in PATHS:
        for headers in (auth, {}):  # the same answer without credentials: no id has one, nothing to guard
            body = _error(client.request(method, path, headers=headers, json={}), 404, code)
            assert "control character" in body["message"], (method, path, body)


def test_a_control_character_in_a_query_is_a_422_naming_the_parameter(client, auth):
    queries = {"order_id": "order_id=%00", "starting_after": "starting_after=evt_%00", "type": "type=order.paid%0A"}
    for field, query in queries.items():
        assert _problem_fields(client.get(f"/v1/webhook-events?{query}", headers=auth)) == {f"query.{field}"}
    assert client.get("/v1/webhook-events?order_id=ord_1", headers=auth).status_code == 200


@pytest.mark.parametrize("odd", ODD, ids=["nul", "escape", "newline", "surrogate"])
def test_a_control_character_in_a_json_string_is_a_422_naming_the_field(client, auth, odd):
    fields = {"upload_id": f"upl_{odd}", "style_id": f"ink{odd}etching", "tier": f"standard{odd}"}
    for name, value in fields.items():
        assert _problem_fields(_place(client, auth, {**order_body("upl_x"), name: value})) == {name}
    hook = {"url": "https://shop.example/hooks", "description": f"main {odd}shop"}
    assert _problem_fields(client.post("/v1/webhook-endpoints", **_json(hook, auth))) == {"description"}
    events = {"url": "https://shop.example/hooks", "events": ["order.paid", f"order.shipped{odd}"]}
    (field,) = _problem_fields(client.post("/v1/webhook-endpoints", **_json(events, auth)))
    assert field in ("events", "events.1")  # pydantic refuses a surrogate in a list's item itself
    url = {"url": f"https://shop.example/ho{odd}oks"}
    assert _problem_fields(client.post("/v1/webhook-endpoints", **_json(url, auth))) == {"url"}
    assert client.get("/v1/webhook-endpoints", headers=auth).json() == []  # nothing was stored


def test_a_cancel_reason_with_a_nul_is_refused_and_the_order_stays(client, auth):
    order = _stage(client, _key_id(client), S.PAID)
    cancel = client.post(f"/v1/orders/{order.id}/cancel", **_json({"reason": "changed my\x00 mind"}, auth))
    assert _problem_fields(cancel) == {"reason"}
    assert client.app.state.services.book.get(order.id).state == S.PAID
    done = client.post(f"/v1/orders/{order.id}/cancel", **_json({"reason": "changed my mind"}, auth))
    assert done.status_code == 200 and done.json()["state"] == "cancelled", done.text


@pytest.mark.parametrize(
    "where, field",
    [
        (("name",), "recipient.name"),
        (("email",), "recipient.email"),
        (("address", "line1"), "recipient.address.line1"),
        (("address", "city"), "recipient.address.city"),
    ],
)
def test_a_recipient_with_a_nul_is_refused_and_no_order_is_stored(client, auth, upload_id, where, field):
    recipient = json.loads(json.dumps(RECIPIENT))
    holder = recipient if len(where) == 1 else recipient[where[0]]
    holder[where[-1]] = holder[where[-1]][:1] + "\x00" + holder[where[-1]][1:]
    assert _problem_fields(_place(client, auth, order_body(upload_id, recipient=recipient))) == {field}
    assert client.app.state.services.book.list() == []


def test_the_recipient_model_itself_refuses_control_characters():
    with pytest.raises(ValueError, match="control characters"):
        Recipient.model_validate({**RECIPIENT, "name": "Wanjiru\x00"}, strict=False)
    with pytest.raises(ValueError, match="control characters"):
        Address.model_validate({**RECIPIENT["address"], "postal_code": "001\x0b00"}, strict=False)
    assert Recipient.model_validate(RECIPIENT, strict=False).name == "Wanjiru Mwangi"


def _prodigi_callback(merchant_reference: str) -> bytes:
    order = {"id": "ord_9001", "merchantReference": merchant_reference, "status": {"stage": "Complete"}}
    return json.dumps({"type": "com.prodigi.order.status.stage.changed#Complete", "data": {"order": order}}).encode()


def test_a_callback_naming_an_order_with_a_nul_is_malformed_without_credentials(client):
    answer = client.post("/v1/fulfilment/prodigi/callbacks", content=_prodigi_callback("ord_\x00x"))
    assert "control character" in _error(answer, 400, "malformed_callback")["message"]
    fine = client.post("/v1/fulfilment/prodigi/callbacks", content=_prodigi_callback("ord_unknown"))
    assert fine.status_code == 202 and fine.json()["outcome"].startswith("ignored"), fine.text


@pytest.mark.parametrize(
    "size, code", [((4000, 1), "image_too_small"), ((1, 2000), "image_too_small"), ((4000, 900), "image_too_narrow")]
)
def test_a_strip_uploaded_is_a_422_not_a_500(client, auth, size, code):
    buffer = io.BytesIO()
    Image.new("RGB", size, (190, 190, 190)).save(buffer, "PNG")
    answer = client.post(
        "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("strip.png", buffer.getvalue(), "image/png")}
    )
    _error(answer, 422, code)


# -- §4: nesting, and errors nobody expected ---------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_body_nested_a_thousand_deep_is_refused_before_it_is_parsed(client, auth, caplog):
    deep = _nested(1200)
    with caplog.at_level(logging.DEBUG):
        _error(client.post("/v1/fulfilment/prodigi/callbacks", content=deep), 400, "malformed_callback")
        # as it streams in: the same with no Content-Length, in small chunks
        chunks = (deep[i : i + 100] for i in range(0, len(deep), 100))
        _error(client.post("/v1/fulfilment/prodigi/callbacks", content=chunks), 400, "malformed_callback")
        hidden = {"type": "com.prodigi.x", "data": {"order": {"id": "[" * 5000}}}  # brackets in a string are text
        assert client.post("/v1/fulfilment/prodigi/callbacks", **_json(hidden)).status_code == 202
        order = order_body("upl_x", tier=json.loads(_nested(MAX_JSON_DEPTH + 1)))
        _error(_place(client, auth, order), 422, "invalid_request")
        hook = {"url": "https://shop.example/hooks", "events": json.loads(_nested(40))}
        _error(client.post("/v1/webhook-endpoints", **_json(hook, auth)), 422, "invalid_request")
    _no_traceback(caplog)


def test_a_callback_the_parser_cannot_recurse_into_is_a_provider_error():
    from photogen_pipelines.fulfilment.providers.base import ProviderError
    from photogen_pipelines.fulfilment.providers.printful import PrintfulProvider
    from photogen_pipelines.fulfilment.providers.prodigi import ProdigiProvider

    for provider in (ProdigiProvider("k", "http://127.0.0.1:9"), PrintfulProvider("k", "http://127.0.0.1:9")):
        with pytest.raises(ProviderError) as caught:
            provider.callback_reference({}, _nested(100_000))
        assert caught.value.code == "provider_callback_invalid"


def _signed(payload: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={mac}", "Content-Type": "application/json"}


@pytest.fixture
def stripe_shop(tmp_path, database_url):
    # Stripe is never called here (port 9 refuses): the events only name orders
    settings = make_settings(
        tmp_path,
        database_url,
        stripe_api_key="sk_test_photogen",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base="http://127.0.0.1:9",
    )
    with TestClient(make_app(settings)) as client:
        yield client


def _intent_event(order_id: str, extra: object = None) -> bytes:
    intent = {"id": "pi_1", "object": "payment_intent", "amount": 3500, "currency": "usd", "metadata": {"order_id": order_id}}
    if extra is not None:
        intent["extra"] = extra
    event = {"id": f"evt_{uuid.uuid4().hex[:8]}", "type": "payment_intent.succeeded", "created": 1, "data": {"object": intent}}
    return json.dumps(event).encode()


def test_a_signed_stripe_event_with_a_nul_or_nested_too_deep_is_malformed(stripe_shop, caplog):
    with caplog.at_level(logging.DEBUG):
        nul = _intent_event("ord_\x00x")
        _error(stripe_shop.post("/v1/webhooks/stripe", content=nul, headers=_signed(nul)), 400, "malformed_event")
        deep = _intent_event("ord_x", extra="@@").replace(b'"@@"', _nested(1200))
        _error(stripe_shop.post("/v1/webhooks/stripe", content=deep, headers=_signed(deep)), 400, "malformed_event")
        fine = _intent_event("ord_unknown")
        answer = stripe_shop.post("/v1/webhooks/stripe", content=fine, headers=_signed(fine))
        assert answer.status_code == 200, answer.text
    _no_traceback(caplog)


def test_an_unexpected_error_is_one_log_line_with_the_request_id(client, auth, caplog, monkeypatch):
    from storefront_api.api.routes import webhook_endpoints

    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk is on fire\nSELECT name, email FROM recipients -- personal data")

    monkeypatch.setattr(webhook_endpoints.webhook_endpoints, "list_endpoints", broken)
    seen = []
    with caplog.at_level(logging.INFO, logger="storefront_api"):
        for given in (None, "lb-7f3a", "not a plain id\x01"):
            headers = {**auth, REQUEST_ID_HEADER: given} if given else auth
            response = client.get("/v1/webhook-endpoints", headers=headers)  # the TestClient raises what the app raises
            body = _error(response, 500, "internal_error")
            assert body["details"]["request_id"] == response.headers[REQUEST_ID_HEADER]
            seen.append(response.headers[REQUEST_ID_HEADER])
    assert seen[1] == "lb-7f3a" and seen[0].startswith("req_") and seen[2].startswith("req_") and seen[0] != seen[2]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3, caplog.text
    for record, request_id in zip(errors, seen, strict=True):
        line = record.getMessage()
        assert request_id in line and "RuntimeError: the disk is on fire" in line and "\n" not in line, line
        assert "personal data" not in line and record.exc_info is None
        assert "webhook_endpoints.py" in line  # where: our deepest frame
    assert client.get("/v1/styles").headers[REQUEST_ID_HEADER].startswith("req_")  # every answer carries one


# -- §7: loose edges -------------------------------------------------------------------------


def test_an_unknown_field_is_refused_not_dropped_for_a_default(client, auth, upload_id):
    typo = _place(client, auth, order_body(upload_id, teir="premium"))
    assert _problem_fields(typo) == {"teir"}
    assert "not a field" in typo.json()["message"]
    assert client.app.state.services.book.list() == []
    nested = order_body(upload_id, recipient={**RECIPIENT, "adress": RECIPIENT["address"]})
    assert _problem_fields(_place(client, auth, nested)) == {"recipient.adress"}
    hook = {"url": "https://shop.example/hooks", "event": ["order.paid"]}
    assert _problem_fields(client.post("/v1/webhook-endpoints", **_json(hook, auth))) == {"event"}
    assert _place(client, auth, order_body(upload_id, tier="standard")).status_code == 201


def _request_bodies(cls=schemas.RequestBody) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_request_bodies(sub)]
    return found


def test_every_request_body_forbids_unknown_fields():
    bodies = _request_bodies()
    assert {b.__name__ for b in bodies} >= {"OrderIn", "ApproveIn", "CancelIn", "WebhookEndpointIn", "WebhookEndpointPatch"}
    for body in [*bodies, Recipient, Address]:
        assert body.model_config.get("extra") == "forbid", body


def test_the_loser_of_an_approve_race_hears_not_awaiting_approval(client, auth, monkeypatch):
    from photogen_pipelines.orders import lifecycle

    services = client.app.state.services
    original = lifecycle.approve
    winners = {
        "a cancel": lambda order_id: lifecycle.cancel(services.book, order_id, "cancelled by the customer"),
        "another approve": lambda order_id: original(services.book, services.store, order_id, 1, "proof 1 approved"),
    }
    for winner, first in winners.items():
        order = _stage(client, _key_id(client), S.PROOFS_READY)

        def approve_after_the_winner(book, store, order_id, *args, first=first, **kwargs):
            first(order_id)  # came in between the route's check and its approval
            return original(book, store, order_id, *args, **kwargs)

        # the route approves through workflows/previews, which moves the order with lifecycle.approve
        monkeypatch.setattr(lifecycle, "approve", approve_after_the_winner)
        lost = client.post(f"/v1/orders/{order.id}/approve", headers=auth, json={"proof": 0})
        body = _error(lost, 409, "not_awaiting_approval")
        assert services.book.get(order.id).state.value in body["message"], (winner, body)
        monkeypatch.undo()
        # and a loser that comes after the winner hears the same
        _error(client.post(f"/v1/orders/{order.id}/approve", headers=auth, json={"proof": 0}), 409, "not_awaiting_approval")


# -- §7: the OpenAPI document --------------------------------------------------------------


def test_the_openapi_document_declares_the_errors_with_their_body(client):
    spec = client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/Error"}
    schemas_ = spec["components"]["schemas"]
    assert set(schemas_["Error"]["required"]) == {"code", "message"}
    assert "HTTPValidationError" not in schemas_ and "ValidationError" not in schemas_
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == error, (where, status)
                    assert response["description"], (where, status)
            if path.startswith("/v1/") and path != "/v1/webhooks/stripe":
                assert {"403", "429"} <= set(responses), where  # rate-limited; a key from a browser is refused
                assert "Retry-After" in responses["429"]["headers"], where
            if operation.get("security"):
                assert "401" in responses, where
            if "{" in path:
                assert "404" in responses, where
            if method in ("post", "patch"):
                assert "413" in responses, where

    create = spec["paths"]["/v1/orders"]["post"]["responses"]
    assert create["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderOut"}
    assert {"200", "201", "400", "401", "403", "409", "413", "422", "429"} <= set(create)
    assert "not_awaiting_approval" in spec["paths"]["/v1/orders/{order_id}/approve"]["post"]["responses"]["409"]["description"]
    assert "cannot_cancel" in spec["paths"]["/v1/orders/{order_id}/cancel"]["post"]["responses"]["409"]["description"]
    assert "print_file_not_ready" in spec["paths"]["/v1/orders/{order_id}/print-file"]["get"]["responses"]["409"]["description"]
    callbacks = spec["paths"]["/v1/fulfilment/{provider}/callbacks"]["post"]["responses"]
    assert "malformed_callback" in callbacks["400"]["description"] and "401" not in callbacks
    stripe = spec["paths"]["/v1/webhooks/stripe"]["post"]["responses"]
    assert "malformed_event" in stripe["400"]["description"] and "429" not in stripe

    for name in ("WebhookEndpointIn", "WebhookEndpointPatch"):
        properties = schemas_[name]["properties"]
        assert (properties["url"]["minLength"], properties["url"]["maxLength"]) == (1, 2000), name
        assert properties["events"]["items"]["enum"] == [*EVENT_TYPES, ALL_EVENTS], name
    (kind,) = [p for p in spec["paths"]["/v1/webhook-events"]["get"]["parameters"] if p["name"] == "type"]
    assert kind["schema"]["anyOf"][0]["enum"] == list(EVENT_TYPES)
    # the enum documents; the core still names an unknown event type with its own code
    assert webhook_schemas.WebhookEndpointIn(url="https://shop.example/h", events=["order.teleported"]).events


def test_the_answers_match_the_document(client, auth):
    """A few real answers, each a status the document declares for its operation."""
    spec = client.get("/openapi.json").json()
    order = _stage(client, _key_id(client), S.PAID)
    answers = [
        ("/v1/orders", "post", client.post("/v1/orders", headers=auth, json=order_body("upl_x"))),  # no Idempotency-Key
        ("/v1/orders/{order_id}", "get", client.get(f"/v1/orders/{order.id}")),
        ("/v1/orders/{order_id}/approve", "post", client.post(f"/v1/orders/{order.id}/approve", headers=auth, json={"proof": 0})),
        ("/v1/orders/{order_id}/print-file", "get", client.get(f"/v1/orders/{order.id}/print-file", headers=auth)),
        ("/v1/webhook-events/{event_id}", "get", client.get("/v1/webhook-events/evt_nope", headers=auth)),
        ("/v1/fulfilment/{provider}/callbacks", "post", client.post("/v1/fulfilment/prodigi/callbacks", content=b"{")),
    ]
    assert [a.status_code for *_, a in answers] == [400, 401, 409, 409, 404, 400]
    for path, method, answer in answers:
        assert str(answer.status_code) in spec["paths"][path][method]["responses"], (path, answer.status_code)
        ErrorOut.model_validate(answer.json())
