"""Retention for what never became a paid order: personal data kept no longer than its use.

- A photo uploaded and never ordered with (no order, and no order's set of photos, names
  it) is a face nobody bought anything with: its file and its row go once it is older than
  the policy's `unordered_upload_days`. An order placed with it later gets the API's
  `upload_not_found`, as for any unknown upload.
- A checkout nobody paid for (`awaiting_payment` past `abandoned_checkout_days`) holds a
  recipient's name and address for nothing: the order is cancelled ("checkout abandoned")
  and its recipient deleted. A payment that arrives first wins (the cancel happens only
  from `awaiting_payment`, under the order's lock); one that arrives later is refunded, as
  for any cancelled order. The order's own files then follow the usual retention.

The retention sensor runs both a few at a time; each item is its own transaction, so a
pass that stops halfway loses nothing and the next goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select

from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import OrderPhotoRow, OrderRow, UploadRow
from photogen_pipelines.fulfilment.submission import forget_recipient
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.retention import RetentionPolicy

ABANDONED_REASON = "checkout abandoned: not paid within {days} days (the recipient's details are deleted)"


@dataclass
class LeftoversPass:
    """What one pass let go: upload ids deleted, abandoned checkouts cancelled."""

    uploads: list[str] = field(default_factory=list)
    checkouts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.uploads)} unordered upload(s) deleted, {len(self.checkouts)} abandoned checkout(s) cancelled"


def _unordered(upload_id):
    """No order and no order's photo set names the upload."""
    return ~exists().where(OrderRow.upload_id == upload_id) & ~exists().where(OrderPhotoRow.upload_id == upload_id)


def unordered_uploads(database: Database, now: datetime, policy: RetentionPolicy, limit: int = 100) -> list[str]:
    """Ids of uploads older than the policy allows that no order uses, oldest first."""
    cutoff = now - timedelta(days=policy.unordered_upload_days)
    query = (
        select(UploadRow.id)
        .where(UploadRow.created_at < cutoff, _unordered(UploadRow.id))
        .order_by(UploadRow.created_at, UploadRow.id)
        .limit(limit)
    )
    with database.session() as session:
        return list(session.scalars(query))


def delete_unordered_upload(database: Database, store: ArtifactStore, upload_id: str) -> bool:
    """Delete the upload's row, then its file, if still no order uses it; True when deleted.
    The row goes first: an order placed at that moment either finds no upload (a clean 404)
    or holds the row, and the delete, checked again inside it, leaves it alone."""
    with database.session() as session:
        key = session.scalar(select(UploadRow.storage_key).where(UploadRow.id == upload_id))
        if key is None:
            return False
        deleted = session.execute(delete(UploadRow).where(UploadRow.id == upload_id, _unordered(UploadRow.id))).rowcount
    if deleted:
        store.delete(key)
    return bool(deleted)


def abandoned_checkouts(database: Database, now: datetime, policy: RetentionPolicy, limit: int = 100) -> list[str]:
    """Ids of orders still awaiting payment past the policy's days, oldest first."""
    cutoff = now - timedelta(days=policy.abandoned_checkout_days)
    query = (
        select(OrderRow.id)
        .where(OrderRow.state == OrderState.AWAITING_PAYMENT.value, OrderRow.created_at < cutoff)
        .order_by(OrderRow.created_at, OrderRow.id)
        .limit(limit)
    )
    with database.session() as session:
        return list(session.scalars(query))


def let_go_of_leftovers(
    book: SqlOrderBook, store: ArtifactStore, now: datetime, policy: RetentionPolicy, limit: int = 50
) -> LeftoversPass:
    """One pass: up to `limit` unordered uploads and `limit` abandoned checkouts."""
    result = LeftoversPass()
    for upload_id in unordered_uploads(book.database, now, policy, limit):
        if delete_unordered_upload(book.database, store, upload_id):
            result.uploads.append(upload_id)
    reason = ABANDONED_REASON.format(days=policy.abandoned_checkout_days)
    for order_id in abandoned_checkouts(book.database, now, policy, limit):
        order = lifecycle.abandon_checkout(book, order_id, reason)
        if order.state == OrderState.CANCELLED:
            forget_recipient(book.database, order_id)
            result.checkouts.append(order_id)
    return result
