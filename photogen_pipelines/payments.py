"""Payments: Stripe PaymentIntents in, refunds out, each Stripe event applied once.

The webhook and the reconciliation sensor both hand events to `apply_stripe_event`,
which records the event id and its effect on the order in one transaction: a repeated
or late event finds its id taken and changes nothing. `refund_order` refunds under the
order's row lock and with a Stripe idempotency key, so an order is refunded once even
when the API, a sensor and a retry all ask at the same moment.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError

from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import PaymentEventRow
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.orderbook import SqlOrderBook
from photogen_pipelines.orders import Order, OrderState

log = logging.getLogger("photogen.payments")

HANDLED_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded")


class PaymentError(PhotoGenError):
    code = "payment_error"


def _stripe_call(what: str):
    """Stripe's own errors become a PaymentError with a stable code (the API answers 503)."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except stripe.StripeError as exc:
                message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
                raise PaymentError(f"Stripe could not {what}: {message}", code="payment_provider_unavailable") from None

        return wrapper

    return decorate


class StripeGateway:
    """The few Stripe calls PhotoGen makes, on one `StripeClient` (no global state)."""

    def __init__(self, api_key: str, webhook_secret: str | None = None, api_base: str | None = None, tolerance: int = 300):
        options: dict[str, Any] = {"max_network_retries": 2}
        if api_base:
            options["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(api_key, **options)
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance

    @_stripe_call("create the payment")
    def create_payment_intent(self, order: Order) -> tuple[str, str]:
        """A PaymentIntent for the order's amount; returns its id and client secret."""
        intent = self.client.v1.payment_intents.create(
            params={
                "amount": order.amount_cents,
                "currency": order.currency,
                "metadata": {"order_id": order.id},
                "payment_method_types": ["card"],
            },
            options={"idempotency_key": f"photogen-pi-{order.id}"},
        )
        return intent.id, intent.client_secret

    @_stripe_call("read the payment")
    def client_secret(self, payment_intent_id: str) -> str:
        return self.client.v1.payment_intents.retrieve(payment_intent_id).client_secret

    @_stripe_call("refund the payment")
    def refund(self, order: Order) -> tuple[str, int]:
        refund = self.client.v1.refunds.create(
            params={"payment_intent": order.payment_intent_id, "metadata": {"order_id": order.id}},
            options={"idempotency_key": f"photogen-refund-{order.id}"},
        )
        return refund.id, int(refund.amount)

    @_stripe_call("list its events")
    def events_since(self, created_gte: int, limit: int) -> list[dict]:
        """Stripe's events created at or after `created_gte`, oldest first, at most `limit`."""
        page = self.client.v1.events.list(params={"created": {"gte": created_gte}, "limit": min(limit, 100)})
        events = [e.to_dict() for e in page.data]
        events.sort(key=lambda e: (e["created"], e["id"]))
        return events[:limit]

    def parse_webhook(self, payload: bytes, signature_header: str) -> dict:
        """The verified event, or PaymentError(code=bad_signature)."""
        if not self.webhook_secret:
            raise PaymentError("no webhook secret is configured", code="webhooks_not_configured")
        try:
            event = stripe.Webhook.construct_event(payload, signature_header, self.webhook_secret, tolerance=self.tolerance)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise PaymentError(f"the Stripe signature does not verify: {exc}", code="bad_signature") from None
        return event.to_dict()


def _order_for(book: SqlOrderBook, intent: dict) -> Order | None:
    order_id = (intent.get("metadata") or {}).get("order_id")
    if order_id:
        try:
            return book.get(order_id)
        except PhotoGenError:
            return None
    return book.find_by_payment_intent(intent.get("id") or "")


def _intent_of(event: dict) -> dict:
    obj = event["data"]["object"]
    if obj.get("object") == "charge":
        return {"id": obj.get("payment_intent"), "metadata": obj.get("metadata") or {}, "charge": obj}
    return obj


def _effect(event: dict, intent: dict):
    """What the event does to its order: a function for `SqlOrderBook.update_in`."""
    kind = event["type"]

    def paid(order: Order) -> str:
        if order.paid_cents:
            return "already paid"
        order.paid_cents = int(intent.get("amount_received") or intent.get("amount") or 0)
        order.payment_intent_id = order.payment_intent_id or intent["id"]
        if order.refund_id:  # Stripe delivered the refund first: the money is already back
            return "payment recorded; it was already refunded, the order does not start"
        if order.state == OrderState.AWAITING_PAYMENT:
            order.transition(OrderState.PAID, reason=f"payment {intent['id']} succeeded")
            return "order paid"
        return f"payment recorded; order already {order.state.value}"  # e.g. cancelled first: a refund is owed

    def failed(order: Order) -> str:
        error = (intent.get("last_payment_error") or {}).get("message") or "declined"
        return f"payment attempt failed ({error}); order stays {order.state.value}"

    def refunded(order: Order) -> str:
        charge = intent["charge"]
        if order.refund_id:
            return "refund already recorded"
        order.refunded_cents = int(charge.get("amount_refunded") or 0)
        order.refund_id = ((charge.get("refunds") or {}).get("data") or [{}])[0].get("id") or "refunded outside PhotoGen"
        if order.state in (OrderState.REJECTED, OrderState.FAILED, OrderState.CANCELLED):
            order.transition(OrderState.REFUNDED, reason="refunded in Stripe")
        return "refund recorded"

    return {"payment_intent.succeeded": paid, "payment_intent.payment_failed": failed, "charge.refunded": refunded}.get(kind)


def apply_stripe_event(database: Database, book: SqlOrderBook, event: dict, source: str) -> str:
    """Apply one Stripe event once; returns what happened (stored with the event id)."""
    intent = _intent_of(event)
    effect = _effect(event, intent)
    order = _order_for(book, intent) if effect else None
    outcome = "ignored: not an event PhotoGen acts on" if effect is None else "ignored: no PhotoGen order"
    try:
        with database.session() as session:
            row = PaymentEventRow(
                id=event["id"],
                type=event["type"],
                order_id=order.id if order else None,
                payment_intent_id=intent.get("id"),
                source=source,
                outcome=outcome,
                stripe_created=datetime.fromtimestamp(event["created"], UTC),
                received_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()  # a repeated event stops here, before it touches the order
            if order is not None:
                result: dict[str, str] = {}
                book.update_in(session, order.id, lambda o: result.setdefault("outcome", effect(o)))
                row.outcome = result["outcome"]
            outcome = row.outcome
    except IntegrityError:
        return "duplicate: already applied"
    log.info("stripe %s %s (%s): %s", event["type"], event["id"], source, outcome)
    return outcome


def refund_order(database: Database, book: SqlOrderBook, gateway: StripeGateway | None, order_id: str) -> Order:
    """Refund what the customer paid if the order will not be delivered; at most once."""
    with database.session() as session:
        order = book.update_in(session, order_id, lambda o: None)  # takes the row lock
        if not order.refund_owed:
            return order
        if gateway is None:
            raise PaymentError(f"order {order_id} is owed a refund but Stripe is not configured", code="payments_not_configured")
        refund_id, amount = gateway.refund(order)  # inside the lock; Stripe's idempotency key covers a crash

        def record(o: Order) -> None:
            o.refund_id, o.refunded_cents = refund_id, amount
            o.transition(OrderState.REFUNDED, reason=f"refund {refund_id} of {amount / 100:.2f} {o.currency.upper()}")

        book.update_in(session, order_id, record)
    log.info("order %s refunded (%s)", order_id, refund_id)
    return book.get(order_id)
