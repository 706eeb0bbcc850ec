"""Credit packs bought through Stripe (localstripe on loopback): a pack's credits arrive once,
whatever Stripe's webhooks do (repeated, late, out of order, through the reconciliation
sensor), a refund takes back what is left of them, and the money the purchases record is
what Stripe took less what it gave back.

localstripe sends `payment_intent.succeeded` webhooks but no `charge.refunded`: a refund is
made in localstripe, and its `charge.refunded` event carries localstripe's own charge."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import dagster as dg
import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select

from photogen_pipelines.catalog import load_products
from photogen_pipelines.credits import wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.tables import CustomerRow, PackPurchaseRow, StrayPaymentRow
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.payments import packs
from photogen_pipelines.payments.stripe_payments import EventStatus, PaymentError, StripeGateway, apply_stripe_event
from sensors import stripe_reconciliation
from tests import test_payments
from tests.api_helpers import make_app, make_settings, new_key
from tests.invariants import CreditRecords, StripeRecords, check_shop, money_moved_once, packs_paid, wallets_add_up
from tests.servers import free_port, wait_until
from tests.test_payments import API_KEY, CARD, _database, _pay, _post_signed, _refunds, _register_webhook, _sensor_resources

shop = test_payments.shop  # the fixture: the API with payments on (localstripe), served over HTTP, and a storefront key

WELCOME = 10  # the default plan's welcome credits (products.yaml)


# -- helpers -----------------------------------------------------------------------------


def _buy(shop, ref: str, pack_id: str = "starter", key: str | None = None, auth: dict | None = None) -> requests.Response:
    _, url, shop_auth = shop
    headers = {**(auth or shop_auth), "Idempotency-Key": key or str(uuid.uuid4())}
    return requests.post(f"{url}/v1/customers/{ref}/pack-purchases", headers=headers, json={"pack_id": pack_id}, timeout=30)


def _bought(shop, ref: str, pack_id: str = "starter") -> dict:
    response = _buy(shop, ref, pack_id)
    assert response.status_code == 201, response.text
    return response.json()


def _get(shop, purchase_id: str) -> dict:
    _, url, auth = shop
    return requests.get(f"{url}/v1/pack-purchases/{purchase_id}", headers=auth, timeout=10).json()


def _pay_purchase(stripe_client, purchase: dict) -> None:
    """What Stripe.js does in the customer's browser (test_payments._pay, for a purchase)."""
    _pay(
        stripe_client,
        {"payment": {"payment_intent_id": purchase["payment_intent_id"], "client_secret": purchase["client_secret"]}},
    )


def _succeeded_event(stripe_client, intent_id: str) -> dict:
    return next(
        e.to_dict()
        for e in stripe_client.v1.events.list(params={"limit": 100}).data
        if e.type == "payment_intent.succeeded" and e.data.object.id == intent_id
    )


def _refund(stripe_client, intent_id: str, amount: int | None = None) -> dict:
    """Refund in localstripe, and the `charge.refunded` event Stripe would send for it: the
    charge as localstripe has it now (amount_refunded: everything refunded so far)."""
    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent_id, **({"amount": amount} if amount else {})})
    charge = stripe_client.v1.payment_intents.retrieve(intent_id).latest_charge
    charge = stripe_client.v1.charges.retrieve(charge if isinstance(charge, str) else charge.id).to_dict()
    return {
        "id": f"evt_{refund.id}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {"object": charge},
    }


def _again(event: dict) -> dict:
    """The same event under another id: what the keys, not the event log, must stop."""
    return {**event, "id": f"{event['id']}_again"}


def _wallet(database, ref: str) -> tuple[int, list[wallet.Entry]]:
    with database.session() as session:
        customer = session.scalars(select(CustomerRow).where(CustomerRow.ref == ref)).one()
        return wallet.balance(session, customer.id), wallet.entries(session, customer.id)


def _spend(database, ref: str, credits: int) -> None:
    """An order's worth of credits spent, as credit_orders.charge writes it."""
    with database.session() as session:
        customer = session.scalars(select(CustomerRow).where(CustomerRow.ref == ref).with_for_update()).one()
        wallet.post(session, customer, EntryKind.SPEND, -credits, key=f"spend:test-{uuid.uuid4().hex}", reason="a test order")


