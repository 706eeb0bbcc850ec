"""Payments against localstripe on loopback: PaymentIntents, signed webhooks delivered to a
real API server, refunds, and reconciliation over Stripe's event list; only the order's own
payment, in full, pays it, and every other payment tied to it goes back to the customer."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid

import dagster as dg
import numpy as np
import pytest
import requests
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from photogen_pipelines.catalog import load_products
from photogen_pipelines.db.database import Database, alembic_config
from photogen_pipelines.db.tables import Base, PaymentEventRow, StrayPaymentRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.payments.stripe_payments import (
    EventStatus,
    MalformedEvent,
    PaymentError,
    StripeGateway,
    apply_stripe_event,
    check_event,
    money,
    refund_order,
    refund_stray_payment,
)
from photogen_pipelines.storage.artifacts import OrderKeys, ProofScore, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from resources import OrdersDatabase, StripePayments
from sensors import order_run_failures, stripe_reconciliation
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance, run_failure_context
from tests.invariants import MONEY, StripeRecords, check_shop
from tests.servers import api_server, free_port, wait_until

WEBHOOK_SECRET = "whsec_photogen_test"
API_KEY = "sk_test_photogen"  # the key the `stripe_client` fixture (conftest.py) uses too


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
    upload = requests.post(
        f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))}
    )
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


def _shop_holds(shop, stripe_client) -> None:
    """The soak's money invariants over every order of the test, against localstripe's own
    records (no run works on the orders here: a paid order stays paid)."""
    orders = SqlOrderBook(Database(shop[0].resolved_database_url)).list(limit=1000)
    report = check_shop(orders, stripe=StripeRecords.read(stripe_client), pipeline_ran=False)
    assert report.holds, "\n".join(report.lines())
    assert report.checked[MONEY] >= 1  # Stripe's records were read and compared


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
    upload = requests.post(
        f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))}
    )
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
    refund_order(SqlOrderBook(database), StripeGateway(API_KEY, api_base=stripe_base), order["id"])
    assert len(_refunds(stripe_client, order["payment"]["payment_intent_id"])) == 1
    _shop_holds(shop, stripe_client)


def _proofs_ready(shop, order_id: str) -> None:
    """The proof run's outcome as the pipeline leaves it: one proof that passed the gate, stored."""
    settings = shop[0]
    book, store = SqlOrderBook(Database(settings.resolved_database_url)), LocalArtifactStore(settings.paths.artifacts)
    keys = OrderKeys(order_id)
    store.put_bytes(keys.proof(0), png_bytes(np.full((96, 64, 3), 90, np.uint8)))
    score = ProofScore(variant=0, round=0, strength=0.5, similarity=0.6, faces=1, passed=True)
    validation = Validation(
        threshold=0.4, encoder="sface", rounds=1, proofs={0: keys.proof(0)}, best_variant=0, scores=[score], rejected=False
    )
    keys.save(store, validation)
    book.transition(order_id, OrderState.GENERATING)
    book.transition(order_id, OrderState.PROOFS_READY)


