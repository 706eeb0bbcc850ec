"""Outbound webhooks: the storefront's events and their delivery log, as the API reads them.

`orders/outbox.py` writes each event and its deliveries; `delivery.py` sends them and logs
every attempt. This module only reads: a key's events newest first, a page at a time, each
with where its deliveries stand, and one event with each delivery's state and attempts.
Another key's event is NotFound, as if it did not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.orders.outbox import DeliveryStatus

MAX_EVENTS_PAGE = 100
# what a delivery's log may say (delivery.py writes nothing else); a row an older version
# wrote with the HTTP library's own words (addresses, "connection aborted") is shown coarsely
_SHOWN = re.compile(
    r"HTTP \d{3}|timed out after [\d.]+ s|connection refused|host not found|destination not allowed|TLS failed"
    r"|could not connect|connection closed without an answer|request not sent|endpoint disabled|not sent: .*",
    re.DOTALL,
)


def shown_error(error: str | None) -> str | None:
    """A delivery log's error as the storefront sees it: one of the coarse outcomes."""
    if error is None or _SHOWN.fullmatch(error):
        return error
    if status := re.match(r"HTTP (\d{3})\b", error):
        return f"HTTP {status[1]}"
    if "timed out" in error.lower():
        return "timed out"
    return "could not connect"


def event_row(session: Session, api_key_id: str, event_id: str) -> WebhookEventRow:
    """The key's event, or NotFound (another key's event does not exist for this one)."""
    row = session.get(WebhookEventRow, event_id)
    if row is None or row.api_key_id != api_key_id:
        raise NotFound(f"webhook event {event_id} not found", code="webhook_event_not_found")
    return row


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    order_id: str | None
    created_at: datetime
    payload: dict

    @classmethod
    def of(cls, row: WebhookEventRow) -> WebhookEvent:
        return cls(row.id, row.type, row.order_id, as_utc(row.created_at), dict(row.payload))


@dataclass(frozen=True)
class WebhookAttempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class DeliveryState:
    """Where one event's delivery to one endpoint stands; its error is a coarse outcome."""

    id: int
    endpoint_id: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDeliveryRow, url: str) -> DeliveryState:
        return cls(**_state_fields(row, url))


def _state_fields(row: WebhookDeliveryRow, url: str) -> dict:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "url": url,
        "status": DeliveryStatus(row.status),
        "attempts": row.attempts,
        "next_attempt_at": as_utc(row.next_attempt_at),
        "last_attempt_at": as_utc(row.last_attempt_at),
        "last_status_code": row.last_status_code,
        "last_error": shown_error(row.last_error),
        "delivered_at": as_utc(row.delivered_at),
    }


@dataclass(frozen=True)
class WebhookDelivery(DeliveryState):
    """The delivery and every attempt it made, oldest first."""

    log: list[WebhookAttempt]


@dataclass(frozen=True)
class WebhookEventDetail:
    event: WebhookEvent
    deliveries: list[WebhookDelivery]


@dataclass(frozen=True)
class EventPage:
    events: list[WebhookEvent]
    has_more: bool
    # per event id, where each of its deliveries stands, oldest delivery first (an event no
    # endpoint subscribed to has none)
    deliveries: dict[str, list[DeliveryState]] = field(default_factory=dict)


def _deliveries_of(session: Session, event_ids: list[str]) -> list[tuple[WebhookDeliveryRow, str]]:
    """The deliveries of these events with their endpoint's URL, in one query."""
    if not event_ids:
        return []
    return session.execute(
        select(WebhookDeliveryRow, WebhookEndpointRow.url)
        .join(WebhookEndpointRow, WebhookEndpointRow.id == WebhookDeliveryRow.endpoint_id)
        .where(WebhookDeliveryRow.event_id.in_(event_ids))
        .order_by(WebhookDeliveryRow.id)
    ).all()


def list_events(
    database: Database,
    api_key_id: str,
    *,
    limit: int = 20,
    starting_after: str | None = None,
    order_id: str | None = None,
    event_type: str | None = None,
) -> EventPage:
    """The key's events, newest first. The next page starts after the last id of this one."""
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise BadInput(f"limit must be 1 to {MAX_EVENTS_PAGE}", code="invalid_limit")
    with database.session() as session:
        query = select(WebhookEventRow).where(WebhookEventRow.api_key_id == api_key_id)
        if order_id is not None:
            query = query.where(WebhookEventRow.order_id == order_id)
        if event_type is not None:
            query = query.where(WebhookEventRow.type == event_type)
        if starting_after is not None:
            cursor = session.get(WebhookEventRow, starting_after)
            if cursor is None or cursor.api_key_id != api_key_id:
                raise BadInput(f"starting_after: no event {starting_after}", code="invalid_starting_after")
            query = query.where(
                or_(
                    WebhookEventRow.created_at < cursor.created_at,
                    and_(WebhookEventRow.created_at == cursor.created_at, WebhookEventRow.id < cursor.id),
                )
            )
        newest_first = query.order_by(WebhookEventRow.created_at.desc(), WebhookEventRow.id.desc())
        rows = session.scalars(newest_first.limit(limit + 1)).all()
        events = [WebhookEvent.of(row) for row in rows[:limit]]
        deliveries: dict[str, list[DeliveryState]] = {event.id: [] for event in events}
        for delivery, url in _deliveries_of(session, list(deliveries)):  # the whole page's in one query
            deliveries[delivery.event_id].append(DeliveryState.of(delivery, url))
        return EventPage(events, has_more=len(rows) > limit, deliveries=deliveries)


def get_event(database: Database, api_key_id: str, event_id: str) -> WebhookEventDetail:
    """The event, its deliveries and each one's attempts: the delivery log."""
    with database.session() as session:
        event = event_row(session, api_key_id, event_id)
        rows = _deliveries_of(session, [event_id])
        attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery, _ in rows}
        if attempts:
            for attempt in session.scalars(
                select(WebhookAttemptRow)
                .where(WebhookAttemptRow.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttemptRow.at, WebhookAttemptRow.id)
            ):
                attempts[attempt.delivery_id].append(
                    WebhookAttempt(as_utc(attempt.at), attempt.status_code, shown_error(attempt.error), attempt.duration_ms)
                )
        deliveries = [WebhookDelivery(**_state_fields(d, url), log=attempts[d.id]) for d, url in rows]
        return WebhookEventDetail(WebhookEvent.of(event), deliveries)
