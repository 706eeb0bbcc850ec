"""The order's life, as named moves: the only place an order changes state.

The assets, the checks, the sensors, payments and intake each say what happened (the
generation started, the proofs were validated, the print file was delivered, a payment
came in) and this module moves the order. The state machine itself (which moves are
legal) is `orders.TRANSITIONS`; the groups of states everyone asks about are defined once
in `orders`. Moves that happen inside a caller's transaction (a Stripe event and its
effect commit together) take the `Order` being changed; the others take the book.
"""

from __future__ import annotations

from photogen_pipelines.artifacts import OrderKeys
from photogen_pipelines.errors import BadInput, IllegalTransition
from photogen_pipelines.orderbook import OrderBook
from photogen_pipelines.orders import Order, OrderState
from photogen_pipelines.storage import ArtifactStore

S = OrderState
PAYMENTS_OFF_REASON = "payments are off (embedded default): the order is marked paid on creation"
DELIVERED_REASON = "print file checked and delivered"


# -- on the book: one move, one locked read-modify-write -------------------------------


def _move(book: OrderBook, order_id: str, target: OrderState, reason: str | None = None) -> Order:
    return book.update(order_id, lambda order: order.transition(target, reason))


def paid_without_payments(book: OrderBook, order_id: str) -> Order:
    """Payments are off: the order is paid the moment it is placed, and says so."""
    return _move(book, order_id, S.PAID, PAYMENTS_OFF_REASON)


def start_generation(book: OrderBook, order_id: str) -> Order:
    """The proof run began (again, for an operator's regeneration of unapproved proofs)."""
    return _move(book, order_id, S.GENERATING)


def reject(book: OrderBook, order_id: str, reason: str) -> Order:
    """The customer's input cannot become a print (no face, identity lost in every round)."""
    return _move(book, order_id, S.REJECTED, reason)


def proofs_validated(book: OrderBook, store: ArtifactStore, order_id: str, best_variant: int) -> Order:
    """Proofs passed the identity gate: the customer chooses, or with auto approval the
    best-scoring proof is approved at once."""
    order = _move(book, order_id, S.PROOFS_READY)
    if order.approval == "auto":
        reason = f"auto-approved: proof {best_variant} has the best identity score"
        order = approve(book, store, order_id, best_variant, reason=reason)
    return order


def approve(book: OrderBook, store: ArtifactStore, order_id: str, variant: int, reason: str | None = None) -> Order:
    """The customer (or auto approval) picks a proof; only a proof that passed the gate."""
    if not store.exists(OrderKeys(order_id).proof(variant)):
        raise BadInput(f"order {order_id} has no proof {variant}", code="unknown_proof")

    def approve_it(order: Order) -> None:
        if order.state != S.PROOFS_READY:
            raise IllegalTransition(f"order {order_id} is {order.state.value}; proofs can be approved only when proofs_ready")
        order.approved_proof = variant
        order.transition(S.APPROVED, reason)

    return book.update(order_id, approve_it)


def start_rendering(book: OrderBook, order_id: str) -> Order:
    return _move(book, order_id, S.RENDERING)


def deliver(book: OrderBook, order_id: str) -> Order:
    """The print file passed its checks: the order is ready."""
    return _move(book, order_id, S.READY, DELIVERED_REASON)


def fail(book: OrderBook, order_id: str, reason: str) -> Order:
    return _move(book, order_id, S.FAILED, reason)


def cancel(book: OrderBook, order_id: str, reason: str) -> Order:
    """Cancelled where the state allows it (IllegalTransition otherwise); a refund follows."""
    return _move(book, order_id, S.CANCELLED, reason)


def settle_failed_run(book: OrderBook, order_id: str, job_name: str, where: str, attempts: int) -> Order | None:
    """A run of the order failed for good. A failed re-render of a delivered order keeps
    it delivered; anything else not yet settled fails (the caller refunds). None: the
    order was already past failing (e.g. rejected), nothing moved."""
    order = book.get(order_id)
    if order.state == S.RENDERING and S.READY in {e.to_state for e in order.events}:
        return _move(book, order_id, S.READY, f"re-render failed ({where}); the delivered file stands")
    if order.terminal:
        return order
    try:
        return fail(book, order_id, f"{job_name} failed after {attempts} attempt(s): {where}")
    except IllegalTransition:
        return None


# -- inside a payment's transaction: the caller holds the order's row lock --------------


def payment_received(order: Order, reason: str) -> None:
    order.transition(S.PAID, reason)


def refund_recorded(order: Order, reason: str) -> None:
    order.transition(S.REFUNDED, reason)


def cancelled_by_payment_problem(order: Order, reason: str) -> None:
    """A payment that could not pay the order ended it before any work (e.g. refunded
    before it was recorded): cancelled, then refunded once the money is back."""
    order.transition(S.CANCELLED, reason)


def payment_mismatch(order: Order, reason: str) -> None:
    """The order's own payment came in short or in another currency: the order cannot start."""
    order.transition(S.FAILED, reason)
