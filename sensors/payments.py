"""Stripe reconciliation: what the webhook missed, and refunds still owed."""

from __future__ import annotations

import time

import dagster as dg

from photogen_pipelines.payments import apply_stripe_event, refund_order
from resources import OrdersDatabase, StripePayments

FIRST_LOOKBACK_SECONDS = 3 * 24 * 3600
MAX_EVENTS_PER_TICK = 100
MAX_REFUNDS_PER_TICK = 20


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Applies Stripe events the webhook missed (same idempotent path) and issues refunds still owed.",
)
def stripe_reconciliation(context: dg.SensorEvaluationContext, orders: OrdersDatabase, payments: StripePayments) -> dg.SkipReason:
    gateway = payments.gateway()
    if gateway is None:
        return dg.SkipReason("payments are off: nothing to reconcile")
    database, book = orders.database(), orders.book()
    since = int(context.cursor) if context.cursor else int(time.time()) - FIRST_LOOKBACK_SECONDS
    events = gateway.events_since(since, MAX_EVENTS_PER_TICK)
    applied = [e["id"] for e in events if not apply_stripe_event(database, book, e, "reconciliation").startswith("duplicate")]
    refunded, failed = [], []
    for order in book.owed_refunds(MAX_REFUNDS_PER_TICK):
        try:
            refund_order(database, book, gateway, order.id)
            refunded.append(order.id)
        except Exception as exc:  # one order's refund must not stop the others; next tick retries
            context.log.warning(f"refund of {order.id} failed, retrying next tick: {exc}")
            failed.append(order.id)
    if events:
        # `created` has one-second resolution: start the next tick at the newest second
        # again; events already applied are recognised by their id
        context.update_cursor(str(max(e["created"] for e in events)))
    summary = f"{len(events)} Stripe event(s) read, {len(applied)} newly applied; {len(refunded)} refund(s) issued"
    if applied:
        context.log.info(f"applied events the webhook missed: {applied}")
    if failed:
        summary += f", {len(failed)} refund(s) failed (retried next tick)"
    return dg.SkipReason(summary)
