"""Credits that move without a request: credit-paid orders that will not be delivered get
their credits back, and grants past their date expire, on the day it happens."""

from __future__ import annotations

import dagster as dg

from photogen_pipelines.credits import wallet
from photogen_pipelines.db.tables import CustomerRow
from photogen_pipelines.payments.stripe_payments import refund_order
from resources import OrdersDatabase

MAX_REFUNDS_PER_TICK = 50
MAX_EXPIRIES_PER_TICK = 100


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Gives credit-paid orders that failed, were rejected or cancelled their credits back (or their re-roll), "
        "once, with or without Stripe; and writes the expiry of grants past their date."
    ),
)
def credit_settlements(context: dg.SensorEvaluationContext, orders: OrdersDatabase) -> dg.SkipReason:
    book = orders.book()
    refunded, failed = [], []
    for order in book.owed_refunds(MAX_REFUNDS_PER_TICK):
        if order.payments != "credits":
            continue  # card refunds are the Stripe reconciliation's
        try:
            refund_order(book, None, order.id)
            refunded.append(order.id)
        except Exception as exc:  # one order must not hold back the others; the next tick retries
            context.log.warning(f"credit refund of {order.id} failed, retrying next tick: {exc}")
            failed.append(order.id)
    expired = 0
    with book.database.session() as session:
        due = wallet.customers_with_due_expiries(session, limit=MAX_EXPIRIES_PER_TICK)
    for customer_id in due:
        with book.database.session() as session:
            customer = session.get(CustomerRow, customer_id, with_for_update=True)
            expired += len(wallet.expire_due(session, customer))
    summary = f"{len(refunded)} credit-paid order(s) refunded, {expired} expiry(ies) written"
    if failed:
        summary += f", {len(failed)} refund(s) failed (retried next tick)"
    return dg.SkipReason(summary)
