"""Pages from the templates in templates/ (Jinja2, autoescaped), in the customer's language,
with the shop's brand; and the page a ShopError becomes."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from storefront_api.shop.access import ShopError, optional_session
from storefront_api.shop.i18n import negotiate, translator
from storefront_api.shop.theme import Brand
from storefront_api.shop.words import refusal_words

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("storefront_api.shop", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,  # a misspelt name is an error in the tests, not a blank on the page
    trim_blocks=True,
    lstrip_blocks=True,
)


@functools.cache
def static_version() -> str:
    """Changes with our CSS and JS: their URLs' cache buster."""
    digest = hashlib.sha256()
    for name in ("shop.css", "shop.js"):
        digest.update(resources.files("storefront_api.shop").joinpath(f"static/{name}").read_bytes())
    return digest.hexdigest()[:10]


def language(request: Request) -> str:
    return negotiate(request.headers.get("accept-language"))


def return_url(request: Request) -> str | None:
    """Where 'back to the shop' leads: the session's own return URL, else the shop's."""
    services = request.app.state.services
    session = optional_session(request, services)
    return (session and session.return_url) or services.settings.shop_return_url


def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    lang = language(request)
    settings = request.app.state.services.settings
    html = ENV.get_template(template).render(
        lang=lang,
        t=translator(lang),
        shop=Brand.of(settings),
        version=static_version(),
        back_url=return_url(request),
        **context,
    )
    headers = {"Content-Language": lang, "Vary": "Accept-Language, Cookie"}
    return HTMLResponse(html, status_code=status, headers=headers)


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(request: Request, error: ShopError) -> Response:
    """A refusal as the asker reads it: our script's fetches get JSON, browsers a page."""
    message = refusal_words(translator(language(request)), error)
    if wants_json(request):
        return JSONResponse({"ok": False, "code": error.code, "reason": message}, status_code=error.status)
    return page(
        request, "error.html", status=error.status, code=error.code, message=message, order_id=error.params.get("order_id")
    )
