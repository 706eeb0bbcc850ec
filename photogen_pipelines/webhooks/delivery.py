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
marked failed; every attempt is in the log (`webhook_attempts`), with a coarse outcome
("HTTP 503", "timed out after 5 s", "connection refused", "destination not allowed"),
never the HTTP library's own words. So each attempt is one request: the outbound layer
(photogen_pipelines/http.py) sends it with no retries of its own, no redirects followed,
and only to a destination `endpoints.webhook_destinations` allows, checked when it
connects, at the address it connects to. The delivery's status changes through
`orders/outbox.py`, its one writer.

One shop's slow receiver must not hold up the others, nor the sensor that sends:

- `deliver_due` claims fairly: round robin across API keys (shops), and across each
  shop's endpoints, at most `PER_ENDPOINT` deliveries per endpoint per call, so a shop
  with thousands of due deliveries takes turns with a shop that has one.
- Its workers take the next delivery from the shop with the fewest sends in flight, at
  most `IN_FLIGHT_PER_ENDPOINT` to one endpoint at once.
- An endpoint that fails (no answer, 429 or 5xx) is backed off as a whole: its other due
  deliveries are not sent now but fail with it, in step ("not sent: …" in their log), and
  come back on their own retry schedule: one request per round, not one per event.
- Each attempt is bounded (connect and read timeouts, and their sum for the whole call),
  and no attempt starts that could not end within the call's `time_budget`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from photogen_pipelines.http import NO_RETRIES, DestinationNotAllowed, Destinations, HttpClient, NoAnswer, Timeout
from photogen_pipelines.orders.outbox import DeliveryStatus, add_delivery, delivered, given_up, send_again, subscribed
from photogen_pipelines.webhooks.endpoints import webhook_destinations
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
# an attempt waits at most this long for the connection (and `timeout` for the answer)
CONNECT_TIMEOUT = 3.0
# fairness: deliveries one call claims per endpoint, and sends to one endpoint at once
PER_ENDPOINT = 8
IN_FLIGHT_PER_ENDPOINT = 2
# an endpoint that fails takes at most this many of its other due deliveries down with it per call
IN_STEP_LIMIT = 500


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
    api_key_id: str
    endpoint_id: str
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
    sent: bool  # False: not attempted (the call's time ran out, or its endpoint failed meanwhile)
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    held_back: str | None = None  # not sent because the endpoint failed just now: how it failed

    @property
    def ok(self) -> bool:
        return self.sent and self.status_code is not None and 200 <= self.status_code < 300

    @property
    def endpoint_failing(self) -> bool:
        """The endpoint itself is in trouble (no answer, overloaded, broken), not this one request."""
        return self.sent and (self.status_code is None or self.status_code == 429 or self.status_code >= 500)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0  # gave up now: the retry schedule is spent
    disabled: int = 0  # pending for an endpoint that was disabled: failed without a request
    deferred: int = 0  # claimed but not sent in time: due again at once
    held_back: int = 0  # not sent: their endpoint failed just now; retried with it, on their own schedule
    gave_up: list[int] = field(default_factory=list)  # delivery ids

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed

    def summary(self) -> str:
        text = f"delivered {self.delivered}, retrying {self.retrying}, failed {self.failed}"
        if self.held_back:
            text += f", {self.held_back} held back (their endpoint is failing)"
        if self.disabled:
            text += f", {self.disabled} skipped (endpoint disabled)"
        if self.deferred:
            text += f", {self.deferred} deferred to the next tick"
        return text


