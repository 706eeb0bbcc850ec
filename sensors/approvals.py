"""The approval deadline: proofs nobody chooses from are reminded of, then settled by policy;
previews nobody paid for expire (the catalog's `previews.expire_hours`)."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from photogen_pipelines.workflows.approvals import run_deadlines
from resources import ArtifactStorage, CatalogResource, OrdersDatabase
from resources.fulfilment import ApprovalDeadline

MAX_ORDERS_PER_TICK = 50


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Orders whose proofs wait for the customer: an order.approval_reminder before the shop's deadline, then the best "
        "proof is auto-approved (the print run follows) or the order is cancelled and refunded, by policy. A preview not "
        "paid within the catalog's previews.expire_hours of its proofs is cancelled and its pictures deleted."
    ),
)
def approval_deadlines(
    context: dg.SensorEvaluationContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    approval_deadline: ApprovalDeadline,
    catalog: CatalogResource,
) -> dg.SkipReason:
    previews = catalog.products().previews
    done = run_deadlines(
        orders.book(), storage.store(), approval_deadline.policy(), datetime.now(UTC), MAX_ORDERS_PER_TICK, previews
    )
    for order_id in done.approved:
        context.log.info(f"order {order_id}: auto-approved at the approval deadline")
    for order_id in done.cancelled:
        context.log.info(f"order {order_id}: cancelled at the approval deadline (the refund follows)")
    for order_id in done.expired:
        kept = f"; its pictures stay for retention: {done.unretired[order_id]}" if order_id in done.unretired else ""
        context.log.info(f"order {order_id}: a preview not paid in time, cancelled{kept}")
    return dg.SkipReason(done.summary())
