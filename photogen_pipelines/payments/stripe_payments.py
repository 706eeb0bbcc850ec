"""Payments: Stripe PaymentIntents in, refunds out, each Stripe event applied once.

The webhook and the reconciliation sensor both hand events to `apply_stripe_event`,
which records the event id and its effect on the order in one transaction: a repeated
or late event finds its id taken and changes nothing. `refund_order` refunds under the
order's row lock and with a Stripe idempotency key, so an order is refunded once even
when the API, a sensor and a retry all ask at the same moment.

Only the order's own PaymentIntent, in the order's currency and for at least its amount,
pays an order. Any other successful payment tied to an order (a stray PaymentIntent with
the order's metadata, a second one, a short one, another currency) is a stray payment:
kept in `stray_payments` and refunded by `refund_stray_payment`, never counted as paid.

An intent that belongs to a credit pack's purchase (`packs`) is applied to the purchase
instead, in the same transaction and by the same rules; its stray payments are kept and
refunded the same way, the purchase's id standing in `stray_payments.order_id`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.tables import OrderRow, PaymentEventRow, StrayPaymentRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import OrderTransaction, SqlOrderBook
from photogen_pipelines.orders.states import OWES_REFUND, Order, OrderState
from photogen_pipelines.payments import credit_orders, packs
from photogen_pipelines.payments.stripe_events import (
    MalformedEvent,
    PaymentError,
    check_event,
    is_int,
    refuse_future_timestamp,
)

log = logging.getLogger("photogen.payments")

# Stripe counts these currencies in whole units, not hundredths
ZERO_DECIMAL_CURRENCIES = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
# reasons a stray payment is kept (stray_payments.reason)
NOT_THE_ORDERS_PAYMENT, AMOUNT_SHORT, CURRENCY_MISMATCH = "not_the_orders_payment", "amount_short", "currency_mismatch"


class EventStatus(enum.StrEnum):
    APPLIED = "applied"  # recorded, and it acted on an order
    IGNORED = "ignored"  # recorded, nothing to do
    DUPLICATE = "duplicate"  # its id was recorded before: nothing changed


@dataclass(frozen=True)
class EventResult:
    status: EventStatus
    outcome: str  # for people: the webhook's answer and payment_events.outcome
    order_id: str | None = None
    stray_payment: str | None = None  # a PaymentIntent this event left owed a refund
    pack_purchase_id: str | None = None  # the credit pack purchase it acted on, instead of an order

    @property
    def new(self) -> bool:
        return self.status != EventStatus.DUPLICATE


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

    @_stripe_call("create the payment")
    def create_pack_payment_intent(self, purchase: packs.PackPurchase) -> tuple[str, str]:
        """A PaymentIntent for a credit pack's price; returns its id and client secret."""
        intent = self.client.v1.payment_intents.create(
            params={
                "amount": purchase.amount_cents,
                "currency": purchase.currency,
                "metadata": {"pack_purchase_id": purchase.id, "customer_ref": purchase.customer_ref},
                "payment_method_types": ["card"],
            },
            options={"idempotency_key": f"photogen-pack-{purchase.id}"},
        )
        return intent.id, intent.client_secret

    @_stripe_call("read the payment")
    def client_secret(self, payment_intent_id: str) -> str:
        return self.client.v1.payment_intents.retrieve(payment_intent_id).client_secret

    @_stripe_call("refund the payment")
    def refund(self, order: Order, amount: int | None = None) -> tuple[str, int]:
        """Refund `amount` of the order's payment (None: everything still refundable)."""
        params: dict[str, Any] = {"payment_intent": order.payment_intent_id, "metadata": {"order_id": order.id}}
        if amount is not None:
            params["amount"] = amount
            params["metadata"]["cancellation_fee_cents"] = str(order.kept_cents)
        refund = self.client.v1.refunds.create(params=params, options={"idempotency_key": f"photogen-refund-{order.id}"})
        return refund.id, int(refund.amount)

    @_stripe_call("refund the stray payment")
    def refund_payment_intent(self, payment_intent_id: str, order_id: str) -> str:
        """Everything still refundable on one PaymentIntent; one refund per intent, however often asked."""
        tied_to = "pack_purchase_id" if packs.PURCHASE_ID.match(order_id) else "order_id"
        refund = self.client.v1.refunds.create(
            params={"payment_intent": payment_intent_id, "metadata": {tied_to: order_id, "photogen": "stray_payment"}},
            options={"idempotency_key": f"photogen-refund-{payment_intent_id}"},
        )
        return refund.id

    @_stripe_call("list its events")
    def events_since(self, created_gte: int, limit: int) -> list[dict]:
        """Stripe's events created at or after `created_gte`, oldest first, at most `limit`."""
        page = self.client.v1.events.list(params={"created": {"gte": created_gte}, "limit": min(limit, 100)})
        events = [e.to_dict() for e in page.data]
        events.sort(key=lambda e: (e["created"] if is_int(e.get("created")) else 0, str(e.get("id"))))
        return events[:limit]

    def parse_webhook(self, payload: bytes, signature_header: str) -> dict:
        """The verified, well-formed event; else PaymentError(code=bad_signature) or MalformedEvent."""
        if not self.webhook_secret:
            raise PaymentError("no webhook secret is configured", code="webhooks_not_configured")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(text, signature_header, self.webhook_secret, tolerance=self.tolerance)
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
            raise PaymentError(f"the Stripe signature does not verify: {exc}", code="bad_signature") from None
        refuse_future_timestamp(signature_header, self.tolerance)
        try:
            event = json.loads(text)
        except ValueError:
            raise MalformedEvent("the Stripe event is malformed: its body is not JSON") from None
        return check_event(event)


