"""Sensors evaluated with `dg.build_sensor_context` against a real orders database, and the
run-failure sensor against a real failed run on a real instance."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from skimage import data

from photogen_pipelines.db.tables import OrderEventRow, OrderRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from resources import OrdersDatabase, StripePayments
from sensors import approved_orders, order_run_failures, paid_orders, stripe_reconciliation
from sensors.orders import MAX_ORDERS_PER_TICK
from tests.dagster_helpers import local_instance, run_failure_context


@pytest.fixture
def book(orders_db):
    return SqlOrderBook(orders_db)


@pytest.fixture
def resources(orders_db):
    return {"orders": OrdersDatabase(url=orders_db.url), "payments": StripePayments()}


def _paid(book, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="uploads/x.png"))
        ids.append(book.transition(order.id, OrderState.PAID, reason="test").id)
    return ids


def _tick(sensor, context):
    result = sensor(context)
    if result.cursor:
        context.update_cursor(result.cursor)
    return result


def test_paid_orders_become_one_proof_run_each_and_a_partition(book, resources):
    first, second = _paid(book, 2)
    with dg.build_sensor_context(resources=resources) as context:
        result = _tick(paid_orders, context)
        assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
            (first, f"proofs:{first}"),
            (second, f"proofs:{second}"),
        ]
        assert list(result.dynamic_partitions_requests[0].partition_keys) == [first, second]
        assert result.dynamic_partitions_requests[0].partitions_def_name == "orders"

        assert _tick(paid_orders, context).run_requests == []  # the cursor remembers them

        cancelled, third = _paid(book, 2)
        book.transition(cancelled, OrderState.CANCELLED, reason="changed their mind")
        assert [r.partition_key for r in _tick(paid_orders, context).run_requests] == [third]


def test_a_tick_does_a_bounded_amount_of_work_and_the_next_one_goes_on(book, resources):
    ids = _paid(book, MAX_ORDERS_PER_TICK + 5)
    with dg.build_sensor_context(resources=resources) as context:
        first = [r.partition_key for r in _tick(paid_orders, context).run_requests]
        second = [r.partition_key for r in _tick(paid_orders, context).run_requests]
    assert len(first) == MAX_ORDERS_PER_TICK and first + second == ids


def test_the_cursor_survives_a_new_sensor_context(book, resources):
    _paid(book, 1)
    with dg.build_sensor_context(resources=resources) as context:
        cursor = _tick(paid_orders, context).cursor
    with dg.build_sensor_context(resources=resources, cursor=cursor) as later:
        assert paid_orders(later).run_requests == []


def test_approved_orders_become_print_runs(book, resources):
    (order_id,) = _paid(book, 1)
    book.transition(order_id, OrderState.GENERATING)
    book.transition(order_id, OrderState.PROOFS_READY)
    with dg.build_sensor_context(resources=resources) as context:
        assert _tick(approved_orders, context).run_requests == []
        book.update(order_id, lambda o: (setattr(o, "approved_proof", 1), o.transition(OrderState.APPROVED)))
        result = _tick(approved_orders, context)
        (request,) = result.run_requests
        assert (request.partition_key, request.run_key) == (order_id, f"print:{order_id}")
        (added,) = result.dynamic_partitions_requests  # the order joins the print assets' partitions
        assert (added.partitions_def_name, list(added.partition_keys)) == ("approved_orders", [order_id])
        assert _tick(approved_orders, context).run_requests == []


def test_proof_runs_leave_the_queue_before_print_runs_and_both_before_previews(book, resources):
    """The run queue dequeues by dagster/priority (higher first; untagged runs, such as
    catalog previews, are 0): a customer waiting to choose a proof goes before a print file."""
    (printing,) = _paid(book, 1)
    book.transition(printing, OrderState.GENERATING)
    book.transition(printing, OrderState.PROOFS_READY)
    book.update(printing, lambda o: (setattr(o, "approved_proof", 1), o.transition(OrderState.APPROVED)))
    (paid,) = _paid(book, 1)
    with dg.build_sensor_context(resources=resources) as context:
        (proof_run,) = _tick(paid_orders, context).run_requests
        (print_run,) = _tick(approved_orders, context).run_requests
    assert (proof_run.partition_key, print_run.partition_key) == (paid, printing)
    assert int(proof_run.tags["dagster/priority"]) > int(print_run.tags["dagster/priority"]) > 0


def test_reconciliation_says_so_when_payments_are_off(resources):
    with dg.build_sensor_context(resources=resources) as context:
        assert "payments are off" in stripe_reconciliation(context).skip_message


def _failed_proof_run(tmp_path, monkeypatch, orders_db, upload: bytes | None):
    """A real proof_job run on a real instance for an order whose upload is `upload`."""
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", orders_db.url)
    defs = build_defs(str(tmp_path / "home"))
    book, store = defs.resources["orders"].book(), defs.resources["storage"].store()
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="uploads/test.png", variants=1))
    if upload is not None:
        store.put_bytes(order.upload_key, upload)
    book.transition(order.id, OrderState.PAID, reason="test")
    instance = local_instance(tmp_path / "dagster")
    instance.add_dynamic_partitions("orders", [order.id])
    result = defs.resolve_job_def("proof_job").execute_in_process(partition_key=order.id, instance=instance, raise_on_error=False)
    assert not result.success
    context = run_failure_context(instance, result.run_id, {"orders": defs.resources["orders"], "payments": StripePayments()})
    return order.id, book, context, instance


def test_a_run_that_fails_for_good_fails_its_order_with_the_reason(tmp_path, monkeypatch, orders_db):
    order_id, book, context, instance = _failed_proof_run(tmp_path, monkeypatch, orders_db, upload=None)
    assert book.get(order_id).state == OrderState.GENERATING  # the run died mid-way
    run = context.dagster_run

    def with_will_retry(value: str):
        instance.add_run_tags(run.run_id, {"dagster/will_retry": value})
        return run_failure_context(instance, run.run_id, context.resources.original_resource_dict)

    order_run_failures(with_will_retry("true"))  # run retries will take it again: not settled yet
    assert book.get(order_id).state == OrderState.GENERATING
    order_run_failures(with_will_retry("false"))
    failed = book.get(order_id)
    assert failed.state == OrderState.FAILED
    assert failed.reason == f"proof_job failed after 1 attempt(s): run {context.dagster_run.run_id} at selfie"
    instance.dispose()


def test_a_rejected_order_stays_rejected_when_its_run_fails(tmp_path, monkeypatch, orders_db):
    no_face = png_bytes(data.coffee())
    order_id, book, context, instance = _failed_proof_run(tmp_path, monkeypatch, orders_db, upload=no_face)
    order_run_failures(context)
    rejected = book.get(order_id)
    assert rejected.state == OrderState.REJECTED and rejected.reason.startswith("no_face")
    instance.dispose()


def _failed_print_run(tmp_path, monkeypatch, orders_db):
    """A real print_job run on a real instance for an approved order whose proof is missing."""
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", orders_db.url)
    defs = build_defs(str(tmp_path / "home"))
    book = defs.resources["orders"].book()
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="uploads/test.png", variants=1))
    for state in (OrderState.PAID, OrderState.GENERATING, OrderState.PROOFS_READY):
        book.transition(order.id, state)
    book.update(order.id, lambda o: (setattr(o, "approved_proof", 0), o.transition(OrderState.APPROVED)))
    instance = local_instance(tmp_path / "dagster")
    instance.add_dynamic_partitions("approved_orders", [order.id])  # as approved_orders does
    result = defs.resolve_job_def("print_job").execute_in_process(partition_key=order.id, instance=instance, raise_on_error=False)
    assert not result.success
    context = run_failure_context(instance, result.run_id, {"orders": defs.resources["orders"], "payments": StripePayments()})
    return order.id, book, context, instance


def test_a_failed_rerender_of_a_delivered_order_keeps_it_delivered(tmp_path, monkeypatch, orders_db):
    order_id, book, context, instance = _failed_print_run(tmp_path, monkeypatch, orders_db)
    # as if the order had been delivered and an operator's re-render has just failed
    with orders_db.session() as session:
        session.get(OrderRow, order_id).state = OrderState.RENDERING.value
        for state in (OrderState.READY, OrderState.RENDERING):
            session.add(OrderEventRow(order_id=order_id, at=datetime.now(UTC), from_state=None, to_state=state.value))
    order_run_failures(context)
    kept = book.get(order_id)
    assert kept.state == OrderState.READY and kept.reason.startswith("re-render failed")
    instance.dispose()