def _body(payload: dict) -> bytes:
    # serialised once: these exact bytes are signed and sent
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _fair_ids(session: Session, now: datetime, limit: int, per_endpoint: int, skip: set[int]) -> list[int]:
    """Up to `limit` due deliveries, taking turns: the oldest of every shop (API key) first,
    each shop's taking turns across its endpoints; at most `per_endpoint` per endpoint."""
    delivery, endpoint = WebhookDeliveryRow, WebhookEndpointRow
    endpoint_rank = func.row_number().over(partition_by=delivery.endpoint_id, order_by=(delivery.next_attempt_at, delivery.id))
    due = (
        select(delivery.id, delivery.next_attempt_at, endpoint.api_key_id, endpoint_rank.label("endpoint_rank"))
        .join(endpoint, endpoint.id == delivery.endpoint_id)
        .where(delivery.status == DeliveryStatus.PENDING, delivery.next_attempt_at <= now)
    )
    if skip:
        due = due.where(delivery.id.not_in(skip))
    due = due.subquery()
    key_rank = func.row_number().over(
        partition_by=due.c.api_key_id, order_by=(due.c.endpoint_rank, due.c.next_attempt_at, due.c.id)
    )
    ranked = select(due.c.id, due.c.next_attempt_at, key_rank.label("key_rank")).where(due.c.endpoint_rank <= per_endpoint)
    ranked = ranked.subquery()
    return list(
        session.scalars(select(ranked.c.id).order_by(ranked.c.key_rank, ranked.c.next_attempt_at, ranked.c.id).limit(limit))
    )


def _claim(database: Database, now: datetime, limit: int, per_endpoint: int, report: DeliveryReport) -> list[_Claim]:
    """Take up to `limit` due deliveries, fairly (`_fair_ids`), and push them `CLAIM_LEASE`
    into the future in the same transaction, so no other worker picks them while this one
    sends. PostgreSQL: SKIP LOCKED lets two claimers take different rows instead of
    queueing (what another one holds is skipped, and the turn goes on past it).
    SQLite: the transaction already holds the write lock (BEGIN IMMEDIATE)."""
    lease_until = now + CLAIM_LEASE
    claims: list[_Claim] = []
    skipped: set[int] = set()
    with database.session() as session:
        for _ in range(3):  # again past what other claimers hold, a few times at most
            wanted = _fair_ids(session, now, limit - len(claims) - report.disabled, per_endpoint, skipped)
            if not wanted:
                break
            rows = session.execute(
                select(WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow)
                .join(WebhookEndpointRow, WebhookEndpointRow.id == WebhookDeliveryRow.endpoint_id)
                .join(WebhookEventRow, WebhookEventRow.id == WebhookDeliveryRow.event_id)
                .where(
                    WebhookDeliveryRow.id.in_(wanted),
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                    WebhookDeliveryRow.next_attempt_at <= now,
                )
                .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
            ).all()
            order = {delivery_id: place for place, delivery_id in enumerate(wanted)}
            for delivery, endpoint, event in sorted(rows, key=lambda row: order[row[0].id]):
                if endpoint.disabled_at is not None:
                    given_up(delivery, ENDPOINT_DISABLED)
                    report.disabled += 1
                    continue
                due_at = as_utc(delivery.next_attempt_at)
                delivery.next_attempt_at = lease_until
                body = _body(event.payload)
                claims.append(
                    _Claim(
                        delivery.id,
                        endpoint.api_key_id,
                        endpoint.id,
                        event.id,
                        event.type,
                        endpoint.url,
                        endpoint.secret,
                        body,
                        due_at,
                        lease_until,
                    )
                )
            skipped |= set(wanted) - {row[0].id for row in rows}
            if len(rows) == len(wanted) or len(claims) + report.disabled >= limit:
                break
        session.flush()
    return claims


def _trimmed(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _send(client: HttpClient, claim: _Claim, timeout: float) -> _Outcome:
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
            claim.url, data=claim.body, headers=headers, timeout=Timeout(min(timeout, CONNECT_TIMEOUT), timeout), stream=True
        ) as response:
            status = response.status_code
        # the status alone: the reason phrase is the receiver's text, and tells one service from another
        error = None if 200 <= status < 300 else f"HTTP {status}"
    except NoAnswer as failure:
        # a coarse outcome, never the library's words (addresses, "connection aborted" for an
        # open port and "failed to establish" for a closed one)
        status, error = None, f"timed out after {timeout:g} s" if failure.outcome == "timed out" else failure.outcome
    except DestinationNotAllowed:
        status, error = None, "destination not allowed"
    return _Outcome(claim, True, status, error, round((time.monotonic() - started) * 1000))


