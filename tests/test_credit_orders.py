"""Orders paid in credits, and quotes, through a real server (uvicorn on loopback, the API's
own HTTP protocol, as `photogen serve` runs it), on SQLite and PostgreSQL: credits move
exactly once however many requests race for them, and a quote's price is the price."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import func, select, update

import photogen_pipelines.catalog
from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.clock import utc_now
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import Database, open_database
from photogen_pipelines.db.tables import CustomerRow, OrderRow, QuoteRow
from storefront_api.server import HttpProtocol
from tests.api_helpers import make_app, make_settings, order_body
from tests.servers import api_server

TIMEOUT = 120


@dataclass
class Shop:
    base: str
    database: Database
    key_id: str
    auth: dict[str, str]
    upload_id: str

    def post(self, path: str, body: dict, key: str | None = None, auth: dict | None = None) -> requests.Response:
        headers = {**(auth or self.auth), **({"Idempotency-Key": key} if key else {})}
        return requests.post(self.base + path, headers=headers, json=body, timeout=TIMEOUT)

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.base + path, headers=self.auth, params=params, timeout=TIMEOUT)

    def put(self, path: str, body: dict) -> requests.Response:
        return requests.put(self.base + path, headers=self.auth, json=body, timeout=TIMEOUT)

    def order(self, ref: str | None, key: str | None = None, **fields) -> requests.Response:
        paid_in_credits = {"payment": "credits", "customer_ref": ref} if ref else {}
        body = order_body(self.upload_id, **{**paid_in_credits, **fields})
        return self.post("/v1/orders", body, key=key or str(uuid.uuid4()))

    def grant(self, ref: str, credits: int) -> None:
        """Credits from the shop, straight into the customer's ledger."""
        with self.database.session() as session:
            customer = customers.get(session, self.key_id, ref, lock=True)
            wallet.post(session, customer, EntryKind.GRANT, credits, key=f"test:{uuid.uuid4()}", reason="a test's grant")

    def ledger(self, ref: str) -> tuple[int, list[wallet.Entry]]:
        with self.database.session() as session:
            customer = customers.get(session, self.key_id, ref)
            return wallet.balance(session, customer.id), wallet.entries(session, customer.id)

    def orders_of(self, ref: str) -> int:
        with self.database.session() as session:
            return session.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.customer_ref == ref))


def _serve(tmp_path: Path, database_url: str, **overrides):
    settings = make_settings(tmp_path, database_url, **overrides)
    return api_server(make_app(settings), http=HttpProtocol.for_settings(settings))


@pytest.fixture
def shop(tmp_path, database_url, astronaut_png):
    with _serve(tmp_path, database_url) as base:
        database = open_database(database_url)
        key, secret = create_api_key(database, "test shop")
        auth = {"Authorization": f"Bearer {secret}"}
        files = {"file": ("selfie.png", astronaut_png, "image/png")}
        upload = requests.post(base + "/v1/uploads", headers=auth, data={"consent": "true"}, files=files, timeout=TIMEOUT)
        assert upload.status_code == 201, upload.text
        yield Shop(base, database, key.id, auth, upload.json()["id"])
        database.dispose()


