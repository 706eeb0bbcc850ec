"""Payments against localstripe on loopback: PaymentIntents, signed webhooks delivered to a
real API server, refunds, and reconciliation over Stripe's event list."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid

import dagster as dg
import pytest
import requests
import stripe

from photogen_pipelines.db.database import Database
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.orderbook import SqlOrderBook
from photogen_pipelines.orders import Order, OrderState
from photogen_pipelines.payments import StripeGateway, apply_stripe_event, refund_order
from resources import OrdersDatabase, StripePayments
from sensors import order_run_failures, stripe_reconciliation
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance, run_failure_context
from tests.servers import api_server, localstripe_server, wait_until

WEBHOOK_SECRET = "whsec_photogen_test"
API_KEY = "sk_test_photogen"


@pytest.fixture(scope="module")
def stripe_base(tmp_path_factory):
    with localstripe_server(tmp_path_factory.mktemp("localstripe")) as base:
        yield base


@pytest.fixture
def stripe_client(stripe_base):
    requests.delete(stripe_base + "/_config/data", timeout=10).raise_for_status()
    return stripe.StripeClient(API_KEY, base_addresses={"api": stripe_base})


@pytest.fixture
def shop(tmp_path, database_url, stripe_base, stripe_client):
    """The API with payments on, served over HTTP, and a storefront key."""
    settings = make_settings(
        tmp_path,
        database_url,
        stripe_api_key=API_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_base,
    )
    with api_server(make_app(settings)) as url:
        yield settings, url, new_key(settings)


def _register_webhook(stripe_base: str, api_url: str) -> None:
    response = requests.post(
        f"{stripe_base}/_config/webhooks/photogen",
        data={"url": f"{api_url}/v1/webhooks/stripe", "secret": WEBHOOK_SECRET},
        timeout=10,
    )
    response.raise_for_status()


def _order(shop, face_images, **fields) -> dict:
    settings, url, auth = shop
    upload = requests.post(f"{url}/v1/uploads", headers=auth, files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))})
    assert upload.status_code == 201, upload.text
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    response = requests.post(f"{url}/v1/orders", headers=headers, json=order_body(upload.json()["id"], **fields))
    assert response.status_code == 201, response.text
    return response.json()


def _paid_through_the_webhook(shop, stripe_base: str, stripe_client, face_images) -> dict:
    """An order the customer paid, marked paid by localstripe's webhook to the API."""
    _register_webhook(stripe_base, shop[1])
    order = _order(shop, face_images)
    _pay(stripe_client, order)
    wait_until(lambda: _get(shop, order["id"])["state"] == "paid", 30, "the webhook")
    return order


def _pay(stripe_client, order: dict) -> None:
    """What Stripe.js does in the customer's browser with the client secret."""
    intent_id = order["payment"]["payment_intent_id"]
    assert order["payment"]["client_secret"].startswith(intent_id)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    method = stripe_client.v1.payment_methods.create(params={"type": "card", "card": card})
    stripe_client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    assert stripe_client.v1.payment_intents.confirm(intent_id).status == "succeeded"


def _get(shop, order_id: str) -> dict:
    _, url, auth = shop
    return requests.get(f"{url}/v1/orders/{order_id}", headers=auth, timeout=10).json()


def _signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    timestamp = at or int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={mac}", "Content-Type": "application/json"}


def _refunds(stripe_client, intent_id: str) -> list:
    return [r for r in stripe_client.v1.refunds.list().data if r.payment_intent == intent_id]


