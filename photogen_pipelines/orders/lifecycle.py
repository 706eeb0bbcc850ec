"""The order's life, as named moves: the only place an order changes state.

The assets, the checks, the sensors, payments and intake each say what happened (the
generation started, the proofs were validated, the print file was delivered, a payment
came in) and this module moves the order. The state machine itself (which moves are
legal) is `orders.TRANSITIONS`; the groups of states everyone asks about are defined once
in `orders`. Moves that happen inside a caller's transaction (a Stripe event and its
effect commit together) take the `Order` being changed; the others take the book.
"""

from __future__ import annotations

from collections.abc import Collection

from photogen_pipelines.errors import BadInput, IllegalTransition, PaymentRequired
from photogen_pipelines.orders.book import OrderBook, OrderUpdater
from photogen_pipelines.orders.shipments import ProviderStatus, Shipment
from photogen_pipelines.orders.states import PRINT_FILE_MADE, Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore

S = OrderState
PAYMENTS_OFF_REASON = "payments are off (embedded default): the order is marked paid on creation"
DELIVERED_REASON = "print file checked and delivered"


# -- on the book: one move, one locked read-modify-write -------------------------------


def _move(book: OrderUpdater, order_id: str, target: OrderState, reason: str | None = None) -> Order:
    return book.update(order_id, lambda order: order.transition(target, reason))


def paid_without_payments(book: OrderBook, order_id: str) -> Order:
    """Payments are off: the order is paid the moment it is placed, and says so."""
    return _move(book, order_id, S.PAID, PAYMENTS_OFF_REASON)


def paid_without_payments_in(order: Order) -> None:
    """`paid_without_payments` on an order not yet written (placed in one transaction)."""
    order.transition(S.PAID, PAYMENTS_OFF_REASON)


def preview_started(order: Order, used: int, allowed: int) -> None:
    """A preview is made before it is paid: cleared to generate (not paid) as it is placed.
    Its proofs stay small and watermarked, and it cannot be approved, until it is paid."""
    order.transition(S.PAID, f"free preview {used} of {allowed} today: made before payment, approved once paid")


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
    if order.approval == "auto" and order.settled_payment:
        reason = f"auto-approved: proof {best_variant} has the best identity score"
        order = approve(book, store, order_id, best_variant, reason=reason)
    return order


def approve(book: OrderUpdater, store: ArtifactStore, order_id: str, variant: int, reason: str | None = None) -> Order:
    """The customer (or auto approval) picks a proof; only a proof that passed the gate."""
    if not store.exists(OrderKeys(order_id).proof(variant)):
        raise BadInput(f"order {order_id} has no proof {variant}", code="unknown_proof")

    def approve_it(order: Order) -> None:
        if order.state != S.PROOFS_READY:
            raise IllegalTransition(f"order {order_id} is {order.state.value}; proofs can be approved only when proofs_ready")
        if not order.settled_payment:
            raise PaymentRequired(
                f"order {order_id} is a preview not paid yet; pay for it, then approve", code="payment_required"
            )
        order.approved_proof = variant
        order.transition(S.APPROVED, reason)

    return book.update(order_id, approve_it)


def start_rendering(book: OrderBook, order_id: str) -> Order:
    return _move(book, order_id, S.RENDERING)


def deliver(book: OrderBook, order_id: str) -> Order:
    """The print file passed its checks: the order is ready."""
    return _move(book, order_id, S.READY, DELIVERED_REASON)


def refused_by_provider(order: Order, reason: str) -> None:
    """The print provider refused the order for good (its file, address or product): the
    order fails with the provider's reason, and the refund follows like any failure. Called
    inside the transaction that records the refused submission, on the locked order."""
    order.transition(S.FAILED, reason)


def fail(book: OrderBook, order_id: str, reason: str) -> Order:
    return _move(book, order_id, S.FAILED, reason)


def cancel(book: OrderUpdater, order_id: str, reason: str) -> Order:
    """Cancelled where the state allows it (IllegalTransition otherwise); a refund follows."""
    return _move(book, order_id, S.CANCELLED, reason)


def abandon_checkout(book: OrderUpdater, order_id: str, reason: str) -> Order:
    """A checkout nobody paid for in time is cancelled, only if it still awaits payment (a
    payment that came in first wins; one that comes later is refunded as for any cancelled order)."""

    def abandon(order: Order) -> None:
        if order.state == S.AWAITING_PAYMENT:
            order.transition(S.CANCELLED, reason)

    return book.update(order_id, abandon)


def settle_failed_run(
    book: OrderBook,
    order_id: str,
    job_name: str,
    where: str,
    attempts: int,
    settles_from: Collection[OrderState] | None = None,
) -> Order | None:
    """A run of the order failed for good. A failed re-render of a delivered order keeps
    it delivered; anything else not yet settled fails (the caller refunds). With
    `settles_from` (the states the run moves the order through) an order found in another
    state has moved on without that run (a crash's stale failure, a newer run) and stays
    where it is. None: the order was already past failing (e.g. rejected), nothing moved."""
    order = book.get(order_id)
    if order.state in PRINT_FILE_MADE:
        # the file was delivered; only its submission to the printer failed, and the
        # reconciliation sensor submits it again: the customer's order stands
        return order
    if order.terminal:
        return order
    if settles_from is not None and order.state not in settles_from:
        return order
    if order.state == S.RENDERING and S.READY in {e.to_state for e in order.events}:
        return _move(book, order_id, S.READY, f"re-render failed ({where}); the delivered file stands")
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


# after ready, in the fulfilment's transaction: the provider's word, confirmed by reading it back
_FULFILMENT_PATH = (S.READY, S.SUBMITTED, S.SHIPPED, S.DELIVERED)


def follow_provider(
    order: Order, status: ProviderStatus, target: OrderState | None, detail: str | None, shipment: Shipment | None
) -> None:
    """Move the order forward to where the provider's order is (submitted, shipped,
    delivered), one state at a time so the storefront hears each; never backwards, and
    not at all for an order that is not with the provider (e.g. being re-rendered). A
    provider that cancelled or failed an order it has not shipped fails ours."""
    if order.state not in _FULFILMENT_PATH:
        return
    if status in (ProviderStatus.CANCELLED, ProviderStatus.FAILED):
        if order.state in (S.READY, S.SUBMITTED):
            order.transition(S.FAILED, f"the print provider {status.value} the order" + (f": {detail}" if detail else ""))
        return
    if target is None:
        return
    here, there = _FULFILMENT_PATH.index(order.state), _FULFILMENT_PATH.index(target)
    for step in _FULFILMENT_PATH[here + 1 : there + 1]:
        if step == S.SHIPPED and target == S.DELIVERED and shipment is None:
            continue  # delivered without a shipment we heard of: no empty "shipped" step
        order.transition(step, _provider_reason(step, detail, shipment))


def _provider_reason(step: OrderState, detail: str | None, shipment: Shipment | None) -> str:
    if step == S.SHIPPED and shipment is not None:
        tracking = f", tracking {shipment.tracking_number}" if shipment.tracking_number else ""
        return f"shipped by {shipment.carrier or 'the carrier'}{tracking}"
    said = f" ({detail})" if detail else ""
    return {S.SUBMITTED: "accepted by the print provider", S.SHIPPED: "shipped", S.DELIVERED: "delivered"}[step] + said
