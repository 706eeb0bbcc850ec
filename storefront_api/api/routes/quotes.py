"""Quotes: a price and a wait promised before ordering."""

from fastapi import APIRouter, status

from photogen_pipelines.workflows import quotes
from storefront_api.api.deps import ServicesDep, StorefrontDep
from storefront_api.schemas import PriceOut, QuoteIn, QuoteOut, WaitOut

router = APIRouter(prefix="/quotes", tags=["quotes"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=QuoteOut,
    responses={
        422: {"description": "unknown_product, unknown_tier (or not offered for the product), unknown_kind, invalid_customer_ref"}
    },
)
def create_quote(body: QuoteIn, caller: StorefrontDep, services: ServicesDep) -> QuoteOut:
    """Price a product in a tier, in money and in credits, with the wait to expect. An order
    that names the quote (`quote_id`) before `expires_at` is charged this price, even if the
    catalog's changed meanwhile; one for a customer is honoured for that customer alone."""
    quote = quotes.make_quote(
        services.book, services.products, body.product_id, body.tier, body.kind, body.customer_ref, caller.api_key_id
    )
    return QuoteOut(
        id=quote.id,
        kind=quote.kind,
        product_id=quote.product_id,
        tier=quote.tier,
        customer_ref=quote.customer_ref,
        price=PriceOut(amount_cents=quote.amount_cents, currency=quote.currency, credits=quote.credits),
        expected_wait=WaitOut(proofs_seconds=quote.proofs_seconds, print_seconds=quote.print_seconds, basis=quote.basis),
        expires_at=quote.expires_at,
        valid_seconds=round((quote.expires_at - quote.created_at).total_seconds()),
    )
