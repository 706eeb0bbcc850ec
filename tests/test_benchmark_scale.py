"""benchmarks/scale.py seeds what the application itself reads back, on PostgreSQL: the
orders in their states with a legal history, their files, and the `orders` partitions
with their materializations; and its sensor ticks run on that data. How fast they tick is
the benchmark's to judge (its targets, its exit status), not this test's."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from benchmarks.scale import TARGETS, Results, measure_sensors, missed, scale_setup, seed, sensor_tick, table
from photogen_pipelines.orders.states import SETTLED, OrderState, can_transition
from photogen_pipelines.orders.uploads import get_upload
from photogen_pipelines.storage.artifacts import OrderKeys, Validation

ORDERS = 50


@pytest.mark.slow
def test_scale_seeding_is_what_the_application_reads_back(postgres_server):
    now = datetime.now(UTC)
    with scale_setup(keep=False) as setup:
        defs, instance, seeded, _ = seed(setup, ORDERS, now)
        try:
            book, store = defs.resources["orders"].book(), defs.resources["storage"].store()
            database = defs.resources["orders"].database()
            assert len({s.order.id for s in seeded}) == ORDERS
            states = set()
            for s in seeded:
                order = book.get(s.order.id)  # the order book's own read
                states.add(order.state)
                assert order.state == s.order.state and order.state in SETTLED
                history = [e.to_state for e in order.events]
                assert history[0] == OrderState.AWAITING_PAYMENT and history[-1] == order.state
                assert all(can_transition(a, b) and a != b for a, b in zip(history, history[1:], strict=False))
                assert [e.at for e in order.events] == sorted(e.at for e in order.events)
                assert order.updated_at == order.events[-1].at and order.created_at == order.events[0].at
                assert not order.refund_owed  # settled: nothing owed
                if order.payments == "stripe":
                    assert order.paid_cents == order.amount_cents and order.payment_intent_id.startswith("pi_")
                    assert (order.state == OrderState.REFUNDED) == (order.refunded_cents == order.paid_cents > 0)
                # the storefront finds the order under its idempotency key, and its upload under the key's owner
                found, digest = book.find_idempotent(order.api_key_id, s.idempotency_key)
                assert found.id == order.id and digest == s.request_hash
                assert get_upload(database, order.upload_id, order.api_key_id).storage_key == order.upload_key
                assert store.exists(order.upload_key)
                validation = OrderKeys(order.id).load_if_present(store, Validation)
                # the identity gate's verdict is stored for every order that reached it
                reached_gate = OrderState.PROOFS_READY in history or order.stage == "validated_proofs"
                assert (validation is not None) == reached_gate
            assert OrderState.READY in states and len(states) >= 3

            # every order is a partition; each asset is materialized for the orders that got that far
            assert sorted(instance.get_dynamic_partitions("orders")) == sorted(s.order.id for s in seeded)
            for asset in ("selfie", "styled_candidates", "validated_proofs", "print_master", "print_file", "delivery"):
                expected = {s.order.id for s in seeded if any(a == asset for a, *_ in s.materializations)}
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == expected, asset
            ready = {s.order.id for s in seeded if s.order.state == OrderState.READY}
            assert instance.get_materialized_partitions(dg.AssetKey("delivery")) == ready
            # the runs behind them: one proof run per order, one print run per order that got there
            runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records()}
            assert sorted(runs) == sorted(run.run_id for s in seeded for run in s.runs)
            failed = {run.run_id for s in seeded for run in s.runs if run.failed_at}
            assert {i for i, run in runs.items() if run.status == dg.DagsterRunStatus.FAILURE} == failed
            assert all(runs[m[3]].tags["dagster/partition"] == s.order.id for s in seeded for m in s.materializations)
            latest = instance.get_latest_materialization_event(dg.AssetKey("selfie"))
            assert latest.run_id in runs
            assert latest.timestamp == max(t for s in seeded for a, t, *_ in s.materializations if a == "selfie")

            # the sensors on it: nothing to run (every order is settled); every tick is
            # measured and judged against the sensor target (whether it met it is the benchmark's)
            data = sensor_tick(__import__("sensors").paid_orders, instance, defs.resources, None)
            assert data.run_requests == []
            results = Results()
            measure_sensors(results, setup, instance, defs, seeded, ticks=2, stripe_base=None)
            assert len(results.rows) == 9, results.rows
            assert all(row["n"] >= 2 and row["target"] == TARGETS["sensor"] for row in results.rows), results.rows
            assert all(row["met"] in (True, False) for row in results.rows), results.rows
        finally:
            instance.dispose()
            defs.resources["orders"].database().dispose()


def test_the_benchmark_flags_a_measure_past_its_target():
    results = Results()
    results.add("quick tick", [0.1, 0.2, 0.1], target=2.0)
    results.add("slow tick", [0.1, 0.2, 3.5], target=2.0)  # its p95 misses
    results.add("one slow report", [12.0], target=10.0)  # one sample: its value misses
    results.add("no target", [99.0])
    assert [row["measure"] for row in missed(results)] == ["slow tick", "one slow report"]
    assert table(results).count("**no**") == 2
