"""A run that has failed for good settles its order: `failed` (unless already rejected)
and refunded. Runs the daemon will retry are left alone until their last attempt."""

from __future__ import annotations

import dagster as dg

from assets import print_job, proof_job
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.payments.stripe_payments import refund_order
from resources import OrdersDatabase, StripePayments

WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run that run retries will re-execute


def will_be_retried(run: dg.DagsterRun, instance: dg.DagsterInstance) -> bool:
    tag = run.tags.get(WILL_RETRY_TAG)
    if tag is not None:
        return tag.lower() == "true"
    if not instance.run_retries_enabled:
        return False
    return int(run.tags.get("dagster/retry_number", "0")) < instance.run_retries_max_retries


def _root_message(event: dg.DagsterEvent) -> str:
    error = event.step_failure_data.error if event.step_failure_data else None
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error else "unknown error"


@dg.run_failure_sensor(
    monitored_jobs=[proof_job, print_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks an order failed once its run's retries are spent, and refunds it.",
)
def order_run_failures(context: dg.RunFailureSensorContext, orders: OrdersDatabase, payments: StripePayments) -> None:
    run = context.dagster_run
    order_id = run.tags.get("dagster/partition")
    if not order_id:
        return
    if will_be_retried(run, context.instance):
        context.log.info(f"run {run.run_id} of order {order_id} failed; Dagster will retry it")
        return
    book = orders.book()
    attempts = int(run.tags.get("dagster/retry_number", "0")) + 1
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    for event in context.get_step_failure_events():
        context.log.warning(f"order {order_id}: step {event.step_key} failed: {_root_message(event)}")
    # the reason is shown to the customer: what failed and where an operator looks, no internals
    where = f"run {run.run_id}" + (f" at {', '.join(steps)}" if steps else "")
    settled = lifecycle.settle_failed_run(book, order_id, run.job_name, where, attempts)
    if settled is None or not settled.terminal:  # e.g. a failed re-render: the delivered file stands
        state = book.get(order_id).state.value
        context.log.warning(f"run {run.run_id} failed; order {order_id} stays {state}")
        return
    refund_order(book, payments.gateway(), order_id)
    context.log.info(f"order {order_id} settled: {book.get(order_id).state.value}")
