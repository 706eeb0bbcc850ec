"""Orders: placed by the storefront, read and approved by the storefront or the customer."""

from typing import Annotated

from fastapi import APIRouter, Body, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from photogen_pipelines import tiers
from photogen_pipelines.errors import IllegalTransition, ModelError
from photogen_pipelines.orders import deliverables
from photogen_pipelines.orders.states import PRINT_FILE_MADE, OrderState
from photogen_pipelines.orders.uploads import get_upload
from photogen_pipelines.storage.artifacts import Manifest, OrderKeys, Validation
from photogen_pipelines.workflows import customer_accounts, previews
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest, Terms, cancel_order, place_order
from storefront_api.api import bundle
from storefront_api.api.deps import BaseUrlDep, HistoryPageDep, OrderDep, ServicesDep, StorefrontDep, authenticate
from storefront_api.api.views import order_view
from storefront_api.errors import ApiError
from storefront_api.examples import ORDER_IN_EXAMPLES
from storefront_api.schemas import ApproveIn, CancelIn, CustomerOut, OrderIn, OrderOut, PrintFileOut

router = APIRouter(prefix="/orders", tags=["orders"])

IDEMPOTENCY_KEY_DESCRIPTION = "a retry with the same key and body returns the same order, never a second one"
IdempotencyKey = Annotated[
    str | None,
    # optional to FastAPI, so that a request without it is the API's own 400
    # idempotency_key_required rather than a 422; documented as required (IDEMPOTENCY_KEY_DOC)
    Header(alias="Idempotency-Key", max_length=200, include_in_schema=False),
]
IDEMPOTENCY_KEY_DOC = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": IDEMPOTENCY_KEY_DESCRIPTION + " (e.g. a UUID per checkout); without it: 400 idempotency_key_required",
    "schema": {"type": "string", "maxLength": 200, "title": "Idempotency-Key"},
    "example": "3f2b8c1e-5d47-4a8e-9c1b-2e7f0a6d9b34",
}


