"""Retention: expired orders lose their files and leave the order partition sets (docs/architecture.md §1).

Dynamic partitions degrade past ~100k keys, so an order whose files are gone leaves the
sets too; its history lives on in the ledger, which retention waits for. Deleting files
happens in the sensor itself: a tick handles a few orders and stops early when it runs
long, so it stays well inside the daemon's sensor timeout.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from assets.partitions import approved_orders_partitions, orders_partitions
from photogen_pipelines.workflows.abandoned import let_go_of_leftovers
from photogen_pipelines.workflows.retention import Retention, expired_orders
from resources import ArtifactStorage, OrdersDatabase
from resources.retention import RetentionSettings

MAX_ORDERS_PER_TICK = 10
MAX_LEFTOVERS_PER_TICK = 50  # unordered uploads, and abandoned checkouts, each
MAX_WAITING_RECHECKS_PER_TICK = 10
# orders held back by a missing ledger are remembered up to this many; past it the sensor
# stops taking new orders until the ledger catches up (it says so in the log)
MAX_WAITING = 500
TIME_BUDGET_SECONDS = 20.0  # the daemon gives a sensor tick 60 s


@dataclass
class RetentionCursor:
    after: tuple[datetime, str] | None = None  # (last state change, order id) of the newest expired order handled
    waiting: list[str] = field(default_factory=list)  # expired orders not in the ledger yet, oldest check first

    @classmethod
    def parse(cls, raw: str | None) -> RetentionCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        after = (datetime.fromisoformat(data["after"][0]), data["after"][1]) if data.get("after") else None
        return cls(after, list(data.get("waiting", [])))

    def serialize(self) -> str:
        after = [self.after[0].isoformat(), self.after[1]] if self.after else None
        return json.dumps({"after": after, "waiting": self.waiting})


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Deletes the files of orders over for longer than the retention period (once the ledger has their history) "
        "and removes them from the `orders` and `approved_orders` partitions; deletes photos no order uses and "
        "cancels checkouts never paid, deleting their recipients; a few of each per tick."
    ),
)
def order_retention(
    context: dg.SensorEvaluationContext, orders: OrdersDatabase, storage: ArtifactStorage, retention: RetentionSettings
) -> dg.SensorResult:
    cursor = RetentionCursor.parse(context.cursor)
    policy = retention.policy()
    book = orders.book()
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    run = Retention(book, storage.store(), policy, datetime.now(UTC))

    # orders that waited for the ledger go first, a few per tick, round robin
    recheck, rest = cursor.waiting[:MAX_WAITING_RECHECKS_PER_TICK], cursor.waiting[MAX_WAITING_RECHECKS_PER_TICK:]
    run.retire_ids(recheck)
    waiting = rest + [order_id for order_id in recheck if order_id in run.result.waiting]

    after = cursor.after
    room = min(MAX_ORDERS_PER_TICK, MAX_WAITING - len(waiting))
    if room <= 0:
        context.log.warning(f"{len(waiting)} orders are waiting for the ledger: no new orders are taken until it catches up")
    for expired in expired_orders(book, run.now, policy, after=after, limit=room) if room > 0 else []:
        if time.monotonic() > deadline:
            break  # the watermark stays before this order: the next tick starts here
        run.retire(expired.order)
        if expired.order.id in run.result.waiting:
            waiting.append(expired.order.id)
        after = (expired.final_at, expired.order.id)

    # what never became a paid order: a photo nobody ordered with, a checkout nobody paid for
    leftovers = let_go_of_leftovers(book, run.store, run.now, policy, limit=MAX_LEFTOVERS_PER_TICK)
    if leftovers.uploads or leftovers.checkouts:
        context.log.info(f"{leftovers.summary()}; orders cancelled: {leftovers.checkouts}")

    purged = list(run.result.purged)
    # an order cancelled before it was paid never had a partition, one never approved no print partition
    gone = {
        partitions: [key for key in purged if context.instance.has_dynamic_partition(partitions.name, key)]
        for partitions in (orders_partitions, approved_orders_partitions)
    }
    for order_id, keys in run.result.purged.items():
        context.log.info(f"order {order_id}: {len(keys)} file(s) deleted: {keys}")
    for order_id, why in run.result.waiting.items():
        context.log.info(f"order {order_id} is expired but waits: {why}")
    if purged:
        removed = ", ".join(f"{len(keys)} from `{partitions.name}`" for partitions, keys in gone.items())
        context.log.info(f"{run.result.summary()}; partition keys removed: {removed}")
    return dg.SensorResult(
        dynamic_partitions_requests=[partitions.build_delete_request(keys) for partitions, keys in gone.items() if keys],
        cursor=RetentionCursor(after, list(dict.fromkeys(waiting))).serialize(),
        skip_reason=None if purged else f"{run.result.summary()}; {leftovers.summary()}",
    )


retention_sensors = [order_retention]
