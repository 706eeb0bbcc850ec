"""Orders and their state machine, shared by the storefront API and the assets.

Every state change goes through `Order.transition`, which raises on an illegal move.
Moving to the state an order is already in is a no-op, because Stripe and Dagster both
deliver events more than once and a repeated event must be harmless.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from photogen_pipelines.clock import utc_now
from photogen_pipelines.errors import IllegalTransition
from photogen_pipelines.orders.recipients import ShippingMethod


class OrderState(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    GENERATING = "generating"
    PROOFS_READY = "proofs_ready"
    APPROVED = "approved"
    RENDERING = "rendering"
    READY = "ready"
    SUBMITTED = "submitted"  # the print provider accepted the order
    SHIPPED = "shipped"
    DELIVERED = "delivered"  # where the provider says so
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


S = OrderState
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.AWAITING_PAYMENT: frozenset({S.PAID, S.CANCELLED, S.FAILED}),
    S.PAID: frozenset({S.GENERATING, S.CANCELLED, S.REJECTED, S.FAILED}),
    S.GENERATING: frozenset({S.PROOFS_READY, S.REJECTED, S.FAILED}),
    # an operator may regenerate proofs the customer has not approved yet
    S.PROOFS_READY: frozenset({S.APPROVED, S.GENERATING, S.CANCELLED, S.FAILED}),
    S.APPROVED: frozenset({S.RENDERING, S.FAILED}),
    S.RENDERING: frozenset({S.READY, S.FAILED}),
    # re-rendering a delivered file is allowed until the provider has it; a provider that
    # refuses the file fails the order (and the refund follows)
    S.READY: frozenset({S.RENDERING, S.SUBMITTED, S.FAILED}),
    # a provider may report delivery without a shipment first, or give up on an order
    S.SUBMITTED: frozenset({S.SHIPPED, S.DELIVERED, S.FAILED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.REJECTED: frozenset({S.REFUNDED}),
    S.FAILED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}


# The groups of states the rest of the code asks about, defined here once.
TERMINAL = frozenset({S.REJECTED, S.FAILED, S.CANCELLED, S.REFUNDED})
# settled: the money side is final and the print file exists or never will (an order's
# fulfilment, below, follows ready without moving it in the ledger)
SETTLED = frozenset({S.READY, *TERMINAL})
# the print provider has the order: after ready, on its way to the customer
FULFILMENT = frozenset({S.SUBMITTED, S.SHIPPED, S.DELIVERED})
# the print file exists and may be fetched
PRINT_FILE_MADE = frozenset({S.READY, *FULFILMENT})
# the states an order leaves the pipeline by; a refund comes after one of them
EXITS = frozenset({S.READY, S.REJECTED, S.FAILED, S.CANCELLED})
# an order in one of these states owes the customer their money back, once
OWES_REFUND = frozenset({S.REJECTED, S.FAILED, S.CANCELLED})
# the customer may see the proofs
PROOFS_VISIBLE = frozenset({S.PROOFS_READY, S.APPROVED, S.RENDERING, *PRINT_FILE_MADE})
# a run is working on the order
IN_PROGRESS = frozenset({S.GENERATING, S.RENDERING})


def can_transition(current: OrderState, target: OrderState) -> bool:
    return target == current or target in TRANSITIONS[current]


class OrderEvent(BaseModel):
    id: int | None = None  # assigned by the database
    at: datetime
    from_state: OrderState | None
    to_state: OrderState
    reason: str | None = None


def new_order_id() -> str:
    # Dagster partition keys are shown in the UI and URLs: short, lowercase, no slashes
    return "ord_" + uuid.uuid4().hex[:16]


def order_seed(order_id: str) -> int:
    """A seed derived from the order id, so every re-run reproduces the same variants."""
    return int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:4], "big")


class Order(BaseModel):
    id: str = Field(default_factory=new_order_id)
    style_id: str
    product_id: str
    variants: int = Field(4, ge=1, le=8)
    approval: Literal["customer", "auto"] = "customer"
    tier: str | None = None  # the product catalog's quality tier (None: orders from before tiers, the default)
    upload_key: str
    upload_id: str | None = None
    payments: Literal["off", "stripe", "credits"] = "off"
    amount_cents: int = 0
    currency: str = "usd"
    payment_intent_id: str | None = None
    paid_cents: int = 0  # what the customer actually paid (set by Stripe's event, not by us)
    refund_id: str | None = None
    refunded_cents: int = 0
    state: OrderState = OrderState.AWAITING_PAYMENT
    reason: str | None = None
    approved_proof: int | None = None
    stage: str | None = None  # the stage running now, or the last one that ran
    shipping_method: ShippingMethod | None = None  # with a recipient (kept apart: recipients table)
    approval_reminded_at: datetime | None = None  # when order.approval_reminder went out
    # the first time the customer was handed a proof's pixels (a preview through its link, the
    # bundle), and the fee a cancel keeps from then on (the catalog's cancellation policy, pinned)
    proofs_downloaded_at: datetime | None = None
    cancellation_fee_cents: int = Field(0, ge=0)
    api_key_id: str | None = None  # the storefront key that placed it (None: CLI)
    customer_ref: str | None = None  # the shop's own id of the customer (credits/customers.py)
    # a credit-paid order: its price in credits, what the wallet was charged and what went back
    credits_price: int = 0
    credits_paid: int = 0
    credits_refunded: int = 0
    # the shop's credit policy when it was placed: None, a failure refunds the credits; N, it
    # grants a free re-roll instead, the same credits to spend within N days
    reroll_days: int | None = None
    quote_id: str | None = None  # the quote whose price it was charged
    preview: bool = False  # made before it is paid: its proofs are small and watermarked until then
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    events: list[OrderEvent] = Field(default_factory=list)
    stage_seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def seed(self) -> int:
        return order_seed(self.id)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def kept_cents(self) -> int:
        """What the shop keeps of the payment: the cancellation fee of an order cancelled
        after its proofs were downloaded; nothing for any other order (failed, rejected)."""
        if not self.cancellation_fee_cents:
            return 0
        cancelled = self.state == S.CANCELLED or any(e.to_state == S.CANCELLED for e in self.events)
        return min(self.cancellation_fee_cents, self.paid_cents) if cancelled else 0

    @property
    def refund_due_cents(self) -> int:
        """What goes back to the customer in all, once the order will not be delivered."""
        return self.paid_cents - self.kept_cents

    @property
    def refund_owed(self) -> bool:
        """The order will not be delivered and the customer's money (or credits) is not back yet."""
        if self.state not in OWES_REFUND:
            return False
        return self.refund_due_cents > self.refunded_cents or self.credits_paid > self.credits_refunded

    @property
    def settled_payment(self) -> bool:
        """Paid for: its money or credits are in, or payments are off. An unpaid preview is not."""
        if self.payments == "off":
            return True
        if self.payments == "credits":
            return self.credits_paid > 0
        return self.paid_cents > 0

    def transition(self, target: OrderState, reason: str | None = None) -> bool:
        """Move to `target`; returns False when already there (a harmless repeat)."""
        if target == self.state:
            return False
        if not can_transition(self.state, target):
            raise IllegalTransition(f"order {self.id} cannot go from {self.state.value} to {target.value}")
        self.events.append(OrderEvent(at=utc_now(), from_state=self.state, to_state=target, reason=reason))
        self.state = target
        self.updated_at = self.events[-1].at
        self.reason = reason  # why the order is where it is now; the events keep the history
        return True
