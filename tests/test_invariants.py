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


# -- credits: wallets, credit refunds, packs (on the orders database, SQLite and PostgreSQL) ------


def _credit_shop(database_url: str):
    from photogen_pipelines.db.database import Database

    database = Database(database_url)
    database.migrate()
    return database


def _customer(session, ref: str):
    from photogen_pipelines.catalog import load_products
    from photogen_pipelines.credits import customers

    return customers.ensure(session, load_products(), None, ref, plan="basic")[0]  # no welcome credits


def _raw(session, customer, kind: str, amount: int, key: str, **fields) -> int:
    """An entry written past the wallet's checks, as a bug (or a hand in the database) would."""
    from photogen_pipelines.credits.wallet import COUNTER_ACCOUNT, EntryKind
    from photogen_pipelines.db.tables import CreditEntryRow

    row = CreditEntryRow(customer_id=customer.id, kind=kind, amount=amount, counter_account=COUNTER_ACCOUNT[EntryKind(kind)],
                         idempotency_key=key, reason=key, created_at=fields.pop("created_at", NOW), **fields)  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def _pack(session, customer, pack_id: str, state: str, paid: int, refunded: int = 0, intent: str | None = None):
    from photogen_pipelines.db.tables import PackPurchaseRow

    session.add(PackPurchaseRow(id=pack_id, customer_id=customer.id, pack_id="starter", credits=100, amount_cents=2900,
                                currency="usd", payment_intent_id=intent, state=state, paid_cents=paid, refunded_cents=refunded,
                                idempotency_key=pack_id, request_hash="x" * 64, created_at=NOW, updated_at=NOW))  # fmt: skip
    session.flush()


def _credit_order(state: OrderState, paid: int, refunded: int = 0, **fields) -> Order:
    return _order(state, payments="credits", credits_price=paid, credits_paid=paid, credits_refunded=refunded, **fields)


def _a_shop_where_credits_moved_once(database) -> tuple[list[Order], StripeRecords]:
    """Alice: a pack bought through Stripe, an expiring grant that expired, a credit-paid
    order that failed and got its credits back once, one delivered. Bob: a pack never paid."""
    from photogen_pipelines.credits import wallet
    from photogen_pipelines.credits.wallet import EntryKind

    failed, ready = _credit_order(S.REFUNDED, 8, refunded=8), _credit_order(S.READY, 6)
    with database.session() as session:
        alice, bob = _customer(session, "alice"), _customer(session, "bob")
        _pack(session, alice, "pp_1", "paid", 2900, intent="pi_pack")
        wallet.post(session, alice, EntryKind.PURCHASE, 100, key="buy", reason="pack", pack_purchase_id="pp_1", now=NOW)
        wallet.post(session, alice, EntryKind.GRANT, 5, key="promo", reason="promo", expires_at=NOW + timedelta(hours=1), now=NOW)
        spend = wallet.post(session, alice, EntryKind.SPEND, -8, key=f"spend:{failed.id}", reason="", order_id=failed.id, now=NOW)
        wallet.post(session, alice, EntryKind.SPEND, -6, key=f"spend:{ready.id}", reason="", order_id=ready.id, now=NOW)
        wallet.post(session, alice, EntryKind.REFUND, 8, key=f"refund:{failed.id}", reason="failed", order_id=failed.id,
                    lot_id=spend.entry.id, now=NOW + timedelta(minutes=30))  # fmt: skip
        assert len(wallet.expire_due(session, alice, NOW + timedelta(hours=2))) == 1
        _pack(session, bob, "pp_2", "awaiting_payment", 0, intent="pi_unpaid")
    return [failed, ready], StripeRecords(charges={"pi_pack": [2900]}, refunds={})


@pytest.mark.parametrize("credits_used", [False, True])
def test_the_credit_invariants_hold_with_credits_and_trivially_without(database_url, credits_used):
    from tests.invariants import CREDIT_REFUNDS, PACK_MONEY, WALLETS, CreditRecords

    database = _credit_shop(database_url)
    try:
        orders, stripe = _a_shop_where_credits_moved_once(database) if credits_used else ([], StripeRecords({}, {}))
        report = check_shop(orders, stripe=stripe, credits=CreditRecords.read(database), pipeline_ran=False)
    finally:
        database.dispose()
    assert report.holds, "\n".join(report.lines())
    counts = (2, 2, 2) if credits_used else (0, 0, 0)
    assert report.checked == {MONEY: 0, **dict(zip((WALLETS, CREDIT_REFUNDS, PACK_MONEY), counts, strict=True))}
    if credits_used:  # the pack's PaymentIntent is the pack's: without the packs it looks like a stray payment
        strays = check_shop(orders, stripe=stripe, pipeline_ran=False).violations
        assert [(v.invariant, v.subject) for v in strays] == [(MONEY, "pi_pack")]


