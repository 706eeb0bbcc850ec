"""Outbound webhooks: where a storefront wants its orders' events, and what was sent.

Every route needs the storefront's API key and sees only that key's endpoints and events;
another key's id is a 404, as if it did not exist. The work is done by the core's
`webhook_endpoints.py`, `webhook_events.py` and `webhooks.py` (redelivery). Stripe's inbound
webhook is this package's `webhooks.py`."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from photogen_pipelines.webhooks import delivery as webhooks
from photogen_pipelines.webhooks import endpoints as webhook_endpoints
from photogen_pipelines.webhooks import events as webhook_events
from storefront_api.api.deps import ServicesDep, StorefrontDep
from storefront_api.webhook_schemas import (
    EventType,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
    WebhookEventDetailOut,
    WebhookEventListItemOut,
    WebhookEventListOut,
    WebhookRedeliveryOut,
)

router = APIRouter(tags=["webhooks"])

EndpointId = Annotated[str, Path(max_length=64)]
EventId = Annotated[str, Path(max_length=64)]


def _destinations(services) -> webhook_endpoints.Destinations:
    # public addresses only, unless PHOTOGEN_WEBHOOK_ALLOW_PRIVATE / _ALLOWED_HOSTS / _ALLOW_HTTP say more
    return webhook_endpoints.webhook_destinations(services.settings)


def _endpoint_out(endpoint: webhook_endpoints.WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(**dataclasses.asdict(endpoint), disabled=endpoint.disabled)


def _listed(event: webhook_events.WebhookEvent, deliveries: list[webhook_events.DeliveryState]) -> WebhookEventListItemOut:
    return WebhookEventListItemOut(**dataclasses.asdict(event), deliveries=[dataclasses.asdict(d) for d in deliveries])


@router.post("/webhook-endpoints", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreatedOut)
def create_webhook_endpoint(body: WebhookEndpointIn, caller: StorefrontDep, services: ServicesDep) -> WebhookEndpointCreatedOut:
    """Register a URL for the key's order events. The response holds the signing secret:
    it is never shown again."""
    endpoint, secret = webhook_endpoints.create_endpoint(
        services.database, caller.api_key_id, body.url, body.events, body.description, destinations=_destinations(services)
    )
    return WebhookEndpointCreatedOut(**_endpoint_out(endpoint).model_dump(), secret=secret)


@router.get("/webhook-endpoints", response_model=list[WebhookEndpointOut])
def list_webhook_endpoints(caller: StorefrontDep, services: ServicesDep) -> list[WebhookEndpointOut]:
    """The key's endpoints, oldest first, disabled ones too."""
    return [_endpoint_out(e) for e in webhook_endpoints.list_endpoints(services.database, caller.api_key_id)]


@router.get("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
def get_webhook_endpoint(endpoint_id: EndpointId, caller: StorefrontDep, services: ServicesDep) -> WebhookEndpointOut:
    return _endpoint_out(webhook_endpoints.get_endpoint(services.database, caller.api_key_id, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
def update_webhook_endpoint(
    endpoint_id: EndpointId, body: WebhookEndpointPatch, caller: StorefrontDep, services: ServicesDep
) -> WebhookEndpointOut:
    """Change the URL, the events, the description, or turn deliveries off and on."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    endpoint = webhook_endpoints.update_endpoint(
        services.database, caller.api_key_id, endpoint_id, destinations=_destinations(services), **changes
    )
    return _endpoint_out(endpoint)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook_endpoint(endpoint_id: EndpointId, caller: StorefrontDep, services: ServicesDep) -> Response:
    """Stop deliveries to the endpoint (it is disabled, its delivery log stays readable)."""
    webhook_endpoints.delete_endpoint(services.database, caller.api_key_id, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhook-events", response_model=WebhookEventListOut)
def list_webhook_events(
    caller: StorefrontDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=webhook_events.MAX_EVENTS_PAGE)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64, description="the last id of the previous page")] = None,
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    event_type: Annotated[EventType | None, Query(alias="type", description="an event type, e.g. order.shipped")] = None,
) -> WebhookEventListOut:
    """The key's events, newest first, each with where its deliveries stand (status,
    attempts, the last outcome, the next attempt); every attempt is on the event's own page."""
    page = webhook_events.list_events(
        services.database, caller.api_key_id, limit=limit, starting_after=starting_after, order_id=order_id, event_type=event_type
    )
    return WebhookEventListOut(data=[_listed(e, page.deliveries[e.id]) for e in page.events], has_more=page.has_more)


@router.get("/webhook-events/{event_id}", response_model=WebhookEventDetailOut)
def get_webhook_event(event_id: EventId, caller: StorefrontDep, services: ServicesDep) -> WebhookEventDetailOut:
    """The event, its deliveries, and every attempt each made: the delivery log."""
    detail = webhook_events.get_event(services.database, caller.api_key_id, event_id)
    deliveries = [dataclasses.asdict(d) for d in detail.deliveries]
    return WebhookEventDetailOut(**dataclasses.asdict(detail.event), deliveries=deliveries)


@router.post("/webhook-events/{event_id}/redeliver", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookRedeliveryOut)
def redeliver_webhook_event(event_id: EventId, caller: StorefrontDep, services: ServicesDep) -> WebhookRedeliveryOut:
    """Send the event again, soon, to every enabled endpoint that subscribes to it now,
    with a fresh retry schedule."""
    delivery_ids = webhooks.redeliver(services.database, caller.api_key_id, event_id)
    return WebhookRedeliveryOut(event_id=event_id, delivery_ids=delivery_ids)
