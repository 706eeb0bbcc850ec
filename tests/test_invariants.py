"""The shop's invariants (tests/invariants.py) hold of a shop where everything
happened once, and name every one that is broken. Money is read back from localstripe's own
records; files from a real artifact store on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from photogen_pipelines.orders.states import Order, OrderEvent, OrderState
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.retention import RetentionPolicy
from tests.invariants import FILES, MONEY, REPORT, RUNS, SETTLED_OR_WAITING, StripeRecords, check_shop

S = OrderState
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


@pytest.fixture
def client(stripe_client):
    return stripe_client  # localstripe, emptied for the test (conftest.py)


def _intent(client, amount: int, pay: bool = True) -> str:
    """A PaymentIntent, paid by card as a customer's browser pays it (or left unpaid)."""
    method = client.v1.payment_methods.create(params={"type": "card", "card": CARD})
    params = {"amount": amount, "currency": "usd", "payment_method_types": ["card"], "payment_method": method.id}
    intent = client.v1.payment_intents.create(params={**params, "confirm": pay})
    assert intent.status == ("succeeded" if pay else "requires_confirmation")
    return intent.id


def _refund(client, intent_id: str, amount: int | None = None) -> None:
    client.v1.refunds.create(params={"payment_intent": intent_id, **({"amount": amount} if amount else {})})


def _order(state: OrderState, days_ago: float = 1, **fields) -> Order:
    at = NOW - timedelta(days=days_ago)
    fields = {"style_id": "ink_etching", "product_id": "poster_a3", "upload_key": "uploads/u.png", **fields}
    order = Order(state=state, **fields)
    order.events = [OrderEvent(at=at, from_state=None, to_state=state)]
    return order


def _paid(client, state: OrderState, refunded: bool = False, **fields) -> Order:
    intent = _intent(client, 3500)
    if refunded:
        _refund(client, intent)
    return _order(state, payments="stripe", amount_cents=3500, payment_intent_id=intent, paid_cents=3500,
                  refunded_cents=3500 if refunded else 0, **fields)  # fmt: skip


def _files(store: LocalArtifactStore, order: Order, *names: str) -> None:
    for name in names:
        store.put_bytes(f"orders/{order.id}/{name}", b"x")


def test_a_shop_where_everything_happened_once_holds(client, tmp_path):
    store = LocalArtifactStore(tmp_path / "artifacts")
    ready = _paid(client, S.READY, approved_proof=1)
    _files(store, ready, "proofs/proof_0.png", "proofs/proof_1.png", "print/print_file.jpg", "print/manifest.json")
    refunded = _paid(client, S.REFUNDED, refunded=True)
    choosing = _paid(client, S.PROOFS_READY, approval="customer")
    _files(store, choosing, "proofs/proof_0.png")
    unpaid = _order(S.AWAITING_PAYMENT, payments="stripe", amount_cents=3500, payment_intent_id=_intent(client, 3500, pay=False))
    expired = _order(S.READY, days_ago=90, approved_proof=0)
    _files(store, expired, "print/print_file.jpg", "print/manifest.json")  # what retention keeps
    stray = _intent(client, 100)  # another payment naming an order: given back once
    _refund(client, stray)

    report = check_shop(
        [ready, refunded, choosing, unpaid, expired],
        stripe=StripeRecords.read(client),
        run_statuses={"r1": "SUCCESS", "r2": "FAILURE", "r3": "CANCELED"},
        store=store,
        policy=RetentionPolicy(days=30),
        now=NOW,
    )
    assert report.holds, "\n".join(report.lines())
    # four orders' own intents (the unpaid one too) and the stray one
    assert report.checked == {SETTLED_OR_WAITING: 5, MONEY: 5, RUNS: 3, FILES: 5}


