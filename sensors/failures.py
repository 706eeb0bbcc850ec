"""A run that has failed for good settles its order: `failed` (unless already rejected)
and refunded. Runs the daemon will retry are left alone until their last attempt.

The failure event the sensor is handed can be stale: a run recorded failed from outside
(a code server that stopped while the run's worker went on) may have succeeded since, and
its order moved on. So the sensor acts on the run as the instance has it now, and only on an
order still in a state that run moves it through."""

from __future__ import annotations

import dagster as dg

from assets import print_job, proof_job
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.payments.stripe_payments import refund_order
from resources import OrdersDatabase, StripePayments

WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run that run retries will re-execute

# the states each job moves an order through: a failure of its run settles only these
# (orders/states.py: the proof run takes a paid order to proofs_ready, the print run an
# approved one to ready)
SETTLES_FROM: dict[str, frozenset[OrderState]] = {
    proof_job.name: frozenset({OrderState.PAID, OrderState.GENERATING}),
    print_job.name: frozenset({OrderState.APPROVED, OrderState.RENDERING}),
}


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
    order_id = context.dagster_run.tags.get("dagster/partition")
    if not order_id:
        return
    run_id = context.dagster_run.run_id
    run = context.instance.get_run_by_id(run_id)  # as it is now, not as it was when the event was written
    if run is None or run.status != dg.DagsterRunStatus.FAILURE:
        status = run.status.value if run else "deleted"
        context.log.warning(f"run {run_id} was recorded failed but is {status} now; order {order_id} left alone")
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
    settled = lifecycle.settle_failed_run(book, order_id, run.job_name, where, attempts, SETTLES_FROM.get(run.job_name))
    if settled is None or not settled.terminal:  # e.g. a failed re-render: the delivered file stands
        state = book.get(order_id).state.value
        context.log.warning(f"run {run.run_id} failed; order {order_id} stays {state}")
        return
    refund_order(book, payments.gateway(), order_id)
    context.log.info(f"order {order_id} settled: {book.get(order_id).state.value}")
