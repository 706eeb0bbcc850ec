"""Retention on a real orders database (SQLite and PostgreSQL) and a real local store: exactly
the files of expired orders whose history is in the ledger go, and nothing still needed."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import update

from photogen_pipelines.db.tables import OrderEventRow
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.retention import RetentionPolicy, expired_orders, ledger_key, purge_expired
from resources import ArtifactStorage, OrdersDatabase, StoreConfig
from resources.retention import RetentionSettings
from sensors import retention as retention_sensor
from sensors.retention import RetentionCursor, order_retention
from tests.dagster_helpers import local_instance

S = OrderState
NOW = datetime.now(UTC)
OLD = (NOW - timedelta(days=45)).replace(hour=12)  # midday: the ledger day is unambiguous
OLDER = OLD - timedelta(days=1)  # a day whose ledger file was never written
RECENT = NOW - timedelta(days=3)

DELIVERED = [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY]
ORDER_FILES = [
    "selfie/selfie.png",
    "selfie/portrait.png",
    "selfie/face.json",
    "candidates/candidates.json",
    "candidates/round_0/variant_0.png",
    "candidates/round_1/variant_0.png",
    "proofs/proof_0.png",
    "proofs/validation.json",
    "print/master.png",
    "print/master.json",
    "print/print_file.jpg",
    "print/manifest.json",
]
PRINT_FILES = {"print/print_file.jpg", "print/manifest.json"}

# id: (path of states, when it got there, in the ledger?, upload key, paid, refunded)
ORDERS = {
    "ord_ready_old": (DELIVERED, OLD, True, None, 0, 0),
    "ord_ready_old2": (DELIVERED, RECENT, False, None, 0, 0),  # its id extends the one above: its files must stay
    "ord_refunded_old": ([S.PAID, S.GENERATING, S.REJECTED, S.REFUNDED], OLD, True, None, 1500, 1500),
    "ord_rejected_old": ([S.PAID, S.GENERATING, S.REJECTED], OLD, True, None, 0, 0),
    "ord_failed_old": ([S.PAID, S.GENERATING, S.FAILED], OLD, True, None, 0, 0),
    "ord_cancelled_old": ([S.CANCELLED], OLD, True, None, 0, 0),  # never paid, so never a partition
    "ord_generating_old": ([S.PAID, S.GENERATING], OLD, True, None, 0, 0),
    "ord_proofs_old": ([S.PAID, S.GENERATING, S.PROOFS_READY], OLD, True, None, 0, 0),
    "ord_owed_old": ([S.PAID, S.CANCELLED], OLD, True, None, 1500, 0),  # the refund is not through yet
    "ord_ready_recent": (DELIVERED, RECENT, False, None, 0, 0),
    "ord_no_ledger_row": (DELIVERED, OLD, False, None, 0, 0),  # the day's file exists, without this order
    "ord_no_ledger_day": (DELIVERED, OLDER, False, None, 0, 0),  # no file for its day at all
    "ord_shared_done": (DELIVERED, OLD, True, "uploads/upl_shared.png", 0, 0),
    "ord_shared_live": ([S.PAID, S.GENERATING, S.PROOFS_READY], RECENT, False, "uploads/upl_shared.png", 0, 0),
    "ord_pair_a": (DELIVERED, OLD, True, "uploads/upl_pair.png", 0, 0),
    "ord_pair_b": ([S.PAID, S.CANCELLED], OLD, True, "uploads/upl_pair.png", 0, 0),
    "ord_cli": (DELIVERED, OLD, True, "orders/ord_cli/upload", 0, 0),  # the CLI keeps the upload with the order
}
PURGED = {
    "ord_ready_old",
    "ord_refunded_old",
    "ord_rejected_old",
    "ord_failed_old",
    "ord_cancelled_old",
    "ord_shared_done",
    "ord_pair_a",
    "ord_pair_b",
    "ord_cli",
}
WAITING = {"ord_no_ledger_row", "ord_no_ledger_day"}


def _upload_key(order_id: str) -> str:
    return ORDERS[order_id][3] or f"uploads/upl_{order_id}.png"


def _add(book: SqlOrderBook, database, order_id: str) -> None:
    path, at, _, upload_key, paid, refunded = ORDERS[order_id]
    book.add(
        Order(
            id=order_id,
            style_id="ink_etching",
            product_id="poster_a3",
            upload_key=upload_key or _upload_key(order_id),
            paid_cents=paid,
            refunded_cents=refunded,
        )
    )
    for state in path:
        book.transition(order_id, state, reason="test")
    with database.session() as session:  # the whole history happened `at`
        session.execute(update(OrderEventRow).where(OrderEventRow.order_id == order_id).values(at=at))


def _everything(store) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()}


def _write_ledger(store, day, order_ids) -> None:
    buffer = io.BytesIO()
    pd.DataFrame({"order_id": sorted(order_ids), "state": "x"}).to_parquet(buffer)
    store.put_bytes(ledger_key(day), buffer.getvalue())


@pytest.fixture
def book(orders_db):
    return SqlOrderBook(orders_db)


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def world(book, orders_db, store):
    """Every order of ORDERS with its files, its upload, and the ledger for the old day."""
    for order_id in ORDERS:
        _add(book, orders_db, order_id)
        for name in ORDER_FILES:
            store.put_bytes(f"orders/{order_id}/{name}", f"{order_id}/{name}".encode())
        store.put_bytes(_upload_key(order_id), b"selfie")
    store.put_bytes("catalog/previews/ink_etching/latest.json", b"{}")  # not an order's: never touched
    _write_ledger(store, OLD.date(), [o for o, spec in ORDERS.items() if spec[2]])
    return _everything(store)


def _expected_deletions(keep_print_files: bool) -> set[str]:
    keys = set()
    for order_id in PURGED:
        keys |= {f"orders/{order_id}/{n}" for n in ORDER_FILES if not (keep_print_files and n in PRINT_FILES)}
    # the shared upload stays: ord_shared_live still needs it; the pair's goes, both are purged
    keys |= {_upload_key(o) for o in PURGED if o != "ord_shared_done"}
    return keys


def test_expired_orders_are_the_settled_ones_past_the_period_oldest_first(book, world):
    found = expired_orders(book, NOW, RetentionPolicy(days=30))
    assert {e.order.id for e in found} == PURGED | WAITING
    assert found[0].order.id == "ord_no_ledger_day"  # the oldest last change
    assert [e.final_at for e in found] == sorted(e.final_at for e in found)
    # a watermark resumes after the last one handled
    rest = expired_orders(book, NOW, RetentionPolicy(days=30), after=(found[3].final_at, found[3].order.id))
    assert [e.order.id for e in rest] == [e.order.id for e in found[4:]]
    assert expired_orders(book, NOW, RetentionPolicy(days=60)) == []


@pytest.mark.parametrize("keep_print_files", [True, False])
def test_a_pass_deletes_exactly_the_expired_files_and_nothing_still_needed(book, store, world, keep_print_files):
    result = purge_expired(book, store, NOW, RetentionPolicy(days=30, keep_print_files=keep_print_files))

    assert set(result.purged) == PURGED
    assert set(result.waiting) == WAITING
    assert "does not exist yet" in result.waiting["ord_no_ledger_day"]
    assert "not in analytics/ledger/day=" in result.waiting["ord_no_ledger_row"]
    deleted = {key for keys in result.purged.values() for key in keys}
    assert deleted == _expected_deletions(keep_print_files)
    # what is left is exactly what was there, less what the pass says it deleted
    assert _everything(store) == world - deleted
    for order_id in set(ORDERS) - PURGED:
        assert all(store.exists(f"orders/{order_id}/{n}") for n in ORDER_FILES), order_id
        assert store.exists(_upload_key(order_id)), order_id
    assert store.exists("uploads/upl_shared.png") and not store.exists("uploads/upl_pair.png")
    if keep_print_files:
        assert store.list("orders/ord_ready_old/") == [
            "orders/ord_ready_old/print/manifest.json",
            "orders/ord_ready_old/print/print_file.jpg",
        ]
    else:
        assert store.list("orders/ord_ready_old/") == []

    again = purge_expired(book, store, NOW, RetentionPolicy(days=30, keep_print_files=keep_print_files))
    assert all(keys == [] for keys in again.purged.values())  # a second pass finds nothing left to delete


def test_the_sensor_purges_a_bounded_batch_per_tick_and_removes_exactly_their_partitions(
    tmp_path, book, orders_db, store, world, monkeypatch
):
    monkeypatch.setattr(retention_sensor, "MAX_ORDERS_PER_TICK", 4)
    resources = {
        "orders": OrdersDatabase(url=orders_db.url),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
        "retention": RetentionSettings(days=30, keep_print_files=True),
    }
    partitioned = sorted(set(ORDERS) - {"ord_cancelled_old"})
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", partitioned)
        removed: list[str] = []
        cursor = None
        for _ in range(6):
            with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
                result = order_retention(context)
            cursor = result.cursor
            for request in result.dynamic_partitions_requests:  # what the daemon does with them
                assert isinstance(request, dg.DeleteDynamicPartitionsRequest) and request.partitions_def_name == "orders"
                assert len(request.partition_keys) <= 4
                removed += request.partition_keys
                for key in request.partition_keys:
                    instance.delete_dynamic_partition("orders", key)

        assert sorted(removed) == sorted(PURGED - {"ord_cancelled_old"})  # each once, and no other
        assert set(instance.get_dynamic_partitions("orders")) == set(partitioned) - PURGED
        assert set(RetentionCursor.parse(cursor).waiting) == WAITING
        assert _everything(store) == world - _expected_deletions(keep_print_files=True)

        # the ledger catches up: the waiting orders go on the next tick, and only they
        _write_ledger(store, OLD.date(), [o for o, spec in ORDERS.items() if spec[2]] + ["ord_no_ledger_row"])
        _write_ledger(store, OLDER.date(), ["ord_no_ledger_day"])
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
            result = order_retention(context)
        assert sorted(result.dynamic_partitions_requests[0].partition_keys) == sorted(WAITING)
        assert RetentionCursor.parse(result.cursor).waiting == []
        assert not store.exists("orders/ord_no_ledger_row/selfie/selfie.png")
        assert store.exists("orders/ord_ready_recent/selfie/selfie.png")


def test_an_order_that_moved_on_since_it_waited_is_dropped_not_purged(tmp_path, book, orders_db, store, world):
    resources = {
        "orders": OrdersDatabase(url=orders_db.url),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
        "retention": RetentionSettings(),
    }
    book.transition("ord_no_ledger_row", S.RENDERING, reason="re-rendered for a reprint")  # active again
    _write_ledger(store, OLD.date(), [*ORDERS])
    waited = RetentionCursor(after=(NOW, "ord_zzz"), waiting=["ord_no_ledger_row"]).serialize()  # nothing new to scan
    with local_instance(tmp_path / "dagster") as instance:
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=waited) as context:
            result = order_retention(context)
    assert RetentionCursor.parse(result.cursor).waiting == []
    assert result.dynamic_partitions_requests == []
    assert store.exists("orders/ord_no_ledger_row/selfie/selfie.png")


def test_a_storage_error_leaves_that_order_waiting_and_the_others_go(book, store, world, monkeypatch):
    real_delete = store.delete

    def flaky(key: str) -> None:
        if key == "orders/ord_failed_old/print/master.png":
            raise OSError("the bucket said 503")
        real_delete(key)

    monkeypatch.setattr(store, "delete", flaky)
    result = purge_expired(book, store, NOW, RetentionPolicy(days=30))
    assert set(result.purged) == PURGED - {"ord_failed_old"}
    assert "503" in result.waiting["ord_failed_old"]
    monkeypatch.setattr(store, "delete", real_delete)
    assert "ord_failed_old" in purge_expired(book, store, NOW, RetentionPolicy(days=30)).purged
    assert _everything(store) == world - _expected_deletions(keep_print_files=True)


def test_the_sensor_loads_in_definitions_with_its_resources(tmp_path):
    from sensors.retention import retention_sensors

    defs = dg.Definitions(
        sensors=retention_sensors,
        resources={
            "orders": OrdersDatabase(url=f"sqlite:///{tmp_path / 'orders.db'}"),
            "storage": ArtifactStorage(settings=StoreConfig(root=str(tmp_path / "artifacts"))),
            "retention": RetentionSettings(days=60, keep_print_files=False),
        },
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("order_retention").default_status == dg.DefaultSensorStatus.RUNNING
