"""Stripe reconciliation: what the webhook missed, and refunds still owed."""

from __future__ import annotations

import time

import dagster as dg

from photogen_pipelines.payments.stripe_payments import (
    EventResult,
    MalformedEvent,
    apply_stripe_event,
    owed_stray_payments,
    refund_order,
    refund_stray_payment,
)
from resources import OrdersDatabase, StripePayments

FIRST_LOOKBACK_SECONDS = 3 * 24 * 3600
MAX_EVENTS_PER_TICK = 100
MAX_REFUNDS_PER_TICK = 20
MAX_STRAY_REFUNDS_PER_TICK = 20


def _newly_applied(context: dg.SensorEvaluationContext, book, events: list[dict]) -> list[str]:
    """The ids of the events applied now (not before, not skipped)."""
    applied = []
    for event in events:
        try:
            result: EventResult = apply_stripe_event(book, event, "reconciliation")
        except MalformedEvent as exc:  # Stripe will not send it differently next tick: skip it
            context.log.warning(f"skipped Stripe event {str(event.get('id'))[:255]!r}: {exc}")
            continue
        if result.new:
            applied.append(event["id"])
    return applied


def _refund_owed_orders(context: dg.SensorEvaluationContext, book, gateway) -> tuple[list[str], list[str]]:
    refunded, failed = [], []
    for order in book.owed_refunds(MAX_REFUNDS_PER_TICK):
        try:
            refund_order(book, gateway, order.id)
            refunded.append(order.id)
        except Exception as exc:  # one order's refund must not stop the others; next tick retries
            context.log.warning(f"refund of {order.id} failed, retrying next tick: {exc}")
            failed.append(order.id)
    return refunded, failed


def _refund_stray_payments(context: dg.SensorEvaluationContext, book, gateway) -> tuple[list[str], list[str]]:
    refunded, failed = [], []
    for intent_id in owed_stray_payments(book, MAX_STRAY_REFUNDS_PER_TICK):
        try:
            refund_stray_payment(book, gateway, intent_id)
            refunded.append(intent_id)
        except Exception as exc:  # as above: the others go on, this one is retried next tick
            context.log.warning(f"refund of stray payment {intent_id} failed, retrying next tick: {exc}")
            failed.append(intent_id)
    return refunded, failed


def _next_cursor(events: list[dict]) -> int | None:
    # `created` has one-second resolution: start the next tick at the newest second
    # again; events already applied are recognised by their id
    times = [e["created"] for e in events if isinstance(e.get("created"), int) and not isinstance(e["created"], bool)]
    return max(times) if times else None


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Applies Stripe events the webhook missed (same idempotent path: orders and credit pack purchases) and issues "
        "refunds still owed: orders that will not be delivered, and stray payments that do not pay their order or pack."
    ),
)
def stripe_reconciliation(context: dg.SensorEvaluationContext, orders: OrdersDatabase, payments: StripePayments) -> dg.SkipReason:
    gateway = payments.gateway()
    if gateway is None:
        return dg.SkipReason("payments are off: nothing to reconcile")
    book = orders.book()
    since = int(context.cursor) if context.cursor else int(time.time()) - FIRST_LOOKBACK_SECONDS
    events = gateway.events_since(since, MAX_EVENTS_PER_TICK)
    applied = _newly_applied(context, book, events)
    refunded, failed = _refund_owed_orders(context, book, gateway)
    strays_refunded, strays_failed = _refund_stray_payments(context, book, gateway)
    if (cursor := _next_cursor(events)) is not None:
        context.update_cursor(str(cursor))
    summary = f"{len(events)} Stripe event(s) read, {len(applied)} newly applied; {len(refunded)} refund(s) issued"
    summary += f", {len(strays_refunded)} stray payment(s) refunded"
    if applied:
        context.log.info(f"applied events the webhook missed: {applied}")
    if failed or strays_failed:
        summary += f", {len(failed) + len(strays_failed)} refund(s) failed (retried next tick)"
    return dg.SkipReason(summary)