def _packs_hold(database, stripe_client) -> int:
    """The shop's invariants over the wallets and the packs, against localstripe's own records
    (tests/invariants.py; no orders here). Returns the money the purchases keep: paid less refunded."""
    credits = CreditRecords.read(database)
    report = check_shop([], stripe=StripeRecords.read(stripe_client), pipeline_ran=False, credits=credits)
    assert report.holds, "\n".join(report.lines())
    return sum(p.paid_cents - p.refunded_cents for p in credits.packs)


def _kinds(entries: list[wallet.Entry], purchase_id: str) -> list[tuple[str, int]]:
    return [(e.kind.value, e.amount) for e in entries if e.pack_purchase_id == purchase_id]


# -- through the API and localstripe's webhooks ----------------------------------------------


def test_a_pack_is_credited_once_however_often_its_payment_is_reported(shop, stripe_base, stripe_client):
    settings, url, auth = shop
    _register_webhook(stripe_base, url)
    database = _database(shop)
    listed = requests.get(f"{url}/v1/packs", headers=auth, timeout=10).json()
    assert [(p["id"], p["credits"], p["amount_cents"], p["currency"]) for p in listed][0] == ("starter", 100, 2900, "usd")

    first = _buy(shop, "alice", key="checkout-1")
    assert first.status_code == 201, first.text
    purchase = first.json()
    assert (purchase["state"], purchase["credits"], purchase["amount_cents"], purchase["paid_cents"]) == (
        "awaiting_payment",
        100,
        2900,
        0,
    )
    assert purchase["client_secret"].startswith(purchase["payment_intent_id"])
    intent = stripe_client.v1.payment_intents.retrieve(purchase["payment_intent_id"])
    assert (int(intent.amount), intent.currency, intent.metadata["pack_purchase_id"]) == (2900, "usd", purchase["id"])
    retry = _buy(shop, "alice", key="checkout-1")
    assert retry.status_code == 200
    assert {k: retry.json()[k] for k in ("id", "payment_intent_id", "client_secret")} == {
        k: purchase[k] for k in ("id", "payment_intent_id", "client_secret")
    }
    assert _wallet(database, "alice")[0] == WELCOME  # the customer, made on first mention, has no pack's credits yet

    _pay_purchase(stripe_client, purchase)
    paid = wait_until(lambda: (p := _get(shop, purchase["id"]))["state"] == "paid" and p, 30, "the webhook")
    assert paid["paid_cents"] == 2900 and paid["client_secret"] is None

    # Stripe delivers it again, under another id too, from four threads at once, and the sensor reads it
    event = _succeeded_event(stripe_client, purchase["payment_intent_id"])
    assert _post_signed(url, event).json()["outcome"].startswith("duplicate")
    book = SqlOrderBook(database)
    results = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(apply_stripe_event(book, {**event, "id": f"evt_twin{n}"}, "webhook")))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.outcome for r in results) == ["payment already recorded"] * 4
    with dg.build_sensor_context(resources=_sensor_resources(shop, stripe_base)) as context:
        stripe_reconciliation(context)

    balance, entries = _wallet(database, "alice")
    assert balance == WELCOME + 100
    assert _kinds(entries, purchase["id"]) == [("purchase", 100)]
    assert _packs_hold(database, stripe_client) == 2900


def test_a_payment_the_webhook_missed_is_credited_by_the_reconciliation_sensor_once(shop, stripe_base, stripe_client):
    _, url, _ = shop  # no webhook registered: the sensor sees the payment first
    purchase = _bought(shop, "bea", "pro")
    _pay_purchase(stripe_client, purchase)
    time.sleep(1)
    assert _get(shop, purchase["id"])["state"] == "awaiting_payment"

    with dg.build_sensor_context(resources=_sensor_resources(shop, stripe_base)) as context:
        first = stripe_reconciliation(context)
        assert "newly applied" in first.skip_message
        second = stripe_reconciliation(context)
        assert "0 newly applied" in second.skip_message, second.skip_message
    assert _get(shop, purchase["id"])["state"] == "paid"
    late = _post_signed(url, _succeeded_event(stripe_client, purchase["payment_intent_id"]))  # the webhook, back up
    assert late.json()["outcome"].startswith("duplicate")

    balance, entries = _wallet(_database(shop), "bea")
    assert balance == WELCOME + 500 and _kinds(entries, purchase["id"]) == [("purchase", 500)]
    assert _packs_hold(_database(shop), stripe_client) == 7900


