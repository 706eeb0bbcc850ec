"""The ledger as of now, what `photogen report` reads: the generation ledger's day files,
and the settled orders those files do not hold yet, read directly from the orders
database. The direct rows come from the same row builder the `generation_ledger` asset
uses (`ledger_rows`), so a day's numbers are the same before and after its file is built.
Nothing is written here: building ledger files stays the asset's job.

Where the orders database is read: every run of days (from `since`, or the beginning)
with no day file before the newest file, and everything from the newest file's day on.
A day file is taken as complete, except the newest: it may have been built while its day
was still running (today is a partition too), so orders that settled that day after it
was built, or settled again since (a rejection refunded later), are read directly too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from photogen_pipelines.analytics.ledger import (
    conform,
    day_window,
    empty_ledger,
    ledger_days,
    ledger_rows,
    read_ledger,
    settled_at,
)
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order
from photogen_pipelines.storage.stores import ArtifactStore

LEDGER, ORDERS_DB = "ledger", "orders_db"  # where a row came from
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
END = datetime(9999, 1, 1, tzinfo=UTC)


def database_windows(files: list[date], since: date | None = None) -> list[tuple[datetime, datetime]]:
    """The [start, end) windows to read from the orders database, given the days that
    have a ledger file (from `since` on), oldest first."""
    windows, start = [], day_window(since)[0] if since else BEGINNING
    for day in sorted(files):
        first, after = day_window(day)
        if first > start:
            windows.append((start, first))  # days with no file
        start = after
    windows.append((day_window(max(files))[0] if files else start, END))
    return windows


@dataclass(frozen=True)
class CurrentLedger:
    rows: pd.DataFrame  # the ledger's schema, one row per order (its latest settlement)
    source: list[str]  # per row: LEDGER (a day file) or ORDERS_DB (read directly)
    ledger_days: list[date]  # the days with a ledger file, from `since` on (empty days too)
    database_read: bool  # False: no orders database to read, the ledger alone

    def days(self, source: str) -> list[date]:
        """The days with rows from `source`."""
        return sorted({date.fromisoformat(d) for d, s in zip(self.rows["day"], self.source, strict=True) if s == source})

    def order_ids(self, source: str) -> list[str]:
        return [o for o, s in zip(self.rows["order_id"], self.source, strict=True) if s == source]

    def by_day(self) -> list[dict]:
        """Per day: the orders, how many came from the ledger and how many were read
        directly, whether the day has a ledger file, and so its source."""
        counts: dict[str, dict[str, int]] = {d.isoformat(): {LEDGER: 0, ORDERS_DB: 0} for d in self.ledger_days}
        for day, source in zip(self.rows["day"], self.source, strict=True):
            counts.setdefault(day, {LEDGER: 0, ORDERS_DB: 0})[source] += 1
        files = {d.isoformat() for d in self.ledger_days}
        return [
            {
                "day": day,
                "orders": count[LEDGER] + count[ORDERS_DB],
                "from_ledger": count[LEDGER],
                "from_orders_db": count[ORDERS_DB],
                "ledger_file": day in files,
                "source": _day_source(day in files, count[ORDERS_DB] > 0),
            }
            for day, count in sorted(counts.items())
        ]


def _day_source(has_file: bool, read_directly: bool) -> str:
    if not has_file:
        return ORDERS_DB
    return f"{LEDGER}+{ORDERS_DB}" if read_directly else LEDGER


def not_in_ledger(book: SqlOrderBook, ledger: pd.DataFrame, files: list[date], since: date | None = None) -> list[Order]:
    """The settled orders the ledger does not hold as they are now: not in it, or settled
    again after the row it has."""
    kept = dict(zip(ledger["order_id"], ledger["settled_at"], strict=True))
    missing: list[Order] = []
    for window in database_windows(files, since):
        for order in book.settled_between(*window):
            known = kept.get(order.id)
            if known is None or pd.isna(known) or known < settled_at(order):
                missing.append(order)
    return missing


def current_ledger(store: ArtifactStore, book: SqlOrderBook | None, since: date | None = None) -> CurrentLedger:
    """The ledger's rows from `since` on, and the settled orders it does not hold yet read
    directly from `book` (None: no orders database, the ledger alone)."""
    files = [d for d in ledger_days(store) if since is None or d >= since]
    ledger = read_ledger(store, since)
    direct = ledger_rows(book, store, not_in_ledger(book, ledger, files, since)) if book is not None else empty_ledger()
    parts = [frame.assign(source=name) for frame, name in ((ledger, LEDGER), (direct, ORDERS_DB)) if len(frame)]
    if not parts:
        return CurrentLedger(empty_ledger(), [], files, book is not None)
    both = pd.concat(parts, ignore_index=True).sort_values(["settled_at", "order_id"], kind="stable")
    # an order read directly because it settled again replaces its older ledger row
    both = both.drop_duplicates("order_id", keep="last").reset_index(drop=True)
    return CurrentLedger(conform(both), list(both["source"]), files, book is not None)


def day_ranges(days: list[date]) -> str:
    """2026-11-01..2026-11-03, 2026-11-05: consecutive days as one range."""
    runs: list[list[date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][-1] + timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(run[0].isoformat() if len(run) == 1 else f"{run[0]}..{run[-1]}" for run in runs)
