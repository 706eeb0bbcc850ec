"""Taking an order in: checks the selfie on the spot, stores it, records the order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from photogen_pipelines.catalog import ProductCatalog, StyleCatalog
from photogen_pipelines.db.database import Database
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput, Conflict, IllegalTransition
from photogen_pipelines.orderbook import OrderBook, SqlOrderBook
from photogen_pipelines.orders import Order, OrderState, new_order_id
from photogen_pipelines.payments import StripeGateway, refund_order
from photogen_pipelines.stages import prepare_selfie
from photogen_pipelines.storage import ArtifactStore, OrderKeys
from photogen_pipelines.uploads import Upload

PAYMENTS_OFF_REASON = "payments are off (embedded default): the order is marked paid on creation"


def register_order(
    book: OrderBook,
    store: ArtifactStore,
    faces: FaceAnalyzer,
    styles: StyleCatalog,
    products: ProductCatalog,
    upload: bytes,
    style_id: str,
    product_id: str,
    variants: int = 4,
    approval: str = "customer",
    proof_long_side: int = 1024,
) -> Order:
    """A new paid order (payments off), or BadInput/NotFound before anything is stored."""
    styles.get(style_id)
    product = products.get(product_id)
    prepare_selfie(upload, product, faces, proof_long_side)  # the customer hears "no face" now, not after a run
    order_id = new_order_id()
    upload_key = OrderKeys(order_id).upload
    store.put_bytes(upload_key, upload)
    order = Order(
        id=order_id,
        style_id=style_id,
        product_id=product_id,
        variants=variants,
        approval=approval,
        upload_key=upload_key,
        amount_cents=product.price_cents,
    )
    book.add(order)
    return book.transition(order.id, OrderState.PAID, reason=PAYMENTS_OFF_REASON)


def approve_proof(book: OrderBook, store: ArtifactStore, order_id: str, variant: int, reason: str | None = None) -> Order:
    """The customer (or auto-approval) picks a proof; only a proof that passed the gate."""
    if not store.exists(OrderKeys(order_id).proof(variant)):
        raise BadInput(f"order {order_id} has no proof {variant}", code="unknown_proof")

    def approve(order: Order) -> None:
        if order.state != OrderState.PROOFS_READY:
            raise IllegalTransition(f"order {order_id} is {order.state.value}; proofs can be approved only when proofs_ready")
        order.approved_proof = variant
        order.transition(OrderState.APPROVED, reason)

    return book.update(order_id, approve)


PAYMENTS_OFF_LABEL = "payments off: this order was marked paid on creation and nobody was charged"


@dataclass
class PlacedOrder:
    order: Order
    created: bool
    client_secret: str | None = None


def request_hash(fields: dict) -> str:
    """A stable digest of an order request, to tell a retry from a different request."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def place_order(
    book: SqlOrderBook,
    styles: StyleCatalog,
    products: ProductCatalog,
    upload: Upload,
    style_id: str,
    product_id: str,
    variants: int,
    approval: str,
    gateway: StripeGateway | None,
    api_key_id: str | None,
    idempotency_key: str,
) -> PlacedOrder:
    """An order for a checked upload: paid at once with payments off, else awaiting a
    Stripe payment. The same idempotency key and body returns the same order; another
    body with that key is a Conflict."""
    fields = {"upload_id": upload.id, "style_id": style_id, "product_id": product_id, "variants": variants, "approval": approval}
    digest = request_hash(fields)
    earlier = book.find_idempotent(api_key_id, idempotency_key)
    if earlier is None:
        styles.get(style_id)
        product = products.get(product_id)
        order = Order(
            style_id=style_id,
            product_id=product_id,
            variants=variants,
            approval=approval,
            upload_id=upload.id,
            upload_key=upload.storage_key,
            payments="stripe" if gateway else "off",
            amount_cents=product.price_cents,
            api_key_id=api_key_id,
        )
        try:
            order = book.add(order, idempotency_key=idempotency_key, request_hash=digest)
        except IntegrityError:  # the same key raced in from a parallel retry
            earlier = book.find_idempotent(api_key_id, idempotency_key)
        else:
            if gateway is None:
                order = book.transition(order.id, OrderState.PAID, reason=PAYMENTS_OFF_REASON)
                return PlacedOrder(order, created=True)
            return PlacedOrder(
                _attach_payment_intent(book, gateway, order), created=True, client_secret=_secret(gateway, book, order.id)
            )
    order, earlier_digest = earlier
    if earlier_digest != digest:
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was used for a different order request ({order.id})",
            code="idempotency_key_reused",
        )
    if gateway is None or order.payments != "stripe":
        return PlacedOrder(order, created=False)
    order = _attach_payment_intent(book, gateway, order)
    return PlacedOrder(order, created=False, client_secret=_secret(gateway, book, order.id))


def _attach_payment_intent(book: SqlOrderBook, gateway: StripeGateway, order: Order) -> Order:
    if order.payment_intent_id:
        return order
    intent_id, _ = gateway.create_payment_intent(order)  # Stripe's idempotency key: one intent per order
    return book.update(order.id, lambda o: setattr(o, "payment_intent_id", intent_id))


def _secret(gateway: StripeGateway, book: SqlOrderBook, order_id: str) -> str:
    return gateway.client_secret(book.get(order_id).payment_intent_id)


def cancel_order(database: Database, book: SqlOrderBook, gateway: StripeGateway | None, order_id: str, reason: str) -> Order:
    """Cancel where the state allows it, then refund what was paid (once)."""
    book.transition(order_id, OrderState.CANCELLED, reason=reason)
    return refund_order(database, book, gateway, order_id)
