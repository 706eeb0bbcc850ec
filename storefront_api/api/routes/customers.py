"""Customers: the shop's own reference for a person, their plan, credits and history."""

import tempfile
import zipfile
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from photogen_pipelines.clock import utc_now
from photogen_pipelines.workflows import customer_accounts, erasure
from storefront_api.api import bundle
from storefront_api.api.deps import HistoryPageDep, ServicesDep, StorefrontDep
from storefront_api.schemas import CustomerIn, CustomerOut, ErasureOut

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


@router.delete(
    "/{ref}",
    response_model=ErasureOut,
    responses={
        404: {"description": "customer_not_found: this API key never named a customer with this reference"},
        409: {"description": "erasure_waits_for_orders: orders being made or shipped (details.order_ids); erase once delivered"},
        422: {"description": "invalid_customer_ref"},
    },
)
def erase_customer(ref: CustomerRef, caller: StorefrontDep, services: ServicesDep) -> ErasureOut:
    """Erase the customer's data: every photo, the identity embeddings, proofs and print
    files of their orders, their recipients and tracking, and the reference itself. Orders
    awaiting payment, not yet started or awaiting a choice are cancelled and refunded first.
    What the books need stays, anonymised (the order rows' money and states, the wallet's
    entries), and the erasure itself is recorded without the reference. Asking again
    answers the same erasure (`repeated`: true)."""
    done = erasure.erase_customer(services.book, services.store, services.gateway, services.signer, caller.api_key_id, ref)
    return ErasureOut.model_validate(done, from_attributes=True)


@router.get(
    "/{ref}/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}, "description": "a ZIP"},
        404: {"description": "customer_not_found: this API key holds nothing under this reference"},
        422: {"description": "invalid_customer_ref"},
    },
)
def export_customer(ref: CustomerRef, caller: StorefrontDep, services: ServicesDep) -> StreamingResponse:
    """Everything held of the customer, as a ZIP: `customer.json` (plan, balance, wallet
    entries), their uploads, and per order `orders/<id>/order.json` (with its history and
    recipient), its photos and every file stored for it (the selfie document with the face's
    embedding, proofs, the print file)."""
    members = erasure.export_customer(services.book, services.store, caller.api_key_id, ref)
    spool = tempfile.SpooledTemporaryFile(max_size=bundle.SPOOL_IN_MEMORY_BYTES)
    stamp = utc_now().utctimetuple()[:6]
    try:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members:  # the first member is read here: nothing held is a 404 before any byte
                archive.writestr(zipfile.ZipInfo(name, date_time=stamp), data, zipfile.ZIP_DEFLATED)
    except BaseException:
        spool.close()
        raise
    size = spool.tell()
    spool.seek(0)
    headers = {
        "Content-Disposition": 'attachment; filename="customer-export.zip"',
        "Content-Length": str(size),
        "Cache-Control": "private, no-store",  # faces and addresses: no shared or lingering caches
    }
    return StreamingResponse(bundle.chunks(spool), media_type="application/zip", headers=headers)
