"""Credits by UTC day, from the wallet ledger (credits/wallet.py): what moved each day, and
what the shop owes at each day's end.

Per day: the credits granted (welcome credits, operators' grants, free re-rolls), sold
(packs paid for), spent (credit-paid orders), refunded (orders that will not be delivered),
expired, clawed back (refunded packs' unspent credits) and adjusted (operators'
corrections, signed); then, at the day's end, every wallet's balance together, the
deferred revenue (credits sold but not spent yet: the purchased lots' remaining credits,
`wallet.lots_of`, each at its pack's price per credit) and the money received for packs
to date (paid less refunded). A pack's money counts on the day its credits were posted,
its refund on the day its unspent credits were clawed back (else its row's last change).

Everything is replayed from the whole ledger each time, so a day's numbers do not depend
on what was asked before; `since` only trims the days returned. Money is in the packs'
cents; a credit's price is a fraction of a cent, so the deferred cents are summed exactly
and rounded once per day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc
from photogen_pipelines.credits.wallet import Entry, EntryKind, lots_of, to_entry
from photogen_pipelines.db.tables import CreditEntryRow, PackPurchaseRow

# each kind of entry's column; every column but `adjusted` counts credits moved (positive)
MOVED = {
    EntryKind.GRANT: "granted",
    EntryKind.PURCHASE: "sold",
    EntryKind.SPEND: "spent",
    EntryKind.REFUND: "refunded",
    EntryKind.EXPIRY: "expired",
    EntryKind.CLAWBACK: "clawed_back",
    EntryKind.ADJUSTMENT: "adjusted",
}
PAID_STATES = ("paid", "refunded")  # a refunded pack was paid first


@dataclass(frozen=True)
class CreditDay:
    day: date
    granted: int = 0
    sold: int = 0
    spent: int = 0
    refunded: int = 0
    expired: int = 0
    clawed_back: int = 0
    adjusted: int = 0  # signed: an operator's corrections up less those down
    balance: int = 0  # every wallet together at the day's end
    deferred_credits: int = 0  # sold and not spent (nor clawed back) at the day's end
    deferred_cents: int = 0  # their price, at each pack's price per credit
    pack_paid_cents: int = 0  # money in for packs that day
    pack_refunded_cents: int = 0  # money given back for packs that day
    pack_received_cents: int = 0  # to date: paid less refunded

    def to_dict(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


COLUMNS = [f.name for f in fields(CreditDay)]
# what the generation_ledger asset's metadata carries of the day (Dagster plots each across the days)
CREDIT_METADATA = ("granted", "sold", "spent", "refunded", "expired", "clawed_back", "adjusted", "balance", "deferred_cents")
CARRIED = ("balance", "deferred_credits", "deferred_cents", "pack_received_cents")  # where the books stand


def _day(at: datetime) -> date:
    return as_utc(at).date()


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _cents(value: Fraction) -> int:
    """Half a cent up: the deferred money of a day, summed exactly, rounded once."""
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def _deferred(entries: Sequence[Entry], packs: dict[str, PackPurchaseRow]) -> tuple[int, Fraction]:
    """Credits sold and unspent in these entries (one customer's, oldest first), and their price."""
    credits, cents = 0, Fraction(0)
    for lot in lots_of(entries).lots.values():
        if lot.kind != EntryKind.PURCHASE or lot.remaining <= 0:
            continue
        credits += lot.remaining
        pack = packs.get(lot.pack_purchase_id or "")
        if pack is not None and pack.credits:
            cents += Fraction(lot.remaining * pack.amount_cents, pack.credits)
    return credits, cents


def _pack_money(entries: Iterable[tuple[str, Entry]], packs: dict[str, PackPurchaseRow]) -> dict[date, list[int]]:
    """Per day, [paid, refunded] cents for packs."""
    paid_on: dict[str, date] = {}
    refunded_on: dict[str, date] = {}
    for _, entry in entries:
        if entry.pack_purchase_id and entry.kind == EntryKind.PURCHASE:
            paid_on.setdefault(entry.pack_purchase_id, _day(entry.created_at))
        elif entry.pack_purchase_id and entry.kind == EntryKind.CLAWBACK:
            refunded_on.setdefault(entry.pack_purchase_id, _day(entry.created_at))
    money: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for pack in packs.values():
        if pack.paid_cents:
            money[paid_on.get(pack.id) or _day(pack.created_at)][0] += pack.paid_cents
        if pack.refunded_cents:
            money[refunded_on.get(pack.id) or _day(pack.updated_at)][1] += pack.refunded_cents
    return money


def credit_days(session: Session, since: date | None = None) -> list[CreditDay]:
    """One CreditDay per UTC day on which credits or pack money moved, oldest first (from
    `since` on); the end-of-day numbers count everything before too."""
    rows = session.scalars(select(CreditEntryRow).order_by(CreditEntryRow.id)).all()
    entries = [(row.customer_id, to_entry(row)) for row in rows]
    packs = {pack.id: pack for pack in session.scalars(select(PackPurchaseRow)).all()}
    money = _pack_money(entries, packs)

    moved: dict[date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MOVED.values(), 0))
    net: dict[date, int] = defaultdict(int)  # every wallet's change that day
    touched: dict[date, set[str]] = defaultdict(set)  # the customers whose lots changed that day
    by_customer: dict[str, list[Entry]] = defaultdict(list)
    for customer_id, entry in entries:
        day = _day(entry.created_at)
        moved[day][MOVED[entry.kind]] += entry.amount if entry.kind == EntryKind.ADJUSTMENT else abs(entry.amount)
        net[day] += entry.amount
        touched[day].add(customer_id)
        by_customer[customer_id].append(entry)

    balance, received = 0, 0
    deferred: dict[str, tuple[int, Fraction]] = {}  # per customer, as of the last day they were touched
    days = []
    for day in sorted({*moved, *money}):
        end = _end_of(day)
        for customer_id in touched.get(day, ()):
            deferred[customer_id] = _deferred([e for e in by_customer[customer_id] if e.created_at < end], packs)
        counts = moved.get(day, dict.fromkeys(MOVED.values(), 0))
        balance += net.get(day, 0)
        paid, refunded = money.get(day, (0, 0))
        received += paid - refunded
        credits = sum(c for c, _ in deferred.values())
        cents = sum((m for _, m in deferred.values()), Fraction(0))
        days.append(
            CreditDay(
                day,
                **counts,
                balance=balance,
                deferred_credits=credits,
                deferred_cents=_cents(cents),
                pack_paid_cents=paid,
                pack_refunded_cents=refunded,
                pack_received_cents=received,
            )
        )
    return [d for d in days if since is None or d.day >= since]


