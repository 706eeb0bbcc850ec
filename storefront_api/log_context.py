"""Every log line of a request names it: its request id (RequestIds's), and the order it is
about, from the path (`/v1/orders/ord_…`, the shop's order pages, file links) or, for an
order just placed, from the answer's body, bound before the answer starts, so uvicorn's
access line carries it too (photogen_pipelines/logs.py)."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photogen_pipelines.logs import log_context
from storefront_api.errors import request_id

ORDER_ID = re.compile(r"\b(ord_[0-9a-f]{16})\b")
LARGEST_PEEKED_BODY = 64 * 1024  # an order's JSON; a picture or a ZIP is never read for its id


class LogContext:
    """ASGI middleware inside RequestIds: binds `request_id`, and `order_id` where there is one."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        in_path = ORDER_ID.search(scope.get("path", ""))
        with log_context(request_id=request_id(scope), order_id=in_path[1] if in_path else None):
            if in_path or scope.get("method") != "POST":
                await self.app(scope, receive, send)
                return
            await self.app(scope, receive, _order_from_body(send))


def _order_from_body(send: Send) -> Send:
    """`send`, holding a JSON answer's start until its body shows the order it made (a
    placed order's `id`), then binding that order for the access line and what follows."""
    held: list[Message] = []

    async def send_with_order(message: Message) -> None:
        if message["type"] == "http.response.start" and _json(message):
            held.append(message)
            return
        if held and message["type"] == "http.response.body":
            body = message.get("body", b"")
            found = _placed_order(body) if not message.get("more_body") and len(body) <= LARGEST_PEEKED_BODY else None
            with log_context(order_id=found):
                await send(held.pop())
                await send(message)
            return
        await send(message)

    return send_with_order


def _json(start: Message) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"application/json") for name, value in start["headers"])


def _placed_order(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    found = answer.get("id") if isinstance(answer, dict) else None
    return found if isinstance(found, str) and ORDER_ID.fullmatch(found) else None
