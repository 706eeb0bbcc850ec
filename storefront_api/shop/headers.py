"""The headers every /shop/ response carries, its errors and static files included.

A Content-Security-Policy that runs only our own script and stylesheets (no inline script or
style: the pages have none), shows images from us, data:/blob: (the chosen photo's thumbnail)
and, where the artifact store is S3, its presigned links' origin; lets only the shop's own
origins (PHOTOGEN_CORS_ORIGINS) frame the pages; sends forms only to us. No Referer to another
site (a page's URL names its order; `same-origin`, not `no-referrer`, under which Chromium posts
our own forms with `Origin: null`), no MIME sniffing, and no caching of anything but the
static files."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront_api.config import Settings
from storefront_api.shop.theme import Brand

PREFIX = "/shop"
CACHEABLE = ("/shop/static/", "/shop/theme.css")  # the same for every customer


def store_origin(store) -> str | None:
    """The origin of the store's presigned links (S3), read off one presigned locally (boto3
    signs without a request); None for a store that has none (the local folder)."""
    presign = getattr(store, "presigned_url", None)
    url = presign("catalog/previews/origin-probe.png", 60) if presign else None
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings, store_origin: str | None) -> str:
    images = ["'self'", "data:", "blob:", *(o for o in (store_origin, Brand.of(settings).logo_origin) if o)]
    ancestors = " ".join(settings.cors_origins) or "'none'"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(dict.fromkeys(images))}",
            f"frame-ancestors {ancestors}",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
        )
    )


class ShopHeaders:
    """ASGI middleware: the headers above on every response under /shop/."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings, self.policy = app, settings, None

    def _policy(self, scope: Scope) -> str:
        if self.policy is None:  # the store is built in the app's lifespan: read it on the first request
            services = getattr(scope["app"].state, "services", None)
            self.policy = content_security_policy(self.settings, store_origin(services.store) if services else None)
        return self.policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        policy = self._policy(scope)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Content-Type-Options"] = "nosniff"
                if not path.startswith(CACHEABLE):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