def _check_tier(services, tier_id: str | None) -> None:
    """A tier this shop's engines cannot honour (its engine, its upscale model) is refused
    before anyone pays for it."""
    tier = services.products.tier(tier_id)  # unknown_tier: a 422
    # the stylizer backend this shop runs, read from its settings alone: the API process
    # need not hold the engine's secrets to answer this
    running = "service" if services.settings.engine_url else services.settings.engine
    try:
        tiers.check_tier(tier, running)
    except ModelError as exc:
        raise ApiError(422, "tier_unavailable", f"tier {tier.id}: {exc}; this shop runs {running}") from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_DOC]},
    responses={
        200: {"model": OrderOut, "description": "a replay: the order this Idempotency-Key placed with the same body"},
        400: {"description": "idempotency_key_required: no Idempotency-Key header"},
        402: {"description": "insufficient_credits (details: balance, needed) or plan_excludes_tier: paying in credits"},
        409: {"description": "idempotency_key_reused: the Idempotency-Key placed an order with another body"},
        422: {
            "description": "upload_not_found, upload_expired; photos_not_same_person: a photo of upload_ids shows "
            "someone else (details: upload_id, position); invalid_request: both or neither of upload_id and "
            "upload_ids, more than 4 photos, a photo named twice"
        },
        429: {"description": "free_previews_exhausted: the customer's free previews of today are spent (details.resets_at)"},
    },
)
def create_order(
    body: Annotated[OrderIn, Body(openapi_examples=ORDER_IN_EXAMPLES)],
    base_url: BaseUrlDep,
    response: Response,
    caller: StorefrontDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Place an order for an uploaded selfie, or for 1-4 photos of the one customer
    (`upload_ids`: each photo must show the same person as the others). With payments on, the response carries the
    Stripe PaymentIntent's client secret; with payments off the order is paid at once.
    With a recipient, the print goes to the shop's print provider once ready."""
    if not idempotency_key:
        raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header (e.g. a UUID per checkout)")
    uploads = [get_upload(services.database, upload_id, caller.api_key_id) for upload_id in body.photo_ids]
    for upload in uploads:
        if not services.store.exists(upload.storage_key):  # retired by the retention policy
            raise ApiError(422, "upload_expired", f"upload {upload.id} has expired; upload the selfie again")
    asked = OrderRequest(
        style_id=body.style_id, product_id=body.product_id, variants=body.variants, approval=body.approval, tier=body.tier
    )
    _check_tier(services, body.tier)
    provider = services.settings.print_provider
    if body.recipient is not None and provider != "none" and provider not in services.products.get(body.product_id).fulfilment:
        raise ApiError(422, "product_not_shippable", f"product {body.product_id} cannot be shipped by this shop's print provider")
    terms = Terms(payment=body.payment, customer_ref=body.customer_ref, quote_id=body.quote_id, preview=body.preview)
    primary, *photos = uploads
    request = PlacementRequest(
        asked, primary, caller.api_key_id, idempotency_key, body.recipient, body.shipping_method, terms, tuple(photos)
    )
    placed = place_order(
        services.book, services.styles, services.products, services.gateway, request, store=services.store, faces=services.faces
    )
    if not placed.created:
        response.status_code = status.HTTP_200_OK
    return order_view(
        services,
        placed.order,
        base_url,
        client_secret=placed.client_secret,
        customer_token=services.signer.order_token(placed.order.id),
    )


@router.get("/{order_id}", response_model=OrderOut)
def read_order(order: OrderDep, services: ServicesDep, base_url: BaseUrlDep, request: Request) -> OrderOut:
    """Status, stage progress, proofs with signed URLs and identity scores, and why an
    order was rejected or failed. To the shop's own key it also gives what it needs for an
    order placed on the customer's pages (/shop/): the customer's token, for the order
    page's link in an email, and while the order awaits payment its PaymentIntent's client
    secret, for the shop's checkout."""
    caller = authenticate(request, services).caller
    if caller is None or caller.api_key_id is None:  # the customer's own token: no more than before
        return order_view(services, order, base_url)
    secret = None
    if order.state == OrderState.AWAITING_PAYMENT and order.payment_intent_id and services.gateway is not None:
        secret = services.gateway.client_secret(order.payment_intent_id)
    return order_view(services, order, base_url, client_secret=secret, customer_token=services.signer.order_token(order.id))


@router.get(
    "/{order_id}/customer",
    response_model=CustomerOut,
    responses={404: {"description": "order_not_found, or customer_not_found: the order was not placed for a customer"}},
)
def order_customer(order: OrderDep, services: ServicesDep, page: HistoryPageDep) -> CustomerOut:
    """The customer the order was placed for (its `customer_ref`), as GET /v1/customers/{ref}
    shows them: readable with the order's own customer token, which sees no other customer."""
    if order.customer_ref is None:
        raise ApiError(404, "customer_not_found", f"order {order.id} was not placed for a customer")
    account = customer_accounts.account(services.database, order.api_key_id, order.customer_ref, page)
    return CustomerOut.model_validate(account, from_attributes=True)


@router.post(
    "/{order_id}/approve",
    response_model=OrderOut,
    responses={
        402: {
            "description": "a preview not paid yet: payment_required (pay its PaymentIntent first), or "
            "insufficient_credits (a preview paid in credits is charged as it is approved)"
        },
        409: {"description": "not_awaiting_approval: the order is not proofs_ready (any more)"},
    },
)
def approve(order: OrderDep, body: ApproveIn, services: ServicesDep, base_url: BaseUrlDep) -> OrderOut:
    """Approve one proof; only while the order is `proofs_ready`. The print run follows. A
    preview is approved once paid: by card, pay its PaymentIntent first; in credits, they
    are charged with this approval, once."""
    if order.state != OrderState.PROOFS_READY:
        raise ApiError(
            409, "not_awaiting_approval", f"order {order.id} is {order.state.value}; proofs are approved in proofs_ready"
        )
    validation = OrderKeys(order.id).load(services.store, Validation)
    if body.proof not in validation.proofs:
        passed = ", ".join(str(v) for v in sorted(validation.proofs)) or "none"
        raise ApiError(422, "unknown_proof", f"proof {body.proof} did not pass the identity gate (passed: {passed})")
    try:
        updated = previews.approve(
            services.book, services.store, services.products, order.id, body.proof, reason=f"proof {body.proof} approved"
        )
    except IllegalTransition:  # a concurrent approve or cancel came first: the same answer as if it had come before
        now = services.book.get(order.id).state.value
        raise ApiError(409, "not_awaiting_approval", f"order {order.id} is {now}; proofs are approved in proofs_ready") from None
    return order_view(services, updated, base_url)


@router.post(
    "/{order_id}/cancel",
    response_model=OrderOut,
    responses={409: {"description": "cannot_cancel: the order is past the point where it can be cancelled"}},
)
def cancel(order: OrderDep, services: ServicesDep, base_url: BaseUrlDep, body: CancelIn | None = None) -> OrderOut:
    """Cancel an order that is awaiting payment, paid but not started, or awaiting
    approval; what was paid is refunded once, less the shop's cancellation fee
    (`payment.cancellation_fee_cents`) once a proof was downloaded. Its file links die."""
    try:
        updated = cancel_order(services.book, services.gateway, order.id, (body and body.reason) or "cancelled by request")
    except IllegalTransition:
        raise ApiError(409, "cannot_cancel", f"order {order.id} is {order.state.value} and can no longer be cancelled") from None
    return order_view(services, updated, base_url)


@router.get(
    "/{order_id}/print-file",
    response_model=PrintFileOut,
    responses={409: {"description": "print_file_not_ready: the print file comes at ready"}},
)
def print_file(order: OrderDep, services: ServicesDep, base_url: BaseUrlDep) -> PrintFileOut:
    """A signed URL to the print-ready file, once the order is `ready`."""
    keys = OrderKeys(order.id)
    if order.state not in PRINT_FILE_MADE or not services.store.exists(keys.manifest):
        raise ApiError(409, "print_file_not_ready", f"order {order.id} is {order.state.value}; the print file comes at ready")
    manifest = keys.load(services.store, Manifest)
    ttl = services.settings.file_url_ttl_seconds
    return PrintFileOut(
        order_id=order.id,
        url=services.link(base_url, manifest.file),
        expires_in=ttl,
        format=manifest.format,
        bytes=manifest.bytes,
        pixel_size=manifest.pixel_size,
        effective_dpi=manifest.effective_dpi,
    )


@router.get(
    "/{order_id}/bundle.zip",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}, "description": "a ZIP"},
        409: {"description": "nothing_to_bundle: no proofs to show yet (or the order was cancelled or ended without a print)"},
    },
)
def bundle_zip(order: OrderDep, services: ServicesDep) -> StreamingResponse:
    """The order's files in one ZIP, for the customer to keep: before approval the
    watermarked previews of the proofs that passed the identity gate
    (`previews/proof_<n>.jpg`, from `proofs_ready`); once approved the approved proof itself
    (`proofs/proof_<n>.png`), then `print_file.<ext>` and `manifest.json` (from `ready`); and
    `order.json` (ids, state, style, product, approved proof; no personal data). The first
    download of a proof is recorded on the order: a cancel after it keeps the shop's
    cancellation fee. A cancelled, failed or refunded order has nothing to bundle."""
    files = bundle.members(services.store, order, services.products.previews)
    if files and order.proofs_downloaded_at is None and bundle.hands_out_proofs(files):
        # recorded under the order's lock first, then bundled as the order allows now (a
        # cancel that came first leaves nothing to bundle)
        order = deliverables.record_proofs_download(services.book, order.id, services.products.cancellation)
        files = bundle.members(services.store, order, services.products.previews)
    if not files:
        raise ApiError(
            409,
            "nothing_to_bundle",
            f"order {order.id} is {order.state.value}; its bundle has files from proofs_ready on, none once it is cancelled",
        )
    spool, size = bundle.write_zip(services.store, order, files)
    headers = {
        "Content-Disposition": f'attachment; filename="{order.id}.zip"',
        "Content-Length": str(size),
        "Cache-Control": "private, no-store",  # the customer's face: no shared or lingering caches
    }
    return StreamingResponse(bundle.chunks(spool), media_type="application/zip", headers=headers)
