"""What every order asset does first and around its work: declare itself partitioned by
order, find its order, time the stage, move the order through the lifecycle, and turn core
errors into Failures."""

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from assets.partitions import orders_partitions
from photogen_pipelines.errors import BadInput, IllegalTransition, PhotoGenError
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import OrderBook
from photogen_pipelines.orders.states import Order
from photogen_pipelines.storage.artifacts import OrderKeys, Stage
from photogen_pipelines.storage.stores import ArtifactStore
from resources import ArtifactStorage, OrdersDatabase

# a step that failed on something passing (a model service, the store) runs again, twice at most
STEP_RETRIES = dg.RetryPolicy(max_retries=2, delay=1.0)


def order_asset(group: str, kinds: set[str], deps: Sequence | None = None, retried: bool = False):
    """The decorator of an order's step: an asset with one partition per order id;
    `retried` steps get STEP_RETRIES."""
    return dg.asset(
        partitions_def=orders_partitions,
        group_name=group,
        kinds=kinds,
        deps=deps,
        retry_policy=STEP_RETRIES if retried else None,
    )


@dataclass
class OrderStep:
    """The order an asset works on (its partition), with the book and the store."""

    order_id: str
    book: OrderBook
    store: ArtifactStore
    keys: OrderKeys
    order: Order


def order_step(context: dg.AssetExecutionContext, orders: OrdersDatabase, storage: ArtifactStorage) -> OrderStep:
    order_id = context.partition_key
    book = orders.book()
    return OrderStep(order_id, book, storage.store(), OrderKeys(order_id), book.get(order_id))


class StageTimer:
    seconds: float = 0.0


@contextlib.contextmanager
def timed_stage(step: OrderStep, stage: Stage) -> Iterator[StageTimer]:
    timer = StageTimer()
    step.book.start_stage(step.order_id, stage)  # the API shows the stage an order is in
    start = time.perf_counter()
    yield timer
    timer.seconds = time.perf_counter() - start
    step.book.record_stage(step.order_id, stage, timer.seconds)


def reject_order(step: OrderStep, error: BadInput) -> dg.Failure:
    """The customer's input cannot become a print: the order ends `rejected` with the
    reason, and the run fails without retrying (a retry cannot fix the input)."""
    lifecycle.reject(step.book, step.order_id, reason=f"{error.code}: {error}")
    return dg.Failure(
        description=f"order {step.order_id} rejected: {error}",
        metadata={"code": error.code, "reason": str(error)},
        allow_retries=False,
    )


def enter(move: Callable[[OrderBook, str], Order], step: OrderStep) -> Order:
    """A lifecycle move the asset cannot work without (the order may have been cancelled)."""
    try:
        return move(step.book, step.order_id)
    except IllegalTransition as exc:
        raise dg.Failure(description=str(exc), metadata={"code": exc.code}, allow_retries=False) from None


def core_failure(error: PhotoGenError) -> dg.Failure:
    return dg.Failure(description=str(error), metadata={"code": error.code}, allow_retries=False)
