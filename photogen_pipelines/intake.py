"""Taking an order in: checks the selfie on the spot, stores it, records the order."""

from __future__ import annotations

from photogen_pipelines.catalog import ProductCatalog, StyleCatalog
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput, IllegalTransition
from photogen_pipelines.orderbook import OrderBook
from photogen_pipelines.orders import Order, OrderState, new_order_id
from photogen_pipelines.stages import prepare_selfie
from photogen_pipelines.storage import ArtifactStore, OrderKeys

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
        id=order_id, style_id=style_id, product_id=product_id, variants=variants, approval=approval, upload_key=upload_key
    )
    book.add(order)
    return book.transition(order.id, OrderState.PAID, reason=PAYMENTS_OFF_REASON)


def approve_proof(book: OrderBook, store: ArtifactStore, order_id: str, variant: int, reason: str | None = None) -> Order:
    """The customer (or auto-approval) picks a proof; only a proof that passed the gate."""
    order = book.get(order_id)
    if order.state != OrderState.PROOFS_READY:
        raise IllegalTransition(f"order {order_id} is {order.state.value}; proofs can be approved only when proofs_ready")
    if not store.exists(OrderKeys(order_id).proof(variant)):
        raise BadInput(f"order {order_id} has no proof {variant}", code="unknown_proof")
    order.approved_proof = variant
    order.transition(OrderState.APPROVED, reason)
    return book.save(order)
