"""Customers over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: their plan, their
credits and history, who may read them, and the pages of that history."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import open_database
from tests.api_helpers import make_app, make_settings, order_body


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def database(settings, client):
    database = open_database(settings.resolved_database_url)  # migrated by the app's start
    yield database
    database.dispose()


def _key(database, name="test shop") -> tuple[str, dict[str, str]]:
    key, secret = create_api_key(database, name)
    return key.id, {"Authorization": f"Bearer {secret}"}


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def _grant(database, api_key_id: str, ref: str, credits: int) -> None:
    """Credits from the shop (as the operator's CLI would give them), straight into the ledger."""
    with database.session() as session:
        customer = customers.get(session, api_key_id, ref, lock=True)
        wallet.post(session, customer, EntryKind.GRANT, credits, key=f"test:{uuid.uuid4()}", reason="a test's grant")


def _upload(client, auth, png: bytes, **form) -> dict:
    response = client.post(
        "/v1/uploads", headers=auth, files={"file": ("a.png", png, "image/png")}, data={"consent": "true", **form}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _credit_order(client, auth, upload_id: str, ref: str, **fields):
    body = order_body(upload_id, payment="credits", customer_ref=ref, **fields)
    return client.post("/v1/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())}, json=body)


def test_a_put_customer_gets_the_plans_welcome_credits_once_and_moves_plans(client, database):
    _, auth = _key(database)
    created = client.put("/v1/customers/alice", headers=auth, json={"plan": "free"})
    assert created.status_code == 200, created.text
    alice = created.json()
    assert (alice["ref"], alice["plan"], alice["balance"]) == ("alice", "free", 10)
    [welcome] = alice["entries"]["items"]
    assert (welcome["kind"], welcome["amount"], welcome["balance_after"], welcome["counter_account"]) == (
        "grant",
        10,
        10,
        "shop:grants",
    )
    assert alice["orders"] == {"items": [], "next_cursor": None}

    for plan in ("pro", "free", "pro"):  # back and forth: the welcome credits were given once
        moved = client.put("/v1/customers/alice", headers=auth, json={"plan": plan}).json()
        assert (moved["plan"], moved["balance"], len(moved["entries"]["items"])) == (plan, 10, 1)
    assert client.get("/v1/customers/alice", headers=auth).json() == moved

    basic = client.put("/v1/customers/bob", headers=auth, json={"plan": "basic"}).json()
    assert (basic["plan"], basic["balance"], basic["entries"]["items"]) == ("basic", 0, [])  # basic has no welcome credits

    _assert_error(client.put("/v1/customers/alice", headers=auth, json={"plan": "gold"}), 422, "unknown_plan")
    _assert_error(client.put("/v1/customers/carol", headers=auth, json={"plan": "gold"}), 422, "unknown_plan")
    _assert_error(client.get("/v1/customers/carol", headers=auth), 404, "customer_not_found")  # nothing was created
    assert client.get("/v1/customers/alice", headers=auth).json()["plan"] == "pro"


def test_a_customer_belongs_to_the_key_that_named_them(client, database):
    shop_a, auth_a = _key(database, "shop a")
    _, auth_b = _key(database, "shop b")
    client.put("/v1/customers/alice", headers=auth_a, json={"plan": "pro"})
    _grant(database, shop_a, "alice", 50)

    _assert_error(client.get("/v1/customers/alice", headers=auth_b), 404, "customer_not_found")
    # another shop's alice is another customer: her own plan, her own welcome credits
    theirs = client.put("/v1/customers/alice", headers=auth_b, json={"plan": "free"}).json()
    assert (theirs["plan"], theirs["balance"]) == ("free", 10)
    ours = client.get("/v1/customers/alice", headers=auth_a).json()
    assert (ours["plan"], ours["balance"]) == ("pro", 50)  # the pro plan has no welcome credits

    _assert_error(client.get("/v1/customers/alice"), 401, "missing_credentials")
    _assert_error(client.get("/v1/customers/alice", headers={"Authorization": "Bearer pgk_wrong"}), 401, "invalid_api_key")


@pytest.mark.parametrize("ref", ["bad ref", "-starts-with-a-dash", "x" * 65, "semi;colon", "caf\u00e9"])
def test_a_bad_customer_ref_is_a_422_with_its_code(client, database, ref):
    _, auth = _key(database)
    _assert_error(client.get(f"/v1/customers/{ref}", headers=auth), 422, "invalid_customer_ref")
    _assert_error(client.put(f"/v1/customers/{ref}", headers=auth, json={"plan": "free"}), 422, "invalid_customer_ref")


def test_bad_bodies_and_paging_parameters_are_422s(client, database):
    _, auth = _key(database)
    client.put("/v1/customers/alice", headers=auth, json={"plan": "free"})
    client.put("/v1/customers/bob", headers=auth, json={"plan": "free"})
    for body in ({"plan": 3}, {"plan": "free", "credits": 100}, {}, None):
        _assert_error(client.put("/v1/customers/alice", headers=auth, json=body), 422, "invalid_request")
    for query in ("limit=0", "limit=101", "limit=two"):
        _assert_error(client.get(f"/v1/customers/alice?{query}", headers=auth), 422, "invalid_request")
    bobs = client.get("/v1/customers/bob?limit=1", headers=auth).json()
    _grant(database, _key_of(database, auth), "bob", 5)
    bobs_cursor = client.get("/v1/customers/bob?limit=1", headers=auth).json()["entries"]["next_cursor"]
    assert bobs["entries"]["next_cursor"] is None and bobs_cursor
    for cursor in ("garbage!", "Zm9vOmJhcg", bobs_cursor):  # not base64; base64 of another kind; another customer's
        _assert_error(client.get(f"/v1/customers/alice?entries_cursor={cursor}", headers=auth), 422, "invalid_cursor")
        _assert_error(client.get(f"/v1/customers/alice?orders_cursor={cursor}", headers=auth), 422, "invalid_cursor")


def _key_of(database, auth) -> str:
    from photogen_pipelines.access.api_keys import verify_api_key

    return verify_api_key(database, auth["Authorization"].removeprefix("Bearer ")).id


def test_an_order_token_sees_its_own_customer_and_no_other(client, database, astronaut_png):
    _, auth = _key(database)
    _, other_shop = _key(database, "another shop")
    upload = _upload(client, auth, astronaut_png)
    alices = _credit_order(client, auth, upload["id"], "alice")
    bobs = _credit_order(client, auth, upload["id"], "bob")
    assert alices.status_code == bobs.status_code == 201, (alices.text, bobs.text)
    alice_order, bob_order = alices.json(), bobs.json()
    token = {"Authorization": f"Bearer {alice_order['customer_token']}"}

    seen = client.get(f"/v1/orders/{alice_order['id']}/customer", headers=token)
    assert seen.status_code == 200, seen.text
    assert seen.json() == client.get("/v1/customers/alice", headers=auth).json()
    assert seen.json()["ref"] == "alice" and [o["id"] for o in seen.json()["orders"]["items"]] == [alice_order["id"]]
    assert seen.json()["balance"] == 10 - 8  # the free plan's welcome credits, less a standard A3 poster

    _assert_error(client.get(f"/v1/orders/{bob_order['id']}/customer", headers=token), 404, "order_not_found")
    _assert_error(client.get("/v1/customers/bob", headers=token), 403, "api_key_required")
    _assert_error(client.get("/v1/customers/alice", headers=token), 403, "api_key_required")
    _assert_error(client.put("/v1/customers/alice", headers=token, json={"plan": "pro"}), 403, "api_key_required")
    _assert_error(client.get(f"/v1/orders/{alice_order['id']}/customer", headers=other_shop), 404, "order_not_found")
    # the key that placed it reads it too; an order placed for nobody has no customer
    assert client.get(f"/v1/orders/{bob_order['id']}/customer", headers=auth).json()["ref"] == "bob"
    anonymous = client.post("/v1/orders", headers={**auth, "Idempotency-Key": "anon"}, json=order_body(upload["id"])).json()
    _assert_error(client.get(f"/v1/orders/{anonymous['id']}/customer", headers=auth), 404, "customer_not_found")
    anonymous_token = {"Authorization": f"Bearer {anonymous['customer_token']}"}
    _assert_error(client.get(f"/v1/orders/{anonymous['id']}/customer", headers=anonymous_token), 404, "customer_not_found")


def _every_page(client, auth, ref: str, listing: str) -> tuple[list[dict], list[int]]:
    """A customer's orders or entries, page after page of 2 by `next_cursor`; and the balances seen."""
    items, balances, cursor = [], [], None
    while True:
        params = {"limit": 2, **({f"{listing}_cursor": cursor} if cursor else {})}
        view = client.get(f"/v1/customers/{ref}", headers=auth, params=params)
        assert view.status_code == 200, view.text
        page = view.json()[listing]
        assert 1 <= len(page["items"]) <= 2
        items += page["items"]
        balances.append(view.json()["balance"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, balances
        assert len(balances) < 10, "the cursor does not move on"


def test_the_history_pages_newest_first_without_gaps_or_repeats(client, database, astronaut_png):
    shop, auth = _key(database)
    client.put("/v1/customers/alice", headers=auth, json={"plan": "basic"})
    _grant(database, shop, "alice", 45)
    upload = _upload(client, auth, astronaut_png)
    placed = []
    for _ in range(5):
        response = _credit_order(client, auth, upload["id"], "alice", tier="fast")  # 6 credits each
        assert response.status_code == 201, response.text
        placed.append(response.json()["id"])
    _grant(database, shop, "alice", 3)
    balance = 45 - 5 * 6 + 3

    orders, balances = _every_page(client, auth, "alice", "orders")
    assert len(balances) == 3 and set(balances) == {balance}
    assert [o["id"] for o in orders] == placed[::-1]  # newest first, each once
    assert all(o["payment"] == "credits" and o["credits_paid"] == 6 and o["tier"] == "fast" for o in orders)

    entries, balances = _every_page(client, auth, "alice", "entries")
    assert len(balances) == 4 and set(balances) == {balance}
    assert [e["kind"] for e in entries] == ["grant"] + ["spend"] * 5 + ["grant"]
    assert [e["order_id"] for e in entries[1:6]] == placed[::-1]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert entries[0]["balance_after"] == balance == sum(e["amount"] for e in entries)
    for newer, older in zip(entries, entries[1:], strict=False):
        assert newer["balance_after"] - newer["amount"] == older["balance_after"]
    assert entries[-1]["balance_after"] == 45


def test_an_upload_keeps_the_customer_it_was_made_for(client, database, astronaut_png):
    _, auth = _key(database)
    assert _upload(client, auth, astronaut_png, customer_ref="alice@example")["customer_ref"] == "alice@example"
    assert _upload(client, auth, astronaut_png)["customer_ref"] is None
    files = {"file": ("a.png", astronaut_png, "image/png")}
    refused = client.post("/v1/uploads", headers=auth, files=files, data={"customer_ref": "not a ref", "consent": "true"})
    _assert_error(refused, 422, "invalid_customer_ref")