@pytest.mark.parametrize(("refunded", "clawed", "state"), [(2900, 100, "refunded"), (1450, 50, "paid")])
def test_a_refund_that_overtakes_its_payment_leaves_only_the_unrefunded_share(shop, stripe_client, refunded, clawed, state):
    _, url, _ = shop  # no webhook registered: the test delivers Stripe's events, refund first
    purchase = _bought(shop, "cleo")
    _pay_purchase(stripe_client, purchase)
    refund = _refund(stripe_client, purchase["payment_intent_id"], refunded)

    assert _post_signed(url, refund).json()["outcome"].startswith("refund recorded")
    early = _get(shop, purchase["id"])
    assert (early["refunded_cents"], early["paid_cents"]) == (refunded, 0)
    assert _wallet(_database(shop), "cleo")[0] == WELCOME  # nothing credited, nothing taken

    paid = _post_signed(url, _succeeded_event(stripe_client, purchase["payment_intent_id"])).json()
    assert f"refunded first, {clawed} clawed back" in paid["outcome"], paid
    for event in (refund, _again(refund)):
        assert _post_signed(url, event).json()["outcome"] in ("duplicate: already applied", "refund already recorded")

    settled = _get(shop, purchase["id"])
    assert (settled["state"], settled["paid_cents"], settled["refunded_cents"]) == (state, 2900, refunded)
    balance, entries = _wallet(_database(shop), "cleo")
    assert _kinds(entries, purchase["id"]) == [("purchase", 100), ("clawback", -clawed)]
    assert balance == WELCOME + 100 - clawed
    assert _packs_hold(_database(shop), stripe_client) == 2900 - refunded


def test_a_refund_claws_back_only_unspent_credits_in_proportion(shop, stripe_base, stripe_client):
    _, url, _ = shop
    _register_webhook(stripe_base, url)
    database = _database(shop)
    starter, pro = _bought(shop, "dana"), _bought(shop, "eve", "pro")
    for purchase in (starter, pro):
        _pay_purchase(stripe_client, purchase)
        wait_until(lambda p=purchase: _get(shop, p["id"])["state"] == "paid", 30, "the webhook")
    _spend(database, "dana", 40)  # the 10 welcome credits first, then 30 of the pack's: 70 of it left
    assert _wallet(database, "dana")[0] == WELCOME + 100 - 40

    # half refunded: half the pack (50) comes back from the 70 left
    half = _refund(stripe_client, starter["payment_intent_id"], 1450)
    assert "50 credits clawed back" in _post_signed(url, half).json()["outcome"]
    assert _wallet(database, "dana")[0] == 20
    # the rest: the other 50 are due, only 20 are left; the 30 spent stay spent
    rest = _refund(stripe_client, starter["payment_intent_id"], 1450)
    assert "20 credits clawed back" in _post_signed(url, rest).json()["outcome"]
    for event in (half, rest, _again(half), _again(rest)):  # repeated, and the older total arriving late
        assert _post_signed(url, event).json()["outcome"] in ("duplicate: already applied", "refund already recorded")
    balance, entries = _wallet(database, "dana")
    assert balance == 0 and _kinds(entries, starter["id"]) == [("purchase", 100), ("clawback", -50), ("clawback", -20)]
    done = _get(shop, starter["id"])
    assert (done["state"], done["paid_cents"], done["refunded_cents"]) == ("refunded", 2900, 2900)

    # 10.00 of 79.00 refunded: ceil(500 × 1000 / 7900) = 64 credits
    part = _refund(stripe_client, pro["payment_intent_id"], 1000)
    assert "64 credits clawed back" in _post_signed(url, part).json()["outcome"]
    assert _wallet(database, "eve")[0] == WELCOME + 500 - 64
    assert _get(shop, pro["id"])["state"] == "paid"
    assert _packs_hold(database, stripe_client) == (2900 - 2900) + (7900 - 1000)