def test_each_broken_credit_invariant_is_named_with_what_broke_it(database_url):
    from tests.invariants import CREDIT_REFUNDS, PACK_MONEY, WALLETS, CreditRecords

    database = _credit_shop(database_url)
    try:
        orders, stripe = _a_shop_where_credits_moved_once(database)
        twice, overpaid, delivered = _credit_order(S.REFUNDED, 8, 8), _credit_order(S.FAILED, 6, 12), _credit_order(S.READY, 4)
        with database.session() as session:
            below, late, lot, refunds = (_customer(session, ref) for ref in ("below", "late", "lot", "refunds"))
            _raw(session, below, "spend", -50, "spend-nothing")  # spent credits it never had
            _raw(session, late, "grant", 10, "promo", expires_at=NOW - timedelta(days=1), created_at=NOW - timedelta(days=2))
            _raw(session, late, "spend", -10, "spend-expired")  # spent them after they expired: the lots cannot give them
            grant = _raw(session, lot, "grant", 5, "small")
            _raw(session, lot, "grant", 10, "big")
            _raw(session, lot, "expiry", -7, "expire-too-much", lot_id=grant)  # 7 expired of a lot of 5
            _raw(session, refunds, "grant", 20, "credits")
            for order in (twice, delivered):
                _raw(session, refunds, "spend", -order.credits_paid, f"spend:{order.id}", order_id=order.id)
            _raw(session, refunds, "refund", 8, f"refund:{twice.id}", order_id=twice.id)
            _raw(session, refunds, "refund", 8, f"refund-again:{twice.id}", order_id=twice.id)  # given back twice
            _raw(session, refunds, "refund", 4, f"refund:{delivered.id}", order_id=delivered.id)  # delivered, yet refunded
            _pack(session, refunds, "pp_short", "paid", 1000)  # paid less than its price
            _raw(session, refunds, "purchase", 100, "buy-short", pack_purchase_id="pp_short")
            _pack(session, refunds, "pp_over", "refunded", 2900, refunded=3000)  # refunded more than paid
            _raw(session, refunds, "purchase", 100, "buy-over", pack_purchase_id="pp_over")
            _pack(session, refunds, "pp_nothing", "paid", 2900)  # paid, its credits never posted
        stripe = StripeRecords(charges={"pi_pack": [2900, 2900]}, refunds={})  # Stripe charged alice's pack twice
        records = CreditRecords.read(database)
    finally:
        database.dispose()
    report = check_shop([*orders, twice, overpaid, delivered], stripe=stripe, credits=records, pipeline_ran=False)
    broken = {(v.invariant, v.subject) for v in report.violations}
    ids = {c: next(cid for cid, entries in records.entries.items() if any(e.reason == r for e in entries))
           for c, r in (("below", "spend-nothing"), ("late", "spend-expired"), ("lot", "expire-too-much"))}  # fmt: skip
    assert broken == {
        (WALLETS, ids["below"]),  # below zero, and lots that hold nothing against a balance of -50
        (WALLETS, ids["late"]),  # the lots still hold the expired 10; the balance is 0
        (WALLETS, ids["lot"]),  # a lot at -2
        (CREDIT_REFUNDS, twice.id),
        (CREDIT_REFUNDS, overpaid.id),
        (CREDIT_REFUNDS, delivered.id),
        (PACK_MONEY, "pp_short"),
        (PACK_MONEY, "pp_over"),
        (PACK_MONEY, "pp_nothing"),
        (PACK_MONEY, "all packs"),
        (PACK_MONEY, "pp_1"),  # Stripe's two charges
    }, "\n".join(report.lines())
    details = {(v.subject, v.detail) for v in report.violations}
    assert (ids["below"], "balance -50, below zero") in details
    assert (ids["late"], "lots hold 10 credits, the balance is 0") in details
    assert (twice.id, "2 refunds: [8, 8]") in details and (overpaid.id, "12 credits refunded of 6 paid") in details
    assert ("pp_nothing", "paid pack of 100 credits, posted []") in details
    # a balance the database sums otherwise than the entries read (a read torn between them)
    torn = CreditRecords(records.entries, {**records.balances, ids["lot"]: 99}, [])
    torn_report = check_shop([], credits=torn, pipeline_ran=False)
    assert any("balance 99, its entries sum to 8" in v.detail for v in torn_report.violations)
