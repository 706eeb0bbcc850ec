"""Retention: the files of orders that are over are deleted once their time is up.

An order is over when it was delivered (`ready`, or shipped by the print provider) or will never be: `refunded`, or
`rejected`/`failed`/`cancelled` with nothing owed to the customer (an order that still
owes a refund keeps everything until the refund is through). Its files go once its last
state change is older than the policy's days *and* its history is in the analytics
ledger (`analytics/ledger/day=<UTC date of that change>.parquet` lists its id): until
then it waits, because the files are the only record left. The print file and its
manifest can be kept (a reprint needs nothing else). Its photos go with it: its upload,
or every photo of its set when the customer gave several (orders/photo_sets.py); a photo
shared with an order that is not being purged stays.

Nothing here decides how many orders one pass handles: the caller (a sensor) bounds it.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, func, not_, or_, select

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.tables import OrderEventRow, OrderRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.fulfilment.submission import forget_recipient
from photogen_pipelines.orders import photo_sets
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OWES_REFUND, SETTLED, Order, OrderState
from photogen_pipelines.storage.stores import ArtifactStore

S = OrderState
# delivered (and shipped, where a print provider has it), or settled without delivery;
# every other state may still need its files (a submitted order's provider fetches the file)
OVER = frozenset({S.READY, S.SHIPPED, S.DELIVERED, S.REFUNDED, S.REJECTED, S.FAILED, S.CANCELLED})
# where an upload may live; a key anywhere else is never deleted as an upload
UPLOAD_PREFIXES = ("uploads/",)


@dataclass(frozen=True)
class RetentionPolicy:
    days: int = 30
    keep_print_files: bool = True
    # what never became a paid order (workflows/abandoned.py): a photo nobody ordered with,
    # and the recipient of a checkout nobody paid for
    unordered_upload_days: int = 7
    abandoned_checkout_days: int = 14

    def __post_init__(self) -> None:
        for name in ("days", "unordered_upload_days", "abandoned_checkout_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"retention {name} must be at least 1, got {getattr(self, name)}")

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)


def final_event_at(order: Order) -> datetime | None:
    return max((e.at for e in order.events), default=None)


def ledger_event_at(order: Order) -> datetime | None:
    """When the order settled: the ledger files it under this day (ledger.py), while its
    shipping may go on for days after."""
    return max((e.at for e in order.events if e.to_state in SETTLED), default=None)


def is_expired(order: Order, now: datetime, policy: RetentionPolicy) -> bool:
    """Over, owing nothing, and its last state change is older than the policy's days."""
    final = final_event_at(order)
    return order.state in OVER and not order.refund_owed and final is not None and final < policy.cutoff(now)


@dataclass(frozen=True)
class ExpiredOrder:
    order: Order
    final_at: datetime  # its last state change: the ledger day it is filed under


