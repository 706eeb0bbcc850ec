"""The pages before an order: opening the session from the shop's link, the photos, the style,
and placing the order (contract: docs of storefront_api/shop/__init__.py)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from photogen_pipelines.generation.previews import latest_preview
from photogen_pipelines.orders.recipients import ShippingMethod
from storefront_api.api.deps import ServicesDep
from storefront_api.shop import reuse
from storefront_api.shop.access import (
    CSRF_FIELD,
    SESSION_COOKIE,
    ShopError,
    check_csrf,
    csrf_token,
    current_session,
    guarded,
    optional_session,
    read_session,
    same_origin,
    set_cookie,
    set_order_cookie,
)
from storefront_api.shop.i18n import translator
from storefront_api.shop.render import language, page
from storefront_api.shop.theme import Brand
from storefront_api.shop.words import quote_words, refusal_words

router = APIRouter(prefix="/shop", include_in_schema=False)
PLACEHOLDER = "/shop/static/placeholder.svg"


@router.get("/")
def home(request: Request, services: ServicesDep):
    """The pages' front door: a customer with a session goes on to their photos; anyone else
    sees how to come in (from the shop's link, which also works here as /shop/#s=…)."""
    if optional_session(request, services) is not None:
        return RedirectResponse("/shop/upload", status_code=303)
    return start(request)


@router.get("/start")
def start(request: Request):
    """The page the shop's link opens: its script posts the fragment's token to /shop/session."""
    return page(request, "start.html", action="/shop/session", fragment="s")


@router.post("/session")
async def open_session(request: Request, services: ServicesDep):
    same_origin(request)
    token = str((await request.form()).get("token") or "")
    session = guarded(request, lambda: read_session(services, token))
    response = RedirectResponse("/shop/upload", status_code=303)
    max_age = services.settings.shop_session_ttl_seconds
    set_cookie(response, request, services, SESSION_COOKIE, session.token, "/shop/", max_age=max_age)
    return response


@router.get("/upload")
def upload_page(request: Request, services: ServicesDep):
    session = current_session(request, services)
    return page(request, "upload.html", csrf=csrf_token(services, session.token), max_photos=reuse.MAX_PHOTOS)


@router.post("/uploads")
async def take_photo(request: Request, services: ServicesDep):
    """One photo, checked at once: JSON {ok, upload_id, reason} for the upload page's script."""
    session = current_session(request, services)
    form = await request.form(max_files=1, max_fields=4)
    check_csrf(request, services, session.token, str(form.get(CSRF_FIELD) or ""))
    photo = form.get("photo")
    if not isinstance(photo, UploadFile):
        raise ShopError(422, "empty_file")
    t = translator(language(request))
    try:
        consent = str(form.get("consent") or "") == "true"
        upload_id = await run_in_threadpool(reuse.upload, services, session, photo, consent)
    except ShopError as refused:
        reason = refusal_words(t, refused)
        return JSONResponse({"ok": False, "upload_id": None, "code": refused.code, "reason": reason}, status_code=refused.status)
    return JSONResponse({"ok": True, "upload_id": upload_id, "code": None, "reason": t("upload.accepted")})


def _styles(services) -> list[dict]:
    shown = []
    for style in services.styles.styles:
        record = latest_preview(services.store, style.id)  # as GET /v1/styles links it
        preview = services.link(reuse.LINK_BASE, record.key) if record is not None else None
        shown.append({"id": style.id, "name": style.name, "preview_url": preview or PLACEHOLDER})
    return shown


@router.get("/style")
def style_page(request: Request, services: ServicesDep, upload: Annotated[list[str] | None, Query()] = None):
    session = current_session(request, services)
    uploads = reuse.upload_ids(upload or [])
    catalog = services.products
    product, tier = catalog.products[0].id, catalog.default_tier
    t = translator(language(request))
    try:
        first = quote_words(t, reuse.quote(services, session, product, tier))
    except ShopError as refused:
        first = {"ok": False, "reason": refusal_words(t, refused)}
    return page(
        request,
        "style.html",
        csrf=csrf_token(services, session.token),
        nonce=secrets.token_urlsafe(16),
        uploads=uploads,
        styles=_styles(services),
        products=catalog.products,
        tiers=catalog.tiers,
        default_tier=tier,
        quote=first,
        payments_on=services.gateway is not None,
        ships=ships(services),
        shipping_methods=[method.value for method in ShippingMethod],
    )


def ships(services) -> bool:
    """The shop sends prints through a provider: the page asks where to (else the shop ships)."""
    return services.settings.print_provider != "none"


SHIPPING_FIELDS = ("name", "email", "line1", "line2", "city", "state", "postal_code", "country_code", "shipping_method")


@router.get("/quote")
def quote(
    request: Request,
    services: ServicesDep,
    product: Annotated[str, Query(max_length=64)] = "",
    tier: Annotated[str, Query(max_length=32)] = "",
):
    """The price and the wait for a product and tier (quotes.make_quote), for the style page."""
    session = current_session(request, services)
    t = translator(language(request))
    try:
        return quote_words(t, reuse.quote(services, session, product, tier))
    except ShopError as refused:
        return JSONResponse({"ok": False, "reason": refusal_words(t, refused)}, status_code=refused.status)


@router.post("/orders")
async def place_order(request: Request, services: ServicesDep):
    session = current_session(request, services)
    form = await request.form(max_files=0, max_fields=32)
    check_csrf(request, services, session.token, str(form.get(CSRF_FIELD) or ""))
    uploads = reuse.upload_ids([str(value) for value in form.getlist("upload")])
    fields = {name: str(form.get(name) or "")[:64] for name in ("style", "product", "tier", "nonce", "quote_id")}
    if not fields["nonce"]:
        raise ShopError(422, "invalid_request")
    shipping = {name: str(form.get(name) or "").strip()[:254] for name in SHIPPING_FIELDS} if ships(services) else None
    order = await run_in_threadpool(
        reuse.place,
        services,
        session,
        uploads,
        fields["style"],
        fields["product"],
        fields["tier"],
        fields["nonce"],
        shipping,
        fields["quote_id"] or None,
    )
    response = RedirectResponse(f"/shop/orders/{order.id}", status_code=303)
    set_order_cookie(response, request, services, order.id)
    return response


@router.get("/theme.css")
def theme(services: ServicesDep):
    return Response(
        Brand.of(services.settings).stylesheet(), media_type="text/css", headers={"Cache-Control": "public, max-age=300"}
    )
