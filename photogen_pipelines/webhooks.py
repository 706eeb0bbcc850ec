"""Outbound webhooks: the storefront's endpoints, signed deliveries with retries, redelivery
and the delivery log.

`outbox.py` writes each event and one pending delivery per subscribed endpoint in the
transaction of the change. This module sends them: `deliver_due` claims what is due,
POSTs it outside any transaction, and records how it went.

Every delivery is a POST of the event's JSON, signed over the exact bytes sent:

    PhotoGen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>
    PhotoGen-Event-Id: evt_…
    PhotoGen-Event-Type: order.shipped

The secret is the endpoint's `whsec_…` string exactly as shown at creation (prefix
included). A receiver checks the signature with `verify_signature` (or its own copy of
it), refuses timestamps older than a few minutes (a replayed request), and treats the
event id as the key that makes a repeat harmless: delivery is at least once.

A 2xx answer delivers. Anything else (another status, a redirect, a timeout, a refused
connection) is retried on `RETRY_SCHEDULE`, over more than a day, before the delivery is
marked failed; every attempt is in the log (`webhook_attempts`).
"""

from __future__ import annotations

import hashlib
import hmac
import http.cookiejar
import ipaddress
import json
import random
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.outbox import ALL_EVENTS, EVENT_TYPES

SIGNATURE_HEADER = "PhotoGen-Signature"
EVENT_ID_HEADER = "PhotoGen-Event-Id"
EVENT_TYPE_HEADER = "PhotoGen-Event-Type"
USER_AGENT = "PhotoGen-Webhooks/1"
SECRET_PREFIX = "whsec_"
ENDPOINT_PREFIX = "we_"

# Waits after the 1st, 2nd, … failed attempt. Their sum (≈ 31.7 h) is how long a receiver may
# be down without losing an event: more than a day, so a storefront broken on a Friday evening
# and fixed on Saturday still hears everything. Capped at 8 h so a fixed receiver does not wait
# long. After the last wait's attempt fails, the delivery is `failed` (redeliver brings it back).
RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (30, 120, 600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 8 * 3600, 8 * 3600)
)
# each wait is lengthened by up to this fraction, at random, so the retries of many deliveries
# that failed together (one receiver down for an hour) do not all arrive again at one instant;
# never shortened, so the schedule's sum stays the guaranteed minimum
RETRY_JITTER = 0.2
# a claimed delivery is not due again for this long: the time another worker must not send it
# while this one does. Far longer than a send (the timeout) so only a crashed worker's claims
# expire; then the delivery is simply sent again (at least once).
CLAIM_LEASE = timedelta(minutes=5)
# endpoints per API key: each one multiplies every event's deliveries
MAX_ENDPOINTS_PER_KEY = 16
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 200
MAX_ERROR_LENGTH = 500
MAX_EVENTS_PAGE = 100
ENDPOINT_DISABLED = "endpoint disabled"


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return _utc(now) if now is not None else datetime.now(UTC)


