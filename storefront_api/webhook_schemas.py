"""Request and response bodies of the outbound webhook routes (endpoints, events, the log)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from photogen_pipelines.orders.outbox import ALL_EVENTS, EVENT_TYPES, DeliveryStatus
from photogen_pipelines.webhooks.endpoints import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH
from storefront_api.schemas import RequestBody

EVENTS_HELP = f'event types to receive ({", ".join(EVENT_TYPES)}), or ["{ALL_EVENTS}"] for all, including future ones'
# the enum is the document's; the core checks the names, with its own code (unknown_webhook_event)
EventType = Annotated[str, Field(max_length=64, json_schema_extra={"enum": list(EVENT_TYPES)})]
Subscription = Annotated[str, Field(max_length=64, json_schema_extra={"enum": [*EVENT_TYPES, ALL_EVENTS]})]


class WebhookEndpointIn(RequestBody):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description="https:// to a public internet address")
    events: list[Subscription] = Field([ALL_EVENTS], min_length=1, max_length=len(EVENT_TYPES) + 1, description=EVENTS_HELP)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION_LENGTH)


class WebhookEndpointPatch(RequestBody):
    """Only the fields sent change."""

    url: str = Field(None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[Subscription] = Field(None, min_length=1, max_length=len(EVENT_TYPES) + 1, description=EVENTS_HELP)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION_LENGTH)
    disabled: bool = Field(None, description="true: no more deliveries; false: deliveries again from now on")


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    disabled: bool
    created_at: datetime
    disabled_at: datetime | None


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret: str = Field(description="signs every delivery (PhotoGen-Signature); shown only in this response: store it now")


class WebhookEventOut(BaseModel):
    id: str
    type: str
    order_id: str | None
    created_at: datetime
    payload: dict = Field(description="the JSON body each delivery POSTs")


class WebhookAttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null when none came (timeout, refused)")
    error: str | None = Field(
        description="how it failed, coarsely: HTTP <status>, timed out after <n> s, connection refused, host not found, "
        "destination not allowed, TLS failed, could not connect, connection closed without an answer, or not sent: …"
    )
    duration_ms: int


class WebhookDeliveryStateOut(BaseModel):
    """Where the event's delivery to one endpoint stands."""

    id: int
    endpoint_id: str
    url: str
    status: DeliveryStatus = Field(description="pending (due at next_attempt_at), delivered, or failed (given up)")
    attempts: int = Field(description="attempts in the current retry schedule (a redelivery starts a new one)")
    next_attempt_at: datetime | None = Field(description="when it is tried next, while pending")
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="the receiver's HTTP status at the last attempt; null when none came")
    last_error: str | None = Field(description="how the last attempt failed, coarsely (as in the log); null if it did not")
    delivered_at: datetime | None


class WebhookDeliveryOut(WebhookDeliveryStateOut):
    log: list[WebhookAttemptOut] = Field(description="every attempt, oldest first")


class WebhookEventListItemOut(WebhookEventOut):
    deliveries: list[WebhookDeliveryStateOut] = Field(
        description="one per endpoint the event was sent to, oldest first; every attempt: GET /v1/webhook-events/{id}"
    )


class WebhookEventListOut(BaseModel):
    data: list[WebhookEventListItemOut] = Field(description="newest first")
    has_more: bool = Field(description="pass the last id as starting_after for the next page")


class WebhookEventDetailOut(WebhookEventOut):
    deliveries: list[WebhookDeliveryOut]


class WebhookRedeliveryOut(BaseModel):
    event_id: str
    delivery_ids: list[int] = Field(description="pending again, due now: one per enabled endpoint subscribed to the event")
