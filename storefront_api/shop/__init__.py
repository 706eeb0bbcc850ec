"""The customer's pages, served by the API under /shop/: the shop's backend opens a session
(POST /v1/shop-sessions), the customer uploads one to four photos, chooses a style, a product
and a tier, places the order, follows it live, chooses a proof, downloads the print; in their
language, with the shop's brand, our own small CSS and JS, and no third party at all.

Server-rendered (Jinja2). Tokens travel in URL fragments and HttpOnly cookies, never in a query
(access.py); every POST carries a CSRF token; every response the headers in headers.py. What the
pages do is done by the API's own route functions and the core (reuse.py).

The contract the browser tests rely on (ids and names in templates/):
/shop/start#s=<token> → /shop/upload (`#photos`, `#face-verdict`, `#to-style`) → /shop/style
(`input[name=style]`, `#product`, `input[name=tier]`, `#quote`, `#place-order`) →
/shop/orders/<id> (`#order-state[data-state]`, `#progress li[data-stage][data-status]`,
`#payment[data-payment-intent]`, `#proofs figure[data-variant]` with `a.detail` and
`form.approve`, `a#download-print`, `a#download-bundle`, `#shipping`, `a#tracking`,
`form#cancel`, `a#dagster-run`)."""

from __future__ import annotations

from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from storefront_api.api.deps import limit_request
from storefront_api.config import Settings
from storefront_api.shop import operator_links, order_pages, pages
from storefront_api.shop.access import ShopError
from storefront_api.shop.headers import ShopHeaders
from storefront_api.shop.render import error_response


def install_shop(app: FastAPI, settings: Settings) -> None:
    """The pages, their static files, their headers and their error pages."""
    limited = [Depends(limit_request)]  # no credentials the API knows: counted per client address
    for module in (pages, order_pages, operator_links):
        app.include_router(module.router, dependencies=limited)
    static = resources.files("storefront_api.shop").joinpath("static")
    app.mount("/shop/static", StaticFiles(directory=str(static)), name="shop-static")
    app.add_middleware(ShopHeaders, settings=settings)

    @app.exception_handler(ShopError)
    async def shop_error(request: Request, error: ShopError):
        return error_response(request, error)