def test_a_payment_reaches_the_order_through_the_signed_webhook_once(shop, stripe_base, stripe_client, face_images):
    settings, url, _ = shop
    _register_webhook(stripe_base, url)
    order = _order(shop, face_images)
    assert order["state"] == "awaiting_payment" and order["payment"]["mode"] == "stripe"
    assert order["payment"]["amount_cents"] > 0

    _pay(stripe_client, order)
    paid = wait_until(lambda: (o := _get(shop, order["id"]))["state"] == "paid" and o, 30, "the webhook")
    assert paid["payment"]["paid_cents"] == order["payment"]["amount_cents"]

    # Stripe delivers again (or a replayed request arrives): nothing changes
    event = next(e for e in stripe_client.v1.events.list().data if e.type == "payment_intent.succeeded")
    payload = json.dumps(event.to_dict()).encode()
    replay = requests.post(f"{url}/v1/webhooks/stripe", data=payload, headers=_signed(payload), timeout=10)
    assert replay.status_code == 200 and replay.json()["outcome"].startswith("duplicate")
    assert [e["to_state"] for e in _get(shop, order["id"])["events"]] == ["awaiting_payment", "paid"]

    forged = requests.post(f"{url}/v1/webhooks/stripe", data=payload, headers=_signed(payload, "whsec_wrong"), timeout=10)
    assert forged.status_code == 400 and forged.json()["code"] == "bad_signature"
    stale = requests.post(f"{url}/v1/webhooks/stripe", data=payload, headers=_signed(payload, at=int(time.time()) - 3600))
    assert stale.status_code == 400 and stale.json()["code"] == "bad_signature"
    unsigned = requests.post(f"{url}/v1/webhooks/stripe", data=payload, timeout=10)
    assert unsigned.status_code == 400 and unsigned.json()["code"] == "missing_signature"


def test_the_same_idempotency_key_returns_the_same_payment_intent(shop, face_images):
    settings, url, auth = shop
    upload = requests.post(f"{url}/v1/uploads", headers=auth, files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))})
    headers = {**auth, "Idempotency-Key": "checkout-42"}
    body = order_body(upload.json()["id"])
    first = requests.post(f"{url}/v1/orders", headers=headers, json=body).json()
    again = requests.post(f"{url}/v1/orders", headers=headers, json=body)
    assert again.status_code == 200
    assert again.json()["payment"]["payment_intent_id"] == first["payment"]["payment_intent_id"]
    assert again.json()["payment"]["client_secret"] == first["payment"]["client_secret"]


