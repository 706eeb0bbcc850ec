"""The free allowance: a few previews a customer may have made before paying, per UTC day.

Counted under the customer's row lock in the transaction that records the preview, so two
requests at once cannot both take the last one. Refused with the time it resets."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import PreviewPolicy
from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.tables import CustomerRow, OrderRow
from photogen_pipelines.errors import LimitReached


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def previews_today(session: Session, customer: CustomerRow, api_key_id: str | None, now: datetime) -> int:
    start, end = day_bounds(now)
    key = OrderRow.api_key_id.is_(None) if api_key_id is None else OrderRow.api_key_id == api_key_id
    query = select(func.count()).where(
        key,
        OrderRow.customer_ref == customer.ref,
        OrderRow.preview.is_(True),
        OrderRow.created_at >= start,
        OrderRow.created_at < end,
    )
    return int(session.scalar(query) or 0)


def use_free_preview(
    session: Session, policy: PreviewPolicy, customer: CustomerRow, api_key_id: str | None, now: datetime | None = None
) -> int:
    """Take one of today's free previews (the caller holds the customer's row lock and
    records the preview order in the same transaction); returns how many are used with it.
    LimitReached(free_previews_exhausted) with `resets_at` once the day's are spent."""
    now = now or utc_now()
    used = previews_today(session, customer, api_key_id, now)
    if used >= policy.free_per_day:
        resets_at = day_bounds(now)[1]
        raise LimitReached(
            f"customer {customer.ref} has had the {policy.free_per_day} free previews of today; "
            f"more from {resets_at.isoformat()}, or order without a preview",
            code="free_previews_exhausted",
            details={"resets_at": resets_at.isoformat(), "retry_after": max(1, math.ceil((resets_at - now).total_seconds()))},
        )
    return used + 1
