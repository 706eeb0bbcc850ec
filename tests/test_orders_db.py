"""The orders database on SQLite and PostgreSQL: one set of migrations, the tables the
code maps, and no lost update when several processes change one order at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from photogen_pipelines.access.api_keys import create_api_key, revoke_api_key, verify_api_key
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import Base
from photogen_pipelines.errors import Conflict, IllegalTransition
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.orders.uploads import Upload
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest, place_order


def test_the_migrations_make_exactly_the_mapped_schema(database_url):
    database = Database(database_url)
    database.migrate()
    database.migrate()  # a second upgrade is a no-op
    assert database.revision() == "0011"  # the migrations' head
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert {"orders", "order_events", "payment_events", "uploads", "api_keys"} <= set(inspect(database.engine).get_table_names())
    database.dispose()


def test_concurrent_changes_to_one_order_are_all_kept(orders_db):
    book = SqlOrderBook(orders_db)
    order = book.add(Order(style_id="s", product_id="p", upload_key="k"))
    stages = [f"stage_{i}" for i in range(8)]

    def record(stage: str) -> None:
        SqlOrderBook(orders_db).record_stage(order.id, stage, 1.0)

    threads = [threading.Thread(target=record, args=(s,)) for s in stages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(book.get(order.id).stage_seconds) == set(stages)  # a read-modify-write race would drop some


def test_only_one_of_two_racing_transitions_wins(orders_db):
    book = SqlOrderBook(orders_db)
    order = book.add(Order(style_id="s", product_id="p", upload_key="k"))
    book.transition(order.id, OrderState.PAID)
    book.transition(order.id, OrderState.GENERATING)
    outcomes = []

    def move(target: OrderState) -> None:
        try:
            SqlOrderBook(orders_db).transition(order.id, target, reason=target.value)
            outcomes.append(target)
        except IllegalTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=move, args=(t,)) for t in (OrderState.PROOFS_READY, OrderState.REJECTED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = book.get(order.id)
    # either proofs_ready then (illegal) rejected, or rejected then (illegal) proofs_ready: never both
    assert sorted(map(str, outcomes)) == sorted([str(final.state), "refused"])
    assert [e.to_state for e in final.events][-1] == final.state


def test_events_since_finds_state_changes_in_order(orders_db):
    book = SqlOrderBook(orders_db)
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = book.transition(book.add(Order(style_id="s", product_id="p", upload_key="k")).id, OrderState.PAID)
    second = book.transition(book.add(Order(style_id="s", product_id="p", upload_key="k")).id, OrderState.PAID)
    events = book.events_since([OrderState.PAID], before)
    assert [order_id for _, order_id, _, _ in events] == [first.id, second.id]
    assert book.events_since([OrderState.PAID], before, exclude_ids=[events[0][0]])[0][1] == second.id
    assert book.events_since([OrderState.APPROVED], before) == []


def test_api_keys_are_stored_hashed_and_can_be_revoked(orders_db):
    key, secret = create_api_key(orders_db, "shop")
    assert verify_api_key(orders_db, secret) == key
    with orders_db.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT secret_hash FROM api_keys").scalar()
    assert secret not in stored and len(stored) == 64
    assert verify_api_key(orders_db, secret + "x") is None
    assert revoke_api_key(orders_db, key.id) and verify_api_key(orders_db, secret) is None


def test_an_idempotency_key_returns_the_same_order_or_conflicts(orders_db):
    book = SqlOrderBook(orders_db)
    upload = Upload("upl_1", "uploads/upl_1.png", 10, 10, "png", 100, 0.9, None, datetime.now(UTC))
    from photogen_pipelines.db.tables import UploadRow

    with orders_db.session() as session:
        session.add(UploadRow(**{**vars(upload), "sha256": "0" * 64}))
    args = (book, load_styles(), load_products(), None)

    def request(style_id: str) -> PlacementRequest:
        return PlacementRequest(OrderRequest(style_id, "poster_a3", 2, "customer"), upload, None, "key-1")

    first = place_order(*args, request("ink_etching"))
    again = place_order(*args, request("ink_etching"))
    assert first.created and not again.created and again.order.id == first.order.id
    with pytest.raises(Conflict) as raised:
        place_order(*args, request("sepia_oil"))
    assert raised.value.code == "idempotency_key_reused"
    assert len(book.list()) == 1
