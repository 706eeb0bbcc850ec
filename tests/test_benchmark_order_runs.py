"""benchmarks/order_runs.py reads a run's timing from a real Dagster event log.

The bounds are behavioural, not timing thresholds: a step takes at least its own body (the
bodies time themselves, whatever the machine's load), and a retried step's time leaves out
the retry wait, so it is shorter than the span from its first attempt's start to its
second's end, which holds that wait."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from benchmarks.order_runs import run_timing, summarize

RETRY_DELAY = 2.0  # seconds Dagster waits before the flaky asset's second attempt
BODIES: dict[str, list[tuple[float, float]]] = {}  # step key -> each attempt's (start, end), monotonic


def timed_body(step: str, seconds: float) -> None:
    start = time.monotonic()
    time.sleep(seconds)
    BODIES.setdefault(step, []).append((start, time.monotonic()))


@dg.asset
def slow_asset() -> int:
    timed_body("slow_asset", 0.3)
    return 1


@dg.asset_check(asset=slow_asset)
def slow_check() -> dg.AssetCheckResult:
    timed_body("slow_asset_slow_check", 0.2)
    return dg.AssetCheckResult(passed=True)


@dg.asset(deps=[slow_asset], retry_policy=dg.RetryPolicy(max_retries=1, delay=RETRY_DELAY))
def flaky_asset() -> None:
    timed_body("flaky_asset", 0.1)
    if len(BODIES["flaky_asset"]) == 1:
        raise RuntimeError("first attempt fails")


@pytest.mark.slow
def test_run_timing_sums_steps_and_checks_and_leaves_out_the_retry_wait():
    BODIES.clear()
    with dg.instance_for_test() as instance:
        result = dg.materialize([slow_asset, slow_check, flaky_asset], instance=instance, tags={"photogen/order": "order-1"})
        assert result.success and len(BODIES["flaky_asset"]) == 2
        (record,) = instance.get_run_records()
        timing = run_timing(instance, record)

    assert timing.finished and timing.status == "SUCCESS" and timing.order_id == "order-1"
    assert set(timing.steps) == {"slow_asset", "slow_asset_slow_check", "flaky_asset"}  # the check is a step of its own
    for step, attempts in BODIES.items():  # a step holds its bodies: every attempt's
        assert timing.steps[step] >= sum(end - start for start, end in attempts), step
    (first, _), (second_start, second_end) = BODIES["flaky_asset"]
    assert second_start - first > RETRY_DELAY / 2  # Dagster did wait between the attempts
    assert timing.steps["flaky_asset"] < second_end - first  # ... and that wait is not in the step
    assert timing.steps_s == sum(timing.steps.values())
    # the retry delay is orchestration; Dagster counts it from the failure, so the event
    # written after it under load can leave a little less between the two attempts' events
    assert timing.wall_s >= timing.steps_s + RETRY_DELAY / 2
    assert timing.launch_s is None and timing.queued_s is None  # in process: no RUN_STARTING, wall from the run's creation

    report = summarize([timing], {}, ["order-1"])
    (order,) = report["orders"]
    assert order["runs"] == 1
    assert abs(order["orchestration_s"] - (timing.wall_s - timing.steps_s)) < 1e-9
    assert report["totals"]["orchestration_per_order_median_s"] == order["orchestration_s"]
    assert report["jobs"][timing.job]["runs"] == 1

    cut_short = summarize([timing], {}, ["order-1"], stopped_at=timing.ended_at)  # it ended as the service stopped
    assert cut_short["jobs"] == {} and cut_short["totals"]["unfinished_order_runs"] == 1
