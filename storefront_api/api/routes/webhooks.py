"""Stripe's webhook: verified, applied once, answered fast."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request
from starlette.concurrency import run_in_threadpool

from photogen_pipelines.payments.stripe_events import MalformedEvent
from photogen_pipelines.payments.stripe_payments import PaymentError, apply_stripe_event, refund_order, refund_stray_payment
from storefront_api.api.deps import ServicesDep
from storefront_api.errors import ApiError, log
from storefront_api.schemas import WebhookOut

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _refund_if_owed(services, order_id: str) -> None:
    try:
        if services.book.get(order_id).refund_owed:  # e.g. paid after the order was cancelled
            refund_order(services.book, services.gateway, order_id)
    except Exception as exc:  # the reconciliation sensor retries what fails here
        log.warning("refund of %s deferred to reconciliation: %s", order_id, exc)


def _refund_stray(services, payment_intent_id: str) -> None:
    try:
        refund_stray_payment(services.book, services.gateway, payment_intent_id)
    except Exception as exc:  # counted on its row; the reconciliation sensor retries it
        log.warning("refund of stray payment %s deferred to reconciliation: %s", payment_intent_id, exc)


@router.post(
    "/stripe",
    response_model=WebhookOut,
    responses={
        400: {"description": "missing_signature, bad_signature, or malformed_event (signed, without the fields PhotoGen reads)"},
        404: {"description": "payments_off: this server takes no payments"},
    },
)
async def stripe_webhook(
    request: Request,
    services: ServicesDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookOut:
    """Stripe events: the signature is checked on the raw body; each event id counts once.
    A signed event without the fields PhotoGen reads is a 400 `malformed_event`."""
    if services.gateway is None:
        raise ApiError(404, "payments_off", "payments are off on this server; there is no Stripe webhook")
    if not stripe_signature:
        raise ApiError(400, "missing_signature", "the Stripe-Signature header is missing")
    payload = await request.body()
    try:
        event = services.gateway.parse_webhook(payload, stripe_signature)
        result = await run_in_threadpool(apply_stripe_event, services.book, event, "webhook")
    except PaymentError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    except RecursionError:  # nested too deep for the parser (the request limits refuse it before, limits.py)
        raise ApiError(400, MalformedEvent.code, "the Stripe event is malformed: it nests too deep") from None
    if result.order_id is not None:
        background.add_task(_refund_if_owed, services, result.order_id)
    if result.stray_payment is not None:
        background.add_task(_refund_stray, services, result.stray_payment)
    return WebhookOut(received=True, outcome=result.outcome)
