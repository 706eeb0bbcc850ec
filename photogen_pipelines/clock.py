"""The one UTC clock: the time now, and stored times made aware.

SQLite hands back the naive UTC datetimes it was given, PostgreSQL aware ones; everything
the core compares or returns is aware UTC, so reads pass through `as_utc`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utc_now() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """`value` as aware UTC: a naive datetime is taken as UTC (how the orders database stores it)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
