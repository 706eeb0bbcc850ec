"""The approval deadline: proofs nobody chooses from are reminded of, then settled by policy."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from photogen_pipelines.workflows.approvals import run_deadlines
from resources import ArtifactStorage, OrdersDatabase
from resources.fulfilment import ApprovalDeadline

MAX_ORDERS_PER_TICK = 50


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Orders whose proofs wait for the customer: an order.approval_reminder before the shop's deadline, then the best "
        "proof is auto-approved (the print run follows) or the order is cancelled and refunded, by policy."
    ),
)
def approval_deadlines(
    context: dg.SensorEvaluationContext, orders: OrdersDatabase, storage: ArtifactStorage, approval_deadline: ApprovalDeadline
) -> dg.SkipReason:
    done = run_deadlines(orders.book(), storage.store(), approval_deadline.policy(), datetime.now(UTC), MAX_ORDERS_PER_TICK)
    for order_id in done.approved:
        context.log.info(f"order {order_id}: auto-approved at the approval deadline")
    for order_id in done.cancelled:
        context.log.info(f"order {order_id}: cancelled at the approval deadline (the refund follows)")
    return dg.SkipReason(done.summary())