class _Turns:
    """Hands out the claims to the workers, fairly: next from the shop with the fewest sends
    in flight (ties: the one served longest ago), in the claimed order within a shop, at
    most IN_FLIGHT_PER_ENDPOINT to one endpoint at once, nothing more to an endpoint that
    just failed, and nothing once `start_by` (time.monotonic()) has passed."""

    def __init__(self, claims: list[_Claim], start_by: float):
        self.lock = threading.Lock()
        self.start_by = start_by
        self.queues: dict[str, deque[_Claim]] = {}
        for claim in claims:
            self.queues.setdefault(claim.api_key_id, deque()).append(claim)
        self.served = dict.fromkeys(self.queues, -1)
        self.turn = 0
        self.shop_busy: Counter[str] = Counter()
        self.endpoint_busy: Counter[str] = Counter()
        self.failing: dict[str, str] = {}  # endpoint id -> how it failed
        self.outcomes: list[_Outcome] = []

    def take(self) -> _Claim | None:
        with self.lock:
            if time.monotonic() > self.start_by:
                return None
            for shop in sorted(self.queues, key=lambda s: (self.shop_busy[s], self.served[s])):
                queue = self.queues[shop]
                for claim in queue:
                    if claim.endpoint_id in self.failing or self.endpoint_busy[claim.endpoint_id] >= IN_FLIGHT_PER_ENDPOINT:
                        continue
                    queue.remove(claim)
                    self.shop_busy[shop] += 1
                    self.endpoint_busy[claim.endpoint_id] += 1
                    self.served[shop], self.turn = self.turn, self.turn + 1
                    return claim
            return None

    def done(self, outcome: _Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)
            self.shop_busy[outcome.claim.api_key_id] -= 1
            self.endpoint_busy[outcome.claim.endpoint_id] -= 1
            if outcome.endpoint_failing:
                self.failing.setdefault(outcome.claim.endpoint_id, outcome.error or "failed")

    def work(self, client: HttpClient, timeout: float) -> None:
        while (claim := self.take()) is not None:
            try:
                outcome = _send(client, claim, timeout)
            except Exception:  # not one worker's bug may leave a claim unrecorded: it is due again
                outcome = _Outcome(claim, sent=False)
            self.done(outcome)

    def left(self) -> list[_Outcome]:
        """The claims nobody sent: held back with their failing endpoint, or out of time."""
        return [
            _Outcome(claim, sent=False, held_back=self.failing.get(claim.endpoint_id))
            for queue in self.queues.values()
            for claim in queue
        ]


def _not_sent(failure: str) -> str:
    return _trimmed(f"not sent: the endpoint failed another delivery just now ({failure})")


def _failed_attempt(
    delivery: WebhookDeliveryRow, now: datetime, status: int | None, error: str | None, report: DeliveryReport
) -> bool:
    """Count a failed attempt; the delivery is due again after its backoff, or given up
    (True) once the schedule is spent."""
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.last_status_code, delivery.last_error = now, status, error
    if (delay := retry_delay(delivery.attempts)) is None:
        given_up(delivery)
        report.failed += 1
        report.gave_up.append(delivery.id)
        return True
    delivery.next_attempt_at = now + delay
    return False


