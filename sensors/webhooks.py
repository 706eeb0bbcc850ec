"""Outbound webhooks: the sensor that sends what the outbox holds to the storefronts."""

from __future__ import annotations

import dagster as dg

from photogen_pipelines.webhooks.delivery import deliver_due
from photogen_pipelines.webhooks.endpoints import webhook_destinations
from resources import OrdersDatabase

# Dagster's daemon evaluates sensors one after another, so a tick must be short however slow
# the receivers: WORKERS send at once, a request waits at most ~3 s to connect and
# TIMEOUT_SECONDS for the answer (and their sum in all), and no request starts that could not
# end within TIME_BUDGET_SECONDS (what is left is due again at once). One shop's slow
# receiver gets its turn, not the tick: deliveries take turns across shops and endpoints, and
# an endpoint that fails is backed off with all its due deliveries (webhooks/delivery.py).
# With receivers answering in ~100 ms, a tick sends all MAX_PER_TICK in well under a second.
MAX_PER_TICK = 64
WORKERS = 8
TIMEOUT_SECONDS = 5.0
TIME_BUDGET_SECONDS = 10.0


@dg.sensor(
    # below the daemon's 5 s pass, so it ticks on every pass: at 5 s it skipped every other
    # pass and ticked 10 s apart, as the order sensors did (sensors/orders.py, measured)
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends the storefronts' order events (the webhook outbox) to their endpoints, signed, "
        "to public addresses only; retries failures with backoff for more than a day. Never launches a run."
    ),
)
def webhook_deliveries(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SkipReason:
    report = deliver_due(
        orders.database(),
        limit=MAX_PER_TICK,
        timeout=TIMEOUT_SECONDS,
        workers=WORKERS,
        time_budget=TIME_BUDGET_SECONDS,
        # PHOTOGEN_WEBHOOK_ALLOW_PRIVATE / _ALLOWED_HOSTS / _ALLOW_HTTP, as the API registered them
        destinations=webhook_destinations(),
    )
    if report.gave_up:
        # ids only: endpoints' URLs and events' contents stay in the orders database
        context.log.warning(f"gave up on webhook deliveries {report.gave_up} after a day of retries")
    return dg.SkipReason(report.summary())
