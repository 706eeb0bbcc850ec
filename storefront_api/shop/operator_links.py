"""Operators' view of the order pages: a link from each order to its runs in the Dagster UI,
shown only in a browser that opened a signed operator link (`photogen shop operator-link`:
`/shop/operator#o=<token>`, expiring), which becomes an HttpOnly cookie like a session."""

from __future__ import annotations

import time
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from storefront_api.api.deps import ServicesDep
from storefront_api.config import Settings
from storefront_api.shop.access import OPERATOR_COOKIE, guarded, read_operator_token, same_origin, set_cookie
from storefront_api.shop.render import page

router = APIRouter(prefix="/shop/operator", include_in_schema=False)


def dagster_links(settings: Settings, order_id: str) -> dict[str, str] | None:
    """The order's runs (the Runs page filtered by its partition tag, as the UI itself writes
    the filter: `q[]=tag:dagster/partition=<id>`) and its proofs asset's partition."""
    if not settings.dagster_ui_url:
        return None
    ui = settings.dagster_ui_url.rstrip("/")
    runs = urlencode({"q[]": f"tag:dagster/partition={order_id}"})
    return {"runs": f"{ui}/runs?{runs}", "asset": f"{ui}/assets/validated_proofs?partition={quote(order_id)}"}


@router.get("")
def operator_page(request: Request):
    return page(request, "start.html", action="/shop/operator", fragment="o")


@router.post("")
async def operator_on(request: Request, services: ServicesDep):
    same_origin(request)
    token = str((await request.form()).get("token") or "")
    expires = guarded(request, lambda: read_operator_token(services, token))
    response = RedirectResponse("/shop/operator/on", status_code=303)
    max_age = max(1, expires - int(time.time()))
    set_cookie(response, request, services, OPERATOR_COOKIE, token, "/shop/", max_age=max_age)
    return response


@router.get("/on")
def operator_is_on(request: Request):
    return page(request, "operator.html")
