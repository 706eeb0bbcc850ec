"""The print provider's side of open orders, read back: nothing waits on a lost callback.

Callbacks (storefront_api/api/routes/fulfilment.py) make updates quick; this sensor makes
them certain. Each tick reads a bounded number of open submissions from the provider,
least recently read first, submits again what never got an answer (idempotent: the
provider finds its first order), and submits ready orders whose print run died before
fulfilment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from photogen_pipelines.fulfilment.providers.base import ProviderError
from photogen_pipelines.fulfilment.submission import (
    RESUBMIT_AFTER,
    NotFulfillable,
    open_fulfilments,
    read_back,
    unsubmitted,
)
from resources import ArtifactStorage, CatalogResource, OrdersDatabase
from resources.fulfilment import PrintProviderResource

MAX_ORDERS_PER_TICK = 20
RECHECK_AFTER = timedelta(minutes=10)  # how often one open order is read from the provider
TIME_BUDGET_SECONDS = 30.0  # the daemon gives a sensor tick 60 s; each call may take up to its timeout


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads open print-provider orders back (shipped, delivered, cancelled) and submits again what the provider "
        "never answered; a bounded number per tick."
    ),
)
def print_provider_orders(
    context: dg.SensorEvaluationContext,
    orders: OrdersDatabase,
    storage: ArtifactStorage,
    catalog: CatalogResource,
    print_provider: PrintProviderResource,
) -> dg.SkipReason:
    provider = print_provider.client()
    if provider is None:
        return dg.SkipReason("no print provider configured")
    book, database, now = orders.book(), orders.database(), datetime.now(UTC)
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    counts = {"read": 0, "moved": 0, "submitted": 0, "errors": 0}

    def submit_again(order_id: str) -> None:
        try:
            result = print_provider.submit(book, storage.store(), catalog.products(), order_id)
            counts["submitted"] += 1
            context.log.info(f"order {order_id}: submitted to {provider.name}: {result.status}")
        except (ProviderError, NotFulfillable) as exc:
            counts["errors"] += 1
            context.log.warning(f"order {order_id}: not submitted to {provider.name}: {exc.code}: {exc}")

    for record in open_fulfilments(database, now, RECHECK_AFTER, MAX_ORDERS_PER_TICK):
        if time.monotonic() > deadline:
            break
        if record.provider_order_id is None:
            submit_again(record.order_id)
            continue
        before = book.get(record.order_id).state
        order = read_back(book, provider, record.order_id)
        if order is None:
            counts["errors"] += 1
            continue
        counts["read"] += 1
        if order.state != before:
            counts["moved"] += 1
            context.log.info(f"order {record.order_id}: {before.value} -> {order.state.value} (read back from {provider.name})")
    for order_id in unsubmitted(database, now - RESUBMIT_AFTER, MAX_ORDERS_PER_TICK):
        if time.monotonic() > deadline:
            break
        submit_again(order_id)
    return dg.SkipReason(", ".join(f"{n} {what}" for what, n in counts.items()))
