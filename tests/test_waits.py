"""What a customer is told to expect: a tier's waits, measured from the shop's own orders
once there are enough of them, the catalog's estimate until then (orders/waits.py), on
SQLite and PostgreSQL; and the tiers list and order view that carry them, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from photogen_pipelines.catalog import load_products
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderEvent, OrderState
from photogen_pipelines.orders.waits import MEASURED_FROM, TierWait, expected_at, tier_wait

S = OrderState
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _order(tier: str, proofs_s: float, print_s: float | None, start: datetime = T0) -> Order:
    """An order of `tier` that took `proofs_s` from payment to proofs and `print_s` from
    approval to the print file (None: not approved yet)."""
    moves = [(S.AWAITING_PAYMENT, 0), (S.PAID, 10), (S.GENERATING, 12), (S.PROOFS_READY, 10 + proofs_s)]
    if print_s is not None:
        approved = 10 + proofs_s + 300  # the customer took five minutes to choose: not the shop's wait
        moves += [(S.APPROVED, approved), (S.RENDERING, approved + 1), (S.READY, approved + print_s)]
    events = [
        OrderEvent(at=start + timedelta(seconds=at), from_state=prev, to_state=state)
        for (state, at), prev in zip(moves, [None] + [m[0] for m in moves[:-1]], strict=True)
    ]
    return Order(
        style_id="ink_etching",
        product_id="poster_a3",
        upload_key="k",
        variants=2,
        tier=tier,
        state=moves[-1][0],
        created_at=start,
        events=events,
    )


def test_a_tier_is_told_from_the_catalog_until_its_orders_measure_it(orders_db):
    book = SqlOrderBook(orders_db)
    premium = load_products().tier("premium")
    told = tier_wait(book, premium)
    assert (told.proofs_seconds, told.print_seconds, told.basis) == (
        premium.expected_wait.proofs_seconds,
        premium.expected_wait.print_seconds,
        "catalog",
    )
    for i in range(MEASURED_FROM - 1):
        book.add(_order("premium", proofs_s=40 + i, print_s=200 + i))
    assert tier_wait(book, premium).basis == "catalog"  # four orders are not yet a measurement

    book.add(_order("premium", proofs_s=44, print_s=204))
    # another tier's orders and an order still waiting for approval do not count
    book.add(_order("fast", proofs_s=5, print_s=5))
    book.add(_order("premium", proofs_s=900, print_s=None))
    measured = tier_wait(book, premium)
    assert measured.basis == "measured"
    assert measured.orders == MEASURED_FROM
    # medians of 40..44 and 200..204: the customer's five minutes of choosing are not counted
    assert (measured.proofs_seconds, measured.print_seconds) == (42, 202)


def test_the_median_follows_the_most_recent_orders(orders_db):
    book = SqlOrderBook(orders_db)
    standard = load_products().tier("standard")
    for i in range(MEASURED_FROM):  # a month ago, slow
        book.add(_order("standard", 600, 600, start=T0 - timedelta(days=30, minutes=i)))
    for i in range(60):  # since the shop moved to a faster engine
        book.add(_order("standard", 20, 30, start=T0 + timedelta(minutes=i)))
    wait = tier_wait(book, standard)
    assert (wait.proofs_seconds, wait.print_seconds) == (20, 30)


def test_an_order_is_expected_from_when_its_wait_began():
    wait = TierWait(proofs_seconds=60, print_seconds=300, basis="catalog", orders=0)
    generating = _order("premium", proofs_s=0, print_s=None)
    generating.state = S.GENERATING
    generating.events = generating.events[:3]
    assert expected_at(generating, wait, now=T0) == T0 + timedelta(seconds=10 + 60)
    # late: expected now, never in the past
    late = T0 + timedelta(hours=1)
    assert expected_at(generating, wait, now=late) == late

    rendering = _order("premium", proofs_s=40, print_s=None)
    rendering.events.append(OrderEvent(at=T0 + timedelta(seconds=400), from_state=S.PROOFS_READY, to_state=S.APPROVED))
    rendering.state = S.RENDERING
    assert expected_at(rendering, wait, now=T0) == T0 + timedelta(seconds=400 + 300)

    waiting_for_the_customer = _order("premium", proofs_s=40, print_s=None)
    assert expected_at(waiting_for_the_customer, wait, now=T0) is None


@pytest.mark.parametrize("tier", ["fast", "standard", "premium"])
def test_every_shipped_tier_states_its_waits(tier):
    """The premium print takes minutes on the CPU: the catalog says so before anyone pays."""
    stated = load_products().tier(tier).expected_wait
    assert stated.proofs_seconds > 0 and stated.print_seconds > 0
    if tier == "premium":
        assert stated.print_seconds > load_products().tier("standard").expected_wait.print_seconds


def test_the_tiers_and_the_order_view_say_what_to_expect(tmp_path, face_images):
    """Over real HTTP: GET /v1/tiers tells each tier's waits before anyone pays, and an
    order waiting for its proofs says when they should be ready."""
    import requests

    from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
    from tests.servers import api_server

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    with api_server(make_app(settings)) as url:
        tiers = {t["id"]: t for t in requests.get(f"{url}/v1/tiers", timeout=10).json()}
        premium = load_products().tier("premium").expected_wait
        assert tiers["premium"]["expected_wait"] == {
            "proofs_seconds": premium.proofs_seconds,
            "print_seconds": premium.print_seconds,
            "basis": "catalog",
        }
        auth = new_key(settings)
        upload = requests.post(
            f"{url}/v1/uploads",
            headers=auth,
            data={"consent": "true"},
            files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))},
        )
        body = {k: v for k, v in order_body(upload.json()["id"], tier="premium", variants=None).items() if v is not None}
        placed = requests.post(f"{url}/v1/orders", headers={**auth, "Idempotency-Key": "w1"}, json=body, timeout=30)
        assert placed.status_code == 201, placed.text
        order = requests.get(f"{url}/v1/orders/{placed.json()['id']}", headers=auth, timeout=10).json()
        assert order["state"] == "paid" and order["expected_wait"] == tiers["premium"]["expected_wait"]
        paid_at = datetime.fromisoformat(next(e["at"] for e in order["events"] if e["to_state"] == "paid"))
        expected = datetime.fromisoformat(order["expected_at"])
        assert expected >= paid_at + timedelta(seconds=premium.proofs_seconds) - timedelta(seconds=1)


def test_the_report_shows_each_tiers_wait_and_what_it_rests_on(orders_db, database_url, tmp_path):
    """`photogen report`: the premium print's wait is in the operator's report too, measured
    once the shop's orders tell it, the catalog's estimate before."""
    import json

    from click.testing import CliRunner

    from photogen_pipelines.cli import main as cli_main

    book = SqlOrderBook(orders_db)
    for i in range(MEASURED_FROM):
        book.add(_order("premium", proofs_s=50, print_s=290 + i))
    env = {"PHOTOGEN_DATABASE_URL": database_url}
    shown = CliRunner().invoke(cli_main.cli, ["report", "--json", "--home", str(tmp_path / "home")], env=env)
    assert shown.exit_code == 0, shown.output
    waits = {row["tier"]: row for row in json.loads(shown.stdout)["waits"]}
    assert waits["premium"] == {"tier": "premium", "proofs_seconds": 50, "print_seconds": 292, "basis": "measured", "orders": 5}
    fast = load_products().tier("fast").expected_wait
    assert (waits["fast"]["print_seconds"], waits["fast"]["basis"]) == (fast.print_seconds, "catalog")
    text = CliRunner().invoke(cli_main.cli, ["report", "--home", str(tmp_path / "home")], env=env).stdout
    premium_line = [line for line in text.splitlines() if line.startswith("premium ")][-1]  # after the cost table's
    assert "4.9 min" in premium_line and "the median of its last 5 orders" in premium_line
