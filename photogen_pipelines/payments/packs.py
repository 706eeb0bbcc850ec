"""Credit packs: credits bought with money, through a Stripe PaymentIntent.

`buy_pack` records a purchase (`pack_purchases`, the customer created on first mention)
and a PaymentIntent for the pack's price. The credits come only with Stripe's word that
this purchase's own intent succeeded, in full and in the pack's currency: one `purchase`
entry (key `purchase:<id>`), its lot. Any other payment tied to the purchase (another
intent naming it, a short one, another currency) pays nothing and is refunded, as a stray
payment of an order is. A refund takes back what is left of the lot, in proportion to
what was refunded, by `clawback` entries (key `clawback:<id>:<refunded>`): credits
already spent stay spent, and the balance never goes below zero.

Stripe's events reach a purchase through `stripe_payments.apply_stripe_event`, which
records the event's id in the same transaction, so a repeated event changes nothing; the
keys make a repeat under another id (the webhook and the reconciliation sensor) harmless
too. A refund that overtakes its payment is recorded first; the payment, when it comes,
credits the pack and claws back the refunded share at once, so the ledger shows both.

Locks, always in this order: the customer's row (the wallet's lock), then the purchase's,
then (stripe_payments) a stray payment's row. This module does not import stripe_payments
(which imports it): the gateway is anything with the `PackGateway` methods.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import Pack, ProductCatalog
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import CreditEntryRow, CustomerRow, PackPurchaseRow
from photogen_pipelines.errors import BadInput, Conflict, NotFound

PURCHASE_ID = re.compile(r"^pkp_[0-9a-f]{16}$")
# stray_payments.reason, as stripe_payments names them; a pack purchase stands where an order does
NOT_ITS_PAYMENT, AMOUNT_SHORT, CURRENCY_MISMATCH = "not_the_orders_payment", "amount_short", "currency_mismatch"


class PackState(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"  # credited
    REFUNDED = "refunded"  # all its money is back (a partial refund leaves it paid, refunded_cents says how much)


@dataclass(frozen=True)
class PackPurchase:
    id: str
    customer_id: str
    customer_ref: str
    api_key_id: str | None
    pack_id: str
    credits: int
    amount_cents: int
    currency: str
    payment_intent_id: str | None
    state: PackState
    paid_cents: int  # received on its own PaymentIntent, in its currency (credited or not)
    refunded_cents: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Bought:
    purchase: PackPurchase
    created: bool  # False: a retry of the request that created it
    client_secret: str


class PackGateway(Protocol):
    def create_pack_payment_intent(self, purchase: PackPurchase) -> tuple[str, str]: ...
    def client_secret(self, payment_intent_id: str) -> str: ...


def _to_purchase(row: PackPurchaseRow, customer: CustomerRow) -> PackPurchase:
    return PackPurchase(
        id=row.id,
        customer_id=row.customer_id,
        customer_ref=customer.ref,
        api_key_id=customer.shop_key or None,
        pack_id=row.pack_id,
        credits=row.credits,
        amount_cents=row.amount_cents,
        currency=row.currency,
        payment_intent_id=row.payment_intent_id,
        state=PackState(row.state),
        paid_cents=row.paid_cents,
        refunded_cents=row.refunded_cents,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def get_purchase(database: Database, purchase_id: str, api_key_id: str | None) -> PackPurchase:
    """The purchase, if it is a customer of this storefront key's; else NotFound, as if it did not exist."""
    with database.session() as session:
        found = session.execute(
            select(PackPurchaseRow, CustomerRow)
            .join(CustomerRow, CustomerRow.id == PackPurchaseRow.customer_id)
            .where(PackPurchaseRow.id == purchase_id, CustomerRow.shop_key == customers.shop_key(api_key_id))
        ).one_or_none()
        if found is None:
            raise NotFound(f"pack purchase {purchase_id} not found", code="pack_purchase_not_found")
        return _to_purchase(*found)