def _at_once(count: int, send) -> list[requests.Response]:
    """`count` calls of `send(i)` from as many threads, released together."""
    start = threading.Barrier(count)

    def one(i: int) -> requests.Response:
        start.wait()
        return send(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def _error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


# -- credits move once ------------------------------------------------------------------------


def test_fifty_parallel_orders_on_a_wallet_for_ten_make_ten_orders_and_forty_refusals(shop):
    assert shop.put("/v1/customers/alice", {"plan": "basic"}).json()["balance"] == 0  # basic: no welcome credits
    shop.grant("alice", 80)  # ten standard A3 posters at 8 credits

    responses = _at_once(50, lambda i: shop.order("alice", key=f"checkout-{i}"))

    assert Counter(r.status_code for r in responses) == {201: 10, 402: 40}, [r.text for r in responses if r.status_code >= 500]
    placed = [r.json() for r in responses if r.status_code == 201]
    for refused in (r for r in responses if r.status_code == 402):
        assert _error(refused, 402, "insufficient_credits")["details"] == {"balance": 0, "needed": 8}
    assert all(o["state"] == "paid" and o["payment"]["mode"] == "credits" and o["payment"]["credits_paid"] == 8 for o in placed)
    ids = {o["id"] for o in placed}
    assert len(ids) == 10

    balance, entries = shop.ledger("alice")
    spends = [e for e in entries if e.kind == EntryKind.SPEND]
    assert balance == 0 == sum(e.amount for e in entries)
    assert [e.kind for e in entries] == [EntryKind.GRANT] + [EntryKind.SPEND] * 10
    assert {e.order_id for e in spends} == ids and all(e.amount == -8 for e in spends)
    assert shop.orders_of("alice") == 10  # a refusal left no order behind
    view = shop.get("/v1/customers/alice", limit=100).json()
    assert view["balance"] == 0 and {o["id"] for o in view["orders"]["items"]} == ids


def test_parallel_retries_of_one_credit_order_charge_it_once(shop):
    shop.put("/v1/customers/alice", {"plan": "basic"})
    shop.grant("alice", 20)

    responses = _at_once(20, lambda _: shop.order("alice", key="one-checkout"))

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    again = shop.order("alice", key="one-checkout")
    assert again.status_code == 200 and again.json()["id"] == responses[0].json()["id"]
    _error(shop.order("alice", key="one-checkout", tier="fast"), 409, "idempotency_key_reused")
    balance, entries = shop.ledger("alice")
    assert balance == 12 and [e.amount for e in entries] == [20, -8]
    assert shop.orders_of("alice") == 1


def test_a_new_customer_named_by_parallel_orders_is_created_once_with_one_welcome(shop):
    responses = _at_once(20, lambda i: shop.order("newbie", key=f"k{i}"))  # free plan: 10 welcome credits

    assert Counter(r.status_code for r in responses) == {201: 1, 402: 19}, [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 402):
        assert _error(refused, 402, "insufficient_credits")["details"] == {"balance": 2, "needed": 8}
    with shop.database.session() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRow).where(CustomerRow.ref == "newbie")) == 1
    balance, entries = shop.ledger("newbie")
    assert balance == 2 and [(e.kind, e.amount) for e in entries] == [(EntryKind.GRANT, 10), (EntryKind.SPEND, -8)]


def test_the_plan_decides_the_tiers_a_customer_may_pay_for(shop):
    shop.put("/v1/customers/alice", {"plan": "free"})
    shop.grant("alice", 40)
    _error(shop.order("alice", tier="premium"), 402, "plan_excludes_tier")
    assert shop.ledger("alice")[0] == 50 and shop.orders_of("alice") == 0

    assert shop.put("/v1/customers/alice", {"plan": "pro"}).json()["plan"] == "pro"
    premium = shop.order("alice", tier="premium")
    assert premium.status_code == 201, premium.text
    assert premium.json()["payment"]["credits_paid"] == 12 and premium.json()["tier"] == "premium"
    assert shop.ledger("alice")[0] == 38

    _error(shop.order(None, payment="credits"), 422, "customer_ref_required")
    _error(shop.order("alice", payment="cash"), 422, "invalid_request")
    _error(shop.order("alice", customer_ref="not a ref"), 422, "invalid_customer_ref")
    shop.put("/v1/customers/broke", {"plan": "basic"})
    broke = _error(shop.order("broke"), 402, "insufficient_credits")
    assert broke["details"] == {"balance": 0, "needed": 8}
    assert shop.ledger("alice")[0] == 38 and shop.orders_of("broke") == 0


# -- quotes -----------------------------------------------------------------------------------


def test_a_quote_prices_a_product_in_money_credits_and_waiting_time(shop):
    response = shop.post("/v1/quotes", {"product_id": "poster_a3", "tier": "premium", "customer_ref": "alice"})
    assert response.status_code == 201, response.text
    quote = response.json()
    assert quote["id"].startswith("quo_") and (quote["kind"], quote["product_id"], quote["tier"]) == (
        "portrait_print",
        "poster_a3",
        "premium",
    )
    assert quote["price"] == {"amount_cents": 5500, "currency": "usd", "credits": 12}  # products.yaml
    assert quote["expected_wait"] == {"proofs_seconds": 60, "print_seconds": 120, "basis": "catalog"}
    assert quote["valid_seconds"] == 1800 and quote["customer_ref"] == "alice"
    default = shop.post("/v1/quotes", {"product_id": "poster_a3"}).json()
    assert default["tier"] == "standard" and default["price"]["credits"] == 8 and default["customer_ref"] is None

    _error(shop.post("/v1/quotes", {"product_id": "mug"}), 422, "unknown_product")
    _error(shop.post("/v1/quotes", {"product_id": "poster_a3", "tier": "gold"}), 422, "unknown_tier")
    _error(shop.post("/v1/quotes", {"product_id": "poster_a3", "kind": "pose_pack"}), 422, "unknown_kind")
    _error(shop.post("/v1/quotes", {"product_id": "poster_a3", "customer_ref": "a b"}), 422, "invalid_customer_ref")
    _error(shop.post("/v1/quotes", {"product_id": "poster_a3", "price": 1}), 422, "invalid_request")
    token = {"Authorization": f"Bearer {shop.order(None).json()['customer_token']}"}
    _error(shop.post("/v1/quotes", {"product_id": "poster_a3"}, auth=token), 403, "api_key_required")


