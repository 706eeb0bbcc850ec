"""An order's progress as its page follows it: the state, each stage, whether proofs are
there; as JSON (status.json, the fallback polled every 3 s) and as Server-Sent Events.

The stream reads the order from the database once a second and sends an event only when what
the page shows changed, a comment every 15 s so proxies keep the connection, and ends when the
order settles (an `end` event: the page stops listening) or after five minutes (the browser
reconnects by itself, `retry`), so an open tab never holds a connection for ever."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Request

from photogen_pipelines.orders.states import PROOFS_VISIBLE, SETTLED, Order
from storefront_api.api.views import _stages

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
STREAM_SECONDS = 300.0
RETRY_MS = 3000


def status_of(order: Order, t: Callable[..., str]) -> dict:
    """What the order page shows of the order, in the customer's words."""
    return {
        "state": order.state.value,
        "state_text": t(f"state.{order.state.value}"),
        "stages": [
            {"name": s.name, "status": s.status, "text": t(f"stage.{s.name}"), "status_text": t(f"status.{s.status}")}
            for s in _stages(order)
        ],
        "proofs_ready": order.state in PROOFS_VISIBLE,
        "settled": order.state in SETTLED,
    }


def _event(data: dict, name: str | None = None) -> str:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def events(request: Request, read: Callable[[], Order], t: Callable[..., str]) -> AsyncIterator[str]:
    """The stream: `read()` is the order as the database has it now (run off the event loop)."""
    yield f"retry: {RETRY_MS}\n\n"
    started = last_sent = time.monotonic()
    shown = None
    while True:
        status = status_of(await asyncio.to_thread(read), t)
        if status != shown:
            shown, last_sent = status, time.monotonic()
            yield _event(status)
        if status["settled"]:
            yield _event({}, "end")
            return
        if time.monotonic() - started > STREAM_SECONDS or await request.is_disconnected():
            return
        if time.monotonic() - last_sent > HEARTBEAT_SECONDS:
            last_sent = time.monotonic()
            yield ": still here\n\n"
        await asyncio.sleep(POLL_SECONDS)
