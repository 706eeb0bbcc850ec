"""One shop's slow or failing receiver holds up neither the other shops' webhooks nor the
sensor tick that sends them: the tick is bounded, deliveries take turns across shops and
endpoints, and an endpoint that fails is backed off as a whole. Real receivers on loopback,
the real sensor and `deliver_due`, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import dagster as dg
import pytest

from photogen_pipelines.http import Destinations
from photogen_pipelines.webhooks.delivery import PER_ENDPOINT, deliver_due, redeliver
from photogen_pipelines.webhooks.endpoints import MAX_ENDPOINTS_PER_KEY, create_endpoint
from photogen_pipelines.webhooks.events import get_event, list_events
from resources import OrdersDatabase
from sensors.webhooks import TIME_BUDGET_SECONDS, webhook_deliveries
from tests.test_outbound_webhooks import Receiver, _aware, _deliveries, _paid_order, _shop

LOCAL = Destinations(allow_private=True)  # the receivers are on this machine


@pytest.fixture(autouse=True)
def receivers_on_this_machine(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")  # what the sensor reads, as `photogen serve` gets it


class StampedReceiver(Receiver):
    """A receiver that also notes when each request arrived (time.monotonic())."""

    def start(self) -> StampedReceiver:
        super().start()
        self.arrived: list[float] = []
        handler = self.server.RequestHandlerClass
        receiver = self

        class Stamped(handler):
            def do_POST(self) -> None:
                receiver.arrived.append(time.monotonic())
                super().do_POST()

        self.server.RequestHandlerClass = Stamped
        self.server.handle_error = lambda request, address: None  # a late answer to a client gone: expected
        return self


@pytest.mark.slow
def test_a_slow_shop_holds_neither_the_tick_nor_another_shops_webhook(orders_db, database_url):
    """Shop B: 16 endpoints on a receiver that answers after 11 s, and 6 events redelivered
    (96 deliveries, all due before shop A's). Shop A's event still arrives within seconds of
    the tick's start, no tick runs past its budget, and B's receiver gets one request per
    endpoint, not one per delivery."""
    slow_shop, fast_shop = _shop(orders_db, "B"), _shop(orders_db, "A")
    with StampedReceiver() as slow, StampedReceiver() as fast:
        slow.delay = 11.0
        for _ in range(MAX_ENDPOINTS_PER_KEY):
            create_endpoint(orders_db, slow_shop, slow.url, ["order.paid"], destinations=LOCAL)
        create_endpoint(orders_db, fast_shop, fast.url, ["order.paid"], destinations=LOCAL)
        b_events = []
        for _ in range(6):
            _paid_order(orders_db, slow_shop)
            b_events.append(list_events(orders_db, slow_shop, limit=1).events[0].id)
        for event_id in b_events:  # B redelivers its events: 96 deliveries due now
            assert len(redeliver(orders_db, slow_shop, event_id)) == MAX_ENDPOINTS_PER_KEY
        _paid_order(orders_db, fast_shop)  # A's event is the newest of all

        ticks, starts = [], []
        with dg.build_sensor_context(resources={"orders": OrdersDatabase(url=database_url)}) as context:
            for _ in range(4):
                starts.append(time.monotonic())
                result = webhook_deliveries(context)
                ticks.append((round(time.monotonic() - starts[-1], 1), result.skip_message))
    print("ticks (seconds, summary):", ticks, "A's webhook after", round(fast.arrived[0] - starts[0], 2), "s")
    assert fast.arrived and fast.arrived[0] - starts[0] < 3.0, ticks
    assert all(seconds <= TIME_BUDGET_SECONDS + 2.0 for seconds, _ in ticks), ticks
    assert ticks[-1][0] < 2.0, ticks  # the slow endpoints are backed off: nothing of B's is due now
    assert len(slow.received) == MAX_ENDPOINTS_PER_KEY, ticks  # one probe per endpoint, each timed out

    b_deliveries = [d for d in _deliveries(orders_db) if d.event_id in b_events]
    assert len(b_deliveries) == 6 * MAX_ENDPOINTS_PER_KEY
    assert all(d.status == "pending" and d.attempts == 1 for d in b_deliveries)  # backed off together, none lost
    earliest = min(_aware(d.last_attempt_at) for d in b_deliveries)
    assert all(_aware(d.next_attempt_at) - earliest >= timedelta(seconds=25) for d in b_deliveries)
    (a_delivery,) = get_event(orders_db, fast_shop, list_events(orders_db, fast_shop).events[0].id).deliveries
    assert a_delivery.status == "delivered"
    logs = [a.error for event_id in b_events for d in get_event(orders_db, slow_shop, event_id).deliveries for a in d.log]
    assert len(logs) == len(b_deliveries)  # one attempt each: 16 sent, the rest held back with their endpoint
    assert "timed out after 5 s" in logs and any(e.startswith("not sent: the endpoint failed") for e in logs)


def test_claims_take_turns_across_shops(orders_db):
    """A shop with many older due deliveries does not keep another shop's newest one out of a call."""
    busy, quiet = _shop(orders_db, "busy"), _shop(orders_db, "quiet")
    with Receiver() as receiver:
        for n in range(3):
            create_endpoint(orders_db, busy, f"{receiver.url}?busy={n}", ["order.paid"], destinations=LOCAL)
        quiet_endpoint, _ = create_endpoint(orders_db, quiet, f"{receiver.url}?quiet", ["order.paid"], destinations=LOCAL)
        for _ in range(10):
            _paid_order(orders_db, busy)  # 30 deliveries, all older
        quiet_order = _paid_order(orders_db, quiet)
        report = deliver_due(orders_db, limit=5, destinations=LOCAL)
    assert report.delivered == 5
    assert quiet_order.id in {r.event["data"]["order"]["id"] for r in receiver.received}
    # and within the busy shop, its endpoints took turns too
    sent_busy = [d.endpoint_id for d in _deliveries(orders_db) if d.status == "delivered" and d.endpoint_id != quiet_endpoint.id]
    assert len(sent_busy) == 4 and len(set(sent_busy)) == 3


def test_a_failing_endpoint_is_backed_off_as_a_whole_and_loses_nothing(orders_db):
    key = _shop(orders_db)
    with Receiver() as receiver:
        receiver.status = 503
        create_endpoint(orders_db, key, receiver.url, ["*"], destinations=LOCAL)
        for _ in range(12):  # more than one call claims per endpoint (PER_ENDPOINT)
            _paid_order(orders_db, key)
        assert len(_deliveries(orders_db)) == 12 > PER_ENDPOINT
        report = deliver_due(orders_db, destinations=LOCAL)
        assert len(receiver.received) == 1  # one request: the endpoint failed, the others wait with it
        assert (report.retrying, report.held_back) == (1, 11), report.summary()
        deliveries = _deliveries(orders_db)
        assert len(deliveries) == 12 and all(d.status == "pending" and d.attempts == 1 for d in deliveries)
        assert (
            sorted(d.last_error for d in deliveries)
            == ["HTTP 503"] + ["not sent: the endpoint failed another delivery just now (HTTP 503)"] * 11
        )
        assert deliver_due(orders_db, destinations=LOCAL).attempted == 0  # backed off: nothing is due

        receiver.status = 200  # it recovers; after the backoff every event arrives
        later = max(_aware(d.next_attempt_at) for d in deliveries)
        delivered = sum(deliver_due(orders_db, now=later, destinations=LOCAL).delivered for _ in range(3))
    assert delivered == 12 and all(d.status == "delivered" for d in _deliveries(orders_db))
    assert len({r.event["id"] for r in receiver.received[1:]}) == 12


def test_a_receiver_that_drips_its_answer_is_cut_at_the_attempts_bound(orders_db):
    """A read timeout bounds each wait, not the whole answer: a receiver that sends a byte
    every 0.3 s would hold an attempt for a minute. The attempt ends at connect + read."""
    key = _shop(orders_db)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.is_set():
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        create_endpoint(orders_db, key, f"http://127.0.0.1:{listener.getsockname()[1]}/h", ["*"], destinations=LOCAL)
        _paid_order(orders_db, key)
        started = time.monotonic()
        report = deliver_due(orders_db, timeout=1.0, destinations=LOCAL)
        took = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
    assert report.retrying == 1 and took < 3.5, (took, report.summary())
    assert [d.last_error for d in _deliveries(orders_db)] == ["timed out after 1 s"]
