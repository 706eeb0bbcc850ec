"""What a generation cost: every engine call metered the same way, whoever runs it.

A serverless backend knows what it was billed for (MeteredStylizer.take_usage: the
provider's predict time, the predictions paid for and those reused on a retry); a local
engine is metered by the clock at the shop's price of a second of it. The stages record
the usage beside their artifacts, and the ledger adds them up per order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from photogen_pipelines.engines.base import MeteredStylizer, Usage
from photogen_pipelines.storage.artifacts import UsageRecord

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


def record(usage: Usage | None) -> UsageRecord | None:
    if usage is None:
        return None
    return UsageRecord(
        backend=usage.backend,
        seconds=round(usage.seconds, 3),
        predict_seconds=None if usage.predict_seconds is None else round(usage.predict_seconds, 3),
        predictions=usage.predictions,
        reused=usage.reused,
        cost_usd=round(usage.cost_usd, 6),
    )


def total(*records: UsageRecord | None) -> UsageRecord | None:
    """The sum of a generation's stage records (None when no stage recorded any)."""
    usages = [Usage(**r.model_dump(include=set(Usage.__dataclass_fields__))) for r in records if r is not None]
    if not usages:
        return None
    combined = usages[0]
    for usage in usages[1:]:
        combined = combined + usage
    return record(combined)