def _record(database: Database, outcomes: list[_Outcome], now: datetime, report: DeliveryReport) -> None:
    """Log each attempt and move its delivery on: delivered, or due again after the backoff,
    or failed. A delivery changed meanwhile (redelivered while this worker sent it: its
    lease is gone) keeps that change; only the attempt is logged. Deliveries held back with
    a failing endpoint, and its other due ones, fail in step with it."""
    failing: dict[str, str] = {}
    with database.session() as session:
        for outcome in outcomes:
            claim = outcome.claim
            delivery = session.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == claim.delivery_id).with_for_update()
            ).one()
            still_ours = delivery.status == DeliveryStatus.PENDING and as_utc(delivery.next_attempt_at) == claim.lease_until
            if outcome.held_back is not None:
                failing.setdefault(claim.endpoint_id, outcome.held_back)
                if still_ours:
                    error = _not_sent(outcome.held_back)
                    session.add(WebhookAttemptRow(delivery_id=delivery.id, at=now, status_code=None, error=error, duration_ms=0))
                    report.held_back += not _failed_attempt(delivery, now, None, error, report)
                continue
            if not outcome.sent:
                if still_ours:
                    delivery.next_attempt_at = claim.due_at
                report.deferred += 1
                continue
            if outcome.endpoint_failing:
                failing.setdefault(claim.endpoint_id, outcome.error or "failed")
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
            if outcome.ok:
                delivery.attempts += 1
                delivery.last_attempt_at, delivery.last_status_code, delivery.last_error = now, outcome.status_code, None
                delivered(delivery, now)
                report.delivered += 1
            elif not _failed_attempt(delivery, now, outcome.status_code, outcome.error, report):
                report.retrying += 1
        claimed = {outcome.claim.delivery_id for outcome in outcomes}
        for endpoint_id, failure in failing.items():
            # the failing endpoint's other due deliveries: no request each, they fail with it
            others = session.scalars(
                select(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.endpoint_id == endpoint_id,
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                    WebhookDeliveryRow.next_attempt_at <= now,
                    WebhookDeliveryRow.id.not_in(claimed),
                )
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(IN_STEP_LIMIT)
                .with_for_update(skip_locked=True)
            ).all()
            for delivery in others:
                error = _not_sent(failure)
                session.add(WebhookAttemptRow(delivery_id=delivery.id, at=now, status_code=None, error=error, duration_ms=0))
                report.held_back += not _failed_attempt(delivery, now, None, error, report)


def deliver_due(
    database: Database,
    *,
    now: datetime | None = None,
    limit: int = 50,
    timeout: float = 10.0,
    workers: int = 1,
    time_budget: float | None = None,
    per_endpoint: int = PER_ENDPOINT,
    destinations: Destinations | None = None,
    session: requests.Session | None = None,
) -> DeliveryReport:
    """Send up to `limit` due deliveries: claim them fairly (one short transaction), POST
    them with `workers` threads taking turns across shops and no transaction open, then
    record the outcomes (another one).

    `timeout` bounds each request's wait for the answer, its connect at most CONNECT_TIMEOUT,
    and the whole request their sum. No request starts that could not end within
    `time_budget` seconds of the call: what is left is given back, due at once, so the call
    stays bounded however slow the receivers. `destinations`: where deliveries may connect
    (default: `webhook_destinations()`, from this process's settings). `now` is the clock
    for what is due and for the backoff."""
    attempt_seconds = min(timeout, CONNECT_TIMEOUT) + timeout
    if time_budget is not None and time_budget < attempt_seconds:
        raise ValueError(f"a time budget of {time_budget:g} s leaves no room for one attempt ({attempt_seconds:g} s)")
    now = as_utc(now) if now is not None else utc_now()
    report = DeliveryReport()
    claims = _claim(database, now, limit, per_endpoint, report)
    if not claims:
        return report
    start_by = time.monotonic() + time_budget - attempt_seconds if time_budget is not None else float("inf")
    turns = _Turns(claims, start_by)
    destinations = destinations if destinations is not None else webhook_destinations()
    # one request an attempt (the retries are RETRY_SCHEDULE's); a session of our own takes
    # no proxy from the environment and keeps no receiver's cookies for the next delivery
    with HttpClient(session=session, retry=NO_RETRIES, isolated=True, destinations=destinations) as client:
        threads = [
            threading.Thread(target=turns.work, args=(client, timeout), name=f"webhooks-{n}", daemon=True)
            for n in range(min(max(workers, 1), len(claims)) - 1)
        ]
        for thread in threads:
            thread.start()
        turns.work(client, timeout)  # this thread is a worker too
        for thread in threads:
            thread.join()
    _record(database, turns.outcomes + turns.left(), now, report)
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