def test_a_cancel_after_a_proof_download_refunds_the_price_less_the_shops_fee(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    downloaded = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)
    looked_away = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)
    for order in (downloaded, looked_away):
        _proofs_ready(shop, order["id"])
    amount = downloaded["payment"]["amount_cents"]
    fee = load_products().cancellation.fee(amount)
    assert 0 < fee < amount

    # the customer's page shows the proofs (a link handed out is no download), then fetches one
    (proof,) = _get(shop, downloaded["id"])["proofs"]
    assert proof["preview"] and _get(shop, downloaded["id"])["payment"]["cancellation_fee_cents"] == 0
    assert requests.get(proof["url"], timeout=10).status_code == 200
    seen = _get(shop, downloaded["id"])
    assert seen["proofs_downloaded_at"] and seen["payment"]["cancellation_fee_cents"] == fee

    cancelled = requests.post(f"{url}/v1/orders/{downloaded['id']}/cancel", headers=auth, json={"reason": "kept the preview"})
    body = cancelled.json()
    assert body["state"] == "refunded" and body["payment"]["refunded_cents"] == amount - fee, body
    intent = downloaded["payment"]["payment_intent_id"]
    assert [int(r.amount) for r in _refunds(stripe_client, intent)] == [amount - fee]  # what Stripe was asked for
    assert "cancellation fee" in body["events"][-1]["reason"] and money(fee, "usd") in body["events"][-1]["reason"]
    dead = requests.get(proof["url"], timeout=10)  # the link handed out before the cancel died with it
    assert dead.status_code == 410 and dead.json()["code"] == "file_withdrawn"

    # proofs ready but never downloaded: everything back
    whole = requests.post(f"{url}/v1/orders/{looked_away['id']}/cancel", headers=auth).json()
    assert whole["state"] == "refunded" and whole["payment"]["refunded_cents"] == amount
    assert [int(r.amount) for r in _refunds(stripe_client, looked_away["payment"]["payment_intent_id"])] == [amount]

    # Stripe's charge.refunded webhooks arrive after: the partial refund stays what it was
    time.sleep(1)
    assert _get(shop, downloaded["id"])["payment"]["refunded_cents"] == amount - fee
    _shop_holds(shop, stripe_client)


def test_refunds_asked_for_at_the_same_moment_happen_once(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    order = _paid_through_the_webhook(shop, stripe_base, stripe_client, face_images)
    database = Database(settings.resolved_database_url)
    book = SqlOrderBook(database)
    book.transition(order["id"], OrderState.FAILED, reason="test: the run failed for good")

    def refund() -> None:
        refund_order(book, StripeGateway(API_KEY, api_base=stripe_base), order["id"])

    threads = [threading.Thread(target=refund) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_refunds(stripe_client, order["payment"]["payment_intent_id"])) == 1
    assert book.get(order["id"]).state == OrderState.REFUNDED
    _shop_holds(shop, stripe_client)


def test_paying_after_cancelling_is_refunded(shop, stripe_base, stripe_client, face_images):
    settings, url, auth = shop
    _register_webhook(stripe_base, url)
    order = _order(shop, face_images)
    assert requests.post(f"{url}/v1/orders/{order['id']}/cancel", headers=auth).json()["state"] == "cancelled"
    _pay(stripe_client, order)  # the customer's browser was still on the payment page
    refunded = wait_until(lambda: (o := _get(shop, order["id"]))["state"] == "refunded" and o, 30, "the refund")
    assert refunded["payment"]["paid_cents"] == refunded["payment"]["refunded_cents"] > 0
    _shop_holds(shop, stripe_client)


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
        "currency": "usd",
        "metadata": {"order_id": order.id},
    }
    charge = {
        "object": "charge",
        "payment_intent": "pi_1",
        "amount": 3900,
        "amount_refunded": 3900,
        "currency": "usd",
        "metadata": {"order_id": order.id},
        "refunds": {"data": [{"id": "re_1"}]},
    }
    failed = {**intent, "last_payment_error": {"message": "card declined"}}

    def apply(event_id: str, kind: str, obj: dict):
        return apply_stripe_event(book, _event(event_id, kind, obj), "webhook")

    assert "stays awaiting_payment" in apply("evt_0", "payment_intent.payment_failed", failed).outcome
    assert apply("evt_2", "charge.refunded", charge).outcome == "refund recorded"
    # the refund overtook its payment: the order settles instead of awaiting a payment forever
    assert [e.to_state for e in book.get(order.id).events][-2:] == [OrderState.CANCELLED, OrderState.REFUNDED]
    assert "does not start" in apply("evt_1", "payment_intent.succeeded", intent).outcome
    assert apply("evt_1", "payment_intent.succeeded", intent).status == EventStatus.DUPLICATE
    assert apply("evt_9", "customer.created", {"object": "customer"}).status == EventStatus.IGNORED
    settled = book.get(order.id)
    assert settled.state == OrderState.REFUNDED and not settled.refund_owed
    assert (settled.paid_cents, settled.refunded_cents, settled.refund_id) == (3900, 3900, "re_1")