# -- signing -------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `{timestamp}.{body}` under the endpoint's secret."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str | None, body: bytes | str, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """Whether `header` (PhotoGen-Signature) signs `body` (the raw bytes received, before
    any JSON parsing) under `secret`, with a timestamp within `tolerance_seconds` of `now`
    (unix seconds; default the clock). Any of several `v1=` values may match."""
    if not header:
        return False
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body.encode() if isinstance(body, str) else body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# -- endpoints -----------------------------------------------------------------------------


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
        return cls(row.id, row.url, list(row.events), row.description, _utc(row.created_at), _utc(row.disabled_at))


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def valid_url(url: str, *, allow_http: bool = False) -> str:
    """The endpoint URL, or BadInput: http(s) with a host; https unless the host is this
    machine (a storefront's development server) or `allow_http`."""
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
    if parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname)):
        message = "events carry order data: the URL must be https:// (http:// only on localhost)"
        raise BadInput(message, code="webhook_url_not_https")
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
    allow_http: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown to the storefront once; kept to sign)."""
    row = WebhookEndpointRow(
        id=ENDPOINT_PREFIX + secrets.token_hex(8),
        api_key_id=api_key_id,
        url=valid_url(url, allow_http=allow_http),
        events=valid_events(events),
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        description=_valid_description(description),
        created_at=datetime.now(UTC),
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
    allow_http: bool = False,
) -> WebhookEndpoint:
    """Change what is given. Disabling stops deliveries at once (pending ones fail with
    "endpoint disabled" when next due); enabling again delivers events from then on."""
    with database.session() as session:
        row = _endpoint_row(session, api_key_id, endpoint_id)
        if url is not UNCHANGED:
            row.url = valid_url(url, allow_http=allow_http)
        if events is not UNCHANGED:
            row.events = valid_events(events)
        if description is not UNCHANGED:
            row.description = _valid_description(description)
        if disabled is True and row.disabled_at is None:
            row.disabled_at = datetime.now(UTC)
        elif disabled is False and row.disabled_at is not None:
            _check_room(session, api_key_id)
            row.disabled_at = None
        return WebhookEndpoint.of(row)


def delete_endpoint(database: Database, api_key_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Disable it: it receives nothing more, and its delivery log stays readable (the
    deliveries it had point at it)."""
    return update_endpoint(database, api_key_id, endpoint_id, disabled=True)


# -- delivery ------------------------------------------------------------------------------


def retry_delay(failed_attempts: int, rng: random.Random | None = None) -> timedelta | None:
    """How long to wait after the `failed_attempts`-th failure; None: give up."""
    if failed_attempts > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[failed_attempts - 1]
    return base * (1 + (rng or random).uniform(0, RETRY_JITTER))


@dataclass(frozen=True)
class _Claim:
    """A delivery this worker holds until `lease_until`, with what it needs to send."""

    delivery_id: int
    event_id: str
    event_type: str
    url: str
    secret: str
    body: bytes
    due_at: datetime
    lease_until: datetime


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    sent: bool  # False: not attempted (the tick's time ran out); the claim is given back
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.sent and self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0  # gave up now: the retry schedule is spent
    disabled: int = 0  # pending for an endpoint that was disabled: failed without a request
    deferred: int = 0  # claimed but not sent in time: due again at once
    gave_up: list[int] = field(default_factory=list)  # delivery ids

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed

    def summary(self) -> str:
        text = f"delivered {self.delivered}, retrying {self.retrying}, failed {self.failed}"
        if self.disabled:
            text += f", {self.disabled} skipped (endpoint disabled)"
        if self.deferred:
            text += f", {self.deferred} deferred to the next tick"
        return text


def _body(payload: dict) -> bytes:
    # serialised once: these exact bytes are signed and sent
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _claim(database: Database, now: datetime, limit: int, report: DeliveryReport) -> list[_Claim]:
    """Take up to `limit` due deliveries, oldest first, and push them `CLAIM_LEASE` into the
    future in the same transaction, so no other worker picks them while this one sends.
    PostgreSQL: SKIP LOCKED lets two claimers take different rows instead of queueing.
    SQLite: the transaction already holds the write lock (BEGIN IMMEDIATE)."""
    lease_until = now + CLAIM_LEASE
    claims = []
    with database.session() as session:
        rows = session.execute(
            select(WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow)
            .join(WebhookEndpointRow, WebhookEndpointRow.id == WebhookDeliveryRow.endpoint_id)
            .join(WebhookEventRow, WebhookEventRow.id == WebhookDeliveryRow.event_id)
            .where(WebhookDeliveryRow.status == "pending", WebhookDeliveryRow.next_attempt_at <= now)
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
        ).all()
        for delivery, endpoint, event in rows:
            if endpoint.disabled_at is not None:
                delivery.status, delivery.next_attempt_at, delivery.last_error = "failed", None, ENDPOINT_DISABLED
                report.disabled += 1
                continue
            due_at = _utc(delivery.next_attempt_at)
            delivery.next_attempt_at = lease_until
            body = _body(event.payload)
            claims.append(_Claim(delivery.id, event.id, event.type, endpoint.url, endpoint.secret, body, due_at, lease_until))
    return claims


