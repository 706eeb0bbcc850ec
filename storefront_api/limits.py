"""What a request may be: how large its URL (414), its headers (431) and its body (413) are,
what characters its URL holds, and how deep a JSON body nests.

Checked before any route reads the request. A body is refused on its Content-Length and
counted again as it streams in, so a client that sends more than it announced, or sends
it chunked, is stopped at the limit instead of being read to the end. The limits are
settings (config.py); the server's protocol (server.py) gives the same answers for a head
too large to even hold in memory.

No id and no query value has a control character (the core's rule,
`orders/recipients.control_character`): such a path names nothing (404, with the code its
route gives an unknown id, e.g. order_not_found), such a query is a 422 invalid_request,
before any route hands it to the database (PostgreSQL cannot even compare a NUL).

A body nested deeper than `MAX_JSON_DEPTH` is refused as it streams in, before any parser
recurses into it: 400 malformed_event on Stripe's webhook, 400 malformed_callback on a
print provider's callbacks, else 422 invalid_request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photogen_pipelines.orders.recipients import control_character
from storefront_api.config import Settings
from storefront_api.errors import error_body

# an upload's body is its file plus the multipart boundaries and part headers around it
MULTIPART_SLACK = 64 * 1024


# deeper than any body the API or its callers send (a Stripe event nests about 6 levels),
# far shallower than where Python's JSON parser runs out of recursion (about 1000)
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    details: dict = field(default_factory=dict)

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.code, self.message, **self.details), status_code=self.status)

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


# the shop's page takes the same photo as POST /v1/uploads (storefront_api/shop/)
SHOP_UPLOADS = "/shop/uploads"


def _upload_path(settings: Settings, path: str) -> bool:
    return path.rstrip("/") in (f"{settings.api_v1_prefix}/uploads", SHOP_UPLOADS)


def body_limit(settings: Settings, path: str) -> tuple[int, Refusal]:
    """The most bytes the body to `path` may have, and the answer to one over it."""
    if _upload_path(settings, path):
        # the same code as the upload route's own check of the file, which this one only bounds
        message = f"the file is over the {_size(settings.max_upload_bytes)} limit"
        return settings.max_upload_bytes + MULTIPART_SLACK, Refusal(413, "file_too_large", message)
    if path.rstrip("/") == f"{settings.api_v1_prefix}/webhooks/stripe":
        limit = settings.max_webhook_body_bytes
    else:
        limit = settings.max_json_body_bytes
    return limit, Refusal(413, "body_too_large", f"the request body is over the {_size(limit)} limit")


# what each route answers an id that names nothing with, by the path under the API's prefix
NOT_FOUND = {
    "orders": ("order_not_found", "order"),
    "customers": ("customer_not_found", "customer"),
    "pack-purchases": ("pack_purchase_not_found", "pack purchase"),
    "quotes": ("quote_not_found", "quote"),
    "webhook-endpoints": ("webhook_endpoint_not_found", "webhook endpoint"),
    "webhook-events": ("webhook_event_not_found", "webhook event"),
    "files": ("file_not_found", "file"),
    "fulfilment": ("unknown_provider", "print provider"),
}


def url_refusal(settings: Settings, scope: Scope) -> Refusal | None:
    """A control character in the path (404, with the code its route gives an unknown id: no
    id has one) or in a query parameter (422)."""
    path = scope["path"]
    if where := control_character(path):
        prefix = settings.api_v1_prefix.rstrip("/") + "/"
        section = path[len(prefix) :].split("/", 1)[0] if path.startswith(prefix) else ""
        code, what = NOT_FOUND.get(section, ("not_found", "resource"))
        return Refusal(404, code, f"no {what} has a control character in its path ({where})")
    for name, value in QueryParams(scope.get("query_string", b"")).multi_items():
        if where := control_character(name) or control_character(value):
            problem = f"must not contain control characters ({where})"
            details = {"problems": [{"field": f"query.{name}", "problem": problem}]}
            return Refusal(422, "invalid_request", f"query.{name}: {problem}", details)
    return None


def depth_refusal(settings: Settings, path: str) -> Refusal:
    """The answer to a body nested deeper than MAX_JSON_DEPTH, in the words of its route."""
    path, prefix = path.rstrip("/"), settings.api_v1_prefix
    nested = f"it nests deeper than {MAX_JSON_DEPTH} levels"
    if path == f"{prefix}/webhooks/stripe":
        return Refusal(400, "malformed_event", f"the Stripe event is malformed: {nested}")
    if path.startswith(f"{prefix}/fulfilment/") and path.endswith("/callbacks"):
        return Refusal(400, "malformed_callback", f"not a print provider's callback: {nested}")
    return Refusal(422, "invalid_request", f"body: {nested}", {"problems": [{"field": "", "problem": nested}]})


def _json_body(settings: Settings, path: str) -> bool:
    """Every body is read as JSON by its route, whatever its Content-Type says, except an
    upload's (a multipart file, whose bytes are a picture's)."""
    return not _upload_path(settings, path)


# what changes the depth of a JSON text: brackets, and the quotes and escapes that hide them
_DEPTH_TOKENS = re.compile(rb'["\\\[\]{}]')
_QUOTE, _BACKSLASH, _OPENING, _CLOSING = 0x22, 0x5C, (0x5B, 0x7B), (0x5D, 0x7D)


class JsonDepth:
    """How deep a JSON text nests, counted chunk by chunk as it streams in: the brackets
    outside strings. Not a parser (the route's parser says what else is wrong); only what
    would make a parser recurse."""

    def __init__(self, limit: int = MAX_JSON_DEPTH):
        self.limit, self.depth, self.in_string, self.escaped = limit, 0, False, False

    def feed(self, chunk: bytes) -> bool:
        """False once the text has nested deeper than the limit."""
        skip_to = 0
        if self.escaped and chunk:  # the chunk before ended with a backslash in a string
            skip_to, self.escaped = 1, False
        for match in _DEPTH_TOKENS.finditer(chunk, skip_to):
            at = match.start()
            if at < skip_to:
                continue
            token = chunk[at]
            if self.in_string:
                if token == _BACKSLASH:
                    skip_to, self.escaped = at + 2, at + 1 == len(chunk)
                elif token == _QUOTE:
                    self.in_string = False
            elif token == _QUOTE:
                self.in_string = True
            elif token in _OPENING:
                self.depth += 1
                if self.depth > self.limit:
                    return False
            elif token in _CLOSING:
                self.depth = max(self.depth - 1, 0)
        return True


class _Refused(Exception):
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
        refusal = head_refusal(self.settings, url_bytes, header_bytes(scope["headers"])) or url_refusal(self.settings, scope)
        if refusal is None and _content_length(scope) > limit:
            refusal = too_large
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        depth = JsonDepth() if _json_body(self.settings, scope["path"]) else None
        await self._checked_body(scope, receive, send, limit, too_large, depth)

    async def _checked_body(
        self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: Refusal, depth: JsonDepth | None
    ) -> None:
        received, refused, started = 0, None, False

        async def checked_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    refused = too_large
                elif depth is not None and not depth.feed(chunk):
                    refused = depth_refusal(self.settings, scope["path"])
                if refused is not None:
                    raise _Refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app's answer to a read that failed (FastAPI makes it a 400) gives way to the refusal
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, checked_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await refused(scope, receive, send)


def _content_length(scope: Scope) -> int:
    try:
        return int(Headers(scope=scope).get("content-length", "0"))
    except ValueError:  # the server refuses a malformed one before the app sees it
        return 0
