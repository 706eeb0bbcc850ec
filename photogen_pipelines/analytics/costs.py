"""What a generation cost: every engine call metered the same way, whoever runs it.

A serverless backend knows what it was billed for (MeteredStylizer.take_usage: the
provider's predict time, the predictions paid for and those reused on a retry); a local
engine is metered by the clock at the shop's price of a second of it. The stages record
the usage beside their artifacts (`Usage.rounded()`), and the ledger adds them up per order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from photogen_pipelines.engines.base import MeteredStylizer
from photogen_pipelines.storage.artifacts import Usage

T = TypeVar("T")


def metered(engine: object, backend: str, price_per_second: float, call: Callable[[], T]) -> tuple[T, Usage]:
    """Run `call` (which uses `engine`) and say what it used."""
    if isinstance(engine, MeteredStylizer):
        engine.take_usage()  # what an earlier caller left unread is not this call's
        result = call()
        return result, engine.take_usage()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    return result, Usage(backend=backend, seconds=seconds, cost_usd=seconds * price_per_second)