def _trimmed(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _send(client: requests.Session, claim: _Claim, timeout: float, deadline: float) -> _Outcome:
    if time.monotonic() >= deadline:
        return _Outcome(claim, sent=False)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(claim.secret, claim.body),
        EVENT_ID_HEADER: claim.event_id,
        EVENT_TYPE_HEADER: claim.event_type,
    }
    started = time.monotonic()
    try:
        # no redirects: a 3xx is a failure, never a POST of order data somewhere else.
        # stream: the answer's body is not read (nor kept: only its status matters)
        with client.post(
            claim.url, data=claim.body, headers=headers, timeout=(min(timeout, 5.0), timeout), allow_redirects=False, stream=True
        ) as response:
            status, reason = response.status_code, response.reason
        error = None if 200 <= status < 300 else _trimmed(f"HTTP {status} {reason or ''}".strip())
    except requests.Timeout:
        status, error = None, f"timed out after {timeout:g} s"
    except requests.RequestException as exc:
        status, error = None, _trimmed(f"{type(exc).__name__}: {exc}")
    return _Outcome(claim, True, status, error, round((time.monotonic() - started) * 1000))


def _record(database: Database, outcomes: list[_Outcome], now: datetime, report: DeliveryReport) -> None:
    """Log each attempt and move its delivery on: delivered, or due again after the backoff,
    or failed. A delivery changed meanwhile (redelivered while this worker sent it: its
    lease is gone) keeps that change; only the attempt is logged."""
    with database.session() as session:
        for outcome in outcomes:
            claim = outcome.claim
            delivery = session.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == claim.delivery_id).with_for_update()
            ).one()
            still_ours = delivery.status == "pending" and _utc(delivery.next_attempt_at) == claim.lease_until
            if not outcome.sent:
                if still_ours:
                    delivery.next_attempt_at = claim.due_at
                report.deferred += 1
                continue
            session.add(
                WebhookAttemptRow(
                    delivery_id=delivery.id,
                    at=now,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            if not still_ours:
                report.delivered += outcome.ok
                report.retrying += not outcome.ok  # whoever changed it owns what happens next
                continue
            delivery.attempts += 1
            delivery.last_attempt_at, delivery.last_status_code, delivery.last_error = now, outcome.status_code, outcome.error
            if outcome.ok:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
                report.delivered += 1
            elif (delay := retry_delay(delivery.attempts)) is None:
                delivery.status, delivery.next_attempt_at = "failed", None
                report.failed += 1
                report.gave_up.append(delivery.id)
            else:
                delivery.next_attempt_at = now + delay
                report.retrying += 1


def _http_session() -> requests.Session:
    client = requests.Session()
    # a receiver's cookies must not ride along on later deliveries
    client.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    client.trust_env = False  # no proxy or .netrc from the worker's environment
    return client


def deliver_due(
    database: Database,
    *,
    now: datetime | None = None,
    limit: int = 50,
    timeout: float = 10.0,
    workers: int = 1,
    time_budget: float | None = None,
    session: requests.Session | None = None,
) -> DeliveryReport:
    """Send up to `limit` due deliveries: claim them (one short transaction), POST them with
    `workers` threads and no transaction open, then record the outcomes (another one).

    `timeout` bounds each request's connect (at most 5 s) and each wait for the answer; a
    delivery not started within `time_budget` seconds is given back, due at once, so the
    whole call stays bounded. `now` is the clock for what is due and for the backoff."""
    now = _now(now)
    report = DeliveryReport()
    claims = _claim(database, now, limit, report)
    if not claims:
        return report
    deadline = time.monotonic() + (time_budget if time_budget is not None else float("inf"))
    client = session or _http_session()
    try:
        if workers <= 1 or len(claims) == 1:
            outcomes = [_send(client, claim, timeout, deadline) for claim in claims]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(claims)), thread_name_prefix="webhooks") as pool:
                outcomes = list(pool.map(lambda claim: _send(client, claim, timeout, deadline), claims))
    finally:
        if session is None:
            client.close()
    _record(database, outcomes, now, report)
    return report