def expired_orders(
    book: SqlOrderBook,
    now: datetime,
    policy: RetentionPolicy,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> list[ExpiredOrder]:
    """Expired orders, oldest last change first, from the one after `after` (a
    (final_at, order id) watermark a caller keeps between passes)."""
    final = (
        select(OrderEventRow.order_id, func.max(OrderEventRow.at).label("final_at")).group_by(OrderEventRow.order_id).subquery()
    )
    owes_refund = and_(OrderRow.state.in_([s.value for s in OWES_REFUND]), OrderRow.paid_cents > OrderRow.refunded_cents)
    query = (
        select(OrderRow.id, final.c.final_at)
        .join(final, final.c.order_id == OrderRow.id)
        .where(OrderRow.state.in_([s.value for s in OVER]), not_(owes_refund), final.c.final_at < policy.cutoff(now))
        .order_by(final.c.final_at, OrderRow.id)
        .limit(limit)
    )
    if after is not None:
        at, order_id = after
        query = query.where(or_(final.c.final_at > at, and_(final.c.final_at == at, OrderRow.id > order_id)))
    with book.database.session() as session:
        rows = session.execute(query).all()
    found = []
    for order_id, final_at in rows:
        order = book.get(order_id)
        if is_expired(order, now, policy):  # checked again on the full order: it may have moved since the query
            found.append(ExpiredOrder(order, as_utc(final_at)))
    return found


def ledger_key(day: date) -> str:
    return f"analytics/ledger/day={day.isoformat()}.parquet"


class Ledger:
    """Which orders the analytics ledger holds, read one day file at a time (cached for one pass)."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self._days: dict[date, frozenset[str] | str] = {}

    def _ids(self, day: date) -> frozenset[str] | str:
        """The day's order ids, or why there are none to read."""
        if day not in self._days:
            import pandas as pd  # only retention reads Parquet; the API never imports this module

            key = ledger_key(day)
            try:
                frame = pd.read_parquet(io.BytesIO(self.store.get_bytes(key)), columns=["order_id"])
                self._days[day] = frozenset(frame["order_id"].astype(str))
            except NotFound:
                self._days[day] = f"{key} does not exist yet"
            except Exception as exc:  # a broken file must hold the orders back, not stop the pass
                self._days[day] = f"{key} cannot be read: {type(exc).__name__}: {exc}"
        return self._days[day]

    def why_not(self, order_id: str, final_at: datetime) -> str | None:
        """None when the order's history is in the ledger, else the reason it is not."""
        day = final_at.astimezone(UTC).date()
        ids = self._ids(day)
        if isinstance(ids, str):
            return ids
        return None if order_id in ids else f"order not in {ledger_key(day)} yet"


def orders_sharing_uploads(book: SqlOrderBook, order: Order) -> dict[str, list[Order]]:
    """Each of the order's photos (its upload, or each of its set) by its key, with the
    other orders placed with it (the storefront lets one selfie be ordered again, alone or
    in another set)."""
    return {
        photo.key: [book.get(other) for other in photo_sets.orders_using(book.database, photo, order.id)]
        for photo in photo_sets.photos_of(book.database, order)
    }


def is_print_file(key: str, order_id: str) -> bool:
    prefix = f"orders/{order_id}/print/"
    return key == f"{prefix}manifest.json" or (key.startswith(f"{prefix}print_file.") and "/" not in key[len(prefix) :])


def purge_order_files(store: ArtifactStore, order: Order, policy: RetentionPolicy, *, uploads: Collection[str] = ()) -> list[str]:
    """Delete the order's files under `orders/<id>/`, and those of its photos' files named in
    `uploads` (its upload, each photo of its set): the ones the caller, having checked every
    order placed with each, found no other order needs. Returns the keys deleted."""
    prefix = f"orders/{order.id}/"
    # the trailing slash and this check keep `orders/ord_1/` from reaching `orders/ord_10/` on stores that list by prefix
    keys = [key for key in store.list(prefix) if key.startswith(prefix)]
    doomed = [
        key
        for key in keys
        if not (policy.keep_print_files and is_print_file(key, order.id))
        and not (key == order.upload_key and key not in uploads)  # the CLI keeps its upload here
    ]
    for key in uploads:
        elsewhere = key.startswith(UPLOAD_PREFIXES) and key not in keys
        if elsewhere and store.exists(key):
            doomed.append(key)
    for key in doomed:
        store.delete(key)
    return doomed


def retire_preview_pictures(store: ArtifactStore, order: Order) -> list[str]:
    """The pictures of an unpaid preview that expired (workflows/approvals.py), deleted at
    once: its selfie crops, candidates and proofs, which nobody paid to have kept. Its small
    JSON documents stay, for the ledger's row of it (analytics/ledger.py reads them), and so
    does the upload, for the customer's next order; the pass above deletes those with the
    rest, and drops the order's partitions, once the ledger has its history. Returns the keys deleted."""
    prefix = f"orders/{order.id}/"
    keys = [key for key in store.list(prefix) if key.startswith(prefix)]
    doomed = [key for key in keys if not key.endswith(".json") and key != order.upload_key]
    for key in doomed:
        store.delete(key)
    return doomed


@dataclass
class RetentionPass:
    """What one pass did: files deleted per purged order, and the orders left waiting."""

    purged: dict[str, list[str]] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)  # order id -> why
    skipped: list[str] = field(default_factory=list)  # no longer expired (e.g. re-rendered): dropped

    def summary(self) -> str:
        files = sum(len(keys) for keys in self.purged.values())
        return f"{len(self.purged)} order(s) purged ({files} file(s) deleted), {len(self.waiting)} waiting (ledger or retry)"


class Retention:
    """One pass of the policy over some orders, with the ledger read once per day file."""

    def __init__(self, book: SqlOrderBook, store: ArtifactStore, policy: RetentionPolicy, now: datetime):
        self.book, self.store, self.policy, self.now = book, store, policy, now
        self.ledger = Ledger(store)
        self.result = RetentionPass()

    def _purgeable(self, order: Order) -> bool:
        return is_expired(order, self.now, self.policy) and self.ledger.why_not(order.id, ledger_event_at(order)) is None

    def retire(self, order: Order) -> bool:
        """Purge one order's files if it is expired and in the ledger; True when purged."""
        if not is_expired(order, self.now, self.policy):
            self.result.skipped.append(order.id)
            return False
        waiting = self.ledger.why_not(order.id, ledger_event_at(order))
        if waiting:
            self.result.waiting[order.id] = waiting
            return False
        try:
            # each photo goes only when every order placed with it goes too
            sharing = orders_sharing_uploads(self.book, order)
            uploads = [key for key, others in sharing.items() if all(self._purgeable(other) for other in others)]
            self.result.purged[order.id] = purge_order_files(self.store, order, self.policy, uploads=uploads)
            # the recipient goes with the files: personal data is kept no longer than they are
            forget_recipient(self.book.database, order.id)
        except Exception as exc:  # one order's storage error must not hold back the others: it waits, to be tried again
            self.result.waiting[order.id] = f"purge failed, will be tried again: {type(exc).__name__}: {exc}"
            return False
        return True

    def retire_ids(self, order_ids: Sequence[str]) -> None:
        for order_id in order_ids:
            try:
                order = self.book.get(order_id)
            except NotFound:
                self.result.skipped.append(order_id)
                continue
            self.retire(order)


def purge_expired(
    book: SqlOrderBook, store: ArtifactStore, now: datetime, policy: RetentionPolicy, limit: int = 100
) -> RetentionPass:
    """One pass over the oldest `limit` expired orders, from the start: for scripts and tests
    (the sensor keeps a watermark instead, so it never reads a purged order again)."""
    retention = Retention(book, store, policy, now)
    for expired in expired_orders(book, now, policy, limit=limit):
        retention.retire(expired.order)
    return retention.result