# -- what an event does ------------------------------------------------------------------


def money(amount: int, currency: str) -> str:
    """An amount in Stripe's minor units, as people read it: 3500 usd -> 35.00 USD."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


# a stray payment to keep (or, with `refund_id`, one Stripe already gave back): one record for
# an order's strays and a pack purchase's
_Stray = packs.StrayPayment


@dataclass
class _Effect:
    outcome: str
    stray: _Stray | None = None


def _order_for(book: SqlOrderBook, intent: dict) -> Order | None:
    # the order that owns the intent first: metadata is only a claim, anyone with the
    # account's key can put an order id on any PaymentIntent
    if intent.get("id"):
        order = book.find_by_payment_intent(intent["id"])
        if order is not None:
            return order
    order_id = (intent.get("metadata") or {}).get("order_id")
    if not order_id:
        return None
    try:
        return book.get(order_id)
    except NotFound:
        return None


def _intent_of(event: dict) -> dict:
    obj = event["data"]["object"]
    if obj.get("object") == "charge" or event["type"].startswith("charge."):
        return {"id": obj.get("payment_intent"), "metadata": obj.get("metadata") or {}, "charge": obj}
    return obj


def _received(intent: dict) -> int:
    # localstripe (and old API versions) leave amount_received out: then the amount
    # is what a succeeded intent collected; a present 0 stays 0
    received = intent.get("amount_received")
    return int(intent["amount"] if received is None else received)


def _mismatch(order: Order, received: int, currency: str) -> str | None:
    if currency.lower() != order.currency.lower():
        return CURRENCY_MISMATCH
    if received < order.amount_cents:
        return AMOUNT_SHORT
    return None


def _paid(order: Order, intent: dict) -> _Effect:
    pi, received, currency = intent["id"], _received(intent), intent["currency"].lower()
    if pi != order.payment_intent_id:
        stray = _Stray(pi, received, currency, NOT_THE_ORDERS_PAYMENT)
        return _Effect(f"payment {pi} ({money(received, currency)}) is not this order's payment; it is being refunded", stray)
    if order.paid_cents:
        return _Effect("already paid")
    if mismatch := _mismatch(order, received, currency):
        return _paid_wrong(order, intent, mismatch)
    order.paid_cents = received
    if order.refund_id and not order.refund_owed:  # Stripe delivered the refund first: the order was settled then
        return _Effect("payment recorded; it was already refunded, the order does not start")
    if order.state == OrderState.AWAITING_PAYMENT:
        lifecycle.payment_received(order, f"payment {pi} succeeded")
        return _Effect("order paid")
    return _Effect(f"payment recorded; order already {order.state.value}")  # e.g. cancelled first: a refund is owed


def _paid_wrong(order: Order, intent: dict, mismatch: str) -> _Effect:
    """The order's own intent collected less, or another currency: it does not pay the order."""
    pi, received, currency = intent["id"], _received(intent), intent["currency"].lower()
    got, due = money(received, currency), money(order.amount_cents, order.currency)
    if order.refund_id and order.refunded_cents >= received:
        return _Effect(f"payment of {got} does not match the order ({due}); it was already refunded")
    reason = f"the payment received ({got}) does not match the order ({due}); it is being refunded in full"
    if order.state == OrderState.AWAITING_PAYMENT:
        lifecycle.payment_mismatch(order, reason)
    return _Effect(f"{reason}; order {order.state.value}", _Stray(pi, received, currency, mismatch))


