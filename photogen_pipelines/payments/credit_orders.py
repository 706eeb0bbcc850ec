"""Orders paid in credits: charged from the customer's wallet when placed, given back
once when they will not be delivered.

The spend is written in the transaction that records the order, under the customer's row
lock: an order exists exactly when its credits were taken. The refund is written under the
order's row lock with a key naming the order, so the failure sensor, the reconciliation
sensor and a cancel asking at once give the credits back once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.clock import utc_now
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.tables import CreditEntryRow
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import OrderTransaction
from photogen_pipelines.orders.states import Order, OrderState

log = logging.getLogger("photogen.payments")


def charge(session: Session, products: ProductCatalog, order: Order, *, moves: bool = True) -> int:
    """Take the order's credit price from its customer's wallet (created on first mention),
    inside the transaction that records the order: PaymentRequired (insufficient_credits,
    plan_excludes_tier) leaves nothing behind. Marks the order paid; returns the balance.
    `moves=False`: a preview unlocked after its proofs (workflows/previews.py) is past paid
    and stays where it is; only its credits are taken."""
    customer = wallet.open_wallet(session, products, order.api_key_id, order.customer_ref)
    products.check_plan_allows(customer.plan, order.tier)
    posted = wallet.post(
        session,
        customer,
        EntryKind.SPEND,
        -order.credits_price,
        key=f"spend:{order.id}",
        reason=f"order {order.id}: {order.product_id}, {order.tier} tier",
        order_id=order.id,
    )
    order.credits_paid = order.credits_price
    if moves:
        lifecycle.payment_received(order, f"paid with {order.credits_price} credits")
    return posted.balance


def _spend_entry(session: Session, customer_id: str, order_id: str) -> int | None:
    return session.scalar(
        select(CreditEntryRow.id).where(
            CreditEntryRow.customer_id == customer_id, CreditEntryRow.idempotency_key == f"spend:{order_id}"
        )
    )


def refund_credits(tx: OrderTransaction, order_id: str) -> Order:
    """Give a credit-paid order's credits back, once, if it will not be delivered: the same
    credits into the lots they came from; or, where the shop's policy was `reroll` when the
    order was placed (`Order.reroll_days`) and the order failed or was rejected (not
    cancelled: that was the customer's choice), a free re-roll: a grant of the same credits
    that expires after `reroll_days`."""
    order = tx.update(order_id, lambda o: None)  # takes the order's row lock
    owed = order.credits_paid - order.credits_refunded
    if order.state not in (OrderState.REJECTED, OrderState.FAILED, OrderState.CANCELLED) or owed <= 0:
        return order
    customer = customers.get(tx.session, order.api_key_id, order.customer_ref, lock=True)
    if order.reroll_days is not None and order.state != OrderState.CANCELLED:
        until = utc_now() + timedelta(days=order.reroll_days)
        wallet.post(
            tx.session,
            customer,
            EntryKind.GRANT,
            owed,
            key=f"refund:{order.id}",
            reason=f"a free re-roll of order {order.id} ({order.state.value}), until {until:%Y-%m-%d}",
            order_id=order.id,
            expires_at=until,
        )
        reason = f"a free re-roll granted: {owed} credits to spend by {until:%Y-%m-%d %H:%M} UTC"
    else:
        wallet.post(
            tx.session,
            customer,
            EntryKind.REFUND,
            owed,
            key=f"refund:{order.id}",
            reason=f"order {order.id} {order.state.value}",
            order_id=order.id,
            lot_id=_spend_entry(tx.session, customer.id, order.id),
        )
        reason = f"{owed} credits refunded to the customer's wallet"

    def record(o: Order) -> None:
        o.credits_refunded = o.credits_paid
        lifecycle.refund_recorded(o, reason)

    refunded = tx.update(order_id, record)
    log.info("order %s: %s", order_id, reason)
    return refunded