def test_a_payment_that_does_not_pay_the_pack_in_full_adds_no_credits_and_is_refunded(shop, stripe_base, stripe_client):
    _, url, _ = shop
    _register_webhook(stripe_base, url)
    database = _database(shop)
    claimed, short = _bought(shop, "fay"), _bought(shop, "gus")

    # another PaymentIntent that names the purchase in its metadata: refunded, never credited
    method = stripe_client.v1.payment_methods.create(params={"type": "card", "card": CARD})
    stray = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2900,
            "currency": "usd",
            "metadata": {"pack_purchase_id": claimed["id"]},
            "payment_method": method.id,
            "confirm": True,
        }
    )
    wait_until(lambda: _refunds(stripe_client, stray.id), 30, "the stray payment's refund")
    assert _get(shop, claimed["id"])["state"] == "awaiting_payment"

    # the purchase's own intent collects less than the purchase asks for (its price rose after): short
    with database.session() as session:
        session.get(PackPurchaseRow, short["id"]).amount_cents = 4000
    _pay_purchase(stripe_client, short)
    (refund,) = wait_until(lambda: _refunds(stripe_client, short["payment_intent_id"]), 30, "the short payment's refund")
    assert int(refund.amount) == 2900
    charge = stripe_client.v1.charges.retrieve(refund.charge).to_dict()
    event = {"id": f"evt_{refund.id}", "type": "charge.refunded", "created": int(time.time()), "data": {"object": charge}}
    assert "does not pay pack purchase" in _post_signed(url, event).json()["outcome"]  # the stray's refund, not the pack's

    for ref, purchase, reason in (("fay", claimed, "not_the_orders_payment"), ("gus", short, "amount_short")):
        balance, entries = _wallet(database, ref)
        assert balance == WELCOME and _kinds(entries, purchase["id"]) == []
        intent = stray.id if ref == "fay" else short["payment_intent_id"]
        with database.session() as session:
            row = session.get(StrayPaymentRow, intent)
            assert (row.order_id, row.reason, row.amount) == (purchase["id"], reason, 2900) and row.refunded_at is not None
        settled = _get(shop, purchase["id"])  # unpaid: its money is the stray payment's, given back
        assert (settled["state"], settled["paid_cents"], settled["refunded_cents"]) == ("awaiting_payment", 0, 0)

    # every payment here is a stray one, refunded once and in full (Stripe's records); the packs
    # were paid nothing. (With Stripe's records packs_paid would flag the short intent's charge:
    # it expects a pack's own intent to pay its price, which only this test's repricing breaks.)
    stripe_records, credits = StripeRecords.read(stripe_client), CreditRecords.read(database)
    for count_and_violations in (money_moved_once([], stripe_records), packs_paid(credits), wallets_add_up(credits)):
        assert count_and_violations[1] == []
    assert sorted(stripe_records.charges) == sorted([stray.id, short["payment_intent_id"]])


# -- Stripe's events applied straight, in every order ------------------------------------------


def test_the_events_of_a_pack_in_any_order_and_repeated_end_the_same(orders_db, stripe_base, stripe_client):
    book, products = SqlOrderBook(orders_db), load_products()
    gateway = StripeGateway(API_KEY, api_base=stripe_base)
    for n, order in enumerate(itertools.permutations(range(3))):
        ref = f"perm{n}"
        bought = packs.buy_pack(orders_db, products, gateway, None, ref, "starter", f"key-{n}")
        intent_id = bought.purchase.payment_intent_id
        _pay(stripe_client, {"payment": {"payment_intent_id": intent_id, "client_secret": bought.client_secret}})
        events = [
            _succeeded_event(stripe_client, intent_id),
            _refund(stripe_client, intent_id, 1000),
            _refund(stripe_client, intent_id, 1900),
        ]
        for event in [events[i] for i in order] + [_again(e) for e in events]:
            assert apply_stripe_event(book, event, "webhook").status == EventStatus.APPLIED
        for event in events:
            assert apply_stripe_event(book, event, "reconciliation").status == EventStatus.DUPLICATE

        purchase = packs.get_purchase(orders_db, bought.purchase.id, None)
        assert (purchase.state, purchase.paid_cents, purchase.refunded_cents) == ("refunded", 2900, 2900), order
        balance, entries = _wallet(orders_db, ref)
        kinds = _kinds(entries, purchase.id)
        assert balance == WELCOME and kinds[0] == ("purchase", 100), (order, kinds)
        assert sum(amount for kind, amount in kinds if kind == "clawback") == -100, (order, kinds)
    assert _packs_hold(orders_db, stripe_client) == 0