def _stripe_order():
    return Order(
        style_id="ink_etching",
        product_id="poster_a3",
        upload_key="k",
        payments="stripe",
        amount_cents=3900,
        payment_intent_id="pi_1",
    )


# -- a payment counts only when it is the order's own, in full --------------------------------
#
# Only the order's own PaymentIntent, in its currency and in full, pays an order. Any other
# successful payment tied to it is refunded, once, and never starts generation.

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


# -- helpers -----------------------------------------------------------------------------


def _database(shop) -> Database:
    return Database(shop[0].resolved_database_url)


def _stray_payment(stripe_client, order_id: str, amount: int = 100, currency: str = "usd"):
    """A PaymentIntent that is not the order's, carrying the order's id, paid by card."""
    method = stripe_client.v1.payment_methods.create(params={"type": "card", "card": CARD})
    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "metadata": {"order_id": order_id},
            "payment_method": method.id,
            "confirm": True,
        }
    )
    assert intent.status == "succeeded"
    return intent


def _net_charged(stripe_client, order_id: str) -> int:
    """What the customer is out of pocket for the order, by localstripe's own records."""
    intents = [
        pi
        for pi in stripe_client.v1.payment_intents.list(params={"limit": 100}).data
        if pi.to_dict().get("metadata", {}).get("order_id") == order_id and pi.status == "succeeded"
    ]
    ids = {pi.id for pi in intents}
    refunds = [r for r in stripe_client.v1.refunds.list(params={"limit": 100}).data if r.payment_intent in ids]
    return sum(int(pi.amount) for pi in intents) - sum(int(r.amount) for r in refunds)


def _stray_row(database: Database, intent_id: str) -> StrayPaymentRow | None:
    with database.session() as session:
        return session.get(StrayPaymentRow, intent_id)


def _payment_event_count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(PaymentEventRow))


def _post_signed(url: str, event: dict | bytes, at: int | None = None) -> requests.Response:
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    return requests.post(f"{url}/v1/webhooks/stripe", data=payload, headers=_signed(payload, at=at), timeout=10)


def _succeeded(event_id: str, order: dict, **intent) -> dict:
    """A payment_intent.succeeded for the order's own intent and amount, unless overridden."""
    obj = {
        "object": "payment_intent",
        "id": order["payment"]["payment_intent_id"],
        "amount": order["payment"]["amount_cents"],
        "amount_received": order["payment"]["amount_cents"],
        "currency": order["payment"]["currency"],
        "status": "succeeded",
        "metadata": {"order_id": order["id"]},
        **intent,
    }
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": obj},
    }


def _sensor_resources(shop, stripe_base: str) -> dict:
    return {
        "orders": OrdersDatabase(url=shop[0].resolved_database_url),
        "payments": StripePayments(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=stripe_base),
    }


