"""Credit packs: the catalog's packs, and a customer buying one through Stripe."""

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from photogen_pipelines.payments import packs
from storefront_api.api.deps import ServicesDep, StorefrontDep
from storefront_api.api.routes.orders import IDEMPOTENCY_KEY_DOC, IdempotencyKey
from storefront_api.errors import ApiError
from storefront_api.schemas import PackOut, PackPurchaseIn, PackPurchaseOut

router = APIRouter(tags=["packs"])

PURCHASE_KEY_DOC = {
    **IDEMPOTENCY_KEY_DOC,
    "description": "a retry with the same key and body returns the same purchase, never a second one "
    "(e.g. a UUID per checkout); without it: 400 idempotency_key_required",
}


def _view(purchase: packs.PackPurchase, client_secret: str | None = None) -> PackPurchaseOut:
    return PackPurchaseOut(
        id=purchase.id,
        customer_ref=purchase.customer_ref,
        pack_id=purchase.pack_id,
        credits=purchase.credits,
        amount_cents=purchase.amount_cents,
        currency=purchase.currency,
        state=purchase.state.value,
        paid_cents=purchase.paid_cents,
        refunded_cents=purchase.refunded_cents,
        payment_intent_id=purchase.payment_intent_id,
        client_secret=client_secret,
        created_at=purchase.created_at,
        updated_at=purchase.updated_at,
    )


@router.get("/packs", response_model=list[PackOut])
def list_packs(_caller: StorefrontDep, services: ServicesDep) -> list[PackOut]:
    """The credit packs a customer can buy, with their prices."""
    return [
        PackOut(id=p.id, name=p.name, credits=p.credits, amount_cents=p.price_cents, currency=p.currency)
        for p in services.products.packs
    ]


@router.post(
    "/customers/{ref}/pack-purchases",
    status_code=status.HTTP_201_CREATED,
    response_model=PackPurchaseOut,
    openapi_extra={"parameters": [PURCHASE_KEY_DOC]},
    responses={
        200: {"model": PackPurchaseOut, "description": "a replay: the purchase this Idempotency-Key made with the same body"},
        400: {"description": "idempotency_key_required: no Idempotency-Key header"},
        409: {"description": "idempotency_key_reused: the Idempotency-Key made a purchase with another body"},
        422: {"description": "unknown_pack, invalid_customer_ref, or payments_off (this shop sells no packs)"},
        503: {"description": "payment_provider_unavailable: Stripe did not answer; retry with the same Idempotency-Key"},
    },
)
def buy_pack(
    ref: Annotated[str, Path(description="the shop's own reference of the customer (checked by the core: invalid_customer_ref)")],
    body: PackPurchaseIn,
    response: Response,
    caller: StorefrontDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> PackPurchaseOut:
    """Buy a pack of credits for a customer (created on first mention). The answer carries
    the Stripe PaymentIntent's client secret; the credits reach the customer's wallet once
    Stripe confirms the payment in full, and a refund takes back what is left of them."""
    if not idempotency_key:
        raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header (e.g. a UUID per checkout)")
    bought = packs.buy_pack(
        services.database, services.products, services.gateway, caller.api_key_id, ref, body.pack_id, idempotency_key
    )
    if not bought.created:
        response.status_code = status.HTTP_200_OK
    return _view(bought.purchase, bought.client_secret)


@router.get("/pack-purchases/{purchase_id}", response_model=PackPurchaseOut)
def read_pack_purchase(
    purchase_id: Annotated[str, Path(max_length=64)], caller: StorefrontDep, services: ServicesDep
) -> PackPurchaseOut:
    """A pack purchase of one of this storefront's customers: its state, and what was paid and refunded."""
    return _view(packs.get_purchase(services.database, purchase_id, caller.api_key_id))