def test_a_purchase_stripe_did_not_answer_for_gets_its_payment_intent_on_retry(orders_db, stripe_base, stripe_client):
    products = load_products()
    down = StripeGateway(API_KEY, api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PaymentError, match="Stripe could not create the payment") as refused:
        packs.buy_pack(orders_db, products, down, None, "kim", "pro", "retry-me")
    assert refused.value.code == "payment_provider_unavailable"  # the API's 503

    again = packs.buy_pack(orders_db, products, StripeGateway(API_KEY, api_base=stripe_base), None, "kim", "pro", "retry-me")
    intent = stripe_client.v1.payment_intents.retrieve(again.purchase.payment_intent_id)
    assert not again.created and again.client_secret.startswith(intent.id)
    assert (int(intent.amount), intent.metadata["pack_purchase_id"], intent.metadata["customer_ref"]) == (
        7900,
        again.purchase.id,
        "kim",
    )
    with orders_db.session() as session:
        assert len(session.scalars(select(PackPurchaseRow)).all()) == 1


# -- bad input, and who may buy ------------------------------------------------------------------


def test_buying_a_pack_refuses_bad_input_with_a_code(shop, tmp_path, database_url):
    settings, url, auth = shop
    unknown = _buy(shop, "hal", "platinum")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_pack")
    bare = requests.post(f"{url}/v1/customers/hal/pack-purchases", headers=auth, json={"pack_id": "starter"}, timeout=10)
    assert (bare.status_code, bare.json()["code"]) == (400, "idempotency_key_required")
    bought = _buy(shop, "hal", key="cart-7")
    assert bought.status_code == 201
    for other in (_buy(shop, "hal", "pro", key="cart-7"), _buy(shop, "ida", key="cart-7")):
        assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused"), other.text
    bad_ref = _buy(shop, "has space")
    assert (bad_ref.status_code, bad_ref.json()["code"]) == (422, "invalid_customer_ref")
    typo = requests.post(
        f"{url}/v1/customers/hal/pack-purchases", headers={**auth, "Idempotency-Key": "k"}, json={"pack": "starter"}, timeout=10
    )
    assert (typo.status_code, typo.json()["code"]) == (422, "invalid_request")
    with _database(shop).session() as session:
        assert len(session.scalars(select(PackPurchaseRow)).all()) == 1

    # only the storefront's API key buys, and a purchase is its own shop's
    token = _buy(shop, "hal", auth={"Authorization": "Bearer otk_not_a_key"})
    assert (token.status_code, token.json()["code"]) == (403, "api_key_required")
    assert requests.get(f"{url}/v1/packs", timeout=10).status_code == 401
    purchase_id = bought.json()["id"]
    other_shop = new_key(settings, "another shop")
    hidden = requests.get(f"{url}/v1/pack-purchases/{purchase_id}", headers=other_shop, timeout=10)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "pack_purchase_not_found")
    assert _get(shop, purchase_id)["id"] == purchase_id
    assert requests.get(f"{url}/v1/pack-purchases/pkp_nope", headers=auth, timeout=10).status_code == 404

    # a shop without payments sells no packs
    off = make_settings(tmp_path / "off", database_url)
    with TestClient(make_app(off), raise_server_exceptions=False) as client:
        answer = client.post(
            "/v1/customers/hal/pack-purchases", headers={**new_key(off), "Idempotency-Key": "k"}, json={"pack_id": "starter"}
        )
    assert (answer.status_code, answer.json()["code"]) == (422, "payments_off")


def test_parallel_retries_of_one_purchase_make_one(shop, stripe_client):
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(_buy(shop, "jo", key="same-cart"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({(a.json()["id"], a.json()["payment_intent_id"]) for a in answers}) == 1
    with _database(shop).session() as session:
        assert len(session.scalars(select(PackPurchaseRow)).all()) == 1
