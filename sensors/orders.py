"""Orders that are ready for their next run: paid → the proof run, approved → the print run."""

from __future__ import annotations

import dagster as dg

from assets import print_job, proof_job
from assets.partitions import approved_orders_partitions, orders_partitions
from photogen_pipelines.orders.states import Order, OrderState
from resources import OrdersDatabase
from sensors._cursor import EPOCH, EventCursor

MAX_ORDERS_PER_TICK = 25
# Dagster's sensor daemon passes over the sensors every 5 s, and skips a sensor whose interval
# has not fully elapsed: an interval of 5 s made these tick every other pass, 10 s apart
# (measured), so a paid order waited 5 s on average for its run. Below the pass, they tick on
# every pass; each tick is one bounded query of the orders database.
ORDER_SENSOR_INTERVAL_SECONDS = 1
# customers' orders leave the run queue before catalog previews and analytics, and proofs
# (a customer is waiting to choose) before print files (they ship with the parcel, later)
PROOF_RUN_PRIORITY, PRINT_RUN_PRIORITY = 20, 10


def _entered(context: dg.SensorEvaluationContext, orders: OrdersDatabase, state: OrderState):
    """Orders that entered `state` since the cursor (as they are now), and the next cursor."""
    cursor = EventCursor.parse(context.cursor)
    book = orders.book()
    events = book.events_since([state], cursor.since, exclude_ids=list(cursor.seen), limit=MAX_ORDERS_PER_TICK)
    order_ids = list(dict.fromkeys(order_id for _, order_id, _, _ in events))
    return [book.get(order_id) for order_id in order_ids], cursor.advance(events)


def _order_runs(ready: list[Order], run: str, priority: int) -> list[dg.RunRequest]:
    # one run per order and kind: Dagster never launches a run_key twice. The order's style,
    # product and tier ride along as tags: the UI's run list shows them and filters by them,
    # where a partition is only an order id.
    tags = {"dagster/priority": str(priority)}
    return [
        dg.RunRequest(partition_key=order.id, run_key=f"{run}:{order.id}", tags={**tags, **order_run_tags(order)})
        for order in ready
    ]


def _approved_before_the_partitions(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> list[str]:
    """Every order ever approved, once, on an instance upgraded from before the print assets
    had partitions of their own (`approved_orders`): this sensor's cursor is already past
    their approvals, and without their keys their print history would be out of sight. A
    new instance starts with no cursor and finds them through its events anyway."""
    if context.cursor is None:
        return []
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # a context built without an instance (a unit test's)
        return []
    if instance.get_dynamic_partitions(approved_orders_partitions.name):
        return []
    book, since, keys = orders.book(), EPOCH, []
    while events := book.events_since([OrderState.APPROVED], since, exclude_ids=[], limit=1000):
        keys += [order_id for _, order_id, _, _ in events]
        if len(events) < 1000 or events[-1][2] == since:
            break
        since = events[-1][2]  # the next page starts at the last one's time; repeats are dropped below
    return list(dict.fromkeys(keys))


def order_run_tags(order: Order) -> dict[str, str]:
    """What an order run says about its order, beyond the partition (the order id)."""
    return {
        "photogen/order": order.id,
        "photogen/style": order.style_id,
        "photogen/product": order.product_id,
        "photogen/tier": order.tier or "default",
    }


def _order_sensor(job_name: str, description: str):
    """The decorator of an order sensor: it requests runs of the job named `job_name`,
    ticks on every pass of the daemon, and runs from the start. By name: the code location
    defines the jobs with its engine's run tags (assets.define_jobs)."""
    return dg.sensor(
        job_name=job_name,
        minimum_interval_seconds=ORDER_SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )


@_order_sensor(
    proof_job.name, "Paid orders become proof runs: the order id joins the `orders` partitions and one run is requested."
)
def paid_orders(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SensorResult:
    entered, cursor = _entered(context, orders, OrderState.PAID)
    # an order cancelled (or already run) since its event needs no run, nor a partition
    ready = [order for order in entered if order.state == OrderState.PAID]
    if len(entered) > len(ready):
        context.log.info(f"{len(entered) - len(ready)} paid order(s) moved on before their run was requested")
    keys = [order.id for order in ready]
    return dg.SensorResult(
        run_requests=_order_runs(ready, "proofs", PROOF_RUN_PRIORITY),
        dynamic_partitions_requests=[orders_partitions.build_add_request(keys)] if keys else [],
        cursor=cursor.serialize(),
    )


@_order_sensor(
    print_job.name,
    "Approved orders (by the customer, or auto-approved by the proof run) become print runs: the order id joins the "
    "`approved_orders` partitions and one run is requested.",
)
def approved_orders(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SensorResult:
    entered, cursor = _entered(context, orders, OrderState.APPROVED)
    # every approved order is a print partition, also one that moved on since (its print run
    # already ran, as `photogen demo` runs it); only one still approved needs its run
    ready = [order for order in entered if order.state == OrderState.APPROVED]
    # one key once: Dagster refuses a request that names a key twice, and fails the tick
    keys = list(dict.fromkeys([order.id for order in entered] + _approved_before_the_partitions(context, orders)))
    return dg.SensorResult(
        run_requests=_order_runs(ready, "print", PRINT_RUN_PRIORITY),
        dynamic_partitions_requests=[approved_orders_partitions.build_add_request(keys)] if keys else [],
        cursor=cursor.serialize(),
    )
