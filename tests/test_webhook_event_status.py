"""`GET /v1/webhook-events` shows where each listed event's deliveries stand, over real HTTP:
delivered, pending with its next attempt, failed; coarse outcomes only; the whole page's
deliveries read in one query; the OpenAPI document says so."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from sqlalchemy import event, update
from sqlalchemy.engine import Engine

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import WebhookDeliveryRow
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.webhooks.delivery import deliver_due
from tests.api_helpers import make_app, make_settings
from tests.servers import api_server
from tests.test_outbound_webhooks import Receiver, _paid_order

STATE_FIELDS = {
    "id",
    "endpoint_id",
    "url",
    "status",
    "attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_status_code",
    "last_error",
    "delivered_at",
}


@pytest.fixture(autouse=True)
def receivers_on_this_machine(monkeypatch):
    """Loopback receivers: the development setting that allows them (registration and delivery)."""
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")


@pytest.fixture
def api(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, webhook_allow_private=True)
    with api_server(make_app(settings)) as base:
        yield base + "/v1", open_database(settings.resolved_database_url)


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine in this process runs meanwhile (the API serves from a
    thread of this process)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_the_event_list_shows_each_deliverys_status_without_a_query_per_event(api):
    base, database = api
    key, secret = create_api_key(database, "shop")
    auth = {"Authorization": f"Bearer {secret}"}
    with Receiver() as good, Receiver() as broken:
        broken.status = 500
        hooks = {}
        for name, receiver in (("good", good), ("broken", broken)):
            created = requests.post(f"{base}/webhook-endpoints", headers=auth, json={"url": receiver.url}, timeout=10)
            assert created.status_code == 201, created.text
            hooks[name] = created.json()["id"]
        order = _paid_order(database, key.id)
        book = SqlOrderBook(database)
        book.transition(order.id, OrderState.GENERATING)  # tells no one
        book.transition(order.id, OrderState.PROOFS_READY)
        report = deliver_due(database, timeout=2)
        # the broken endpoint's second delivery is held back with its first, without a request
        assert (report.delivered, report.retrying, report.held_back) == (2, 1, 1), report

        with statements() as seen:
            listed = requests.get(f"{base}/webhook-events", headers=auth, timeout=10)
        assert listed.status_code == 200, listed.text

    page = listed.json()
    assert [e["type"] for e in page["data"]] == ["order.proofs_ready", "order.paid"]
    for listed_event in page["data"]:
        by_endpoint = {d["endpoint_id"]: d for d in listed_event["deliveries"]}
        assert set(by_endpoint) == set(hooks.values())
        delivered = by_endpoint[hooks["good"]]
        assert set(delivered) == STATE_FIELDS  # no attempt log in the list
        assert delivered["status"] == "delivered" and delivered["attempts"] == 1 and delivered["url"] == good.url
        assert delivered["last_status_code"] == 200 and delivered["last_error"] is None
        assert delivered["next_attempt_at"] is None and _at(delivered["delivered_at"]) is not None
    proofs_ready, paid = ({d["endpoint_id"]: d for d in e["deliveries"]}[hooks["broken"]] for e in page["data"])
    assert set(paid) == set(proofs_ready) == STATE_FIELDS
    assert paid["status"] == "pending" and paid["attempts"] == 1 and paid["url"] == broken.url
    assert (paid["last_status_code"], paid["last_error"], paid["delivered_at"]) == (500, "HTTP 500", None)
    assert _at(paid["next_attempt_at"]) > _at(paid["last_attempt_at"])  # the backoff's next try
    # held back with its failing endpoint: an attempt without a request, in step with it
    assert proofs_ready["status"] == "pending" and proofs_ready["attempts"] == 1
    assert proofs_ready["last_status_code"] is None
    assert proofs_ready["last_error"] == "not sent: the endpoint failed another delivery just now (HTTP 500)"
    assert _at(proofs_ready["next_attempt_at"]) > _at(proofs_ready["last_attempt_at"])

    # the page's deliveries in one query, whatever the page's length (no query per event)
    reads = [s for s in seen if re.search(r"\bFROM webhook_deliveries\b", s)]
    assert len(reads) == 1, reads
    assert "IN" in reads[0].upper()

    # the same state as the event's own page, less the attempt log
    paid_id = page["data"][1]["id"]
    detail = requests.get(f"{base}/webhook-events/{paid_id}", headers=auth, timeout=10).json()
    assert [{k: v for k, v in d.items() if k != "log"} for d in detail["deliveries"]] == page["data"][1]["deliveries"]


def test_a_failed_delivery_is_listed_as_failed_with_a_coarse_outcome_only(api):
    base, database = api
    key, secret = create_api_key(database, "shop")
    auth = {"Authorization": f"Bearer {secret}"}
    _, other_secret = create_api_key(database, "another shop")
    down = Receiver()  # never started: connection refused
    created = requests.post(f"{base}/webhook-endpoints", headers=auth, json={"url": down.url}, timeout=10).json()
    _paid_order(database, key.id)
    assert deliver_due(database, timeout=0.5).retrying == 1
    # a row an older version wrote with the HTTP library's own words (an address, a port):
    # shown coarsely, like the event's own page does
    raw = f"HTTPConnectionPool(host='10.1.2.3', port={down.port}): Max retries exceeded (Connection aborted)"
    with database.session() as session:
        session.execute(update(WebhookDeliveryRow).values(last_error=raw))
    (listed,) = requests.get(f"{base}/webhook-events", headers=auth, timeout=10).json()["data"]
    (delivery,) = listed["deliveries"]
    assert delivery["status"] == "pending" and delivery["last_error"] == "could not connect"
    assert delivery["last_status_code"] is None

    # disabling the endpoint gives the pending delivery up
    assert requests.delete(f"{base}/webhook-endpoints/{created['id']}", headers=auth, timeout=10).status_code == 204
    with database.session() as session:
        session.execute(update(WebhookDeliveryRow).values(next_attempt_at=datetime(2000, 1, 1)))  # due now
    deliver_due(database, timeout=0.5)
    (listed,) = requests.get(f"{base}/webhook-events", headers=auth, timeout=10).json()["data"]
    (delivery,) = listed["deliveries"]
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None and delivery["delivered_at"] is None
    assert delivery["last_error"] in ("endpoint disabled", "could not connect")
    assert "10.1.2.3" not in requests.get(f"{base}/webhook-events", headers=auth, timeout=10).text

    # another key sees none of it
    other = {"Authorization": f"Bearer {other_secret}"}
    assert requests.get(f"{base}/webhook-events", headers=other, timeout=10).json() == {"data": [], "has_more": False}


def test_an_event_no_endpoint_subscribed_to_lists_no_deliveries(api):
    base, database = api
    key, secret = create_api_key(database, "shop")
    _paid_order(database, key.id)  # no endpoint yet: the event has no delivery
    listed = requests.get(f"{base}/webhook-events", headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()
    assert [(e["type"], e["deliveries"]) for e in listed["data"]] == [("order.paid", [])]


def test_the_openapi_document_shows_the_delivery_status_in_the_list(api):
    base, _ = api
    spec = requests.get(base.removesuffix("/v1") + "/openapi.json", timeout=10).json()
    schemas = spec["components"]["schemas"]
    ok = spec["paths"]["/v1/webhook-events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    listing = schemas[ok["$ref"].rsplit("/", 1)[1]]
    item = schemas[listing["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[1]]
    state = schemas[item["properties"]["deliveries"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(state["properties"]) == STATE_FIELDS
    assert "log" not in state["properties"]
    status = state["properties"]["status"]
    enum = schemas[status["$ref"].rsplit("/", 1)[1]]["enum"] if "$ref" in status else status["enum"]
    assert set(enum) == {"pending", "delivered", "failed"}
