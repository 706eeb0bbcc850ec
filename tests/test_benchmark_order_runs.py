"""benchmarks/order_runs.py reads a run's timing from a real Dagster event log."""

from __future__ import annotations

import time

import dagster as dg

from benchmarks.order_runs import run_timing, summarize

ATTEMPTS: list[int] = []


@dg.asset
def slow_asset() -> int:
    time.sleep(0.3)
    return 1


@dg.asset_check(asset=slow_asset)
def slow_check() -> dg.AssetCheckResult:
    time.sleep(0.2)
    return dg.AssetCheckResult(passed=True)


@dg.asset(deps=[slow_asset], retry_policy=dg.RetryPolicy(max_retries=1, delay=1.0))
def flaky_asset() -> None:
    ATTEMPTS.append(1)
    time.sleep(0.1)
    if len(ATTEMPTS) == 1:
        raise RuntimeError("first attempt fails")


def test_run_timing_sums_steps_and_checks_and_leaves_out_the_retry_wait():
    ATTEMPTS.clear()
    with dg.instance_for_test() as instance:
        result = dg.materialize([slow_asset, slow_check, flaky_asset], instance=instance, tags={"photogen/order": "order-1"})
        assert result.success and len(ATTEMPTS) == 2
        (record,) = instance.get_run_records()
        timing = run_timing(instance, record)

    assert timing.finished and timing.status == "SUCCESS" and timing.order_id == "order-1"
    assert set(timing.steps) == {"slow_asset", "slow_asset_slow_check", "flaky_asset"}  # the check is a step of its own
    assert 0.3 <= timing.steps["slow_asset"] < 1.5
    assert 0.2 <= timing.steps["slow_asset_slow_check"] < 1.5
    assert 0.2 <= timing.steps["flaky_asset"] < 0.9  # two attempts of 0.1 s; the 1 s retry delay is outside the step
    assert timing.steps_s == sum(timing.steps.values())
    # the retry delay is orchestration; Dagster counts its 1 s from the failure, so the event
    # written after it under load can leave a little less between the two attempts' events
    assert timing.wall_s >= timing.steps_s + 0.5
    assert timing.launch_s is None and timing.queued_s is None  # in process: no RUN_STARTING, wall from the run's creation

    report = summarize([timing], {}, ["order-1"])
    (order,) = report["orders"]
    assert order["runs"] == 1
    assert abs(order["orchestration_s"] - (timing.wall_s - timing.steps_s)) < 1e-9
    assert report["totals"]["orchestration_per_order_median_s"] == order["orchestration_s"]
    assert report["jobs"][timing.job]["runs"] == 1

    cut_short = summarize([timing], {}, ["order-1"], stopped_at=timing.ended_at)  # it ended as the service stopped
    assert cut_short["jobs"] == {} and cut_short["totals"]["unfinished_order_runs"] == 1
