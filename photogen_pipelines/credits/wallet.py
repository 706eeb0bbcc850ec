"""A customer's credit wallet: an append-only ledger in the orders database.

Every entry is one movement with two legs: the customer's wallet (`amount`, signed) and
one of the shop's accounts (`counter_account`), which takes the opposite amount, so the
books always balance. The balance is the sum of the wallet's entries. Each entry has an
idempotency key, unique per customer: the same movement asked for twice (a retried
request, a repeated Stripe webhook, a sensor and the API at once) is written once.

Every write locks the customer's row first (`customers.ensure`/`get(lock=True)`; on
SQLite the transaction's BEGIN IMMEDIATE), reads the balance and refuses to go below
zero: fifty requests spending one wallet at once queue up, and exactly as many succeed
as the wallet affords.

Credits are held in lots: each credit-adding entry (a grant, a purchase, an adjustment
up) is a lot, spent first-to-expire first. An expiring grant's leftover expires by an
`expiry` entry against its lot; a refunded pack's unspent credits leave by a `clawback`
against the purchase's lot; a refunded spend puts the credits back into the lots it
took them from (a lot that expired meanwhile gives them as a lot of their own).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.credits import customers
from photogen_pipelines.db.tables import CreditEntryRow, CustomerRow
from photogen_pipelines.errors import BadInput, Conflict, PaymentRequired


class EntryKind(enum.StrEnum):
    GRANT = "grant"  # given by the shop (a plan's welcome credits, an operator, a re-roll)
    PURCHASE = "purchase"  # a pack paid through Stripe
    SPEND = "spend"  # an order paid in credits
    REFUND = "refund"  # a credit-paid order that failed, was rejected or cancelled
    EXPIRY = "expiry"  # what was left of a grant at its expiry date
    ADJUSTMENT = "adjustment"  # an operator's correction, up or down
    CLAWBACK = "clawback"  # a refunded pack's unspent credits


# the shop's side of each kind of entry: where the credits come from, or go to
COUNTER_ACCOUNT = {
    EntryKind.GRANT: "shop:grants",
    EntryKind.PURCHASE: "shop:sales",
    EntryKind.SPEND: "shop:earned",
    EntryKind.REFUND: "shop:earned",
    EntryKind.EXPIRY: "shop:expired",
    EntryKind.ADJUSTMENT: "shop:adjustments",
    EntryKind.CLAWBACK: "shop:sales",
}
ADDS = frozenset({EntryKind.GRANT, EntryKind.PURCHASE, EntryKind.REFUND})
TAKES = frozenset({EntryKind.SPEND, EntryKind.EXPIRY, EntryKind.CLAWBACK})
MAX_CREDITS = 1_000_000  # one movement; the amount column is 32-bit


@dataclass(frozen=True)
class Entry:
    id: int
    kind: EntryKind
    amount: int
    counter_account: str
    reason: str
    idempotency_key: str
    order_id: str | None
    pack_purchase_id: str | None
    lot_id: int | None
    expires_at: datetime | None
    created_at: datetime


def to_entry(row: CreditEntryRow) -> Entry:
    return Entry(
        id=row.id,
        kind=EntryKind(row.kind),
        amount=row.amount,
        counter_account=row.counter_account,
        reason=row.reason,
        idempotency_key=row.idempotency_key,
        order_id=row.order_id,
        pack_purchase_id=row.pack_purchase_id,
        lot_id=row.lot_id,
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        created_at=as_utc(row.created_at),
    )


@dataclass
class Lot:
    """Credits added by one entry, and how many of them are left."""

    entry_id: int
    kind: EntryKind
    added: int
    remaining: int
    expires_at: datetime | None
    pack_purchase_id: str | None


@dataclass
class Lots:
    lots: dict[int, Lot] = field(default_factory=dict)
    taken_by: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # debit id -> [(lot id, credits)]

    def open(self, at: datetime) -> list[Lot]:
        """Lots with credits left, first to expire first (then oldest), as spends take them."""
        live = [lot for lot in self.lots.values() if lot.remaining > 0 and (lot.expires_at is None or lot.expires_at > at)]
        return sorted(live, key=lambda lot: (lot.expires_at is None, lot.expires_at or at, lot.entry_id))

    @property
    def total(self) -> int:
        return sum(lot.remaining for lot in self.lots.values())


def _entries(session: Session, customer_id: str) -> Sequence[CreditEntryRow]:
    return session.scalars(
        select(CreditEntryRow).where(CreditEntryRow.customer_id == customer_id).order_by(CreditEntryRow.id)
    ).all()


def lots_of(entries: Sequence[Entry]) -> Lots:
    """Replay the ledger into lots (oldest entry first)."""
    lots = Lots()
    for entry in entries:
        if entry.amount > 0 and entry.kind == EntryKind.REFUND and entry.lot_id in lots.taken_by:
            _put_back(lots, entry)
        elif entry.amount > 0:
            lots.lots[entry.id] = Lot(entry.id, entry.kind, entry.amount, entry.amount, entry.expires_at, entry.pack_purchase_id)
        elif entry.lot_id is not None and entry.lot_id in lots.lots:  # an expiry or a clawback: from its own lot
            lots.lots[entry.lot_id].remaining += entry.amount
        elif entry.amount < 0:
            lots.taken_by[entry.id] = _take(lots, -entry.amount, entry.created_at)
    return lots


def _take(lots: Lots, credits: int, at: datetime) -> list[tuple[int, int]]:
    taken = []
    for lot in lots.open(at):
        if credits == 0:
            break
        n = min(credits, lot.remaining)
        lot.remaining -= n
        credits -= n
        taken.append((lot.entry_id, n))
    return taken


def _put_back(lots: Lots, refund: Entry) -> None:
    left = refund.amount
    for lot_id, n in lots.taken_by[refund.lot_id]:
        lot = lots.lots[lot_id]
        if lot.expires_at is not None and lot.expires_at <= refund.created_at:
            continue  # that lot expired since: what came from it comes back as a lot of its own
        back = min(n, left)
        lot.remaining += back
        left -= back
    if left:
        lots.lots[refund.id] = Lot(refund.id, refund.kind, left, left, None, None)


def balance(session: Session, customer_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(CreditEntryRow.amount), 0)).where(CreditEntryRow.customer_id == customer_id)
    )
    return int(total or 0)


@dataclass(frozen=True)
class Posted:
    entry: Entry
    created: bool  # False: the key had moved these credits before; nothing changed now
    balance: int


def post(
    session: Session,
    customer: CustomerRow,
    kind: EntryKind,
    amount: int,
    *,
    key: str,
    reason: str,
    order_id: str | None = None,
    pack_purchase_id: str | None = None,
    lot_id: int | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> Posted:
    """Write one movement of `amount` credits (signed: positive into the wallet), once per
    `key`. The caller holds the customer's row lock. Expired grants are expired first, so
    a spend never counts credits that are gone. PaymentRequired(insufficient_credits) when
    the balance would go below zero; Conflict when the key moved other credits before."""
    kind = EntryKind(kind)
    if amount == 0 or abs(amount) > MAX_CREDITS:
        raise BadInput(f"a movement of credits is 1 to {MAX_CREDITS:,} credits, up or down", code="invalid_credits")
    if (kind in ADDS and amount < 0) or (kind in TAKES and amount > 0):
        raise BadInput(f"a {kind.value} cannot move credits that way ({amount:+d})", code="invalid_credits")
    now = now or utc_now()
    earlier = session.scalars(
        select(CreditEntryRow).where(CreditEntryRow.customer_id == customer.id, CreditEntryRow.idempotency_key == key)
    ).one_or_none()
    if earlier is not None:
        if earlier.kind != kind.value or earlier.amount != amount:
            raise Conflict(
                f"idempotency key {key!r} already moved {earlier.amount:+d} credits ({earlier.kind})",
                code="idempotency_key_reused",
            )
        return Posted(to_entry(earlier), created=False, balance=balance(session, customer.id))
    expire_due(session, customer, now)
    current = balance(session, customer.id)
    if current + amount < 0:
        raise PaymentRequired(
            f"customer {customer.ref} has {current} credits; this needs {-amount}",
            code="insufficient_credits",
            details={"balance": current, "needed": -amount},
        )
    row = CreditEntryRow(
        customer_id=customer.id,
        kind=kind.value,
        amount=amount,
        counter_account=COUNTER_ACCOUNT[kind],
        idempotency_key=key,
        reason=reason,
        order_id=order_id,
        pack_purchase_id=pack_purchase_id,
        lot_id=lot_id,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return Posted(to_entry(row), created=True, balance=current + amount)


def entries(session: Session, customer_id: str) -> list[Entry]:
    return [to_entry(row) for row in _entries(session, customer_id)]


def expire_due(session: Session, customer: CustomerRow, now: datetime | None = None) -> list[Entry]:
    """Write the expiry of every lot past its date with credits left (once each: the key
    names the lot). The caller holds the customer's row lock."""
    now = now or utc_now()
    lots = lots_of(entries(session, customer.id))
    written = []
    for lot in lots.lots.values():
        if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0:
            row = CreditEntryRow(
                customer_id=customer.id,
                kind=EntryKind.EXPIRY.value,
                amount=-lot.remaining,
                counter_account=COUNTER_ACCOUNT[EntryKind.EXPIRY],
                idempotency_key=f"expiry:{lot.entry_id}",
                reason=f"{lot.remaining} credits of entry {lot.entry_id} expired at {lot.expires_at.isoformat()}",
                lot_id=lot.entry_id,
                created_at=now,
            )
            session.add(row)
            session.flush()
            written.append(to_entry(row))
    return written


