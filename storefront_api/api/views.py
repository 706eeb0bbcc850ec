"""How an order looks to a client: its state, progress, proofs and payment."""

from photogen_pipelines.fulfilment.submission import fulfilment_of, recipient_of
from photogen_pipelines.generation import takes
from photogen_pipelines.orders import deliverables, photo_sets
from photogen_pipelines.orders.deliverables import Purpose
from photogen_pipelines.orders.recipients import MaskedRecipient
from photogen_pipelines.orders.states import IN_PROGRESS, PRINT_FILE_MADE, Order
from photogen_pipelines.orders.waits import TierWait, expected_at, order_wait
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys, Stage, Validation
from photogen_pipelines.workflows.intake import PAYMENTS_OFF_LABEL
from storefront_api.schemas import ConsentOut, EventOut, FulfilmentOut, OrderOut, PaymentOut, ProofOut, StageOut, WaitOut


def _stages(order: Order) -> list[StageOut]:
    def status(name: str) -> str:
        if name in order.stage_seconds:
            return "done"
        running = order.stage == name and order.state in IN_PROGRESS
        return "running" if running else "pending"

    return [StageOut(name=n.value, status=status(n), seconds=order.stage_seconds.get(n)) for n in Stage]


def _proofs(services, order: Order, base_url: str) -> tuple[list[ProofOut], float | None]:
    validation = OrderKeys(order.id).load_if_present(services.store, Validation)
    if validation is None:
        return [], None
    candidates = OrderKeys(order.id).load_if_present(services.store, CandidatesInfo)
    take_of = {c.variant: c.take for c in candidates.candidates} if candidates else {}
    proofs = []
    for variant, score in sorted(validation.final_scores().items()):
        shown = deliverables.proof_for(order, variant) if variant in validation.proofs else None
        if shown is not None and not shown.served_to(order):
            shown = None  # before proofs_ready, and once the order is cancelled, failed or refunded
        take = take_of.get(variant)
        proofs.append(
            ProofOut(
                variant=variant,
                take=take,
                label=takes.label_of(take),
                url=_order_link(services, base_url, shown.key) if shown else None,
                preview=shown is not None and shown.purpose == Purpose.PREVIEW,
                identity_score=score.similarity,
                passed=score.passed,
                round=score.round,
            )
        )
    return proofs, validation.threshold


def _order_link(services, base_url: str, key: str) -> str:
    # always the API's own link, never S3's presigned one: /v1/files checks the order's state
    # on every fetch, so a link dies with the order (and a preview is made, not stored)
    return services.signer.file_url(base_url, key, services.settings.file_url_ttl_seconds)


def _payment_label(order: Order) -> str:
    if order.payments == "credits":
        return f"paid with {order.credits_price} credits from customer {order.customer_ref}'s wallet"
    return PAYMENTS_OFF_LABEL if order.payments == "off" else "Stripe PaymentIntent"


def _payment(order: Order, client_secret: str | None) -> PaymentOut:
    label = _payment_label(order)
    return PaymentOut(
        mode=order.payments,
        label=label,
        amount_cents=order.amount_cents,
        currency=order.currency,
        paid_cents=order.paid_cents,
        refunded_cents=order.refunded_cents,
        refund_id=order.refund_id,
        cancellation_fee_cents=order.cancellation_fee_cents,
        payment_intent_id=order.payment_intent_id,
        client_secret=client_secret,
        credits_price=order.credits_price,
        credits_paid=order.credits_paid,
        credits_refunded=order.credits_refunded,
        customer_ref=order.customer_ref,
        quote_id=order.quote_id,
        preview=order.preview,
    )


def _recipient(services, order: Order) -> MaskedRecipient | None:
    # an order with a recipient has a shipping method: one read less for those without
    recipient = recipient_of(services.database, order.id) if order.shipping_method else None
    return recipient.masked() if recipient else None  # gone once retention deleted it


def _fulfilment(services, order: Order) -> FulfilmentOut | None:
    if order.shipping_method is None:  # no recipient: nothing was or will be submitted
        return None
    record = fulfilment_of(services.database, order.id)
    return None if record is None else FulfilmentOut.model_validate(record, from_attributes=True)


def wait_out(wait: TierWait) -> WaitOut:
    return WaitOut(proofs_seconds=wait.proofs_seconds, print_seconds=wait.print_seconds, basis=wait.basis)


def order_view(
    services, order: Order, base_url: str, client_secret: str | None = None, customer_token: str | None = None
) -> OrderOut:
    proofs, threshold = _proofs(services, order, base_url)
    wait = order_wait(services.book, services.products, order)
    photos = photo_sets.photos_of(services.database, order)
    return OrderOut(
        id=order.id,
        state=order.state.value,
        reason=order.reason,
        style_id=order.style_id,
        product_id=order.product_id,
        variants=order.variants,
        approval=order.approval,
        tier=order.tier,
        payment=_payment(order, client_secret),
        stage=order.stage,
        stages=_stages(order),
        identity_threshold=threshold,
        proofs=proofs,
        approved_proof=order.approved_proof,
        upload_ids=[p.upload_id for p in photos if p.upload_id],
        proofs_downloaded_at=order.proofs_downloaded_at,
        print_file_ready=order.state in PRINT_FILE_MADE,
        expected_wait=wait_out(wait),
        expected_at=expected_at(order, wait),
        shipping_method=order.shipping_method.value if order.shipping_method else None,
        recipient=_recipient(services, order),
        fulfilment=_fulfilment(services, order),
        events=[EventOut.model_validate(e, from_attributes=True) for e in order.events],
        consent=[ConsentOut.model_validate(c, from_attributes=True) for c in photo_sets.consents_of(services.database, photos)],
        created_at=order.created_at,
        updated_at=order.updated_at,
        customer_token=customer_token,
    )