# -- buying ------------------------------------------------------------------------------


def _digest(customer_ref: str, pack_id: str) -> str:
    body = json.dumps({"customer_ref": customer_ref, "pack_id": pack_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _earlier(session: Session, api_key_id: str | None, idempotency_key: str) -> tuple[PackPurchase, str] | None:
    # an Idempotency-Key names one request of the storefront key (as for orders), whichever customer it named
    found = session.execute(
        select(PackPurchaseRow, CustomerRow)
        .join(CustomerRow, CustomerRow.id == PackPurchaseRow.customer_id)
        .where(CustomerRow.shop_key == customers.shop_key(api_key_id), PackPurchaseRow.idempotency_key == idempotency_key)
        .order_by(PackPurchaseRow.created_at)
        .limit(1)
    ).one_or_none()
    return None if found is None else (_to_purchase(*found), found[0].request_hash)


def buy_pack(
    database: Database,
    products: ProductCatalog,
    gateway: PackGateway | None,
    api_key_id: str | None,
    customer_ref: str,
    pack_id: str,
    idempotency_key: str,
) -> Bought:
    """A purchase of the pack for the customer, awaiting its payment: the PaymentIntent's
    id and client secret for Stripe.js. The same key and body return the same purchase;
    the key with another body is Conflict(idempotency_key_reused). Packs are sold only
    through Stripe: with payments off, BadInput(payments_off) (a 422, like previews_off:
    this shop does not sell them, retrying will not help). Unknown pack: NotFound(unknown_pack)."""
    customers.check_ref(customer_ref)
    if gateway is None:
        raise BadInput("payments are off: this shop sells no credit packs", code="payments_off")
    pack = products.pack(pack_id)
    digest = _digest(customer_ref, pack.id)
    created = False
    with database.session() as session:
        earlier = _earlier(session, api_key_id, idempotency_key)
    if earlier is None:
        try:
            with database.session() as session:
                earlier, created = _record(session, products, api_key_id, customer_ref, pack, idempotency_key, digest)
        except IntegrityError:  # the same key raced in for this customer from a parallel retry
            with database.session() as session:
                earlier = _earlier(session, api_key_id, idempotency_key)
            if earlier is None:
                raise
    purchase, earlier_digest = earlier
    if earlier_digest != digest:
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was used for a different pack purchase ({purchase.id})",
            code="idempotency_key_reused",
        )
    purchase, secret = _attach_payment_intent(database, gateway, purchase)
    return Bought(purchase, created, secret)


def _record(
    session: Session,
    products: ProductCatalog,
    api_key_id: str | None,
    customer_ref: str,
    pack: Pack,
    idempotency_key: str,
    digest: str,
) -> tuple[tuple[PackPurchase, str], bool]:
    customer = wallet.open_wallet(session, products, api_key_id, customer_ref)  # the customer's row lock
    # under the lock a parallel retry for this customer has either committed its row or not begun
    if (earlier := _earlier(session, api_key_id, idempotency_key)) is not None:
        return earlier, False
    now = utc_now()
    row = PackPurchaseRow(
        id="pkp_" + secrets.token_hex(8),
        customer_id=customer.id,
        pack_id=pack.id,
        credits=pack.credits,
        amount_cents=pack.price_cents,
        currency=pack.currency,
        state=PackState.AWAITING_PAYMENT.value,
        paid_cents=0,
        refunded_cents=0,
        idempotency_key=idempotency_key,
        request_hash=digest,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return (_to_purchase(row, customer), digest), True


def _attach_payment_intent(database: Database, gateway: PackGateway, purchase: PackPurchase) -> tuple[PackPurchase, str]:
    """The purchase with its PaymentIntent (made now if a crash or Stripe's refusal left it
    without one), and the intent's client secret."""
    if purchase.payment_intent_id is not None:
        return purchase, gateway.client_secret(purchase.payment_intent_id)
    # outside any lock: Stripe's idempotency key (photogen-pack-<id>) makes a retry get the same intent
    intent_id, secret = gateway.create_pack_payment_intent(purchase)
    with database.session() as session:
        # a parallel retry may have attached one first: the first stays, and is handed out
        session.execute(
            update(PackPurchaseRow)
            .where(PackPurchaseRow.id == purchase.id, PackPurchaseRow.payment_intent_id.is_(None))
            .values(payment_intent_id=intent_id, updated_at=utc_now())
        )
    attached = get_purchase(database, purchase.id, purchase.api_key_id)
    if attached.payment_intent_id != intent_id:
        return attached, gateway.client_secret(attached.payment_intent_id)
    return attached, secret


# -- what Stripe's events do to a purchase -----------------------------------------------


@dataclass(frozen=True)
class StrayPayment:
    """A payment to give back (stripe_payments keeps it in stray_payments and refunds it)."""

    payment_intent_id: str
    amount: int
    currency: str
    reason: str
    refund_id: str | None = None  # Stripe already gave it back
    known_only: bool = False  # only settle one kept before; never start one


@dataclass(frozen=True)
class PackEffect:
    outcome: str
    stray: StrayPayment | None = None


def owning_purchase(session: Session, payment_intent_id: str | None) -> str | None:
    """The purchase whose own PaymentIntent this is."""
    if not payment_intent_id:
        return None
    return session.scalar(select(PackPurchaseRow.id).where(PackPurchaseRow.payment_intent_id == payment_intent_id))


def claimed_purchase(session: Session, metadata: dict | None) -> str | None:
    """The purchase an intent's metadata names, if it exists: only a claim, checked against
    the purchase's own intent by `record_payment` and `record_refund`."""
    claimed = (metadata or {}).get("pack_purchase_id")
    if not isinstance(claimed, str) or not PURCHASE_ID.match(claimed):  # looked up: nothing odd reaches the database
        return None
    return session.scalar(select(PackPurchaseRow.id).where(PackPurchaseRow.id == claimed))


def _locked(session: Session, purchase_id: str) -> tuple[CustomerRow, PackPurchaseRow]:
    customer_id = session.scalar(select(PackPurchaseRow.customer_id).where(PackPurchaseRow.id == purchase_id))
    customer = session.scalars(select(CustomerRow).where(CustomerRow.id == customer_id).with_for_update()).one()
    row = session.scalars(select(PackPurchaseRow).where(PackPurchaseRow.id == purchase_id).with_for_update()).one()
    return customer, row


def _amount(cents: int, currency: str) -> str:
    return f"{cents} {currency.upper()} (minor units)"  # Stripe's own unit; operators read these outcomes


def _mismatch(row: PackPurchaseRow, amount: int, currency: str) -> str | None:
    if currency != row.currency:
        return CURRENCY_MISMATCH
    if amount < row.amount_cents:
        return AMOUNT_SHORT
    return None


def record_payment(session: Session, purchase_id: str, payment_intent_id: str, received: int, currency: str) -> PackEffect:
    """A succeeded PaymentIntent tied to the purchase. Only its own intent, in full and in
    its currency, pays the pack and credits it (once). Any other payment, a short one or one
    in another currency included, is a stray payment to refund, as for an order: it leaves the
    purchase unpaid (and, its intent spent, awaiting_payment for good)."""
    customer, row = _locked(session, purchase_id)
    currency = currency.lower()
    if payment_intent_id != row.payment_intent_id:
        stray = StrayPayment(payment_intent_id, received, currency, NOT_ITS_PAYMENT)
        return PackEffect(f"payment {payment_intent_id} is not pack purchase {row.id}'s payment; it is being refunded", stray)
    if mismatch := _mismatch(row, received, currency):
        got, due = _amount(received, currency), _amount(row.amount_cents, row.currency)
        stray = StrayPayment(payment_intent_id, received, currency, mismatch)
        return PackEffect(f"the payment received ({got}) does not match the pack's price ({due}); no credits added", stray)
    if row.paid_cents:
        return PackEffect("payment already recorded")
    row.paid_cents, row.updated_at = received, utc_now()
    wallet.post(
        session,
        customer,
        EntryKind.PURCHASE,
        row.credits,
        key=f"purchase:{row.id}",
        reason=f"pack {row.pack_id} (purchase {row.id}, payment {payment_intent_id})",
        pack_purchase_id=row.id,
    )
    if row.state == PackState.AWAITING_PAYMENT:
        row.state = PackState.PAID.value
    if not row.refunded_cents:
        return PackEffect(f"pack paid: {row.credits} credits added")
    clawed = _claw_back(session, customer, row)  # the refund overtook its payment
    return PackEffect(f"pack paid: {row.credits} credits added; it was refunded first, {clawed} clawed back")


def record_refund(
    session: Session,
    purchase_id: str,
    payment_intent_id: str,
    *,
    charged: int,
    refunded: int,
    currency: str,
    full: bool,
    refund_id: str,
) -> PackEffect:
    """A refund of a payment tied to the purchase: `charged` its charge's amount, `refunded`
    the total refunded of it so far (Stripe's `amount_refunded`). Of the payment that pays
    it: recorded, and the refunded share of its credits clawed back from what is left of
    them. Of any other (a stray payment's): recorded on the stray payment, in full or not."""
    customer, row = _locked(session, purchase_id)
    currency = currency.lower()
    if payment_intent_id != row.payment_intent_id:
        stray = StrayPayment(payment_intent_id, charged, currency, NOT_ITS_PAYMENT, refund_id if full else None)
        return PackEffect(f"refund of payment {payment_intent_id}, not pack purchase {row.id}'s payment, recorded", stray)
    if mismatch := _mismatch(row, charged, currency):  # its own intent, but a payment that never paid it
        stray = StrayPayment(payment_intent_id, charged, currency, mismatch, refund_id if full else None)
        return PackEffect(f"refund of a payment that does not pay pack purchase {row.id} recorded", stray)
    if refunded <= row.refunded_cents:  # a repeat, or an older total arriving late
        return PackEffect("refund already recorded")
    row.refunded_cents, row.updated_at = refunded, utc_now()
    if full or refunded >= row.amount_cents:
        row.state = PackState.REFUNDED.value
    clawed = _claw_back(session, customer, row)
    return PackEffect(f"refund recorded ({_amount(refunded, currency)} so far); {clawed} credits clawed back")


def _claw_back(session: Session, customer: CustomerRow, row: PackPurchaseRow) -> int:
    """Take back the refunded share of the pack's credits, ceil(credits × refunded / price),
    less what earlier refunds took, and never more than is left of its lot (spent credits
    stay spent). Nothing before the pack was credited: crediting calls this again."""
    lot_id = session.scalar(
        select(CreditEntryRow.id).where(
            CreditEntryRow.customer_id == customer.id, CreditEntryRow.idempotency_key == f"purchase:{row.id}"
        )
    )
    if lot_id is None:
        return 0
    wallet.expire_due(session, customer)  # as `post` would: the balance below is what is really there
    entries = wallet.entries(session, customer.id)
    due = min(row.credits, -(-row.credits * row.refunded_cents // row.amount_cents))
    taken = -sum(e.amount for e in entries if e.kind == EntryKind.CLAWBACK and e.lot_id == lot_id)
    left = wallet.lots_of(entries).lots[lot_id].remaining
    take = min(due - taken, left, wallet.balance(session, customer.id))
    if take <= 0:
        return 0
    wallet.post(
        session,
        customer,
        EntryKind.CLAWBACK,
        -take,
        key=f"clawback:{row.id}:{row.refunded_cents}",
        reason=f"pack purchase {row.id}: {_amount(row.refunded_cents, row.currency)} of its price refunded",
        pack_purchase_id=row.id,
        lot_id=lot_id,
    )
    return take
