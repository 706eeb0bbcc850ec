"""Outbound webhooks: signed deliveries with retries, and redelivery.

`orders/outbox.py` writes each event and one pending delivery per subscribed endpoint in
the transaction of the change. This module sends them: `deliver_due` claims what is due,
POSTs it outside any transaction, and records how it went. The endpoints themselves are
in `endpoints.py`; the events and their delivery log, as the API reads them, in `events.py`.

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
marked failed; every attempt is in the log (`webhook_attempts`). So each attempt is one
request: the outbound layer (photogen_pipelines/http.py) sends it with no retries of its
own and no redirects followed. The delivery's status changes through `orders/outbox.py`,
its one writer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from photogen_pipelines.http import NO_RETRIES, HttpClient, NoAnswer, Timeout
from photogen_pipelines.orders.outbox import DeliveryStatus, add_delivery, delivered, given_up, send_again, subscribed
from photogen_pipelines.webhooks.events import event_row

if TYPE_CHECKING:
    import requests

SIGNATURE_HEADER = "PhotoGen-Signature"
EVENT_ID_HEADER = "PhotoGen-Event-Id"
EVENT_TYPE_HEADER = "PhotoGen-Event-Type"
USER_AGENT = "PhotoGen-Webhooks/1"

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
MAX_ERROR_LENGTH = 500
ENDPOINT_DISABLED = "endpoint disabled"


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
            .where(WebhookDeliveryRow.status == DeliveryStatus.PENDING, WebhookDeliveryRow.next_attempt_at <= now)
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
        ).all()
        for delivery, endpoint, event in rows:
            if endpoint.disabled_at is not None:
                given_up(delivery, ENDPOINT_DISABLED)
                report.disabled += 1
                continue
            due_at = as_utc(delivery.next_attempt_at)
            delivery.next_attempt_at = lease_until
            body = _body(event.payload)
            claims.append(_Claim(delivery.id, event.id, event.type, endpoint.url, endpoint.secret, body, due_at, lease_until))
    return claims


def _trimmed(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _send(client: HttpClient, claim: _Claim, timeout: float, deadline: float) -> _Outcome:
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
        # no redirects (the client's default): a 3xx is a failure, never a POST of order data
        # somewhere else. stream: the answer's body is not read (nor kept: only its status matters)
        with client.post(
            claim.url, data=claim.body, headers=headers, timeout=Timeout(min(timeout, 5.0), timeout), stream=True
        ) as response:
            status, reason = response.status_code, response.reason
        error = None if 200 <= status < 300 else _trimmed(f"HTTP {status} {reason or ''}".strip())
    except NoAnswer as failure:
        status = None
        error = (
            f"timed out after {timeout:g} s"
            if failure.timed_out
            else _trimmed(f"{type(failure.error).__name__}: {failure.error}")
        )
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
            still_ours = delivery.status == DeliveryStatus.PENDING and as_utc(delivery.next_attempt_at) == claim.lease_until
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
                delivered(delivery, now)
                report.delivered += 1
            elif (delay := retry_delay(delivery.attempts)) is None:
                given_up(delivery)
                report.failed += 1
                report.gave_up.append(delivery.id)
            else:
                delivery.next_attempt_at = now + delay
                report.retrying += 1


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
    now = as_utc(now) if now is not None else utc_now()
    report = DeliveryReport()
    claims = _claim(database, now, limit, report)
    if not claims:
        return report
    deadline = time.monotonic() + (time_budget if time_budget is not None else float("inf"))
    # one request an attempt (the retries are RETRY_SCHEDULE's); a session of our own takes
    # no proxy from the environment and keeps no receiver's cookies for the next delivery
    with HttpClient(session=session, retry=NO_RETRIES, isolated=True) as client:
        if workers <= 1 or len(claims) == 1:
            outcomes = [_send(client, claim, timeout, deadline) for claim in claims]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(claims)), thread_name_prefix="webhooks") as pool:
                outcomes = list(pool.map(lambda claim: _send(client, claim, timeout, deadline), claims))
    _record(database, outcomes, now, report)
    return report


# -- redelivery ----------------------------------------------------------------------------


def redeliver(database: Database, api_key_id: str, event_id: str, now: datetime | None = None) -> list[int]:
    """Send the event again to the key's enabled endpoints that subscribe to it now (those
    added since get a new delivery): pending, due now, with a fresh retry schedule; the log
    keeps the earlier attempts. Returns the delivery ids."""
    now = as_utc(now) if now is not None else utc_now()
    with database.session() as session:
        event = event_row(session, api_key_id, event_id)
        endpoints = session.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.api_key_id == api_key_id)).all()
        existing = {
            d.endpoint_id: d for d in session.scalars(select(WebhookDeliveryRow).where(WebhookDeliveryRow.event_id == event_id))
        }
        deliveries = []
        for endpoint in endpoints:
            if not subscribed(endpoint, event.type):
                continue
            delivery = existing.get(endpoint.id)
            if delivery is None:
                delivery = add_delivery(session, event.id, endpoint.id, now)
            else:
                send_again(delivery, now)
            deliveries.append(delivery)
        session.flush()
        return [d.id for d in deliveries]
