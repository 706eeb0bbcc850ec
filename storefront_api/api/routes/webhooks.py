"""Stripe's webhook: verified, applied once, answered fast."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from photogen_pipelines.db.tables import PaymentEventRow
from photogen_pipelines.orders import Order
from photogen_pipelines.payments import PaymentError, apply_stripe_event, refund_order
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError, log
from storefront_api.schemas import WebhookOut

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _refund_if_owed(services, order_id: str) -> None:
    try:
        refund_order(services.database, services.book, services.gateway, order_id)
    except Exception as exc:  # the reconciliation sensor retries what fails here
        log.warning("refund of %s deferred to reconciliation: %s", order_id, exc)


@router.post("/stripe", response_model=WebhookOut)
async def stripe_webhook(
    request: Request,
    services: ServicesDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookOut:
    """Stripe events: the signature is checked on the raw body; each event id counts once."""
    if services.gateway is None:
        raise ApiError(404, "payments_off", "payments are off on this server; there is no Stripe webhook")
    if not stripe_signature:
        raise ApiError(400, "missing_signature", "the Stripe-Signature header is missing")
    payload = await request.body()
    try:
        event = services.gateway.parse_webhook(payload, stripe_signature)
    except PaymentError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    outcome, order = await run_in_threadpool(_apply, services, event)
    if order is not None and order.refund_owed:  # e.g. paid after the order was cancelled
        background.add_task(_refund_if_owed, services, order.id)
    return WebhookOut(received=True, outcome=outcome)


def _apply(services, event: dict) -> tuple[str, Order | None]:
    outcome = apply_stripe_event(services.database, services.book, event, source="webhook")
    with services.database.session() as session:
        order_id = session.scalar(select(PaymentEventRow.order_id).where(PaymentEventRow.id == event["id"]))
    return outcome, services.book.get(order_id) if order_id else None
