"""Approving a preview: an order made before it was paid (intake's `preview`) is unlocked by
its payment, and only then approved.

Paid in credits, the approval is the payment: the credits are taken and the proof approved
in one transaction, under the order's row lock and then the customer's (the order a refund
takes them in), so two approvals at once charge once (the second finds the order approved;
the wallet's key `spend:<order id>` would refuse a second spend anyway), and too few credits
leave it neither approved nor charged. Paid by card, the customer pays its PaymentIntent
first (Stripe's event records the payment on the order), then approves as for any order.
Where the shown previews' size and the expiry of an unpaid one live: `orders/deliverables.py`,
`workflows/approvals.py`.
"""

from __future__ import annotations

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.errors import BadInput, IllegalTransition, PaymentRequired
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.deliverables import unpaid_preview
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.payments import credit_orders
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore


def approve(
    book: SqlOrderBook,
    store: ArtifactStore,
    products: ProductCatalog,
    order_id: str,
    variant: int,
    reason: str | None = None,
) -> Order:
    """Approve a proof (`lifecycle.approve`); an unpaid credit preview is charged its credits
    first, in the same transaction. PaymentRequired: an unpaid card preview
    (payment_required, pay its PaymentIntent first), too few credits (insufficient_credits);
    IllegalTransition: the order is not awaiting approval (any more)."""
    order = book.get(order_id)
    if not unpaid_preview(order):
        return lifecycle.approve(book, store, order_id, variant, reason)
    if order.payments != "credits":
        raise PaymentRequired(
            f"order {order_id} is a preview not paid yet: pay its PaymentIntent {order.payment_intent_id} "
            "(the client_secret came with the order) first, then approve",
            code="payment_required",
            details={"payment_intent_id": order.payment_intent_id},
        )
    return _unlock_with_credits(book, store, products, order_id, variant, reason)


def _unlock_with_credits(
    book: SqlOrderBook, store: ArtifactStore, products: ProductCatalog, order_id: str, variant: int, reason: str | None
) -> Order:
    if not store.exists(OrderKeys(order_id).proof(variant)):  # before any credits move
        raise BadInput(f"order {order_id} has no proof {variant}", code="unknown_proof")
    with book.transaction() as tx:
        order = tx.update(order_id, lambda o: None)  # the order's row lock: a second approval waits here
        if order.state != OrderState.PROOFS_READY:
            raise IllegalTransition(f"order {order_id} is {order.state.value}; proofs can be approved only when proofs_ready")
        if not order.settled_payment:
            # the customer's row lock is taken inside; PaymentRequired rolls all of it back
            tx.update(order_id, lambda o: credit_orders.charge(tx.session, products, o, moves=False))
            paid = f"the preview paid with {order.credits_price} credits"
            reason = f"{reason}; {paid}" if reason else paid
        lifecycle.approve(tx, store, order_id, variant, reason)  # a move in this transaction
    return book.get(order_id)