# -- stray payments through the webhook ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stray_comes", ["before", "after"])
def test_a_stray_payment_is_refunded_and_the_customer_pays_the_order_once(
    shop, stripe_base, stripe_client, face_images, stray_comes
):
    _register_webhook(stripe_base, shop[1])
    order = _order(shop, face_images)
    amount = order["payment"]["amount_cents"]
    if stray_comes == "after":
        _pay(stripe_client, order)
        wait_until(lambda: _get(shop, order["id"])["state"] == "paid", 30, "the real payment")

    stray = _stray_payment(stripe_client, order["id"])
    wait_until(lambda: _refunds(stripe_client, stray.id), 30, "the stray payment's refund")
    assert _get(shop, order["id"])["state"] == ("paid" if stray_comes == "after" else "awaiting_payment")

    if stray_comes == "before":
        _pay(stripe_client, order)
        wait_until(lambda: _get(shop, order["id"])["state"] == "paid", 30, "the real payment")
    settled = _get(shop, order["id"])
    assert settled["payment"]["paid_cents"] == amount and settled["payment"]["refunded_cents"] == 0
    assert [e["to_state"] for e in settled["events"]] == ["awaiting_payment", "paid"]
    assert _refunds(stripe_client, order["payment"]["payment_intent_id"]) == []
    assert _net_charged(stripe_client, order["id"]) == amount

    row = _stray_row(_database(shop), stray.id)
    assert (row.order_id, row.amount, row.currency, row.reason) == (order["id"], 100, "usd", "not_the_orders_payment")
    assert row.refunded_at is not None and row.refund_id == _refunds(stripe_client, stray.id)[0].id
    _shop_holds(shop, stripe_client)


def test_stray_refunds_asked_for_at_the_same_moment_happen_once(shop, stripe_base, stripe_client, face_images):
    order = _order(shop, face_images)  # no webhook: the event is applied here, the refund left owed
    stray = _stray_payment(stripe_client, order["id"])
    database = _database(shop)
    event = next(e for e in stripe_client.v1.events.list().data if e.data.object.id == stray.id)
    assert apply_stripe_event(SqlOrderBook(database), event.to_dict(), "webhook").stray_payment == stray.id

    # localstripe ignores idempotency keys: one refund here is PhotoGen's own lock and record
    gateway = StripeGateway(API_KEY, api_base=stripe_base)
    threads = [threading.Thread(target=refund_stray_payment, args=(SqlOrderBook(database), gateway, stray.id)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_refunds(stripe_client, stray.id)) == 1
    assert _stray_row(database, stray.id).attempts == 1
    assert _get(shop, order["id"])["state"] == "awaiting_payment"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("amount_cents", 4000, "35.00 USD) does not match the order (40.00 USD)"), ("currency", "eur", "(35.00 EUR)")],
)
@pytest.mark.slow
def test_the_orders_own_payment_short_or_in_another_currency_fails_the_order_and_is_refunded(
    shop, stripe_base, stripe_client, face_images, field, value, expected
):
    _register_webhook(stripe_base, shop[1])
    order = _order(shop, face_images)
    assert (order["payment"]["amount_cents"], order["payment"]["currency"]) == (3500, "usd")
    # what the order asks for changes after its intent was made: the intent now collects
    # less than the order, or in another currency
    SqlOrderBook(_database(shop)).update(order["id"], lambda o: setattr(o, field, value))
    _pay(stripe_client, order)

    intent_id = order["payment"]["payment_intent_id"]
    settled = wait_until(lambda: (o := _get(shop, order["id"]))["state"] == "refunded" and o, 30, "the refund")
    assert [e["to_state"] for e in settled["events"]] == ["awaiting_payment", "failed", "refunded"]
    failed = settled["events"][1]["reason"]
    assert "the payment received (" in failed and expected in failed and "refunded" in failed
    assert settled["payment"]["paid_cents"] == 0
    assert [r.id for r in _refunds(stripe_client, intent_id)] == [settled["payment"]["refund_id"]]
    assert _net_charged(stripe_client, order["id"]) == 0
    assert _stray_row(_database(shop), intent_id).reason == ("amount_short" if field == "amount_cents" else "currency_mismatch")
    _shop_holds(shop, stripe_client)


