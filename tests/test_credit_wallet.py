"""The credit wallet on a real orders database (SQLite, and PostgreSQL in the slow half):
its entries balance, it never goes negative, lots expire and come back in order, and a
credit-paid order that will not be delivered gets its credits back exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import dagster as dg
import pytest

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.clock import utc_now
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.tables import UploadRow
from photogen_pipelines.errors import BadInput, Conflict, PaymentRequired
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.orders.uploads import Upload
from photogen_pipelines.payments.stripe_payments import refund_order
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest, Terms, place_order
from resources import OrdersDatabase
from sensors import credit_settlements

PRODUCTS, STYLES = load_products(), load_styles()


@pytest.fixture
def book(orders_db):
    return SqlOrderBook(orders_db)


def _customer(db, ref="alice", plan=None):
    with db.session() as session:
        return wallet.open_wallet(session, PRODUCTS, None, ref, plan)


def _post(db, ref, kind, amount, key, **kw):
    with db.session() as session:
        row = customers.get(session, None, ref, lock=True)
        return wallet.post(session, row, kind, amount, key=key, reason="test", **kw)


def _state(db, ref="alice"):
    with db.session() as session:
        row = customers.get(session, None, ref)
        entries = wallet.entries(session, row.id)
        return wallet.balance(session, row.id), entries, wallet.lots_of(entries)


def _upload(db) -> Upload:
    now = utc_now()
    with db.session() as session:
        session.add(
            UploadRow(
                id="upl_t",
                storage_key="uploads/t.png",
                sha256="0" * 64,
                width=1,
                height=1,
                source_format="png",
                source_bytes=1,
                face_score=0.9,
                api_key_id=None,
                created_at=now,
            )
        )
    return Upload("upl_t", "uploads/t.png", 1, 1, "png", 1, 0.9, None, now)


def _credit_order(book, upload, key, ref="alice", tier="fast"):
    request = PlacementRequest(
        OrderRequest(style_id="ink_etching", product_id="poster_12x18", tier=tier),
        upload,
        None,
        key,
        terms=Terms(payment="credits", customer_ref=ref),
    )
    return place_order(book, STYLES, PRODUCTS, None, request).order


def test_a_new_customer_gets_the_plan_welcome_credits_once(orders_db):
    _customer(orders_db)
    _customer(orders_db)  # named again: no second welcome
    balance, entries, lots = _state(orders_db)
    assert balance == 10 == lots.total
    assert [(e.kind, e.amount, e.counter_account) for e in entries] == [(EntryKind.GRANT, 10, "shop:grants")]


def test_a_movement_happens_once_per_key_and_never_below_zero(orders_db):
    _customer(orders_db)
    first = _post(orders_db, "alice", EntryKind.ADJUSTMENT, 5, "fix-1")
    again = _post(orders_db, "alice", EntryKind.ADJUSTMENT, 5, "fix-1")
    assert first.created and not again.created and again.entry.id == first.entry.id
    with pytest.raises(Conflict):
        _post(orders_db, "alice", EntryKind.ADJUSTMENT, 7, "fix-1")
    with pytest.raises(PaymentRequired) as refused:
        _post(orders_db, "alice", EntryKind.ADJUSTMENT, -16, "fix-2")
    assert refused.value.code == "insufficient_credits" and refused.value.details == {"balance": 15, "needed": 16}
    with pytest.raises(BadInput):
        _post(orders_db, "alice", EntryKind.SPEND, 3, "wrong-way")
    assert _state(orders_db)[0] == 15


def test_spends_take_the_first_to_expire_and_an_expired_grant_leaves_what_is_left(orders_db):
    _customer(orders_db)  # 10 that never expire
    soon = utc_now() + timedelta(days=1)
    grant = _post(orders_db, "alice", EntryKind.GRANT, 8, "promo", expires_at=soon)
    _post(orders_db, "alice", EntryKind.SPEND, -6, "spend-1")  # from the promo: it expires first
    _, _, lots = _state(orders_db)
    assert lots.lots[grant.entry.id].remaining == 2 and lots.total == 12

    later = soon + timedelta(seconds=1)
    with orders_db.session() as session:
        assert wallet.customers_with_due_expiries(session, later) == [customers.get(session, None, "alice").id]
        written = wallet.expire_due(session, customers.get(session, None, "alice", lock=True), later)
        assert [(e.kind, e.amount, e.lot_id) for e in written] == [(EntryKind.EXPIRY, -2, grant.entry.id)]
        assert wallet.expire_due(session, customers.get(session, None, "alice", lock=True), later) == []
        assert wallet.customers_with_due_expiries(session, later) == []
    balance, entries, lots = _state(orders_db)
    assert balance == 10 == lots.total == sum(e.amount for e in entries)
    assert {e.counter_account for e in entries} == {"shop:grants", "shop:earned", "shop:expired"}


def test_parallel_spends_on_one_wallet_take_exactly_what_it_affords(orders_db):
    _customer(orders_db)  # 10 credits: five spends of 2

    def spend(i):
        try:
            _post(orders_db, "alice", EntryKind.SPEND, -2, f"spend-{i}")
            return "spent"
        except PaymentRequired as refused:
            return refused.code

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(spend, range(16)))
    assert outcomes.count("spent") == 5 and outcomes.count("insufficient_credits") == 11
    balance, entries, lots = _state(orders_db)
    assert balance == 0 == lots.total and len(entries) == 6


def test_a_failed_credit_order_gets_its_credits_back_once_into_the_lots_they_came_from(orders_db, book):
    upload = _upload(orders_db)
    soon = utc_now() + timedelta(days=3)
    _customer(orders_db)
    promo = _post(orders_db, "alice", EntryKind.GRANT, 6, "promo", expires_at=soon)
    order = _credit_order(book, upload, "o-1")  # fast 12x18: 6 credits, from the expiring promo
    assert (order.state, order.payments, order.credits_paid) == (OrderState.PAID, "credits", 6)
    lifecycle.reject(book, order.id, "no_face: the selfie shows nobody")

    with ThreadPoolExecutor(4) as pool:  # the sensors and a retry asking at once
        list(pool.map(lambda _: refund_order(book, None, order.id), range(4)))
    settled = book.get(order.id)
    assert settled.state == OrderState.REFUNDED and settled.credits_refunded == 6
    assert settled.reason == "6 credits refunded to the customer's wallet"
    balance, entries, lots = _state(orders_db)
    assert [e.kind for e in entries].count(EntryKind.REFUND) == 1
    assert balance == 16 == lots.total
    assert lots.lots[promo.entry.id].remaining == 6  # back where they came from: they still expire


def test_the_reroll_policy_grants_credits_that_expire_instead_of_a_refund(orders_db, book):
    upload = _upload(orders_db)
    reroll = PRODUCTS.model_copy(update={"credits": PRODUCTS.credits.model_copy(update={"on_failure": "reroll"})})
    request = PlacementRequest(
        OrderRequest(style_id="ink_etching", product_id="poster_12x18", tier="fast"),
        upload,
        None,
        "o-r",
        terms=Terms(payment="credits", customer_ref="alice"),
    )
    order = place_order(book, STYLES, reroll, None, request).order
    assert order.reroll_days == 7
    lifecycle.fail(book, order.id, "print_job failed")
    refund_order(book, None, order.id)
    _, entries, _ = _state(orders_db)
    granted = entries[-1]
    assert (granted.kind, granted.amount, granted.order_id) == (EntryKind.GRANT, 6, order.id)
    assert timedelta(days=6, hours=23) < granted.expires_at - utc_now() <= timedelta(days=7)
    assert "re-roll" in book.get(order.id).reason


def test_the_credit_settlement_sensor_refunds_a_rejected_credit_order_without_stripe(orders_db, book):
    upload = _upload(orders_db)
    _customer(orders_db)
    order = _credit_order(book, upload, "o-s")
    lifecycle.reject(book, order.id, "identity lost in every round")
    _customer(orders_db, "bob")  # a grant that expired while bob ordered nothing: the sensor writes its expiry
    _post(orders_db, "bob", EntryKind.GRANT, 3, "old-promo", expires_at=utc_now() - timedelta(seconds=1))
    resources = {"orders": OrdersDatabase(url=orders_db.url)}
    with dg.build_sensor_context(resources=resources) as context:
        first = credit_settlements(context)
        second = credit_settlements(context)
    assert first.skip_message.startswith("1 credit-paid order(s) refunded, 1 expiry(ies) written")
    assert second.skip_message.startswith("0 credit-paid order(s) refunded, 0 expiry(ies) written")
    assert book.get(order.id).state == OrderState.REFUNDED
    assert _state(orders_db)[0] == 10
    balance, entries, _ = _state(orders_db, "bob")
    assert balance == 10 and [(e.kind, e.amount) for e in entries][-1] == (EntryKind.EXPIRY, -3)
