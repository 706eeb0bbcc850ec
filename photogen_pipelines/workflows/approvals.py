"""The approval deadline: proofs nobody chooses from do not wait forever.

An order whose proofs wait for the customer gets an `order.approval_reminder` event for
the storefront some hours before the shop's deadline, once; at the deadline its best
proof (the best identity score) is approved for it, or, by the shop's policy, it is
cancelled and the refund follows (the payments sensor refunds cancelled orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.tables import OrderEventRow, OrderRow
from photogen_pipelines.errors import IllegalTransition
from photogen_pipelines.orders import lifecycle, outbox
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, Validation
from photogen_pipelines.storage.stores import ArtifactStore

S = OrderState


@dataclass(frozen=True)
class ApprovalPolicy:
    deadline: timedelta = timedelta(hours=48)
    reminder_before: timedelta = timedelta(hours=12)
    action: Literal["auto_approve", "cancel"] = "auto_approve"

    def __post_init__(self) -> None:
        if self.deadline <= timedelta(0):
            raise ValueError("the approval deadline must be positive")

    def due_at(self, since: datetime) -> datetime:
        return since + self.deadline


def awaiting_approval(
    book: SqlOrderBook, ready_before: datetime, limit: int, unreminded: bool = False
) -> list[tuple[str, datetime]]:
    """Orders in proofs_ready since before `ready_before` (their latest proofs_ready move),
    longest waiting first, only those not reminded yet with `unreminded`: (order id, waiting since)."""
    since = func.max(OrderEventRow.at)
    query = (
        select(OrderRow.id, since.label("since"))
        .join(OrderEventRow, OrderEventRow.order_id == OrderRow.id)
        .where(OrderRow.state == S.PROOFS_READY.value, OrderEventRow.to_state == S.PROOFS_READY.value)
        .group_by(OrderRow.id)
        .having(since < ready_before)
        .order_by(since, OrderRow.id)
        .limit(limit)
    )
    if unreminded:
        query = query.where(OrderRow.approval_reminded_at.is_(None))
    with book.database.session() as session:
        return [(order_id, as_utc(at)) for order_id, at in session.execute(query).all()]


def waiting_since(order: Order) -> datetime | None:
    return max((e.at for e in order.events if e.to_state == S.PROOFS_READY), default=None)


def remind(book: SqlOrderBook, order_id: str, policy: ApprovalPolicy, now: datetime) -> bool:
    """Tell the storefront, once, that the customer's proofs wait and when the deadline
    falls (in the transaction that marks the order reminded); True when it was sent now."""
    with book.transaction() as transaction:
        sent = False

        def mark(order: Order) -> None:
            nonlocal sent
            since = waiting_since(order)
            if order.state != S.PROOFS_READY or order.approval_reminded_at is not None or since is None:
                return
            order.approval_reminded_at = now
            if order.api_key_id is not None:
                data = {"approval": {"deadline": policy.due_at(since).isoformat(), "action_at_deadline": policy.action}}
                outbox.record_event(transaction.session, order.api_key_id, outbox.APPROVAL_REMINDER, order, data=data, at=now)
            sent = True

        transaction.update(order_id, mark)
    return sent


def settle_at_deadline(book: SqlOrderBook, store: ArtifactStore, order_id: str, policy: ApprovalPolicy) -> Order | None:
    """The deadline passed: approve the best proof, or cancel (the refund follows). None
    when the customer acted first."""
    hours = round(policy.deadline.total_seconds() / 3600, 1)
    try:
        if policy.action == "cancel":
            return lifecycle.cancel(book, order_id, f"no proof approved within {hours:g} h: cancelled by the shop's policy")
        best = OrderKeys(order_id).load(store, Validation).best_variant
        if best is None:
            return lifecycle.cancel(book, order_id, f"no proof approved within {hours:g} h and none to approve for it")
        reason = f"auto-approved after {hours:g} h without a choice: proof {best} has the best identity score"
        return lifecycle.approve(book, store, order_id, best, reason=reason)
    except IllegalTransition:
        return None  # approved or cancelled by the customer a moment ago


@dataclass
class DeadlinePass:
    reminded: list[str]
    approved: list[str]
    cancelled: list[str]

    def summary(self) -> str:
        return f"{len(self.reminded)} reminded, {len(self.approved)} auto-approved, {len(self.cancelled)} cancelled"


def run_deadlines(
    book: SqlOrderBook, store: ArtifactStore, policy: ApprovalPolicy, now: datetime, limit: int = 50
) -> DeadlinePass:
    """One bounded pass: reminders that are due, then deadlines that passed."""
    done = DeadlinePass([], [], [])
    for order_id, _since in awaiting_approval(book, now - policy.deadline, limit):
        order = settle_at_deadline(book, store, order_id, policy)
        if order is not None:
            (done.approved if order.state == S.APPROVED else done.cancelled).append(order_id)
    if policy.reminder_before > timedelta(0):
        remind_from = now - (policy.deadline - policy.reminder_before)
        for order_id, _since in awaiting_approval(book, remind_from, limit, unreminded=True):
            if order_id not in done.approved and order_id not in done.cancelled and remind(book, order_id, policy, now):
                done.reminded.append(order_id)
    return done