def _decline(intent: dict) -> str:
    return ((intent.get("last_payment_error") or {}).get("message") or "declined").replace("\x00", "")[:300]


def _failed(order: Order, intent: dict) -> _Effect:
    error = _decline(intent)
    whose = "" if intent["id"] == order.payment_intent_id else f" of {intent['id']}, not this order's payment,"
    return _Effect(f"payment attempt{whose} failed ({error}); order stays {order.state.value}")


def _refund_facts(charge: dict) -> tuple[str, int, bool]:
    """The refund's id, the amount refunded so far, and whether that is all of the charge."""
    refund_id = ((charge.get("refunds") or {}).get("data") or [{}])[0].get("id") or "refunded outside PhotoGen"
    refunded = int(charge["amount_refunded"])
    return refund_id, refunded, charge.get("refunded") is True or refunded >= int(charge["amount"])


def _refunded(order: Order, intent: dict) -> _Effect:
    charge, pi = intent["charge"], intent["id"]
    refund_id, refunded, full = _refund_facts(charge)
    if pi != order.payment_intent_id:  # a stray payment's refund is not the order's
        stray = _Stray(pi, int(charge["amount"]), charge["currency"].lower(), NOT_THE_ORDERS_PAYMENT, refund_id if full else None)
        return _Effect(f"refund of payment {pi}, not this order's payment, recorded", stray)
    # the order's own intent: a short payment kept as a stray is settled by this refund too
    known = _Stray(pi, int(charge["amount"]), charge["currency"].lower(), reason="", refund_id=refund_id, known_only=True)
    if order.refund_id:
        return _Effect("refund already recorded", known if full else None)
    order.refunded_cents, order.refund_id = refunded, refund_id
    if order.state in OWES_REFUND:
        lifecycle.refund_recorded(order, "refunded in Stripe")
    elif order.state == OrderState.AWAITING_PAYMENT:
        # the refund overtook its payment: the money is (mostly) back, the order must
        # not wait for a payment that will only confirm it
        lifecycle.cancelled_by_payment_problem(order, "the payment was refunded in Stripe before it was recorded")
        if full:
            lifecycle.refund_recorded(order, "refunded in Stripe")
    return _Effect("refund recorded", known if full else None)


EFFECTS = {"payment_intent.succeeded": _paid, "payment_intent.payment_failed": _failed, "charge.refunded": _refunded}


def _keep_stray(tx: OrderTransaction, order_id: str, stray: _Stray) -> bool:
    """Record (or settle) a stray payment; True when it is now owed a refund. `order_id`
    names its order or pack purchase. Runs under that one's row lock, so two events of one
    intent cannot race here."""
    row = tx.session.get(StrayPaymentRow, stray.payment_intent_id, with_for_update=True)
    now = utc_now()
    if row is None:
        if stray.known_only:
            return False
        row = StrayPaymentRow(
            payment_intent_id=stray.payment_intent_id,
            order_id=order_id,
            amount=stray.amount,
            currency=stray.currency,
            reason=stray.reason,
            attempts=0,
            created_at=now,
        )
        tx.add(row)
    if stray.refund_id and row.refunded_at is None:
        row.refund_id, row.refunded_at = stray.refund_id, now
    return row.refunded_at is None


