"""The approval deadline: proofs nobody chooses from do not wait forever.

An order whose proofs wait for the customer gets an `order.approval_reminder` event for
the storefront some hours before the shop's deadline, once; at the deadline its best
proof (the best identity score) is approved for it, or, by the shop's policy, it is
cancelled and the refund follows (the payments sensor refunds cancelled orders).

A preview not paid yet (made before payment: intake's `preview`) cannot be approved for
the customer. It has a deadline of its own: paid within the catalog's `previews.expire_hours`
of its proofs, or cancelled (nothing was paid: nothing to refund) and its pictures retired
at once (`retention.retire_preview_pictures`); the customer is reminded before, as of an
approval. Once paid, it meets the shop's approval deadline like any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import and_, func, not_, or_, select

from photogen_pipelines.catalog import PreviewPolicy
from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.tables import OrderEventRow, OrderRow
from photogen_pipelines.errors import IllegalTransition
from photogen_pipelines.orders import lifecycle, outbox
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.deliverables import unpaid_preview
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, Validation
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.retention import retire_preview_pictures

S = OrderState
# `deliverables.unpaid_preview` in SQL: a preview whose money (or credits) is not in yet
UNPAID_PREVIEW = and_(
    OrderRow.preview.is_(True),
    or_(
        and_(OrderRow.payments == "stripe", OrderRow.paid_cents == 0),
        and_(OrderRow.payments == "credits", OrderRow.credits_paid == 0),
    ),
)


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

    def for_unpaid_previews(self, previews: PreviewPolicy) -> ApprovalPolicy:
        """An unpaid preview's deadline: `expire_hours` from its proofs, then cancelled; its
        reminder as the shop's, where that falls after the proofs."""
        deadline = timedelta(hours=previews.expire_hours)
        before = self.reminder_before if self.reminder_before < deadline else timedelta(0)
        return ApprovalPolicy(deadline=deadline, reminder_before=before, action="cancel")


def awaiting_approval(
    book: SqlOrderBook, ready_before: datetime, limit: int, unreminded: bool = False, unpaid_previews: bool = False
) -> list[tuple[str, datetime]]:
    """Orders in proofs_ready since before `ready_before` (their latest proofs_ready move),
    longest waiting first, only those not reminded yet with `unreminded`: (order id, waiting since).
    Those that can be approved, or with `unpaid_previews` only the previews not paid yet."""
    since = func.max(OrderEventRow.at)
    query = (
        select(OrderRow.id, since.label("since"))
        .join(OrderEventRow, OrderEventRow.order_id == OrderRow.id)
        .where(OrderRow.state == S.PROOFS_READY.value, OrderEventRow.to_state == S.PROOFS_READY.value)
        .where(UNPAID_PREVIEW if unpaid_previews else not_(UNPAID_PREVIEW))
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


def remind(book: SqlOrderBook, order_id: str, policy: ApprovalPolicy, now: datetime, unpaid: bool = False) -> bool:
    """Tell the storefront, once, that the customer's proofs wait and when the deadline
    falls (in the transaction that marks the order reminded); True when it was sent now.
    `unpaid`: the reminder of an unpaid preview's expiry, sent only while it is one."""
    with book.transaction() as transaction:
        sent = False

        def mark(order: Order) -> None:
            nonlocal sent
            since = waiting_since(order)
            if order.state != S.PROOFS_READY or order.approval_reminded_at is not None or since is None:
                return
            if unpaid_preview(order) != unpaid:  # paid meanwhile: the other deadline is the one to tell of
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


def expire_preview(book: SqlOrderBook, order_id: str, policy: ApprovalPolicy) -> Order | None:
    """Cancel a preview its customer did not pay for by its deadline, under its row lock:
    a payment recorded first keeps it (None), one recorded after finds it cancelled and is
    refunded like any payment for a cancelled order. Nothing was paid: nothing to refund."""
    hours = round(policy.deadline.total_seconds() / 3600, 1)
    reason = f"preview not paid within {hours:g} h of its proofs: cancelled, nothing was charged"
    with book.transaction() as tx:
        order = tx.update(order_id, lambda o: None)  # the row lock, held to the cancel
        if order.state != S.PROOFS_READY or not unpaid_preview(order):
            return None
        lifecycle.cancel(tx, order_id, reason)  # a move in this transaction
    return book.get(order_id)


@dataclass
class DeadlinePass:
    reminded: list[str]
    approved: list[str]
    cancelled: list[str]
    expired: list[str] = field(default_factory=list)  # unpaid previews cancelled
    retired: dict[str, list[str]] = field(default_factory=dict)  # expired preview -> pictures deleted
    unretired: dict[str, str] = field(default_factory=dict)  # expired preview -> why its pictures stay (retention takes them)

    def summary(self) -> str:
        expired = f", {len(self.expired)} unpaid preview(s) expired" if self.expired else ""
        return f"{len(self.reminded)} reminded, {len(self.approved)} auto-approved, {len(self.cancelled)} cancelled{expired}"


def run_deadlines(
    book: SqlOrderBook,
    store: ArtifactStore,
    policy: ApprovalPolicy,
    now: datetime,
    limit: int = 50,
    previews: PreviewPolicy | None = None,
) -> DeadlinePass:
    """One bounded pass: deadlines that passed, then reminders that are due; with the
    shop's `previews`, the same for unpaid previews (without it they wait: they are never
    approved unpaid)."""
    done = DeadlinePass([], [], [])
    for order_id, _since in awaiting_approval(book, now - policy.deadline, limit):
        order = settle_at_deadline(book, store, order_id, policy)
        if order is not None:
            (done.approved if order.state == S.APPROVED else done.cancelled).append(order_id)
    _remind(book, policy, now, limit, done, unpaid=False)
    if previews is None:
        return done
    expiry = policy.for_unpaid_previews(previews)
    for order_id, _since in awaiting_approval(book, now - expiry.deadline, limit, unpaid_previews=True):
        order = expire_preview(book, order_id, expiry)
        if order is None:
            continue  # paid or cancelled a moment ago
        done.expired.append(order_id)
        try:
            done.retired[order_id] = retire_preview_pictures(store, order)
        except Exception as exc:  # the order stays cancelled; the retention pass deletes its files in time
            done.unretired[order_id] = f"{type(exc).__name__}: {exc}"
    _remind(book, expiry, now, limit, done, unpaid=True)
    return done


def _remind(book: SqlOrderBook, policy: ApprovalPolicy, now: datetime, limit: int, done: DeadlinePass, unpaid: bool) -> None:
    if policy.reminder_before <= timedelta(0):
        return
    settled = {*done.approved, *done.cancelled, *done.expired}
    remind_from = now - (policy.deadline - policy.reminder_before)
    for order_id, _since in awaiting_approval(book, remind_from, limit, unreminded=True, unpaid_previews=unpaid):
        if order_id not in settled and remind(book, order_id, policy, now, unpaid=unpaid):
            done.reminded.append(order_id)