def welcome(session: Session, products: ProductCatalog, customer: CustomerRow) -> Posted | None:
    """The plan's welcome credits, once per customer (whatever plan they move to later)."""
    credits = products.plan(customer.plan).welcome_credits
    if not credits:
        return None
    return post(session, customer, EntryKind.GRANT, credits, key="welcome", reason=f"welcome credits of the {customer.plan} plan")


def open_wallet(
    session: Session, products: ProductCatalog, api_key_id: str | None, ref: str, plan: str | None = None
) -> CustomerRow:
    """The customer's row, locked, created on first mention with the plan's welcome credits."""
    row, created = customers.ensure(session, products, api_key_id, ref, plan)
    if created:
        welcome(session, products, row)
    return row


def all_balances(session: Session) -> dict[str, int]:
    """Every customer's balance by customer id (for invariants and reports)."""
    query = (
        select(CustomerRow.id, func.coalesce(func.sum(CreditEntryRow.amount), 0))
        .outerjoin(CreditEntryRow, CreditEntryRow.customer_id == CustomerRow.id)
        .group_by(CustomerRow.id)
    )
    return {cid: int(total) for cid, total in session.execute(query).all()}


def customers_with_due_expiries(session: Session, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Customers holding a lot past its expiry date whose expiry is not written yet: the
    sweep writes it the day it happens, so the day's expired credits are counted that day
    (a spend would otherwise write it only when the customer next orders)."""
    now = now or utc_now()
    expired_keys = select(CreditEntryRow.idempotency_key).where(CreditEntryRow.kind == EntryKind.EXPIRY.value)
    query = (
        select(CreditEntryRow.customer_id, CreditEntryRow.id)
        .where(CreditEntryRow.expires_at.is_not(None), CreditEntryRow.expires_at <= now, CreditEntryRow.amount > 0)
        .order_by(CreditEntryRow.expires_at)
    )
    written = set(session.scalars(expired_keys).all())
    due = [cid for cid, entry_id in session.execute(query).all() if f"expiry:{entry_id}" not in written]
    return list(dict.fromkeys(due))[:limit]
