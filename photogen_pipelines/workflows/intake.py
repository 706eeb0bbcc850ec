"""Taking an order in: checks the selfie on the spot, stores it, records the order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError

from photogen_pipelines.catalog import ProductCatalog, StyleCatalog
from photogen_pipelines.credits import wallet
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput, Conflict
from photogen_pipelines.generation.safety import SafetyGate, check_photo
from photogen_pipelines.generation.stages import prepare_selfie
from photogen_pipelines.orders import lifecycle, photo_sets
from photogen_pipelines.orders.book import OrderBook, SqlOrderBook
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod
from photogen_pipelines.orders.states import Order, new_order_id
from photogen_pipelines.orders.uploads import Upload
from photogen_pipelines.payments import credit_orders
from photogen_pipelines.payments.stripe_payments import StripeGateway, refund_order
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows import allowance, quotes


@dataclass(frozen=True)
class OrderRequest:
    """What the customer asked for."""

    style_id: str
    product_id: str
    variants: int | None = None  # None: the tier's number of proofs; a sold order may ask fewer, never more
    approval: Literal["customer", "auto"] = "customer"
    tier: str | None = None  # None: the catalog's default tier


@dataclass(frozen=True)
class Terms:
    """How an order is paid for: by card (Stripe, or nothing with payments off) or from the
    customer's credits; at a quote's price; made before payment as a preview."""

    payment: Literal["card", "credits"] = "card"
    customer_ref: str | None = None
    quote_id: str | None = None
    preview: bool = False

    def asked(self) -> dict:
        """What the request said beyond an order's fields (an order without any hashes as before)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, False, "card")}


@dataclass(frozen=True)
class PlacementRequest:
    """A storefront's order request: what was asked for, for which checked upload (and
    the customer's further photos, `photos`: up to three more of the same person), by
    which caller, under which Idempotency-Key (a retry with the same key and body finds
    the same order)."""

    order: OrderRequest
    upload: Upload
    api_key_id: str | None
    idempotency_key: str
    recipient: Recipient | None = None
    shipping_method: ShippingMethod | None = None
    terms: Terms = Terms()
    photos: tuple[Upload, ...] = ()  # after `upload`, the primary; none: an order from one photo

    @property
    def uploads(self) -> tuple[Upload, ...]:
        """The order's photos, the primary first."""
        return (self.upload, *self.photos)

    def digest(self) -> str:
        """A stable digest of the request body, to tell a retry from a different request."""
        fields = {"upload_id": self.upload.id, **asdict(self.order), **self.terms.asked()}
        if self.photos:  # an order from one photo hashes as it always did
            fields["upload_ids"] = [u.id for u in self.uploads]
        if self.recipient is not None:  # an order without one hashes as it always did
            fields["recipient"] = self.recipient.model_dump(mode="json")
            fields["shipping_method"] = self.shipping_method.value if self.shipping_method else None
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def register_order(
    book: OrderBook,
    store: ArtifactStore,
    faces: FaceAnalyzer,
    styles: StyleCatalog,
    products: ProductCatalog,
    upload: bytes,
    request: OrderRequest,
    proof_long_side: int = 1024,
    safety: SafetyGate | None = None,
) -> Order:
    """A new paid order (payments off) for a selfie given as bytes (the CLI, scripts), or
    BadInput/NotFound before anything is stored. Nobody is charged for it, so it may ask
    for more proofs than its tier sells (`photogen demo --variants 8`)."""
    styles.get(request.style_id)
    product = products.get(request.product_id)
    tier = products.tier(request.tier)
    amount = products.price(product, tier.id)
    selfie = prepare_selfie(upload, product, faces, proof_long_side)  # the customer hears "no face" now, not after a run
    if safety is not None:  # quality.yaml content_safe.upload, as POST /v1/uploads checks it
        check_photo(selfie.image, safety)
    order_id = new_order_id()
    upload_key = OrderKeys(order_id).upload
    store.put_bytes(upload_key, upload)
    order = Order(
        id=order_id,
        style_id=request.style_id,
        product_id=request.product_id,
        variants=request.variants or tier.variants,
        approval=request.approval,
        tier=tier.id,
        upload_key=upload_key,
        amount_cents=amount,
    )
    book.add(order)
    return lifecycle.paid_without_payments(book, order.id)


PAYMENTS_OFF_LABEL = "payments off: this order was marked paid on creation and nobody was charged"


@dataclass
class PlacedOrder:
    order: Order
    created: bool
    client_secret: str | None = None