def apply_stripe_event(book: SqlOrderBook, event: dict, source: str) -> EventResult:
    """Apply one Stripe event once (MalformedEvent if it lacks what we read). A stray
    payment it finds is recorded here; the caller refunds it (`refund_stray_payment`)."""
    check_event(event)
    intent = _intent_of(event)
    effect = EFFECTS.get(event["type"])
    if effect is not None and event["type"] == "charge.refunded" and not intent.get("id"):
        effect = None  # a charge made without a PaymentIntent was never an order's
    purchase_id, order = _owner(book, intent) if effect else (None, None)
    outcome = "ignored: not an event PhotoGen acts on" if effect is None else "ignored: no PhotoGen order"
    result = EventResult(EventStatus.IGNORED, outcome)
    try:
        with book.transaction() as tx:
            row = PaymentEventRow(
                id=event["id"],
                type=event["type"],
                order_id=order.id if order else None,
                payment_intent_id=intent.get("id"),
                source=source,
                outcome=outcome,
                stripe_created=datetime.fromtimestamp(event["created"], UTC),
                received_at=utc_now(),
            )
            tx.add(row)  # a repeated event stops here, before it touches the order
            if purchase_id is not None:
                result = _apply_to_pack(tx, purchase_id, event["type"], intent)
                row.outcome = result.outcome
            elif order is not None:
                result = _apply_to_order(tx, order.id, lambda o: effect(o, intent))
                row.outcome = result.outcome
    except IntegrityError:
        duplicate = "duplicate: already applied"
        return EventResult(EventStatus.DUPLICATE, duplicate, order.id if order else None, pack_purchase_id=purchase_id)
    log.info("stripe %s %s (%s): %s", event["type"], event["id"], source, result.outcome)
    return result


def _owner(book: SqlOrderBook, intent: dict) -> tuple[str | None, Order | None]:
    """The pack purchase or the order an intent is tied to: whichever owns it by its id
    first, then one its metadata names (a claim, checked against the owner's own intent)."""
    with book.database.session() as session:
        if purchase_id := packs.owning_purchase(session, intent.get("id")):
            return purchase_id, None
    if (order := _order_for(book, intent)) is not None:
        return None, order
    with book.database.session() as session:
        return packs.claimed_purchase(session, intent.get("metadata")), None


def _pack_paid(session, purchase_id: str, intent: dict) -> packs.PackEffect:
    return packs.record_payment(session, purchase_id, intent["id"], _received(intent), intent["currency"])


def _pack_refunded(session, purchase_id: str, intent: dict) -> packs.PackEffect:
    charge = intent["charge"]
    refund_id, refunded, full = _refund_facts(charge)
    facts = {"charged": int(charge["amount"]), "refunded": refunded, "currency": charge["currency"], "full": full}
    return packs.record_refund(session, purchase_id, intent["id"], **facts, refund_id=refund_id)


def _pack_failed(_session, purchase_id: str, intent: dict) -> packs.PackEffect:
    return packs.PackEffect(
        f"payment attempt of {intent['id']} failed ({_decline(intent)}); pack purchase {purchase_id} unchanged"
    )


PACK_EFFECTS = {
    "payment_intent.succeeded": _pack_paid,
    "payment_intent.payment_failed": _pack_failed,
    "charge.refunded": _pack_refunded,
}


def _apply_to_pack(tx: OrderTransaction, purchase_id: str, kind: str, intent: dict) -> EventResult:
    # packs takes the customer's row lock, then the purchase's; the stray's row comes last
    done = PACK_EFFECTS[kind](tx.session, purchase_id, intent)
    stray = _Stray(**dataclasses.asdict(done.stray)) if done.stray else None
    owed = stray is not None and _keep_stray(tx, purchase_id, stray)
    owed_intent = stray.payment_intent_id if owed else None
    return EventResult(EventStatus.APPLIED, done.outcome, stray_payment=owed_intent, pack_purchase_id=purchase_id)


def _apply_to_order(tx: OrderTransaction, order_id: str, effect) -> EventResult:
    done: list[_Effect] = []
    tx.update(order_id, lambda o: done.append(effect(o)))
    stray = done[0].stray
    owed = stray is not None and _keep_stray(tx, order_id, stray)
    return EventResult(EventStatus.APPLIED, done[0].outcome, order_id, stray.payment_intent_id if owed else None)


# -- refunds -----------------------------------------------------------------------------


