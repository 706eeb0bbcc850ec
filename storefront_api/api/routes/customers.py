"""Customers: the shop's own reference for a person, their plan, credits and history."""

from typing import Annotated

from fastapi import APIRouter, Path

from photogen_pipelines.workflows import customer_accounts
from storefront_api.api.deps import HistoryPageDep, ServicesDep, StorefrontDep
from storefront_api.schemas import CustomerIn, CustomerOut

router = APIRouter(prefix="/customers", tags=["customers"])

# checked by the core (invalid_customer_ref, a 422), not here: one rule, one code
CustomerRef = Annotated[str, Path(description="the shop's own reference: 1 to 64 letters, digits or _ . : @ + -")]


@router.put(
    "/{ref}",
    response_model=CustomerOut,
    responses={422: {"description": "invalid_customer_ref, or unknown_plan: not a plan of the shop's catalog"}},
)
def put_customer(ref: CustomerRef, body: CustomerIn, caller: StorefrontDep, services: ServicesDep) -> CustomerOut:
    """Set the customer's plan, which decides the tiers they may order. A customer the shop
    names for the first time is created, with the plan's welcome credits (once: moving to
    another plan later grants nothing)."""
    account = customer_accounts.set_plan(services.database, services.products, caller.api_key_id, ref, body.plan)
    return CustomerOut.model_validate(account, from_attributes=True)


@router.get(
    "/{ref}",
    response_model=CustomerOut,
    responses={
        404: {"description": "customer_not_found: no customer of this API key has this reference"},
        422: {"description": "invalid_customer_ref, invalid_cursor, or invalid_request (a limit out of 1–100)"},
    },
)
def get_customer(ref: CustomerRef, caller: StorefrontDep, services: ServicesDep, page: HistoryPageDep) -> CustomerOut:
    """The customer's plan and balance, their orders and their wallet's entries (grants,
    purchases, spends, refunds, expiries), each newest first, a page at a time: pass a
    list's `next_cursor` back as `orders_cursor` or `entries_cursor`. A customer's own order
    token reads this through GET /v1/orders/{order_id}/customer."""
    account = customer_accounts.account(services.database, caller.api_key_id, ref, page)
    return CustomerOut.model_validate(account, from_attributes=True)