def test_cancelling_a_paid_order_refunds_it_exactly_once(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    order = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)

    cancelled = requests.post(f"{url}/v1/orders/{order['id']}/cancel", headers=auth, json={"reason": "wrong photo"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["state"] == "refunded" and body["payment"]["refunded_cents"] == order["payment"]["amount_cents"]
    assert [r.id for r in _refunds(stripe_client, order["payment"]["payment_intent_id"])] == [body["payment"]["refund_id"]]

    again = requests.post(f"{url}/v1/orders/{order['id']}/cancel", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "cannot_cancel"
    database = Database(settings.resolved_database_url)
    refund_order(database, SqlOrderBook(database), StripeGateway(API_KEY, api_base=stripe_base), order["id"])
    assert len(_refunds(stripe_client, order["payment"]["payment_intent_id"])) == 1


def test_refunds_asked_for_at_the_same_moment_happen_once(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    order = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)
    database = Database(settings.resolved_database_url)
    book = SqlOrderBook(database)
    book.transition(order["id"], OrderState.FAILED, reason="test: the run failed for good")

    def refund() -> None:
        refund_order(database, book, StripeGateway(API_KEY, api_base=stripe_base), order["id"])

    threads = [threading.Thread(target=refund) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_refunds(stripe_client, order["payment"]["payment_intent_id"])) == 1
    assert book.get(order["id"]).state == OrderState.REFUNDED


def test_paying_after_cancelling_is_refunded(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    _register_webhook(stripe_base, url)
    order = _order(shop, face_images)
    assert requests.post(f"{url}/v1/orders/{order['id']}/cancel", headers=auth).json()["state"] == "cancelled"
    _pay(stripe_client, order)  # the customer's browser was still on the payment page
    refunded = wait_until(lambda: (o := _get(shop, order["id"]))["state"] == "refunded" and o, 30, "the refund")
    assert refunded["payment"]["paid_cents"] == refunded["payment"]["refunded_cents"] > 0


def test_reconciliation_applies_what_the_webhook_missed_once(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop  # no webhook registered: every event is "missed"
    missed = _order(shop, face_images)
    _pay(stripe_client, missed)
    owed = _order(shop, face_images)
    requests.post(f"{url}/v1/orders/{owed['id']}/cancel", headers=auth)
    _pay(stripe_client, owed)
    time.sleep(1)
    assert _get(shop, missed["id"])["state"] == "awaiting_payment"

    resources = {
        "orders": OrdersDatabase(url=settings.resolved_database_url),
        "payments": StripePayments(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=stripe_base),
    }
    with dg.build_sensor_context(resources=resources) as context:
        first = stripe_reconciliation(context)
        assert "2 newly applied; 1 refund(s) issued" in first.skip_message, first.skip_message
        assert context.cursor
        second = stripe_reconciliation(context)  # the same context carries the cursor the first tick set
        assert "0 newly applied; 0 refund(s) issued" in second.skip_message, second.skip_message

    assert _get(shop, missed["id"])["state"] == "paid"
    assert _get(shop, owed["id"])["state"] == "refunded"
    assert len(_refunds(stripe_client, owed["payment"]["payment_intent_id"])) == 1


def test_a_paid_order_whose_run_fails_for_good_is_failed_and_refunded(
    shop, stripe_base, stripe_client, face_images, tmp_path, monkeypatch
):
    settings, url, auth = shop
    order = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)

    for name, value in {
        "PHOTOGEN_DATABASE_URL": settings.resolved_database_url,
        "PHOTOGEN_STRIPE_API_KEY": API_KEY,
        "PHOTOGEN_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PHOTOGEN_STRIPE_API_BASE": stripe_base,
    }.items():
        monkeypatch.setenv(name, value)
    defs = build_defs(settings.home)
    store = defs.resources["storage"].store()
    upload_key = SqlOrderBook(Database(settings.resolved_database_url)).get(order["id"]).upload_key
    store.delete(upload_key)  # storage lost the selfie: no retry can bring it back

    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order["id"]])
        result = defs.resolve_job_def("proof_job").execute_in_process(
            partition_key=order["id"], instance=instance, raise_on_error=False
        )
        assert not result.success
        resources = {"orders": defs.resources["orders"], "payments": defs.resources["payments"]}
        context = run_failure_context(instance, result.run_id, resources)
        order_run_failures(context)
        order_run_failures(context)  # the daemon may evaluate a failure twice: still one refund

    settled = _get(shop, order["id"])
    assert settled["state"] == "refunded"
    assert [e["to_state"] for e in settled["events"]][-3:] == ["generating", "failed", "refunded"]
    assert len(_refunds(stripe_client, order["payment"]["payment_intent_id"])) == 1


def _event(event_id: str, kind: str, obj: dict) -> dict:
    return {"id": event_id, "type": kind, "created": int(time.time()), "data": {"object": obj}}


def test_events_out_of_order_or_repeated_are_harmless(orders_db):
    # event bodies as Stripe sends them, applied in the worst order; no server needed
    book = SqlOrderBook(orders_db)
    order = book.add(_stripe_order())
    intent = {
        "object": "payment_intent",
        "id": "pi_1",
        "amount": 3900,
        "amount_received": 3900,
        "metadata": {"order_id": order.id},
    }
    charge = {
        "object": "charge",
        "payment_intent": "pi_1",
        "amount_refunded": 3900,
        "metadata": {"order_id": order.id},
        "refunds": {"data": [{"id": "re_1"}]},
    }
    failed = {**intent, "last_payment_error": {"message": "card declined"}}
    assert "stays awaiting_payment" in apply_stripe_event(
        orders_db, book, _event("evt_0", "payment_intent.payment_failed", failed), "webhook"
    )
    assert apply_stripe_event(orders_db, book, _event("evt_2", "charge.refunded", charge), "webhook") == "refund recorded"
    assert "does not start" in apply_stripe_event(orders_db, book, _event("evt_1", "payment_intent.succeeded", intent), "webhook")
    assert apply_stripe_event(orders_db, book, _event("evt_1", "payment_intent.succeeded", intent), "webhook").startswith(
        "duplicate"
    )
    assert apply_stripe_event(orders_db, book, _event("evt_9", "customer.created", {"object": "customer"}), "webhook").startswith(
        "ignored"
    )
    settled = book.get(order.id)
    assert settled.state == OrderState.AWAITING_PAYMENT and not settled.refund_owed
    assert (settled.paid_cents, settled.refunded_cents, settled.refund_id) == (3900, 3900, "re_1")


def _stripe_order():
    return Order(style_id="ink_etching", product_id="poster_a3", upload_key="k", payments="stripe", amount_cents=3900)
