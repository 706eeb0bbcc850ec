"""The webhook outbox: events for the storefront, written in the transaction of the change.

Every state change an order makes is written to the orders database by the book; in the
same transaction this module records the storefront's event for it (`order.paid`,
`order.shipped`, ...) and one pending delivery per endpoint that asked for it. A change
that commits has its event; a change that rolls back has none. `webhooks/delivery.py`
delivers what is pending, signed, with retries.

An event carries the order as it was at that moment, without links: signed file links
expire in minutes while a delivery may be retried for a day, so a storefront that wants
the proofs or the print file reads the order (`GET /v1/orders/{id}`) when the event arrives.

A delivery's status is a `DeliveryStatus`, stored as its plain word, and this module is its
only writer: `add_delivery` makes one pending, `send_again` (redelivery) and the outcomes
`delivered` and `given_up` change it; `webhooks/delivery.py` calls them.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.tables import FulfilmentRow, WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from photogen_pipelines.orders.states import Order, OrderEvent, OrderState

S = OrderState
# the state an order moves into -> the event the storefront hears
STATE_EVENTS: Mapping[OrderState, str] = {
    S.PAID: "order.paid",
    S.PROOFS_READY: "order.proofs_ready",
    S.READY: "order.ready",
    S.SUBMITTED: "order.submitted",
    S.SHIPPED: "order.shipped",
    S.DELIVERED: "order.delivered",
    S.REJECTED: "order.rejected",
    S.FAILED: "order.failed",
    S.REFUNDED: "order.refunded",
    S.CANCELLED: "order.cancelled",
}
APPROVAL_REMINDER = "order.approval_reminder"
EVENT_TYPES: tuple[str, ...] = (*STATE_EVENTS.values(), APPROVAL_REMINDER)
ALL_EVENTS = "*"  # an endpoint subscribed to every event type, today's and tomorrow's


class DeliveryStatus(enum.StrEnum):
    """Where one event's delivery to one endpoint stands (`webhook_deliveries.status`)."""

    PENDING = "pending"  # due at its next_attempt_at (a worker sending it holds it until then)
    DELIVERED = "delivered"  # an attempt was answered 2xx
    FAILED = "failed"  # given up: its retry schedule ran out, or its endpoint was disabled


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def order_summary(order: Order, fulfilment: FulfilmentRow | None = None) -> dict:
    """The order as an event carries it: JSON-ready, no personal data, no links."""
    summary = {
        "id": order.id,
        "state": order.state.value,
        "reason": order.reason,
        "style_id": order.style_id,
        "product_id": order.product_id,
        "variants": order.variants,
        "approval": order.approval,
        "approved_proof": order.approved_proof,
        "shipping_method": order.shipping_method.value if order.shipping_method else None,
        "payment": {
            "mode": order.payments,
            "amount_cents": order.amount_cents,
            "currency": order.currency,
            "paid_cents": order.paid_cents,
            "refunded_cents": order.refunded_cents,
        },
        "fulfilment": None,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }
    if fulfilment is not None:
        summary["fulfilment"] = {
            "provider": fulfilment.provider,
            "provider_order_id": fulfilment.provider_order_id,
            "status": fulfilment.status,
            "carrier": fulfilment.carrier,
            "tracking_number": fulfilment.tracking_number,
            "tracking_url": fulfilment.tracking_url,
        }
    return summary


def subscribed(endpoint: WebhookEndpointRow, event_type: str) -> bool:
    return endpoint.disabled_at is None and (ALL_EVENTS in endpoint.events or event_type in endpoint.events)


def record_event(
    session: Session, api_key_id: str, event_type: str, order: Order, *, data: Mapping | None = None, at: datetime | None = None
) -> str:
    """Write one event and its pending deliveries in the caller's transaction; its id."""
    at = at or utc_now()
    event_id = new_event_id()
    fulfilment = session.get(FulfilmentRow, order.id)
    payload = {
        "id": event_id,
        "type": event_type,
        "created": at.isoformat(),
        "data": {"order": order_summary(order, fulfilment), **(data or {})},
    }
    session.add(
        WebhookEventRow(id=event_id, api_key_id=api_key_id, type=event_type, order_id=order.id, created_at=at, payload=payload)
    )
    session.flush()  # the deliveries point at it
    endpoints = session.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.api_key_id == api_key_id)).all()
    for endpoint in endpoints:
        if subscribed(endpoint, event_type):
            add_delivery(session, event_id, endpoint.id, at)
    return event_id


# -- a delivery's status: written here only ------------------------------------------------


def add_delivery(session: Session, event_id: str, endpoint_id: str, at: datetime) -> WebhookDeliveryRow:
    """A new delivery of the event to the endpoint, pending and due at `at`."""
    delivery = WebhookDeliveryRow(event_id=event_id, endpoint_id=endpoint_id, created_at=at)
    send_again(delivery, at)
    session.add(delivery)
    return delivery


def send_again(delivery: WebhookDeliveryRow, at: datetime) -> None:
    """Pending again, due at `at`, with a fresh retry schedule (its log keeps the earlier attempts)."""
    delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.delivered_at = DeliveryStatus.PENDING, 0, at, None


def delivered(delivery: WebhookDeliveryRow, at: datetime) -> None:
    delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, at, None


def given_up(delivery: WebhookDeliveryRow, reason: str | None = None) -> None:
    """Failed for good (until a redelivery); `reason` replaces the last attempt's error."""
    delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    if reason is not None:
        delivery.last_error = reason


def record_order_events(session: Session, order: Order, new_events: Iterable[OrderEvent]) -> list[str]:
    """The storefront's events for an order's new state changes (orders placed without an
    API key, from the CLI, have no storefront to tell)."""
    if order.api_key_id is None:
        return []
    return [
        record_event(session, order.api_key_id, STATE_EVENTS[event.to_state], order, at=event.at)
        for event in new_events
        if event.to_state in STATE_EVENTS and event.from_state is not None
    ]