@pytest.mark.parametrize(
    ("forgery", "state", "reason"),
    [
        ({"id": "pi_forged0000000"}, "awaiting_payment", "not_the_orders_payment"),
        ({"amount_received": 1}, "failed", "amount_short"),
        ({"currency": "jpy"}, "failed", "currency_mismatch"),
    ],
)
def test_a_signed_event_that_does_not_pay_the_order_in_full_never_makes_it_paid(shop, face_images, forgery, state, reason):
    _, url, _ = shop
    order = _order(shop, face_images)
    answer = _post_signed(url, _succeeded("evt_forged", order, **forgery))
    assert answer.status_code == 200, answer.text
    assert "order paid" not in answer.json()["outcome"]

    after = _get(shop, order["id"])
    assert after["state"] == state and after["payment"]["paid_cents"] == 0
    if state == "failed":
        assert "does not match the order (35.00 USD)" in after["reason"]
        assert ("(0.01 USD)" if "amount_received" in forgery else "(3500 JPY)") in after["reason"]
    intent_id = forgery.get("id", order["payment"]["payment_intent_id"])
    database = _database(shop)
    row = wait_until(lambda: (r := _stray_row(database, intent_id)) and r.attempts and r, 30, "the refund attempt")
    # localstripe never took this money: the refund fails, is counted and stays owed
    assert row.reason == reason and row.refunded_at is None and row.last_error


def test_a_refund_of_a_stray_payment_is_not_the_orders_refund(orders_db):
    book = SqlOrderBook(orders_db)
    order = book.add(_order_awaiting_payment())

    def apply(event_id: str, kind: str, obj: dict):
        event = {"id": event_id, "type": kind, "created": int(time.time()), "data": {"object": obj}}
        return apply_stripe_event(book, event, "webhook")

    stray_charge = _charge("pi_stray", order.id, amount=100, refunded=100)
    assert "not this order's payment" in apply("evt_1", "charge.refunded", stray_charge).outcome
    assert book.get(order.id).refund_id is None and book.get(order.id).state == OrderState.AWAITING_PAYMENT
    # the stray's own success comes late: Stripe already gave it back, nothing is owed
    late = apply("evt_2", "payment_intent.succeeded", _intent("pi_stray", order.id, 100))
    assert late.stray_payment is None and _stray_row(orders_db, "pi_stray").refunded_at is not None

    paid = apply("evt_3", "payment_intent.succeeded", _intent("pi_own", order.id, 3500))
    assert paid.outcome == "order paid" and paid.status == EventStatus.APPLIED
    assert book.get(order.id).paid_cents == 3500


def test_an_intent_pays_the_order_that_owns_it_whatever_its_metadata_says(orders_db):
    book = SqlOrderBook(orders_db)
    owner, named = book.add(_order_awaiting_payment()), book.add(_order_awaiting_payment().model_copy(update={"id": "ord_named"}))
    book.update(named.id, lambda o: setattr(o, "payment_intent_id", "pi_named"))
    # metadata is only a claim: the intent's owner is found by its id first
    event = {"id": "evt_1", "type": "payment_intent.succeeded", "created": int(time.time())}
    result = apply_stripe_event(book, {**event, "data": {"object": _intent("pi_own", named.id, 3500)}}, "webhook")
    assert (result.order_id, result.outcome, result.stray_payment) == (owner.id, "order paid", None)
    assert book.get(named.id).state == OrderState.AWAITING_PAYMENT and _stray_row(orders_db, "pi_own") is None


def test_a_partial_refund_before_the_payment_cancels_and_the_rest_is_owed(orders_db):
    book = SqlOrderBook(orders_db)
    order = book.add(_order_awaiting_payment())
    event = {"id": "evt_r", "type": "charge.refunded", "created": int(time.time())}
    apply_stripe_event(book, {**event, "data": {"object": _charge("pi_own", order.id, 3500, refunded=1000)}}, "webhook")
    assert book.get(order.id).state == OrderState.CANCELLED  # terminal, not awaiting a payment forever

    event = {"id": "evt_p", "type": "payment_intent.succeeded", "created": int(time.time())}
    apply_stripe_event(book, {**event, "data": {"object": _intent("pi_own", order.id, 3500)}}, "webhook")
    settled = book.get(order.id)
    assert settled.state == OrderState.CANCELLED and settled.refund_owed  # the other 25.00 goes back
    assert (settled.paid_cents, settled.refunded_cents) == (3500, 1000)


