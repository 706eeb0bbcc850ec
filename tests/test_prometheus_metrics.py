"""`GET /metrics` (issue 28, metrics): scraped over real HTTP from the API on SQLite and
PostgreSQL, parsed with prometheus_client's own parser; the counters move with orders."""

from __future__ import annotations

import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from photogen_pipelines.db.database import open_database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.servers import api_server

S = OrderState


@pytest.fixture
def shop(tmp_path, database_url):
    """The API with payments off, served over HTTP, and a storefront key."""
    settings = make_settings(tmp_path, database_url)
    with api_server(make_app(settings)) as url:
        yield settings, url, new_key(settings)


def _scrape(url: str, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample, by (name, sorted labels)."""
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _place(url: str, auth: dict, image) -> str:
    upload = requests.post(
        f"{url}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", jpeg_bytes(image))}, timeout=30
    )
    assert upload.status_code == 201, upload.text
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    order = requests.post(f"{url}/v1/orders", headers=headers, json=order_body(upload.json()["id"]), timeout=30)
    assert order.status_code == 201, order.text
    return order.json()["id"]


def test_orders_by_state_and_the_apis_requests_move_with_orders(shop, face_images):
    settings, url, auth = shop
    before = _scrape(url)
    assert before[("photogen_orders", (("state", "paid"),))] == 0

    ids = [_place(url, auth, face_images["obama"]) for _ in range(2)]
    after = _scrape(url)

    assert after[("photogen_orders", (("state", "paid"),))] == 2  # payments off: paid on creation
    assert after[("photogen_order_oldest_seconds", (("state", "paid"),))] >= 0
    placed = ("photogen_api_http_requests_total", (("handler", "/v1/orders"), ("method", "POST"), ("status", "201")))
    assert after[placed] == before.get(placed, 0) + 2
    assert ("photogen_api_http_request_duration_seconds_count", (("handler", "/v1/orders"), ("method", "POST"))) in after

    # the identity gate's verdicts today, per style, and the live rejection rate
    book = SqlOrderBook(open_database(settings.resolved_database_url))
    for order_id in ids:
        book.transition(order_id, S.GENERATING)
    book.transition(ids[0], S.PROOFS_READY)
    book.transition(ids[1], S.REJECTED, reason="identity lost in every round")
    gated = _scrape(url)
    assert gated[("photogen_gate_verdicts_today", (("style", "ink_etching"), ("verdict", "passed")))] == 1
    assert gated[("photogen_gate_verdicts_today", (("style", "ink_etching"), ("verdict", "rejected")))] == 1
    assert gated[("photogen_rejection_rate_today", (("style", "ink_etching"),))] == 0.5
    assert gated[("photogen_orders", (("state", "paid"),))] == 0
    assert ("photogen_order_oldest_seconds", (("state", "paid"),)) not in gated  # no order waits there any more


def test_an_unknown_route_is_counted_without_its_path_as_a_label(shop):
    _, url, _ = shop
    requests.get(f"{url}/v1/orders/ord_{uuid.uuid4().hex}/nothing-here", timeout=10)
    names = {labels for (name, labels) in _scrape(url) if name == "photogen_api_http_requests_total"}
    assert not any("nothing-here" in value for labels in names for _, value in labels)


def test_with_a_token_set_the_endpoint_wants_it(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, metrics_token="scrape-" + uuid.uuid4().hex)
    with api_server(make_app(settings)) as url:
        refused = requests.get(f"{url}/metrics", timeout=10)
        wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert (refused.status_code, refused.json()["code"]) == (401, "metrics_token_required")
        assert (wrong.status_code, wrong.json()["code"]) == (401, "metrics_token_required")
        assert ("photogen_orders", (("state", "paid"),)) in _scrape(url, Authorization=f"Bearer {settings.metrics_token}")