def _dearer_catalog(tmp_path: Path) -> str:
    """products.yaml with the A3 poster's standard tier dearer in money and in credits."""
    catalog = yaml.safe_load((Path(photogen_pipelines.catalog.__file__).parent / "products.yaml").read_text())
    a3 = next(p for p in catalog["products"] if p["id"] == "poster_a3")
    a3["price_cents"], a3["tier_credits"]["standard"] = 4500, 11
    path = tmp_path / "dearer.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


def test_an_order_naming_a_quote_is_charged_the_quotes_price_after_the_catalog_changed(shop, tmp_path, database_url):
    shop.put("/v1/customers/alice", {"plan": "basic"})
    shop.grant("alice", 30)
    quote = shop.post("/v1/quotes", {"product_id": "poster_a3", "customer_ref": "alice"}).json()
    assert quote["price"] == {"amount_cents": 3500, "currency": "usd", "credits": 8}

    # the shop raises its prices: the same database and files, served with the dearer catalog
    with _serve(tmp_path, database_url, products_path=_dearer_catalog(tmp_path)) as dearer:
        dearer_shop = Shop(dearer, shop.database, shop.key_id, shop.auth, shop.upload_id)
        assert dearer_shop.post("/v1/quotes", {"product_id": "poster_a3"}).json()["price"]["credits"] == 11
        honoured = dearer_shop.order("alice", quote_id=quote["id"])
        assert honoured.status_code == 201, honoured.text
        payment = honoured.json()["payment"]
        assert (payment["amount_cents"], payment["credits_paid"], payment["quote_id"]) == (3500, 8, quote["id"])
        unquoted = dearer_shop.order("alice").json()["payment"]
        assert (unquoted["amount_cents"], unquoted["credits_paid"], unquoted["quote_id"]) == (4500, 11, None)

    balance, entries = shop.ledger("alice")
    assert balance == 30 - 8 - 11 and [e.amount for e in entries] == [30, -8, -11]


def test_a_quote_is_honoured_only_in_time_for_what_and_whom_it_was_made(shop):
    shop.put("/v1/customers/alice", {"plan": "basic"})
    shop.put("/v1/customers/bob", {"plan": "basic"})
    shop.grant("alice", 30)
    shop.grant("bob", 30)
    for_alice = shop.post("/v1/quotes", {"product_id": "poster_a3", "customer_ref": "alice"}).json()["id"]

    _error(shop.order("alice", quote_id=for_alice, tier="fast"), 422, "quote_mismatch")
    _error(shop.order("alice", quote_id=for_alice, product_id="poster_a2"), 422, "quote_mismatch")
    _error(shop.order("bob", quote_id=for_alice), 422, "quote_mismatch")
    _error(shop.order("alice", quote_id="quo_0000000000000000"), 422, "quote_not_found")
    _, other_secret = create_api_key(shop.database, "another shop")
    theirs = requests.post(
        shop.base + "/v1/quotes",
        headers={"Authorization": f"Bearer {other_secret}"},
        json={"product_id": "poster_a3"},
        timeout=TIMEOUT,
    ).json()["id"]
    _error(shop.order("alice", quote_id=theirs), 422, "quote_not_found")  # another key's quote is none of ours

    with shop.database.session() as session:  # half an hour goes by
        session.execute(update(QuoteRow).where(QuoteRow.id == for_alice).values(expires_at=utc_now() - timedelta(seconds=1)))
    _error(shop.order("alice", quote_id=for_alice), 422, "quote_expired")

    assert shop.ledger("alice")[0] == shop.ledger("bob")[0] == 30 and shop.orders_of("alice") == shop.orders_of("bob") == 0