def place_order(
    book: SqlOrderBook,
    styles: StyleCatalog,
    products: ProductCatalog,
    gateway: StripeGateway | None,
    request: PlacementRequest,
    *,
    store: ArtifactStore | None = None,
    faces: FaceAnalyzer | None = None,
) -> PlacedOrder:
    """An order for a checked upload: paid at once with payments off, from the customer's
    credits with `payment: credits`, else awaiting a Stripe payment (a preview starts before
    it). The same idempotency key and body returns the same order; another body with that
    key is a Conflict. The tier's price buys its proofs: asking for more than the tier gives
    is BadInput(too_many_variants). Several photos must show one person, as `faces` (the
    identity gate's encoder) sees them in `store`: else BadInput(photos_not_same_person)
    and nothing is recorded."""
    digest = request.digest()
    earlier = book.find_idempotent(request.api_key_id, request.idempotency_key)
    if earlier is None:
        order = _new_order(book, styles, products, gateway, request)
        # after the request's own checks, as the dearest (a face model run per photo); a retry found above skips it
        if request.photos:
            if store is None or faces is None:
                raise ValueError("an order from several photos needs the store and the face analyzer to check them")
            photo_sets.check_same_person(store, faces, request.uploads)
        try:
            with book.transaction() as tx:
                _record(tx.session, book, products, order, request, digest)
        except IntegrityError:  # the same key raced in from a parallel retry
            earlier = book.find_idempotent(request.api_key_id, request.idempotency_key)
            if earlier is None:
                raise
        else:
            order = book.get(order.id)
            if order.payments == "stripe":
                order = _attach_payment_intent(book, gateway, order)
                return PlacedOrder(order, created=True, client_secret=_secret(gateway, book, order.id))
            return PlacedOrder(order, created=True)
    order, earlier_digest = earlier
    if earlier_digest != digest:
        raise Conflict(
            f"Idempotency-Key {request.idempotency_key!r} was used for a different order request ({order.id})",
            code="idempotency_key_reused",
        )
    if gateway is None or order.payments != "stripe":
        return PlacedOrder(order, created=False)
    order = _attach_payment_intent(book, gateway, order)
    return PlacedOrder(order, created=False, client_secret=_secret(gateway, book, order.id))


def _new_order(
    book: SqlOrderBook, styles: StyleCatalog, products: ProductCatalog, gateway: StripeGateway | None, request: PlacementRequest
) -> Order:
    """The order the request asks for, priced (by its quote, if it names one), not yet recorded."""
    asked, terms = request.order, request.terms
    styles.get(asked.style_id)
    product = products.get(asked.product_id)
    tier = products.tier(asked.tier)
    if terms.payment == "credits" or terms.preview:
        if terms.customer_ref is None:
            why = "paying in credits" if terms.payment == "credits" else "a preview"
            raise BadInput(f"{why} needs the customer's customer_ref", code="customer_ref_required")
    if terms.preview:
        _check_preview(products, gateway, terms, asked)
    amount = products.price(product, tier.id)
    credits = products.credits_price(product, tier.id) if terms.payment == "credits" else 0
    if terms.quote_id is not None:
        quote = quotes.honour(quotes.get_quote(book, terms.quote_id, request.api_key_id), product.id, tier.id, terms.customer_ref)
        amount = quote.amount_cents
        if terms.payment == "credits":
            if quote.credits is None:
                raise BadInput(f"quote {quote.id} has no price in credits", code="not_sold_for_credits")
            credits = quote.credits
    payments = "credits" if terms.payment == "credits" else ("stripe" if gateway else "off")
    return Order(
        style_id=asked.style_id,
        product_id=asked.product_id,
        variants=tier.proofs(asked.variants),
        approval=asked.approval,
        tier=tier.id,
        upload_id=request.upload.id,
        upload_key=request.upload.storage_key,
        payments=payments,
        amount_cents=amount,  # the PaymentIntent asks for this
        credits_price=credits,
        reroll_days=products.credits.reroll_days if credits and products.credits.on_failure == "reroll" else None,
        api_key_id=request.api_key_id,
        customer_ref=terms.customer_ref,
        quote_id=terms.quote_id,
        preview=terms.preview,
        shipping_method=request.shipping_method or (ShippingMethod.STANDARD if request.recipient else None),
    )


def _check_preview(products: ProductCatalog, gateway: StripeGateway | None, terms: Terms, asked: OrderRequest) -> None:
    if not products.previews.enabled:
        raise BadInput("this shop does not make previews before payment", code="previews_off")
    if terms.payment == "card" and gateway is None:
        raise BadInput("payments are off: every order is made at once, a preview is not needed", code="previews_off")
    if asked.approval == "auto":
        raise BadInput("a preview is chosen from by the customer once paid: approval must be customer", code="invalid_request")


def _record(session, book: SqlOrderBook, products: ProductCatalog, order: Order, request: PlacementRequest, digest: str) -> None:
    """Write the order and what pays for it in one transaction: with credits the spend, with
    a preview the day's free allowance; a refusal (too few credits, a plan without the tier,
    the allowance spent) leaves nothing behind."""
    if order.customer_ref is not None:
        customer = wallet.open_wallet(session, products, order.api_key_id, order.customer_ref)
        products.check_plan_allows(customer.plan, order.tier)
        if order.preview:
            used = allowance.use_free_preview(session, products.previews, customer, order.api_key_id, now=order.created_at)
            lifecycle.preview_started(order, used, products.previews.free_per_day)
        elif order.payments == "credits":
            credit_orders.charge(session, products, order)
    if order.payments == "off":
        lifecycle.paid_without_payments_in(order)
    book.add_in(session, order, idempotency_key=request.idempotency_key, request_hash=digest, recipient=request.recipient)
    photo_sets.record_in(session, order.id, request.uploads)


def _attach_payment_intent(book: SqlOrderBook, gateway: StripeGateway, order: Order) -> Order:
    if order.payment_intent_id:
        return order
    intent_id, _ = gateway.create_payment_intent(order)  # Stripe's idempotency key: one intent per order
    return book.update(order.id, lambda o: setattr(o, "payment_intent_id", intent_id))


def _secret(gateway: StripeGateway, book: SqlOrderBook, order_id: str) -> str:
    return gateway.client_secret(book.get(order_id).payment_intent_id)


def cancel_order(book: SqlOrderBook, gateway: StripeGateway | None, order_id: str, reason: str) -> Order:
    """Cancel where the state allows it, then refund what was paid (once)."""
    lifecycle.cancel(book, order_id, reason)
    return refund_order(book, gateway, order_id)
