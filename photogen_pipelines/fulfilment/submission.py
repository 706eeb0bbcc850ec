"""After `ready`: the order goes to the shop's print provider, ships, and arrives.

The recipient is kept in the orders database only (`recipients`), read here when the
order is submitted and deleted by retention. Submission goes through a provider adapter
(`providers/`), whose idempotency makes a repeated submission find the first provider
order. What the provider says later (callbacks, or the reconciliation sensor reading its
open orders) is applied by `apply_provider_order`, one transaction per change.

This module is the only writer of a submission's status (`FulfilmentRow.status`, a
`FulfilmentStatus`): every change goes through `_set_status` (tests/test_status_writers.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import Product
from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import FulfilmentRow, OrderRow, RecipientRow
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.fulfilment.providers.base import (
    PrintProvider,
    ProviderError,
    ProviderOrder,
    ProviderRefused,
    ProviderStatus,
    Submission,
)
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod
from photogen_pipelines.orders.shipments import FulfilmentStatus
from photogen_pipelines.orders.states import FULFILMENT, Order, OrderState

S = OrderState
# a submission stuck in pending this long is submitted again by the reconciliation sensor
RESUBMIT_AFTER = timedelta(minutes=2)


class NotFulfillable(PhotoGenError):
    """The shop's set-up cannot fulfil this order (no SKU for the product at this provider,
    no public URL for the file): an operator's fix, not the customer's fault."""

    code = "not_fulfillable"


# -- the recipient: personal data, in this table only -----------------------------------


def recipient_of(database: Database, order_id: str) -> Recipient | None:
    with database.session() as session:
        row = session.get(RecipientRow, order_id)
        return None if row is None else Recipient.model_validate(row.details, strict=False)


def forget_tracking(session: Session, order_ids: Sequence[str]) -> None:
    """Blank the parcels' tracking of these orders in the caller's transaction (an erasure):
    a tracking link leads to the recipient's address. Their status stays."""
    session.execute(
        update(FulfilmentRow).where(FulfilmentRow.order_id.in_(order_ids)).values(tracking_number=None, tracking_url=None)
    )


def forget_recipient(database: Database, order_id: str) -> bool:
    """Delete the order's recipient (retention); True when there was one."""
    with database.session() as session:
        row = session.get(RecipientRow, order_id)
        if row is not None:
            session.delete(row)
        return row is not None


# -- the provider's side of the order ---------------------------------------------------


@dataclass(frozen=True)
class Fulfilment:
    order_id: str
    provider: str
    provider_order_id: str | None
    status: FulfilmentStatus
    detail: str | None
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    attempts: int
    last_error: str | None
    submitted_at: datetime | None
    checked_at: datetime | None

    @classmethod
    def of(cls, row: FulfilmentRow) -> Fulfilment:
        fields = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        return cls(**{**fields, "status": FulfilmentStatus(row.status)})


def fulfilment_of(database: Database, order_id: str) -> Fulfilment | None:
    with database.session() as session:
        row = session.get(FulfilmentRow, order_id)
        return None if row is None else Fulfilment.of(row)


def _set_status(row: FulfilmentRow, status: FulfilmentStatus, now: datetime) -> None:
    """The one write of a submission's status (stored as its plain word)."""
    row.status, row.updated_at = FulfilmentStatus(status).value, now


def _row(session: Session, order_id: str, provider: str, now: datetime) -> FulfilmentRow:
    row = session.scalars(select(FulfilmentRow).where(FulfilmentRow.order_id == order_id).with_for_update()).one_or_none()
    if row is None:
        row = FulfilmentRow(order_id=order_id, provider=provider, attempts=0)
        _set_status(row, FulfilmentStatus.PENDING, now)
        session.add(row)
    return row


def _note_attempt(database: Database, order_id: str, provider: str, error: str | None = None) -> None:
    now = utc_now()
    with database.session() as session:
        row = _row(session, order_id, provider, now)
        if error is None:
            row.attempts += 1
        row.last_error, row.updated_at = error, now


