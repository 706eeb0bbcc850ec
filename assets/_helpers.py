"""Small things every order asset does: time a stage, turn core errors into Failures."""

import contextlib
import time
from collections.abc import Iterator

import dagster as dg

from photogen_pipelines.errors import BadInput, IllegalTransition, PhotoGenError
from photogen_pipelines.orderbook import OrderBook
from photogen_pipelines.orders import OrderState


class StageTimer:
    seconds: float = 0.0


@contextlib.contextmanager
def timed_stage(book: OrderBook, order_id: str, stage: str) -> Iterator[StageTimer]:
    timer = StageTimer()
    book.start_stage(order_id, stage)  # the API shows the stage an order is in
    start = time.perf_counter()
    yield timer
    timer.seconds = time.perf_counter() - start
    book.record_stage(order_id, stage, timer.seconds)


def reject_order(book: OrderBook, order_id: str, error: BadInput) -> dg.Failure:
    """The customer's input cannot become a print: the order ends `rejected` with the
    reason, and the run fails without retrying (a retry cannot fix the input)."""
    book.transition(order_id, OrderState.REJECTED, reason=f"{error.code}: {error}")
    return dg.Failure(
        description=f"order {order_id} rejected: {error}",
        metadata={"code": error.code, "reason": str(error)},
        allow_retries=False,
    )


def enter_state(book: OrderBook, order_id: str, state: OrderState) -> None:
    try:
        book.transition(order_id, state)
    except IllegalTransition as exc:
        raise dg.Failure(description=str(exc), metadata={"code": exc.code}, allow_retries=False) from None


def core_failure(error: PhotoGenError) -> dg.Failure:
    return dg.Failure(description=str(error), metadata={"code": error.code}, allow_retries=False)