# -- redelivery ----------------------------------------------------------------------------


def _event_row(session: Session, api_key_id: str, event_id: str) -> WebhookEventRow:
    row = session.get(WebhookEventRow, event_id)
    if row is None or row.api_key_id != api_key_id:
        raise NotFound(f"webhook event {event_id} not found", code="webhook_event_not_found")
    return row


def _subscribed(endpoint: WebhookEndpointRow, event_type: str) -> bool:
    return endpoint.disabled_at is None and (ALL_EVENTS in endpoint.events or event_type in endpoint.events)


def redeliver(database: Database, api_key_id: str, event_id: str, now: datetime | None = None) -> list[int]:
    """Send the event again to the key's enabled endpoints that subscribe to it now (those
    added since get a new delivery): pending, due now, with a fresh retry schedule; the log
    keeps the earlier attempts. Returns the delivery ids."""
    now = _now(now)
    with database.session() as session:
        event = _event_row(session, api_key_id, event_id)
        endpoints = session.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.api_key_id == api_key_id)).all()
        existing = {
            d.endpoint_id: d for d in session.scalars(select(WebhookDeliveryRow).where(WebhookDeliveryRow.event_id == event_id))
        }
        deliveries = []
        for endpoint in endpoints:
            if not _subscribed(endpoint, event.type):
                continue
            delivery = existing.get(endpoint.id)
            if delivery is None:
                delivery = WebhookDeliveryRow(event_id=event.id, endpoint_id=endpoint.id, created_at=now)
                session.add(delivery)
            delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.delivered_at = "pending", 0, now, None
            deliveries.append(delivery)
        session.flush()
        return [d.id for d in deliveries]


# -- reads for the API ---------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    order_id: str | None
    created_at: datetime
    payload: dict

    @classmethod
    def of(cls, row: WebhookEventRow) -> WebhookEvent:
        return cls(row.id, row.type, row.order_id, _utc(row.created_at), dict(row.payload))


@dataclass(frozen=True)
class WebhookAttempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class WebhookDelivery:
    id: int
    endpoint_id: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    log: list[WebhookAttempt]


@dataclass(frozen=True)
class WebhookEventDetail:
    event: WebhookEvent
    deliveries: list[WebhookDelivery]


@dataclass(frozen=True)
class EventPage:
    events: list[WebhookEvent]
    has_more: bool


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
        return EventPage([WebhookEvent.of(row) for row in rows[:limit]], has_more=len(rows) > limit)


def get_event(database: Database, api_key_id: str, event_id: str) -> WebhookEventDetail:
    """The event, its deliveries and each one's attempts: the delivery log."""
    with database.session() as session:
        event = _event_row(session, api_key_id, event_id)
        rows = session.execute(
            select(WebhookDeliveryRow, WebhookEndpointRow.url)
            .join(WebhookEndpointRow, WebhookEndpointRow.id == WebhookDeliveryRow.endpoint_id)
            .where(WebhookDeliveryRow.event_id == event_id)
            .order_by(WebhookDeliveryRow.id)
        ).all()
        attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery, _ in rows}
        if attempts:
            for attempt in session.scalars(
                select(WebhookAttemptRow)
                .where(WebhookAttemptRow.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttemptRow.at, WebhookAttemptRow.id)
            ):
                attempts[attempt.delivery_id].append(
                    WebhookAttempt(_utc(attempt.at), attempt.status_code, attempt.error, attempt.duration_ms)
                )
        deliveries = [
            WebhookDelivery(
                id=d.id,
                endpoint_id=d.endpoint_id,
                url=url,
                status=d.status,
                attempts=d.attempts,
                next_attempt_at=_utc(d.next_attempt_at),
                last_attempt_at=_utc(d.last_attempt_at),
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                delivered_at=_utc(d.delivered_at),
                log=attempts[d.id],
            )
            for d, url in rows
        ]
        return WebhookEventDetail(WebhookEvent.of(event), deliveries)
