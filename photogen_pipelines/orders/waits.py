"""How long a customer waits: for the proofs after paying, for the print file after
approving. Told before they pay (GET /v1/tiers) and while they wait (the order view).

A tier's wait is the median of the shop's own recent orders of that tier once there are
enough of them, since only they know the engine, the machine and the queue the shop runs;
until then, the catalog's estimate (Tier.expected_wait), which the shop states for its
engine. The premium print on a CPU takes minutes, and saying so beats a silent spinner.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from photogen_pipelines.catalog import ProductCatalog, Tier
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState

# Orders of a tier it takes before their median replaces the catalog's estimate, and how
# many recent ones count: enough that one slow order does not move it, few enough to
# follow a change of engine within a day's orders.
MEASURED_FROM = 5
WINDOW = 50

# The phases a customer waits through: where each starts and ends.
PROOFS = (OrderState.PAID, OrderState.PROOFS_READY)
PRINT = (OrderState.APPROVED, OrderState.READY)
WAITING_FOR_PROOFS = frozenset({OrderState.PAID, OrderState.GENERATING})
WAITING_FOR_PRINT = frozenset({OrderState.APPROVED, OrderState.RENDERING})


@dataclass(frozen=True)
class TierWait:
    """A tier's expected waits in seconds, and what they rest on: `measured` (the median of
    `orders` recent orders) or `catalog` (the shop's own estimate)."""

    proofs_seconds: int
    print_seconds: int
    basis: Literal["measured", "catalog"]
    orders: int


def _median(samples: list[float]) -> int:
    return max(1, round(statistics.median(samples)))


def tier_wait(book: SqlOrderBook, tier: Tier) -> TierWait:
    """The waits a customer of `tier` should expect now."""
    proofs = book.phase_seconds(tier.id, *PROOFS, limit=WINDOW)
    prints = book.phase_seconds(tier.id, *PRINT, limit=WINDOW)
    measured = min(len(proofs), len(prints))
    if measured >= MEASURED_FROM:
        return TierWait(_median(proofs), _median(prints), "measured", measured)
    estimate = tier.expected_wait
    return TierWait(estimate.proofs_seconds, estimate.print_seconds, "catalog", measured)


def order_wait(book: SqlOrderBook, catalog: ProductCatalog, order: Order) -> TierWait:
    """The waits of the order's tier; a tier the catalog has since dropped keeps its own
    orders' measurements, with a default estimate until there are enough."""
    try:
        tier = catalog.tier(order.tier)
    except NotFound:
        tier = Tier(id=order.tier or catalog.default_tier, name="", description="")
    return tier_wait(book, tier)


def expected_at(order: Order, wait: TierWait, now: datetime | None = None) -> datetime | None:
    """When the order's current wait should end: the proofs while they are being made, the
    print file while it is; None when the order waits for nobody but the customer (or is
    done). An order past its expected time is expected now, not in the past."""
    if order.state in WAITING_FOR_PROOFS:
        start, seconds = PROOFS[0], wait.proofs_seconds
    elif order.state in WAITING_FOR_PRINT:
        start, seconds = PRINT[0], wait.print_seconds
    else:
        return None
    began = max((event.at for event in order.events if event.to_state == start), default=order.created_at)
    return max(as_utc(began) + timedelta(seconds=seconds), now or utc_now())
