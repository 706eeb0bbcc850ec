"""Outbound webhooks: the storefront's endpoints, the URLs it wants its orders' events at.

Each API key registers its own endpoints (at most `MAX_ENDPOINTS_PER_KEY` enabled ones) and
sees only those: another key's endpoint is NotFound, as if it did not exist. An endpoint's
URL must be https:// (http:// only on this machine, or with `allow_http`) to a public
address: its host is resolved at registration and refused when any address it has is
loopback, private, link-local or a cloud metadata service (`webhook_destinations`: the
settings PHOTOGEN_WEBHOOK_ALLOW_PRIVATE and PHOTOGEN_WEBHOOK_ALLOWED_HOSTS open the first
two). Every delivery checks again, at connect time (`delivery.py`, through http.py's
`Destinations`). It gets a `whsec_…` signing secret, shown to the storefront once at
creation. Deleting one disables it, so its delivery log stays readable.

Kept apart from `delivery.py`, which signs and sends the deliveries `orders/outbox.py`
queues for these endpoints, and `events.py`, which reads the events and their delivery log.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import WebhookEndpointRow
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.http import Destinations, address_kind, resolve
from photogen_pipelines.orders.outbox import ALL_EVENTS, EVENT_TYPES
from photogen_pipelines.settings import PhotoGenSettings

SECRET_PREFIX = "whsec_"
ENDPOINT_PREFIX = "we_"
# endpoints per API key: each one multiplies every event's deliveries
MAX_ENDPOINTS_PER_KEY = 16
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 200
# how long registration waits for the host's addresses; a host that does not resolve in time
# is registered, and checked when a delivery connects
LOOKUP_SECONDS = 3.0


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    @classmethod
    def of(cls, row: WebhookEndpointRow) -> WebhookEndpoint:
        return cls(row.id, row.url, list(row.events), row.description, as_utc(row.created_at), as_utc(row.disabled_at))


def webhook_destinations(settings: PhotoGenSettings | None = None) -> Destinations:
    """Where webhooks may go, from the settings (default: this process's PHOTOGEN_*
    variables): public addresses; loopback and private ones too with
    PHOTOGEN_WEBHOOK_ALLOW_PRIVATE (development, tests) or for the hosts
    PHOTOGEN_WEBHOOK_ALLOWED_HOSTS names; plain http:// beyond loopback with
    PHOTOGEN_WEBHOOK_ALLOW_HTTP."""
    settings = settings if settings is not None else PhotoGenSettings()
    return Destinations(
        allow_private=settings.webhook_allow_private,
        allowed_hosts=frozenset(settings.webhook_allowed_hosts),
        allow_http=settings.webhook_allow_http,
    )


def valid_url(url: str, *, destinations: Destinations | None = None) -> str:
    """The endpoint URL, or BadInput: http(s) with a host and no credentials; https unless
    the host is this machine (a storefront's development server) or `allow_http`; and a
    host `destinations` allow (default: `webhook_destinations()`) at every address it
    resolves to now. A host that does not resolve is left to the check at connect time."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise BadInput(f"the URL must be 1 to {MAX_URL_LENGTH} characters", code="invalid_webhook_url")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise BadInput(f"{url!r} is not a URL", code="invalid_webhook_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput("the URL must be http:// or https:// with a host", code="invalid_webhook_url")
    if parts.username or parts.password:
        # the URL is shown in every listing and log: credentials do not belong in it; the signature authenticates us
        raise BadInput("the URL must not contain a user name or password", code="invalid_webhook_url")
    destinations = destinations if destinations is not None else webhook_destinations()
    addresses = resolve(parts.hostname, timeout=LOOKUP_SECONDS)
    loopback = bool(addresses) and all(address_kind(a) == "loopback" for a in addresses)
    if parts.scheme == "http" and not (destinations.allow_http or loopback):
        message = "events carry order data: the URL must be https:// (http:// only on localhost)"
        raise BadInput(message, code="webhook_url_not_https")
    if destinations.problem(parts.hostname, addresses):
        # which kind of address it is stays unsaid: registration is no probe of the shop's network
        message = "webhooks go only to public internet addresses: the URL's host is not one"
        raise BadInput(message, code="webhook_url_not_public")
    return parts.geturl()


def valid_events(events: Sequence[str]) -> list[str]:
    """The event types to subscribe to, without repeats; ["*"] for all of them (today's and
    those added later)."""
    if isinstance(events, str) or not events:
        raise BadInput('events must be a non-empty list of event types, or ["*"]', code="invalid_webhook_events")
    unknown = [e for e in events if e != ALL_EVENTS and e not in EVENT_TYPES]
    if unknown:
        raise BadInput(f'unknown event type(s) {unknown}; known: {", ".join(EVENT_TYPES)} or "*"', code="unknown_webhook_event")
    if ALL_EVENTS in events:
        return [ALL_EVENTS]
    return list(dict.fromkeys(events))


def _valid_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise BadInput(f"the description is over {MAX_DESCRIPTION_LENGTH} characters", code="invalid_webhook_description")
    return description


def _endpoint_row(session: Session, api_key_id: str, endpoint_id: str) -> WebhookEndpointRow:
    row = session.get(WebhookEndpointRow, endpoint_id)
    if row is None or row.api_key_id != api_key_id:  # another key's endpoint does not exist for this one
        raise NotFound(f"webhook endpoint {endpoint_id} not found", code="webhook_endpoint_not_found")
    return row


def _check_room(session: Session, api_key_id: str) -> None:
    enabled = session.scalar(
        select(func.count())
        .select_from(WebhookEndpointRow)
        .where(WebhookEndpointRow.api_key_id == api_key_id, WebhookEndpointRow.disabled_at.is_(None))
    )
    if enabled >= MAX_ENDPOINTS_PER_KEY:
        message = f"at most {MAX_ENDPOINTS_PER_KEY} enabled webhook endpoints per API key"
        raise BadInput(message, code="too_many_webhook_endpoints")


def create_endpoint(
    database: Database,
    api_key_id: str,
    url: str,
    events: Sequence[str] = (ALL_EVENTS,),
    description: str | None = None,
    *,
    destinations: Destinations | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown to the storefront once; kept to sign)."""
    row = WebhookEndpointRow(
        id=ENDPOINT_PREFIX + secrets.token_hex(8),
        api_key_id=api_key_id,
        url=valid_url(url, destinations=destinations),
        events=valid_events(events),
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        description=_valid_description(description),
        created_at=utc_now(),
        disabled_at=None,
    )
    with database.session() as session:
        _check_room(session, api_key_id)
        session.add(row)
    return WebhookEndpoint.of(row), row.secret


def list_endpoints(database: Database, api_key_id: str) -> list[WebhookEndpoint]:
    with database.session() as session:
        rows = session.scalars(
            select(WebhookEndpointRow)
            .where(WebhookEndpointRow.api_key_id == api_key_id)
            .order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id)
        ).all()
        return [WebhookEndpoint.of(row) for row in rows]


def get_endpoint(database: Database, api_key_id: str, endpoint_id: str) -> WebhookEndpoint:
    with database.session() as session:
        return WebhookEndpoint.of(_endpoint_row(session, api_key_id, endpoint_id))


UNCHANGED: object = object()  # an update's field that was not given


def update_endpoint(
    database: Database,
    api_key_id: str,
    endpoint_id: str,
    *,
    url: str | object = UNCHANGED,
    events: Sequence[str] | object = UNCHANGED,
    description: str | None | object = UNCHANGED,
    disabled: bool | object = UNCHANGED,
    destinations: Destinations | None = None,
) -> WebhookEndpoint:
    """Change what is given. Disabling stops deliveries at once (pending ones fail with
    "endpoint disabled" when next due); enabling again delivers events from then on."""
    checked_url = valid_url(url, destinations=destinations) if url is not UNCHANGED else None  # resolved outside the transaction
    with database.session() as session:
        row = _endpoint_row(session, api_key_id, endpoint_id)
        if checked_url is not None:
            row.url = checked_url
        if events is not UNCHANGED:
            row.events = valid_events(events)
        if description is not UNCHANGED:
            row.description = _valid_description(description)
        if disabled is True and row.disabled_at is None:
            row.disabled_at = utc_now()
        elif disabled is False and row.disabled_at is not None:
            _check_room(session, api_key_id)
            row.disabled_at = None
        return WebhookEndpoint.of(row)


def delete_endpoint(database: Database, api_key_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Disable it: it receives nothing more, and its delivery log stays readable (the
    deliveries it had point at it)."""
    return update_endpoint(database, api_key_id, endpoint_id, disabled=True)