def _order_awaiting_payment() -> Order:
    return Order(
        style_id="ink_etching",
        product_id="poster_a3",
        upload_key="k",
        payments="stripe",
        amount_cents=3500,
        payment_intent_id="pi_own",
    )


def _intent(intent_id: str, order_id: str, amount: int) -> dict:
    return {
        "object": "payment_intent",
        "id": intent_id,
        "amount": amount,
        "amount_received": amount,
        "currency": "usd",
        "metadata": {"order_id": order_id},
    }


def _charge(intent_id: str, order_id: str, amount: int, refunded: int) -> dict:
    return {
        "object": "charge",
        "payment_intent": intent_id,
        "amount": amount,
        "amount_refunded": refunded,
        "refunded": refunded >= amount,
        "currency": "usd",
        "metadata": {"order_id": order_id},
        "refunds": {"data": [{"id": f"re_{intent_id}"}]},
    }


# -- malformed and mistimed webhooks ---------------------------------------------------------


def _malformed_events(order: dict) -> dict[str, dict | bytes]:
    good = _succeeded("evt_shape", order)
    obj = good["data"]["object"]
    without = {key: {k: v for k, v in good.items() if k != key} for key in ("data", "id", "type", "created")}
    return {
        **{f"no {key}": event for key, event in without.items()},
        "data.object a list": {**good, "data": {"object": [obj]}},
        "data.object a string": {**good, "data": {"object": "pi_1"}},
        "data a string": {**good, "data": "nothing"},
        "created a string": {**good, "created": "yesterday"},
        "id a number": {**good, "id": 42},
        "id with a NUL": {**good, "id": "evt_\u0000"},
        "amount beyond 32 bits": {**good, "data": {"object": {**obj, "amount": 2**40}}},
        "refund ids not objects": {
            **good,
            "type": "charge.refunded",
            "data": {"object": {**obj, "object": "charge", "amount_refunded": 1, "refunds": {"data": ["re_1"]}}},
        },
        "amount a string": {**good, "data": {"object": {**obj, "amount": "3500"}}},
        "no currency": {**good, "data": {"object": {k: v for k, v in obj.items() if k != "currency"}}},
        "metadata a list": {**good, "data": {"object": {**obj, "metadata": ["order_id"]}}},
        "refund without amounts": {
            **good,
            "type": "charge.refunded",
            "data": {"object": {"object": "charge", "payment_intent": 7}},
        },
        "a JSON list": b"[1, 2]",
        "not JSON": b"{not json",
    }


def test_a_signed_but_malformed_event_is_a_400_and_changes_nothing(shop, face_images):
    _, url, _ = shop
    order = _order(shop, face_images)
    for name, event in _malformed_events(order).items():
        answer = _post_signed(url, event)
        assert answer.status_code == 400, (name, answer.text)
        body = answer.json()
        assert body["code"] == "malformed_event" and body["message"].startswith("the Stripe event is malformed"), name
    assert _payment_event_count(_database(shop)) == 0
    assert _get(shop, order["id"])["events"][-1]["to_state"] == "awaiting_payment"

    # the same event, well formed, is applied: the 400s were about the shape alone
    answer = _post_signed(url, _succeeded("evt_shape", order))
    assert answer.status_code == 200 and answer.json()["outcome"] == "order paid"


def test_a_webhook_dated_in_the_future_is_refused(shop, face_images):
    _, url, _ = shop
    order = _order(shop, face_images)
    ahead = _post_signed(url, _succeeded("evt_ahead", order), at=int(time.time()) + 3600)
    assert ahead.status_code == 400 and ahead.json()["code"] == "bad_signature"
    assert "in the future" in ahead.json()["message"]
    assert _get(shop, order["id"])["state"] == "awaiting_payment" and _payment_event_count(_database(shop)) == 0

    # a clock a little ahead of ours is within the tolerance
    near = _post_signed(url, _succeeded("evt_near", order), at=int(time.time()) + 60)
    assert near.status_code == 200 and near.json()["outcome"] == "order paid"


