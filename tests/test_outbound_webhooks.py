"""Outbound webhooks to storefronts: the outbox, signed deliveries to real HTTP receivers on
loopback, retries with backoff, redelivery, the API and the sensor; SQLite and PostgreSQL.

The receivers are on this machine, so every test here runs with PHOTOGEN_WEBHOOK_ALLOW_PRIVATE
on, as a storefront's development setup does (tests/test_webhook_destinations.py: without it)."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import requests
from sqlalchemy import func, select

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import Database, open_database
from photogen_pipelines.db.tables import WebhookDeliveryRow, WebhookEventRow
from photogen_pipelines.errors import BadInput
from photogen_pipelines.http import Destinations
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.webhooks.delivery import (
    RETRY_JITTER,
    RETRY_SCHEDULE,
    deliver_due,
    redeliver,
    retry_delay,
    verify_signature,
)
from photogen_pipelines.webhooks.endpoints import create_endpoint, delete_endpoint, update_endpoint, valid_url
from photogen_pipelines.webhooks.events import get_event, list_events
from resources import OrdersDatabase
from sensors.webhooks import webhook_deliveries
from tests.api_helpers import make_app, make_settings
from tests.servers import api_server, free_port


@pytest.fixture(autouse=True)
def receivers_on_this_machine(monkeypatch):
    """Loopback receivers: the development setting that allows them (registration and delivery)."""
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")


# -- a storefront's receiver: real HTTP on loopback ----------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A storefront's webhook endpoint: records every request, then answers `status`
    after `delay` seconds. Not started, its port is closed (the storefront is down)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.received: list[Received] = []
        self.status, self.delay = 200, 0.0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/photogen"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(dict(self.headers.items()), body))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True  # a handler still sleeping does not hold the test
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- helpers ---------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _shop(database: Database, name: str = "shop") -> str:
    key, _ = create_api_key(database, name)
    return key.id


def _paid_order(database: Database, api_key_id: str | None) -> Order:
    book = SqlOrderBook(database)
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="uploads/u.png", api_key_id=api_key_id))
    return book.transition(order.id, OrderState.PAID)


def _deliveries(database: Database) -> list[WebhookDeliveryRow]:
    with database.session() as session:
        return list(session.scalars(select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id)))


def _event_count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(WebhookEventRow))


def _signed_at(received: Received) -> int:
    return int(received.headers["PhotoGen-Signature"].split(",")[0].removeprefix("t="))


# -- the outbox ------------------------------------------------------------------------------


def test_an_order_change_writes_its_event_and_deliveries_in_its_own_transaction(orders_db):
    key = _shop(orders_db)
    paid_only, _ = create_endpoint(orders_db, key, "https://shop.example/paid", ["order.paid"])
    everything, _ = create_endpoint(orders_db, key, "https://shop.example/all", ["*"])
    create_endpoint(orders_db, key, "https://shop.example/shipped", ["order.shipped"])
    switched_off, _ = create_endpoint(orders_db, key, "https://shop.example/off", ["*"])
    delete_endpoint(orders_db, key, switched_off.id)
    book = SqlOrderBook(orders_db)
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="u", api_key_id=key))
    assert _event_count(orders_db) == 0  # a new order is not a change of state

    # the change and its event are written (and flushed) together, then the caller fails: neither stays
    with pytest.raises(RuntimeError), book.transaction() as transaction:
        transaction.update(order.id, lambda o: o.transition(OrderState.PAID))
        raise RuntimeError("the caller's next step failed")
    assert book.get(order.id).state == OrderState.AWAITING_PAYMENT
    assert _event_count(orders_db) == 0 and _deliveries(orders_db) == []

    book.transition(order.id, OrderState.PAID)
    (event,) = list_events(orders_db, key).events
    assert event.type == "order.paid" and event.order_id == order.id
    assert event.payload["id"] == event.id and event.payload["data"]["order"]["state"] == "paid"
    deliveries = _deliveries(orders_db)
    assert {d.endpoint_id for d in deliveries} == {paid_only.id, everything.id}  # subscribed and enabled
    assert all(d.status == "pending" and d.attempts == 0 for d in deliveries)

    _paid_order(orders_db, api_key_id=None)  # placed from the CLI: no storefront to tell
    assert _event_count(orders_db) == 1


# -- signing and delivery ----------------------------------------------------------------------


def test_a_delivery_is_signed_over_the_exact_bytes_it_sends(orders_db):
    key = _shop(orders_db)
    with Receiver() as receiver:
        _, secret = create_endpoint(orders_db, key, receiver.url, ["*"])
        order = _paid_order(orders_db, key)
        report = deliver_due(orders_db)
        assert (report.delivered, report.retrying, report.failed) == (1, 0, 0)
        assert deliver_due(orders_db).attempted == 0  # delivered once, not again
    (request,) = receiver.received
    header, body = request.headers["PhotoGen-Signature"], request.body
    assert verify_signature(secret, header, body)
    assert request.event["type"] == "order.paid" and request.event["data"]["order"]["id"] == order.id
    assert request.headers["PhotoGen-Event-Id"] == request.event["id"]
    assert request.headers["PhotoGen-Event-Type"] == "order.paid"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "PhotoGen-Webhooks/1"
    assert "Cookie" not in request.headers

    signed_at = _signed_at(request)
    assert verify_signature(secret, header, body.decode(), now=signed_at + 299)
    assert not verify_signature(secret, header, body.replace(b'"paid"', b'"refunded"'))  # tampered
    assert not verify_signature(secret, header, body, now=signed_at + 301)  # replayed later
    assert not verify_signature("whsec_someone_else", header, body)
    assert not verify_signature(secret, f"t={signed_at},v1={'0' * 64}", body)
    assert verify_signature(secret, f"{header},v1={'0' * 64}", body)  # several v1 values: one must match
    assert not verify_signature(secret, None, body) and not verify_signature(secret, "v1=abc", body)

    (delivery,) = get_event(orders_db, key, request.event["id"]).deliveries
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.next_attempt_at is None
    assert [(a.status_code, a.error) for a in delivery.log] == [(200, None)]


@pytest.mark.parametrize("failure", ["down", "answers_500", "too_slow"])
def test_a_failing_receiver_loses_nothing_and_gets_the_event_once_it_recovers(orders_db, failure):
    key = _shop(orders_db)
    receiver = Receiver()
    if failure != "down":
        receiver.start()
    receiver.status = 500 if failure == "answers_500" else 200
    receiver.delay = 1.5 if failure == "too_slow" else 0.0
    try:
        _, secret = create_endpoint(orders_db, key, receiver.url, ["*"])
        _paid_order(orders_db, key)
        (delivery,) = _deliveries(orders_db)
        now = _aware(delivery.next_attempt_at)
        for attempt, wait in enumerate(RETRY_SCHEDULE[:2], start=1):
            report = deliver_due(orders_db, now=now, timeout=0.5)
            assert (report.delivered, report.retrying) == (0, 1), report
            (delivery,) = _deliveries(orders_db)
            assert delivery.status == "pending" and delivery.attempts == attempt
            due = _aware(delivery.next_attempt_at)
            assert wait <= due - now <= wait * (1 + RETRY_JITTER)  # the backoff, jittered upwards only
            assert deliver_due(orders_db, now=due - timedelta(seconds=1)).attempted == 0  # not before its time
            now = due

        if failure == "down":
            receiver.start()  # on the port that was closed
        receiver.status, receiver.delay = 200, 0.0
        assert deliver_due(orders_db, now=now, timeout=0.5).delivered == 1
    finally:
        receiver.stop()

    (delivery,) = get_event(orders_db, key, receiver.received[-1].event["id"]).deliveries
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert [a.status_code for a in delivery.log] == {"answers_500": [500, 500, 200]}.get(failure, [None, None, 200])
    expected_error = {"down": "connection refused", "answers_500": "HTTP 500", "too_slow": "timed out after 0.5 s"}[failure]
    assert all(expected_error in a.error for a in delivery.log[:2]) and delivery.log[2].error is None
    if failure == "too_slow":
        assert all(400 <= a.duration_ms < 1500 for a in delivery.log[:2])  # bounded by the timeout, not the receiver
    # every request that arrived was the same event, signed; a receiver dedupes by its id
    assert len(receiver.received) == (1 if failure == "down" else 3)
    assert len({r.event["id"] for r in receiver.received}) == 1
    assert all(verify_signature(secret, r.headers["PhotoGen-Signature"], r.body) for r in receiver.received)


def test_the_retry_schedule_spans_more_than_a_day_and_jitter_only_lengthens_it():
    assert sum(RETRY_SCHEDULE, timedelta()) >= timedelta(hours=24)
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE) and max(RETRY_SCHEDULE) <= timedelta(hours=8)
    rng = random.Random(7)
    for failed, base in enumerate(RETRY_SCHEDULE, start=1):
        assert base <= retry_delay(failed, rng) <= base * (1 + RETRY_JITTER)
    assert retry_delay(len(RETRY_SCHEDULE) + 1) is None


def test_a_receiver_down_for_good_is_given_up_on_only_after_a_day(orders_db):
    key = _shop(orders_db)
    create_endpoint(orders_db, key, Receiver().url, ["*"])  # never started: connection refused
    _paid_order(orders_db, key)
    reports = []
    for _ in range(2 * len(RETRY_SCHEDULE)):
        (delivery,) = _deliveries(orders_db)
        if delivery.status != "pending":
            break
        reports.append(deliver_due(orders_db, now=_aware(delivery.next_attempt_at), timeout=0.5))
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.attempts == len(RETRY_SCHEDULE) + 1
    assert reports[-1].failed == 1 and reports[-1].gave_up == [delivery.id]
    assert all(r.retrying == 1 for r in reports[:-1])
    (logged,) = get_event(orders_db, key, list_events(orders_db, key).events[0].id).deliveries
    assert len(logged.log) == len(RETRY_SCHEDULE) + 1
    assert logged.log[-1].at - logged.log[0].at >= timedelta(hours=24)


def test_two_workers_at_once_never_send_one_delivery_twice(orders_db):
    key = _shop(orders_db)
    with Receiver() as receiver:
        receiver.delay = 0.2  # the two workers' sends overlap
        create_endpoint(orders_db, key, receiver.url, ["*"])
        for _ in range(6):
            _paid_order(orders_db, key)
        start, reports = threading.Barrier(2), []

        def work() -> None:
            start.wait()
            reports.append(deliver_due(orders_db, limit=6, workers=3))

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    sent = [r.event["id"] for r in receiver.received]
    assert len(sent) == len(set(sent)) == 6
    assert sum(r.delivered for r in reports) == 6


def test_a_disabled_endpoint_gets_nothing_and_redelivery_reaches_the_endpoints_enabled_now(orders_db):
    key = _shop(orders_db)
    with Receiver() as receiver:
        endpoint, _ = create_endpoint(orders_db, key, receiver.url, ["order.paid"])
        _paid_order(orders_db, key)
        delete_endpoint(orders_db, key, endpoint.id)
        report = deliver_due(orders_db)
        assert report.disabled == 1 and report.attempted == 0 and receiver.received == []
        (delivery,) = _deliveries(orders_db)
        assert delivery.status == "failed" and delivery.last_error == "endpoint disabled"

        event_id = list_events(orders_db, key).events[0].id
        assert redeliver(orders_db, key, event_id) == []  # no enabled endpoint wants it
        update_endpoint(orders_db, key, endpoint.id, disabled=False)
        added_since, _ = create_endpoint(orders_db, key, receiver.url + "?second", ["*"])
        assert len(redeliver(orders_db, key, event_id)) == 2  # the old delivery again, and a new one
        assert deliver_due(orders_db).delivered == 2
    assert [r.event["id"] for r in receiver.received] == [event_id, event_id]
    assert {d.endpoint_id for d in get_event(orders_db, key, event_id).deliveries} == {endpoint.id, added_since.id}


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://shop.example/hook", "invalid_webhook_url"),
        ("https://", "invalid_webhook_url"),
        ("https://shop.example:99999/hook", "invalid_webhook_url"),
        ("https://user:password@shop.example/hook", "invalid_webhook_url"),
        ("http://shop.example/hook", "webhook_url_not_https"),
        ("http://10.0.0.5/hook", "webhook_url_not_https"),
    ],
)
def test_an_endpoint_url_must_be_https_except_on_this_machine(url, code):
    with pytest.raises(BadInput) as refused:
        valid_url(url)
    assert refused.value.code == code
    for fine in ("https://shop.example/hook", "http://localhost:8000/hook", "http://127.0.0.1/h", "http://[::1]:9/h"):
        assert valid_url(fine) == fine
    assert valid_url("http://shop.internal/hook", destinations=Destinations(allow_http=True))


# -- the API, over real HTTP -----------------------------------------------------------------


@dataclass
class Api:
    base: str
    database: Database

    def shop(self, name: str = "shop") -> tuple[str, dict[str, str]]:
        key, secret = create_api_key(self.database, name)
        return key.id, {"Authorization": f"Bearer {secret}"}

    def call(self, method: str, path: str, auth: dict[str, str] | None, **kwargs) -> requests.Response:
        return requests.request(method, self.base + "/v1" + path, headers=auth, timeout=10, **kwargs)


@pytest.fixture
def api(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, webhook_allow_private=True)
    with api_server(make_app(settings)) as base:
        yield Api(base, open_database(settings.resolved_database_url))


def _error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text
    return response.json()


def test_endpoints_are_managed_through_the_api_and_the_secret_is_shown_once(api):
    _, auth = api.shop()
    _, other = api.shop("another shop")
    good = "https://shop.example/hooks"
    for body, code in [
        ({"url": "http://shop.example/hooks"}, "webhook_url_not_https"),
        ({"url": "ftp://shop.example/hooks"}, "invalid_webhook_url"),
        ({"url": good, "events": ["order.teleported"]}, "unknown_webhook_event"),
        ({"url": good, "events": "order.paid"}, "invalid_request"),  # strict: a list, not a string
        ({"url": good, "events": []}, "invalid_request"),
        ({"events": ["*"]}, "invalid_request"),
    ]:
        _error(api.call("POST", "/webhook-endpoints", auth, json=body), 422, code)
    _error(api.call("POST", "/webhook-endpoints", None, json={"url": good}), 401, "missing_credentials")

    created = api.call(
        "POST",
        "/webhook-endpoints",
        auth,
        json={"url": good, "events": ["order.paid", "order.shipped", "order.paid"], "description": "main shop"},
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 30
    assert endpoint["events"] == ["order.paid", "order.shipped"] and endpoint["disabled"] is False
    path = f"/webhook-endpoints/{endpoint['id']}"
    shown = api.call("GET", path, auth).json()
    assert "secret" not in shown and shown["url"] == good
    assert [e["id"] for e in api.call("GET", "/webhook-endpoints", auth).json()] == [endpoint["id"]]
    assert all("secret" not in e for e in api.call("GET", "/webhook-endpoints", auth).json())

    patched = api.call("PATCH", path, auth, json={"events": ["*"], "description": None}).json()
    assert patched["events"] == ["*"] and patched["description"] is None and patched["url"] == good
    assert (
        api.call("PATCH", path, auth, json={"url": "http://localhost:9000/hooks"}).json()["url"] == "http://localhost:9000/hooks"
    )
    _error(api.call("PATCH", path, auth, json={"disabled": "yes"}), 422, "invalid_request")
    _error(api.call("PATCH", path, auth, json={"url": "http://shop.example/x"}), 422, "webhook_url_not_https")

    # another key's endpoint does not exist for this one
    assert api.call("GET", "/webhook-endpoints", other).json() == []
    for method, body in (("GET", None), ("PATCH", {"description": "mine now"}), ("DELETE", None)):
        _error(api.call(method, path, other, json=body), 404, "webhook_endpoint_not_found")
    _error(api.call("GET", "/webhook-endpoints/we_missing", auth), 404, "webhook_endpoint_not_found")

    deleted = api.call("DELETE", path, auth)
    assert deleted.status_code == 204 and deleted.content == b""
    gone = api.call("GET", path, auth).json()
    assert gone["disabled"] is True and gone["disabled_at"]
    assert api.call("PATCH", path, auth, json={"disabled": False}).json()["disabled"] is False


def test_the_delivery_log_and_redelivery_through_the_api(api):
    key, auth = api.shop()
    _, other = api.shop("another shop")
    with Receiver() as receiver:
        created = api.call("POST", "/webhook-endpoints", auth, json={"url": receiver.url, "events": ["*"]}).json()
        book = SqlOrderBook(api.database)
        order = _paid_order(api.database, key)
        book.transition(order.id, OrderState.GENERATING)
        book.transition(order.id, OrderState.PROOFS_READY)
        assert deliver_due(api.database).delivered == 2

        listed = api.call("GET", "/webhook-events", auth).json()
        assert [e["type"] for e in listed["data"]] == ["order.proofs_ready", "order.paid"] and not listed["has_more"]
        first = api.call("GET", "/webhook-events", auth, params={"limit": 1}).json()
        assert first["has_more"] and len(first["data"]) == 1
        rest = api.call("GET", "/webhook-events", auth, params={"limit": 1, "starting_after": first["data"][0]["id"]}).json()
        assert [e["type"] for e in rest["data"]] == ["order.paid"] and not rest["has_more"]
        paid_id = rest["data"][0]["id"]
        assert [e["id"] for e in api.call("GET", "/webhook-events", auth, params={"type": "order.paid"}).json()["data"]] == [
            paid_id
        ]
        assert api.call("GET", "/webhook-events", auth, params={"order_id": "ord_other"}).json()["data"] == []
        _error(api.call("GET", "/webhook-events", auth, params={"starting_after": "evt_nope"}), 422, "invalid_starting_after")
        _error(api.call("GET", "/webhook-events", auth, params={"limit": 101}), 422, "invalid_request")

        detail = api.call("GET", f"/webhook-events/{paid_id}", auth).json()
        (delivery,) = detail["deliveries"]
        assert delivery["endpoint_id"] == created["id"] and delivery["status"] == "delivered"
        assert [a["status_code"] for a in delivery["log"]] == [200]
        sent_first = next(r for r in receiver.received if r.event["id"] == paid_id)
        assert detail["payload"] == sent_first.event

        redelivered = api.call("POST", f"/webhook-events/{paid_id}/redeliver", auth)
        assert redelivered.status_code == 202, redelivered.text
        assert redelivered.json() == {"event_id": paid_id, "delivery_ids": [delivery["id"]]}
        assert api.call("GET", f"/webhook-events/{paid_id}", auth).json()["deliveries"][0]["status"] == "pending"
        assert deliver_due(api.database).delivered == 1
    again = receiver.received[-1]
    assert len(receiver.received) == 3 and again.body == sent_first.body  # the same event, the same bytes
    assert verify_signature(created["secret"], again.headers["PhotoGen-Signature"], again.body)
    log = api.call("GET", f"/webhook-events/{paid_id}", auth).json()["deliveries"][0]["log"]
    assert [a["status_code"] for a in log] == [200, 200]

    assert api.call("GET", "/webhook-events", other).json() == {"data": [], "has_more": False}
    _error(api.call("GET", f"/webhook-events/{paid_id}", other), 404, "webhook_event_not_found")
    _error(api.call("POST", f"/webhook-events/{paid_id}/redeliver", other), 404, "webhook_event_not_found")


# -- the sensor ------------------------------------------------------------------------------


def test_the_sensor_delivers_what_is_due_and_never_requests_a_run(orders_db, database_url):
    key = _shop(orders_db)
    with Receiver() as healthy, Receiver() as broken:
        broken.status = 503
        create_endpoint(orders_db, key, healthy.url, ["*"])
        create_endpoint(orders_db, key, broken.url, ["order.paid"])
        _paid_order(orders_db, key)
        with dg.build_sensor_context(resources={"orders": OrdersDatabase(url=database_url)}) as context:
            result = webhook_deliveries(context)
            assert isinstance(result, dg.SkipReason)
            assert result.skip_message == "delivered 1, retrying 1, failed 0", result.skip_message
            assert webhook_deliveries(context).skip_message == "delivered 0, retrying 0, failed 0"  # the retry is not due yet
    assert len(healthy.received) == 1 and len(broken.received) == 1