def credit_day(session: Session, day: date) -> CreditDay:
    """The numbers of one day: what moved on it (nothing, on a quiet day) and where the
    books stood at its end (carried from the last day anything moved)."""
    before = [d for d in credit_days(session) if d.day <= day]
    if not before:
        return CreditDay(day)
    last = before[-1]
    if last.day == day:
        return last
    return CreditDay(day, **{name: getattr(last, name) for name in CARRIED})


def has_credits(session: Session) -> bool:
    """Whether the orders database has the wallet's tables (a database migrated before
    credits existed has none: its report has no credits to show, not an error)."""
    names = set(inspect(session.connection()).get_table_names())
    return {"credit_entries", "pack_purchases"} <= names


def credits_summary(session: Session | None, since: date | None = None) -> dict:
    """What `photogen report --json` shows under `credits`: the days (from `since`), what
    moved over them, and where the books stand now. No session (no orders database), or a
    database without the wallet's tables: no days, all zeros."""
    every = credit_days(session) if session is not None and has_credits(session) else []
    shown = [d.to_dict() for d in every if since is None or d.day >= since]
    return {
        "days": shown,
        "totals": {name: sum(d[name] for d in shown) for name in MOVED.values()},  # over the days shown
        "now": {name: getattr(every[-1], name) if every else 0 for name in CARRIED},  # whatever `since` says
    }


def credit_frame(days: Sequence[CreditDay]):
    """The days as a pandas DataFrame, one row a day (for a notebook)."""
    import pandas as pd

    return pd.DataFrame([d.to_dict() for d in days], columns=COLUMNS)