def file_md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class SubmitResult:
    status: str  # submitted (or later), refused, or skipped
    provider_order: ProviderOrder | None = None
    reason: str | None = None


def submit(
    book: SqlOrderBook,
    provider: PrintProvider,
    order_id: str,
    product: Product,
    file_url: Callable[[], str],
    file_checksum: str | None = None,
    callback_url: str | None = None,
) -> SubmitResult:
    """Submit a ready order to the provider, once whatever happens: the adapter's
    idempotency finds the first provider order on a retry. A refusal fails the order
    (the refund follows); an unreachable provider raises ProviderError (retried: the
    order stays ready and its submission pending)."""
    database = book.database
    order = book.get(order_id)
    if order.state in FULFILMENT:
        return SubmitResult("already_submitted", reason=f"order {order_id} is already {order.state.value}")
    if order.state != S.READY:
        raise NotFulfillable(f"order {order_id} is {order.state.value}; only a ready order goes to the printer")
    recipient = recipient_of(database, order_id)
    if recipient is None:
        return SubmitResult("skipped", reason="the order has no recipient: the storefront ships it itself")
    sku = product.fulfilment.get(provider.name)
    if sku is None:
        raise NotFulfillable(f"product {product.id} has no {provider.name} SKU in the catalog (products.yaml, fulfilment:)")
    submission = Submission(
        order_id=order_id,
        recipient=recipient,
        shipping_method=order.shipping_method or ShippingMethod.STANDARD,
        product=sku,
        file_url=file_url(),
        file_md5=file_checksum,
        callback_url=callback_url,
    )
    _note_attempt(database, order_id, provider.name)
    try:
        placed = provider.submit(submission)
    except ProviderRefused as exc:
        reason = f"{exc.code}: the print provider ({provider.name}) refused the order: {exc}"
        _close_refused(book, order_id, provider.name, reason)
        return SubmitResult("refused", reason=reason)
    except ProviderError as exc:
        _note_attempt(database, order_id, provider.name, error=f"{exc.code}: {exc}")
        raise
    apply_provider_order(book, placed)
    return SubmitResult(placed.status.value, provider_order=placed)


def _close_refused(book: SqlOrderBook, order_id: str, provider: str, reason: str) -> None:
    """The provider refused the order for good: its submission fails with the reason and
    the order fails (the refund follows), in one transaction, so neither is left half done."""
    now = utc_now()
    with book.transaction() as transaction:
        row = _row(transaction.session, order_id, provider, now)
        row.last_error = reason
        _set_status(row, FulfilmentStatus.FAILED, now)
        transaction.session.flush()  # the order's events below carry the submission's status
        transaction.update(order_id, lambda order: lifecycle.refused_by_provider(order, reason))


# the order's state that a provider status puts it in, at least
_ORDER_STATE = {
    ProviderStatus.SUBMITTED: S.SUBMITTED,
    ProviderStatus.IN_PRODUCTION: S.SUBMITTED,
    ProviderStatus.SHIPPED: S.SHIPPED,
    ProviderStatus.DELIVERED: S.DELIVERED,
}


def apply_provider_order(book: SqlOrderBook, placed: ProviderOrder, now: datetime | None = None) -> Order:
    """Record what the provider says about the order (read from its API, never taken from
    a callback as it stands) and move the order forward to match: submitted, shipped
    (with carrier and tracking), delivered; a provider that cancelled or failed the order
    fails ours (the refund follows). Repeats and stale reads change nothing."""
    now = now or utc_now()
    order_id = placed.merchant_reference
    shipment = next((s for s in reversed(placed.shipments) if s.tracking_number or s.carrier), None)
    with book.transaction() as transaction:
        row = _row(transaction.session, order_id, placed.provider, now)
        row.provider_order_id = placed.provider_order_id
        _set_status(row, FulfilmentStatus.of(placed.status), now)
        row.detail, row.checked_at, row.last_error = placed.detail, now, None
        row.submitted_at = row.submitted_at or now
        if shipment is not None:
            row.carrier, row.tracking_number, row.tracking_url = shipment.carrier, shipment.tracking_number, shipment.tracking_url
        transaction.session.flush()  # the order's events below read the shipment for the storefront

        def follow(order: Order) -> None:
            lifecycle.follow_provider(order, placed.status, _ORDER_STATE.get(placed.status), placed.detail, shipment)

        return transaction.update(order_id, follow)