def refund_order(book: SqlOrderBook, gateway: StripeGateway | None, order_id: str) -> Order:
    """Refund what the customer is owed if the order will not be delivered; at most once.
    That is what they paid, less the cancellation fee of an order cancelled after its
    proofs were downloaded (`Order.refund_due_cents`, the catalog's cancellation policy).
    A credit-paid order gets its credits back (or the re-roll its terms promised), no Stripe needed."""
    with book.transaction() as tx:
        order = tx.update(order_id, lambda o: None)  # takes the row lock
        if not order.refund_owed:
            return order
        if order.payments == "credits":
            return credit_orders.refund_credits(tx, order_id)
        if gateway is None:
            raise PaymentError(f"order {order_id} is owed a refund but Stripe is not configured", code="payments_not_configured")
        # with a fee, the amount is said; without one Stripe refunds all that is left, as it always did
        partial = order.refund_due_cents - order.refunded_cents if order.kept_cents else None
        refund_id, amount = gateway.refund(order, partial)  # inside the lock; Stripe's idempotency key covers a crash

        def record(o: Order) -> None:
            # added: a part refunded in Stripe before stays counted; Stripe refunds the rest
            o.refund_id, o.refunded_cents = refund_id, o.refunded_cents + amount
            lifecycle.refund_recorded(o, _refund_reason(o, refund_id, amount))

        tx.update(order_id, record)
    log.info("order %s refunded (%s)", order_id, refund_id)
    return book.get(order_id)


def _refund_reason(order: Order, refund_id: str, amount: int) -> str:
    reason = f"refund {refund_id} of {money(amount, order.currency)}"
    if not order.kept_cents:
        return reason
    paid, kept = money(order.paid_cents, order.currency), money(order.kept_cents, order.currency)
    return f"{reason}: {paid} paid, less the {kept} cancellation fee (cancelled after the proofs were downloaded)"


def owed_stray_payments(book: SqlOrderBook, limit: int = 20) -> list[str]:
    """PaymentIntents still owed a refund; the least tried first, so one that Stripe keeps
    refusing does not hold back the others."""
    with book.transaction() as tx:
        query = (
            select(StrayPaymentRow.payment_intent_id)
            .where(StrayPaymentRow.refunded_at.is_(None))
            .order_by(StrayPaymentRow.attempts, StrayPaymentRow.created_at)
            .limit(limit)
        )
        return list(tx.session.scalars(query).all())


def refund_stray_payment(book: SqlOrderBook, gateway: StripeGateway | None, payment_intent_id: str) -> str | None:
    """Refund one stray payment, once; returns the refund id (None: nothing owed). A refusal
    is counted on the row and raised as PaymentError; the reconciliation sensor retries."""
    if gateway is None:
        raise PaymentError(
            f"payment {payment_intent_id} is owed a refund but Stripe is not configured", code="payments_not_configured"
        )
    error: PaymentError | None = None
    with book.transaction() as tx:
        order_id = tx.session.scalar(
            select(StrayPaymentRow.order_id).where(StrayPaymentRow.payment_intent_id == payment_intent_id)
        )
        if order_id is None:
            return None
        # the order's row first, as `apply_stripe_event` locks them: no deadlock between the two
        tx.session.execute(select(OrderRow.id).where(OrderRow.id == order_id).with_for_update())
        row = tx.session.get(StrayPaymentRow, payment_intent_id, with_for_update=True)
        if row.refunded_at is not None:
            return row.refund_id
        row.attempts += 1
        try:
            row.refund_id = gateway.refund_payment_intent(payment_intent_id, order_id)
        except PaymentError as exc:
            row.last_error, error = str(exc)[:2000], exc
        else:
            row.refunded_at, row.last_error = utc_now(), None
            _settle_own_mismatch(tx, row)
    if error is not None:
        raise error
    log.info("stray payment %s of order %s refunded (%s)", payment_intent_id, order_id, row.refund_id)
    return row.refund_id


def _settle_own_mismatch(tx: OrderTransaction, row: StrayPaymentRow) -> None:
    """An order failed by its own short or wrong-currency payment is refunded now."""
    if row.reason == NOT_THE_ORDERS_PAYMENT:
        return
    got = money(row.amount, row.currency)

    def settle(order: Order) -> None:
        if order.payment_intent_id == row.payment_intent_id and order.state == OrderState.FAILED and not order.refund_id:
            order.refund_id = row.refund_id
            lifecycle.refund_recorded(order, f"refund {row.refund_id} of {got}: the payment did not match the order")

    try:
        tx.update(row.order_id, settle)
    except NotFound:
        pass
