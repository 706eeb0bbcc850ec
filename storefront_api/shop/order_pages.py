"""An order's page and what it does: progress (live), proofs to choose from and their detail
at print scale, the approval, the downloads, shipping, cancelling; opened with the order's
cookie (set when it was placed, or from the shop's email link `#t=<order token>`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from photogen_pipelines.orders import deliverables
from photogen_pipelines.orders.deliverables import Deliverable, Purpose
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, Validation
from storefront_api.api.deps import ServicesDep
from storefront_api.api.views import order_view
from storefront_api.shop import reuse
from storefront_api.shop.access import (
    CSRF_FIELD,
    ORDER_COOKIE,
    ShopError,
    check_csrf,
    csrf_token,
    guarded,
    is_operator,
    order_token_valid,
    same_origin,
    set_order_cookie,
    viewer_order,
)
from storefront_api.shop.detail import detail_jpeg
from storefront_api.shop.i18n import translator
from storefront_api.shop.operator_links import dagster_links
from storefront_api.shop.progress import events, status_of
from storefront_api.shop.render import language, page, return_url

router = APIRouter(prefix="/shop/orders/{order_id}", include_in_schema=False)
CANCELLABLE = frozenset({OrderState.AWAITING_PAYMENT, OrderState.PAID, OrderState.PROOFS_READY})


def _open(request: Request, services, order_id: str):
    """The viewer's order; a 404 page (whose script takes an email link's `#t=`) otherwise."""
    try:
        return viewer_order(request, services, order_id)
    except ShopError as missing:
        missing.params["order_id"] = order_id
        raise


@router.get("")
def order_page(request: Request, order_id: str, services: ServicesDep):
    order = _open(request, services, order_id)
    view = order_view(services, order, reuse.LINK_BASE)
    t = translator(language(request))
    ready = order.state in deliverables.SERVED_IN[Purpose.PRINT]
    awaiting = order.state == OrderState.AWAITING_PAYMENT and order.payments == "stripe"
    return page(
        request,
        "order.html",
        order=order,
        view=view,
        progress=status_of(order, t),
        proofs=[p for p in view.proofs if p.passed and p.url],
        choosing=order.state == OrderState.PROOFS_READY,
        csrf=csrf_token(services, request.cookies[ORDER_COOKIE]),
        print_url=reuse.print_link(services, order) if ready else None,
        awaiting_payment=awaiting,
        payment_url=_with_order(return_url(request), order.id) if awaiting else None,
        shipping=None if order.terminal else _shipping(view, ready),
        cancellable=order.state in CANCELLABLE,
        operator=dagster_links(services.settings, order.id) if is_operator(request, services) else None,
    )


def _shipping(view, ready: bool) -> dict | None:
    """Where the print is, for an order that ships (a recipient): waiting for its print file,
    then pending until the provider has it, then the provider's own status."""
    if view.shipping_method is None:
        return None
    if not ready:
        return {"status": "waiting", "carrier": None, "tracking_url": None}
    record = view.fulfilment
    if record is None:
        return {"status": "pending", "carrier": None, "tracking_url": None}
    return {"status": record.status.value, "carrier": record.carrier, "tracking_url": record.tracking_url}


def _with_order(url: str | None, order_id: str) -> str | None:
    """The shop's return URL naming the order its checkout is to take payment for."""
    if not url:
        return None
    return f"{url}{'&' if '?' in url else '?'}photogen_order={order_id}"


@router.post("/token")
async def open_order(request: Request, order_id: str, services: ServicesDep):
    """An email link's `#t=<order token>`, posted by the page's script: the order's cookie."""
    same_origin(request)
    token = str((await request.form()).get("token") or "")

    def check() -> None:
        if not order_token_valid(services, order_id, token):
            raise ShopError(404, "order_not_found", order_id=order_id)

    guarded(request, check)
    response = RedirectResponse(f"/shop/orders/{order_id}", status_code=303)
    set_order_cookie(response, request, services, order_id)
    return response


@router.get("/status.json")
def status_json(request: Request, order_id: str, services: ServicesDep):
    order = _open(request, services, order_id)
    return status_of(order, translator(language(request)))


@router.get("/events")
def order_events(request: Request, order_id: str, services: ServicesDep):
    _open(request, services, order_id)
    t = translator(language(request))
    stream = events(request, lambda: services.book.get(order_id), t)
    # no buffering by a proxy in front (nginx honours this): each event as it happens
    return StreamingResponse(stream, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


async def _post(request: Request, services, order_id: str):
    order = _open(request, services, order_id)
    form = await request.form(max_files=0, max_fields=4)
    check_csrf(request, services, request.cookies[ORDER_COOKIE], str(form.get(CSRF_FIELD) or ""))
    return order, form


@router.post("/approve")
async def approve(request: Request, order_id: str, services: ServicesDep):
    order, form = await _post(request, services, order_id)
    await run_in_threadpool(reuse.approve, services, order, str(form.get("proof") or ""))
    return RedirectResponse(f"/shop/orders/{order_id}", status_code=303)


@router.post("/cancel")
async def cancel(request: Request, order_id: str, services: ServicesDep):
    order, _ = await _post(request, services, order_id)
    await run_in_threadpool(reuse.cancel, services, order)
    return RedirectResponse(f"/shop/orders/{order_id}", status_code=303)


@router.get("/bundle.zip")
def bundle(request: Request, order_id: str, services: ServicesDep):
    return reuse.bundle(services, _open(request, services, order_id))


def _shown_proof(services, order, proof: str) -> int:
    """A proof that passed the gate, while the order shows its proofs; else 404."""
    validation = OrderKeys(order.id).load_if_present(services.store, Validation)
    variant = int(proof) if proof.isdigit() and len(proof) <= 2 else -1
    if validation is None or variant not in validation.proofs:
        raise ShopError(404, "proof_not_found")
    if not Deliverable(order.id, Purpose.PREVIEW, variant).served_to(order):
        raise ShopError(410, "file_withdrawn")
    return variant


@router.get("/proofs/{proof}/detail")
def detail_page(request: Request, order_id: str, proof: str, services: ServicesDep):
    order = _open(request, services, order_id)
    variant = _shown_proof(services, order, proof)
    product = services.products.get(order.product_id)
    return page(request, "detail.html", order=order, variant=variant, product=product)


@router.get("/proofs/{proof}/detail.jpg")
def detail_image(request: Request, order_id: str, proof: str, services: ServicesDep):
    order = _open(request, services, order_id)
    variant = _shown_proof(services, order, proof)
    # a proof's pixels handed out: recorded as /v1/files records it (the cancellation policy)
    if order.proofs_downloaded_at is None:
        order = deliverables.record_proofs_download(services.book, order.id, services.products.cancellation)
        variant = _shown_proof(services, order, proof)  # a cancel that came first leaves nothing to show
    data = detail_jpeg(services.store, services.faces, services.products, order, variant)
    return Response(data, media_type="image/jpeg")