def note_checked(database: Database, order_id: str, error: str | None = None) -> None:
    """The provider was asked about the order (and could not answer, with `error`)."""
    now = utc_now()
    with database.session() as session:
        row = session.get(FulfilmentRow, order_id)
        if row is not None:
            row.checked_at, row.last_error = now, error


def open_fulfilments(database: Database, now: datetime, recheck_after: timedelta, limit: int) -> list[Fulfilment]:
    """Submissions worth asking the provider about: not closed, not asked since
    `recheck_after`, least recently asked first (bounded: the sensor's work per tick).
    Pending ones older than RESUBMIT_AFTER are included, to be submitted again."""
    stale = now - recheck_after
    unanswered = and_(FulfilmentRow.provider_order_id.is_(None), FulfilmentRow.updated_at < now - RESUBMIT_AFTER)
    placed = and_(
        FulfilmentRow.provider_order_id.is_not(None), or_(FulfilmentRow.checked_at.is_(None), FulfilmentRow.checked_at < stale)
    )
    query = (
        select(FulfilmentRow)
        .join(OrderRow, OrderRow.id == FulfilmentRow.order_id)
        .where(
            FulfilmentRow.status.not_in([status.value for status in FulfilmentStatus if status.closed]),
            OrderRow.state.in_([S.READY.value, S.SUBMITTED.value, S.SHIPPED.value]),
            or_(unanswered, placed),
        )
        .order_by(FulfilmentRow.checked_at.is_not(None), FulfilmentRow.checked_at, FulfilmentRow.order_id)
        .limit(limit)
    )
    with database.session() as session:
        return [Fulfilment.of(row) for row in session.scalars(query).all()]


# how far back the sensor looks for ready orders that never reached the provider: a print run
# that died is retried within minutes; an older ready order was made before the shop had a
# provider (or while it had none), and turning one on must not print the whole back catalogue
UNSUBMITTED_WITHIN = timedelta(days=1)


def unsubmitted(database: Database, ready_before: datetime, limit: int) -> list[str]:
    """Ready orders with a recipient that never reached the provider (their print run died
    between delivery and fulfilment), ready since before `ready_before` and within
    UNSUBMITTED_WITHIN of it."""
    query = (
        select(OrderRow.id)
        .join(RecipientRow, RecipientRow.order_id == OrderRow.id)
        .outerjoin(FulfilmentRow, FulfilmentRow.order_id == OrderRow.id)
        .where(
            OrderRow.state == S.READY.value,
            FulfilmentRow.order_id.is_(None),
            OrderRow.updated_at < ready_before,
            OrderRow.updated_at >= ready_before - UNSUBMITTED_WITHIN,
        )
        .order_by(OrderRow.updated_at, OrderRow.id)
        .limit(limit)
    )
    with database.session() as session:
        return list(session.scalars(query).all())


def read_back(book: SqlOrderBook, provider: PrintProvider, order_id: str) -> Order | None:
    """Ask the provider where the order is and follow it (what a callback or the
    reconciliation sensor does); None when the provider could not say (noted on the row)."""
    record = fulfilment_of(book.database, order_id)
    if record is None or record.provider != provider.name:
        return None
    try:
        placed = provider.get(order_id, record.provider_order_id)
    except ProviderError as exc:
        note_checked(book.database, order_id, error=f"{exc.code}: {exc}")
        return None
    if placed is None or placed.merchant_reference != order_id:
        note_checked(book.database, order_id, error=f"{provider.name} has no order for {order_id}")
        return None
    return apply_provider_order(book, placed)