def test_check_event_names_what_is_wrong():
    with pytest.raises(MalformedEvent, match="created is not a Unix time"):
        check_event({"id": "evt_1", "type": "x", "created": True, "data": {"object": {}}})
    with pytest.raises(MalformedEvent, match="currency"):
        check_event(
            {
                "id": "evt_1",
                "type": "payment_intent.succeeded",
                "created": 1,
                "data": {"object": {"id": "pi", "amount": 1, "currency": "dollars"}},
            }
        )
    assert check_event({"id": "evt_1", "type": "customer.created", "created": 1, "data": {"object": {}}})["id"] == "evt_1"
    assert (money(3500, "usd"), money(3500, "jpy"), money(5, "eur")) == ("35.00 USD", "3500 JPY", "0.05 EUR")


# -- the reconciliation sensor ------------------------------------------------------------


def test_reconciliation_applies_the_same_rules_and_retries_an_owed_stray_refund(
    shop, stripe_base, stripe_client, face_images, monkeypatch
):
    order = _order(shop, face_images)  # no webhook registered: the sensor sees every event first
    amount = order["payment"]["amount_cents"]
    database, book = _database(shop), SqlOrderBook(_database(shop))

    # a stray payment before the real one, whose refund failed when it was first tried
    early = _stray_payment(stripe_client, order["id"])
    early_event = next(e for e in stripe_client.v1.events.list().data if e.data.object.id == early.id)
    assert apply_stripe_event(book, early_event.to_dict(), "webhook").stray_payment == early.id
    unreachable = StripeGateway(API_KEY, api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PaymentError, match="Stripe could not refund"):
        refund_stray_payment(book, unreachable, early.id)
    assert _stray_row(database, early.id).attempts == 1 and _refunds(stripe_client, early.id) == []

    _pay(stripe_client, order)
    late = _stray_payment(stripe_client, order["id"], amount=3500)  # a second full payment
    time.sleep(1)

    # and one malformed event among Stripe's: skipped, the rest applied
    real_events = StripeGateway.events_since
    broken = {"id": "evt_broken", "type": "payment_intent.succeeded", "created": int(time.time()), "data": {"object": "?"}}
    monkeypatch.setattr(StripeGateway, "events_since", lambda self, *a: [*real_events(self, *a), broken])

    with dg.build_sensor_context(resources=_sensor_resources(shop, stripe_base)) as context:
        first = stripe_reconciliation(context)
        assert "2 newly applied; 0 refund(s) issued, 2 stray payment(s) refunded" in first.skip_message, first.skip_message
        second = stripe_reconciliation(context)
        assert "0 newly applied; 0 refund(s) issued, 0 stray payment(s) refunded" in second.skip_message, second.skip_message

    settled = _get(shop, order["id"])
    assert settled["state"] == "paid" and settled["payment"]["paid_cents"] == amount
    assert [e["to_state"] for e in settled["events"]] == ["awaiting_payment", "paid"]
    assert len(_refunds(stripe_client, early.id)) == 1 and len(_refunds(stripe_client, late.id)) == 1
    assert _stray_row(database, early.id).attempts == 2
    assert _net_charged(stripe_client, order["id"]) == amount
    with database.session() as session:
        assert session.get(PaymentEventRow, "evt_broken") is None


# -- the schema ---------------------------------------------------------------------------


def test_the_stray_payments_migration_makes_the_mapped_table_and_can_be_undone(database_url):
    database = Database(database_url)
    database.migrate()
    assert database.revision() == "0011"
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with database.engine.begin() as connection:
        config = alembic_config(database.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert "stray_payments" not in inspect(database.engine).get_table_names()
    database.migrate()
    assert "stray_payments" in inspect(database.engine).get_table_names()
    database.dispose()
