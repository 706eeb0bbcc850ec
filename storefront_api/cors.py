"""The customer's browser: which storefront pages may call the API (CORS, `PHOTOGEN_CORS_ORIGINS`).

A page on an allowed origin may read, approve and cancel its order with the customer's order
token; an API key never works from a browser, whatever the origin (api/deps.py). Without
allowed origins nothing here is installed and no response carries a CORS header.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Send

from storefront_api.config import Settings
from storefront_api.errors import error_body

METHODS = ("GET", "POST")
# the order token goes in Authorization; never cookies (no credentials mode)
HEADERS = ("Authorization", "Content-Type", "Idempotency-Key")
# what a page may read of an answer besides the safelisted headers: when to retry a 429,
# and the bundle's file name
EXPOSED = ("Retry-After", "Content-Disposition")
PREFLIGHT_CACHE_SECONDS = 600


class StorefrontCORS(CORSMiddleware):
    """Starlette's CORS, except that an origin it does not allow gets no CORS header at
    all (Starlette still sends it the allowed methods and exposed headers) and a refused
    preflight is the API's JSON error."""

    def __init__(self, app, settings: Settings):
        super().__init__(
            app,
            allow_origins=list(settings.cors_origins),
            allow_methods=METHODS,
            allow_headers=HEADERS,
            allow_credentials=False,
            expose_headers=EXPOSED,
            max_age=PREFLIGHT_CACHE_SECONDS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        origin = request_headers["origin"]
        reasons = []
        if not self.is_allowed_origin(origin):
            reasons.append(f"{origin} is not one of the shop's allowed origins")
        if request_headers["access-control-request-method"] not in self.allow_methods:
            reasons.append(f"only {' and '.join(METHODS)} are allowed")
        asked = {h.strip().lower() for h in request_headers.get("access-control-request-headers", "").split(",") if h.strip()}
        if asked - set(self.allow_headers):
            reasons.append(f"only the {', '.join(HEADERS)} headers are allowed")
        if "access-control-request-private-network" in request_headers:
            reasons.append("private network access is not allowed")
        body = error_body("cors_refused", "a browser may not make this request: " + "; ".join(reasons))
        headers = {"Vary": self.preflight_headers["Vary"]}
        return JSONResponse(body, status_code=400, headers=headers)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if message["type"] == "http.response.start" and origin is not None and not self.is_allowed_origin(origin):
            message.setdefault("headers", [])
            MutableHeaders(scope=message).add_vary_header("Origin")
            await send(message)
            return
        await super().send(message, send, request_headers)


def allow_storefront_pages(app, settings: Settings) -> None:
    """Add CORS for the shop's own pages, if it named any."""
    if settings.cors_origins:
        app.add_middleware(StorefrontCORS, settings=settings)
