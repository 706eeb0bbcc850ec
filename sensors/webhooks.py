"""Outbound webhooks: the sensor that sends what the outbox holds to the storefronts."""

from __future__ import annotations

import dagster as dg

from photogen_pipelines.webhooks.delivery import deliver_due
from resources import OrdersDatabase

# One tick must end well inside Dagster's 60 s sensor timeout, however slow the receivers:
# WORKERS send at once, a request takes at most ~5 s to connect plus TIMEOUT_SECONDS to be
# answered, and nothing new starts after TIME_BUDGET_SECONDS (what is left is due again at
# once). Worst case ≈ 25 + 5 + 10 = 40 s; with receivers answering in ~100 ms, a tick sends
# all MAX_PER_TICK in well under a second.
MAX_PER_TICK = 64
WORKERS = 8
TIMEOUT_SECONDS = 10.0
TIME_BUDGET_SECONDS = 25.0


@dg.sensor(
    # below the daemon's 5 s pass, so it ticks on every pass: at 5 s it skipped every other
    # pass and ticked 10 s apart, as the order sensors did (sensors/orders.py, measured)
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends the storefronts' order events (the webhook outbox) to their endpoints, signed; "
        "retries failures with backoff for more than a day. Never launches a run."
    ),
)
def webhook_deliveries(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SkipReason:
    report = deliver_due(
        orders.database(),
        limit=MAX_PER_TICK,
        timeout=TIMEOUT_SECONDS,
        workers=WORKERS,
        time_budget=TIME_BUDGET_SECONDS,
    )
    if report.gave_up:
        # ids only: endpoints' URLs and events' contents stay in the orders database
        context.log.warning(f"gave up on webhook deliveries {report.gave_up} after a day of retries")
    return dg.SkipReason(report.summary())