def test_each_broken_invariant_is_named_with_what_broke_it(client, tmp_path):
    store = LocalArtifactStore(tmp_path / "artifacts")
    twice = _paid(client, S.REFUNDED, refunded=False, refund_id="re_1")
    _refund(client, twice.payment_intent_id, 1000)
    _refund(client, twice.payment_intent_id, 2500)  # the money back, in two refunds
    delivered_and_refunded = _paid(client, S.READY, refunded=True, approved_proof=0)
    _files(store, delivered_and_refunded, "proofs/proof_0.png", "print/print_file.jpg")
    never_charged = _order(S.PAID, payments="stripe", amount_cents=3500, paid_cents=3500,
                           payment_intent_id=_intent(client, 3500, pay=False))  # fmt: skip
    owes = _paid(client, S.FAILED)  # failed for good, the customer's money kept
    stuck = _order(S.GENERATING)
    no_print_file = _order(S.READY, approved_proof=0)
    _files(store, no_print_file, "proofs/proof_0.png")
    expired = _order(S.REJECTED, days_ago=90)
    _files(store, expired, "selfie/selfie.png")
    store.put_bytes("orders/ord_unknown/proofs/proof_0.png", b"x")
    stray = _intent(client, 100)  # never given back

    report = check_shop(
        [twice, delivered_and_refunded, never_charged, owes, stuck, no_print_file, expired],
        stripe=StripeRecords.read(client),
        run_statuses={"run_ok": "SUCCESS", "run_dead": "STARTED"},
        store=store,
        now=NOW,
    )
    broken = {(v.invariant, v.subject.split(" ")[0]) for v in report.violations}
    assert broken == {
        (MONEY, twice.id),  # refunded twice
        (MONEY, delivered_and_refunded.id),  # refunded though delivered
        (MONEY, never_charged.id),  # recorded paid, Stripe has no charge
        (MONEY, stray),  # a stray payment never given back
        (SETTLED_OR_WAITING, never_charged.id),  # left in paid
        (SETTLED_OR_WAITING, owes.id),  # owes its refund
        (SETTLED_OR_WAITING, stuck.id),  # left generating
        (RUNS, "run_dead"),
        (FILES, no_print_file.id),
        (FILES, expired.id),  # past retention with its selfie
        (FILES, "ord_unknown"),  # the folder of an order nobody knows
    }, "\n".join(report.lines())
    assert not report.holds
    assert any("2 refunds" in v.detail for v in report.violations if v.subject.startswith(twice.id))
    assert report.lines()[0].startswith("FAIL ")


def test_the_report_must_count_every_settled_order_once_under_its_style():
    ready, rejected = _order(S.READY), _order(S.REJECTED)
    fauve = _order(S.REFUNDED, style_id="fauve")
    waiting = _order(S.PROOFS_READY, approval="customer")  # not settled: not in the report
    orders = [ready, rejected, fauve, waiting]
    agreeing = {"orders": 3, "styles": [{"style_id": "ink_etching", "orders": 2}, {"style_id": "fauve", "orders": 1}]}
    assert check_shop(orders, report_json=agreeing).holds

    short = {"orders": 2, "styles": [{"style_id": "ink_etching", "orders": 2}]}  # lost the fauve order
    report = check_shop(orders, report_json=short)
    assert {(v.invariant, v.subject) for v in report.violations} == {(REPORT, "fauve"), (REPORT, "all styles")}


def test_an_order_with_the_print_provider_waits_on_it_and_keeps_its_print_file(tmp_path):
    store = LocalArtifactStore(tmp_path)
    submitted, shipped, lost = _order(S.SUBMITTED), _order(S.SHIPPED), _order(S.SUBMITTED)
    for order in (submitted, shipped):
        _files(store, order, "proofs/proof_0.png", "print/print_file.jpg", "print/manifest.json")
    _files(store, lost, "proofs/proof_0.png")  # the provider is still to download a file that is gone
    for order in (submitted, shipped, lost):
        order.approved_proof = 0
    report = check_shop([submitted, shipped, lost], store=store, policy=RetentionPolicy(days=30), now=NOW, pipeline_ran=True)
    assert report.checked[SETTLED_OR_WAITING] == 3
    assert [(v.invariant, v.subject) for v in report.violations] == [(FILES, lost.id)]
    assert "submitted without a print file" in report.violations[0].detail
