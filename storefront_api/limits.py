"""How large a request may be: its URL (414), its headers (431) and its body (413).

Checked before any route reads the request. A body is refused on its Content-Length and
counted again as it streams in, so a client that sends more than it announced, or sends
it chunked, is stopped at the limit instead of being read to the end. The limits are
settings (config.py); the server's protocol (server.py) gives the same answers for a head
too large to even hold in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storefront_api.config import Settings
from storefront_api.errors import error_body

# an upload's body is its file plus the multipart boundaries and part headers around it
MULTIPART_SLACK = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.code, self.message), status_code=self.status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.response()(scope, receive, send)


def _size(limit: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if limit % scale == 0:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


def uri_too_long(settings: Settings) -> Refusal:
    return Refusal(414, "uri_too_long", f"the URL is over the {_size(settings.max_url_bytes)} limit")


def headers_too_large(settings: Settings) -> Refusal:
    return Refusal(431, "headers_too_large", f"the request headers are over the {_size(settings.max_header_bytes)} limit")


def header_bytes(headers: list[tuple[bytes, bytes]]) -> int:
    """The header lines as sent: `name: value` and the line break."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


def head_refusal(settings: Settings, url_bytes: int, headers_bytes: int) -> Refusal | None:
    if url_bytes > settings.max_url_bytes:
        return uri_too_long(settings)
    if headers_bytes > settings.max_header_bytes:
        return headers_too_large(settings)
    return None


def body_limit(settings: Settings, path: str) -> tuple[int, Refusal]:
    """The most bytes the body to `path` may have, and the answer to one over it."""
    if path.rstrip("/") == f"{settings.api_v1_prefix}/uploads":
        # the same code as the upload route's own check of the file, which this one only bounds
        message = f"the file is over the {_size(settings.max_upload_bytes)} limit"
        return settings.max_upload_bytes + MULTIPART_SLACK, Refusal(413, "file_too_large", message)
    if path.rstrip("/") == f"{settings.api_v1_prefix}/webhooks/stripe":
        limit = settings.max_webhook_body_bytes
    else:
        limit = settings.max_json_body_bytes
    return limit, Refusal(413, "body_too_large", f"the request body is over the {_size(limit)} limit")


class _BodyTooLarge(Exception):
    """Raised into whatever reads the body, to stop it reading."""


class RequestLimits:
    """ASGI middleware refusing what is over the limits, with the API's JSON errors."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url_bytes = len(raw_path) + (len(query) + 1 if query else 0)
        limit, too_large = body_limit(self.settings, scope["path"])
        refusal = head_refusal(self.settings, url_bytes, header_bytes(scope["headers"]))
        if refusal is None and _content_length(scope) > limit:
            refusal = too_large
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._counting_body(scope, receive, send, limit, too_large)

    async def _counting_body(self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: Refusal) -> None:
        received, over, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a read that failed (FastAPI makes it a 400) gives way to the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await too_large(scope, receive, send)


def _content_length(scope: Scope) -> int:
    try:
        return int(Headers(scope=scope).get("content-length", "0"))
    except ValueError:  # the server refuses a malformed one before the app sees it
        return 0
