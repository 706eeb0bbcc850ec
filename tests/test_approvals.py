"""The approval deadline: a reminder before it, then auto-approval or cancellation, by policy;
on the orders database (SQLite and PostgreSQL) and through the Dagster sensor."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.tables import WebhookEventRow
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, ProofScore, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.approvals import ApprovalPolicy, run_deadlines
from resources import ArtifactStorage, CatalogResource, OrdersDatabase, StoreConfig
from resources.fulfilment import ApprovalDeadline
from sensors.approvals import approval_deadlines

S = OrderState
HOUR = timedelta(hours=1)


def _waiting_order(book: SqlOrderBook, store: LocalArtifactStore, api_key_id: str | None, best: int = 1) -> Order:
    """An order whose two proofs passed the gate and wait for the customer's choice."""
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="k", variants=2, api_key_id=api_key_id))
    for state in (S.PAID, S.GENERATING, S.PROOFS_READY):
        book.transition(order.id, state)
    keys = OrderKeys(order.id)
    scores = [
        ProofScore(variant=v, round=0, strength=0.5, similarity=0.9 if v == best else 0.6, faces=1, passed=True) for v in (0, 1)
    ]
    for v in (0, 1):
        store.put_bytes(keys.proof(v), b"png")
    validation = Validation(
        order_id=order.id,
        threshold=0.4,
        encoder="sface",
        rounds=1,
        proofs={v: keys.proof(v) for v in (0, 1)},
        best_variant=best,
        scores=scores,
        rejected=False,
    )
    keys.save(store, validation)
    return book.get(order.id)


def _events(orders_db, order_id: str) -> list[WebhookEventRow]:
    with orders_db.session() as session:
        return list(session.scalars(select(WebhookEventRow).where(WebhookEventRow.order_id == order_id)).all())


@pytest.fixture
def store(tmp_path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def test_a_reminder_goes_out_once_before_the_deadline_then_the_best_proof_is_approved(orders_db, store):
    book = SqlOrderBook(orders_db)
    key, _ = create_api_key(orders_db, "shop")
    order = _waiting_order(book, store, key.id, best=1)
    policy = ApprovalPolicy(deadline=48 * HOUR, reminder_before=12 * HOUR, action="auto_approve")
    now = datetime.now(UTC)

    early = run_deadlines(book, store, policy, now + 30 * HOUR)
    assert early.reminded == [] and early.approved == []

    reminded = run_deadlines(book, store, policy, now + 37 * HOUR)
    assert reminded.reminded == [order.id]
    assert run_deadlines(book, store, policy, now + 40 * HOUR).reminded == []  # once
    reminder = [e for e in _events(orders_db, order.id) if e.type == "order.approval_reminder"]
    assert len(reminder) == 1
    deadline = datetime.fromisoformat(reminder[0].payload["data"]["approval"]["deadline"])
    assert abs(deadline - (book.get(order.id).events[-1].at + 48 * HOUR)) < timedelta(seconds=1)
    assert book.get(order.id).state == S.PROOFS_READY

    settled = run_deadlines(book, store, policy, now + 49 * HOUR)
    assert settled.approved == [order.id]
    after = book.get(order.id)
    assert after.state == S.APPROVED and after.approved_proof == 1  # the best identity score
    assert "auto-approved after 48 h" in after.reason


def test_the_cancel_policy_cancels_at_the_deadline_and_a_choice_made_in_time_is_left_alone(orders_db, store):
    book = SqlOrderBook(orders_db)
    late, chosen = _waiting_order(book, store, None), _waiting_order(book, store, None)
    book.update(chosen.id, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED, "proof 0 approved")))
    policy = ApprovalPolicy(deadline=2 * HOUR, reminder_before=timedelta(0), action="cancel")

    result = run_deadlines(book, store, policy, datetime.now(UTC) + 3 * HOUR)
    assert result.cancelled == [late.id] and result.reminded == []
    assert book.get(late.id).state == S.CANCELLED
    assert "cancelled by the shop's policy" in book.get(late.id).reason
    assert book.get(chosen.id).state == S.APPROVED and book.get(chosen.id).approved_proof == 0


def test_the_sensor_applies_the_shops_deadline(orders_db, store, tmp_path):
    book = SqlOrderBook(orders_db)
    order = _waiting_order(book, store, None)
    time.sleep(0.5)  # past a deadline of 0.36 s after its proofs_ready event
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "orders": OrdersDatabase(url=orders_db.url),
            "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
            "approval_deadline": ApprovalDeadline(deadline_hours=0.0001, reminder_hours=0, action="auto_approve"),
            "catalog": CatalogResource(),
        },
    )
    result = approval_deadlines(context)
    assert "1 auto-approved" in result.skip_message
    assert book.get(order.id).state == S.APPROVED and book.get(order.id).approved_proof == 1
