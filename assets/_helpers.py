"""What every order asset does first and around its work: declare itself partitioned by
order, check that its order's state calls for it, find its order, time the stage, move the
order through the lifecycle, and turn core errors into Failures."""

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from photogen_pipelines.errors import BadInput, IllegalTransition, PhotoGenError
from photogen_pipelines.logs import get_logger, log_context
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import OrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, Stage
from photogen_pipelines.storage.stores import ArtifactStore
from resources import ArtifactStorage, OrdersDatabase

log = get_logger("photogen.assets")

# a step that failed on something passing (a model service, the store) runs again, twice at most
STEP_RETRIES = dg.RetryPolicy(max_retries=2, delay=1.0)

# The run tag with which an operator asks a run to redo steps the order's state no longer
# calls for (regenerate unapproved proofs, re-render a ready order's print file). Add it in
# the UI's launch dialog: photogen/rerun = true.
RERUN_TAG = "photogen/rerun"


@dataclass(frozen=True)
class OrderGroup:
    """An asset group of order steps: its name in the UI, the partition set its assets are
    partitioned by, and the order states its steps work in.

    A step works for an order in `runs_in` (its own run, or the retry of that run); for one
    in `rerun_from` only in a run tagged RERUN_TAG=true (the operator's regeneration or
    re-render, which the state machine allows); for any other order (done, cancelled,
    rejected, not there yet) it does nothing and says why: no materialization, the steps after
    it are skipped, the run succeeds. So "Materialize all" over every order re-makes, and
    pays for, none of them."""

    name: str
    partitions: dg.DynamicPartitionsDefinition
    runs_in: frozenset[OrderState]
    rerun_from: frozenset[OrderState] = frozenset()

    def nothing_to_do(self, order: Order, run_tags: Mapping[str, str]) -> str | None:
        """Why a step of this group has nothing to do for `order` in this run (None: it has)."""
        state = order.state
        if state in self.runs_in:
            return None
        if state in self.rerun_from:
            if run_tags.get(RERUN_TAG, "").lower() == "true":
                return None
            return (
                f"order {order.id} is {state.value}: nothing to redo (to redo the {self.name} steps for it, "
                f"launch the run with the tag {RERUN_TAG}=true)"
            )
        wanted = " or ".join(sorted(s.value for s in self.runs_in))
        redo = " or ".join(sorted(s.value for s in self.rerun_from))
        also = f", and redo {redo} ones in a run tagged {RERUN_TAG}=true" if redo else ""
        return f"order {order.id} is {state.value}: nothing to do (the {self.name} steps work on {wanted} orders{also})"


def order_summary(order: Order) -> dict[str, dg.TextMetadataValue]:
    """What every order materialization names, so a partition (an order id) reads as an order."""
    return {
        "style": dg.TextMetadataValue(order.style_id),
        "product": dg.TextMetadataValue(order.product_id),
        "tier": dg.TextMetadataValue(order.tier or "default"),
        "order_state": dg.TextMetadataValue(order.state.value),
    }


def order_asset(group: OrderGroup, kinds: set[str], deps: Sequence | None = None, retry_policy: dg.RetryPolicy | None = None):
    """The decorator of an order's step: an asset of `group`, one partition per order id, that
    works only when the order's state calls for it (OrderGroup) and names the order's style,
    product, tier and state in its metadata. The step takes the `orders` resource."""

    def decorate(step_fn: Callable[..., dg.MaterializeResult]):
        @functools.wraps(step_fn)
        def step_when_due(context: dg.AssetExecutionContext, **resources):
            # every log line of the step, the core's included, names its run and its order
            with log_context(run_id=context.run.run_id, job=context.run.job_name, order_id=context.partition_key):
                book = resources["orders"].book()
                why = group.nothing_to_do(book.get(context.partition_key), context.run.tags)
                if why is not None:
                    context.log.info(f"{context.asset_key.to_user_string()}: {why}")
                    return  # nothing yielded: no materialization, the steps after it are skipped
                result = step_fn(context, **resources)
                summary = order_summary(book.get(context.partition_key))  # the state the step left
            yield result._replace(metadata={**summary, **(result.metadata or {})})

        return dg.asset(
            partitions_def=group.partitions,
            group_name=group.name,
            kinds=kinds,
            deps=deps,
            retry_policy=retry_policy,
            output_required=False,
        )(step_when_due)

    return decorate


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
    log.info("stage finished", stage=str(stage), seconds=round(timer.seconds, 3))


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
