"""The generation ledger: one row per settled order, what analysts read instead of the
Dagster event log (docs/architecture.md §1). Rows are built from the orders database and the JSON each
stage leaves in the artifact store, and kept as one Parquet file per UTC day at
`analytics/ledger/day=YYYY-MM-DD.parquet`. That key layout is a contract: retention
reads it to check an order's history is kept before deleting the order's files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from photogen_pipelines.analytics.ledger_columns import LEDGER_COLUMNS, STAGES
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders.book import OrderBook, SqlOrderBook
from photogen_pipelines.orders.states import EXITS, SETTLED, Order, OrderEvent, OrderState
from photogen_pipelines.storage.artifacts import CandidatesInfo, Document, MasterInfo, OrderKeys, Usage, Validation
from photogen_pipelines.storage.stores import ArtifactStore

LEDGER_PREFIX = "analytics/ledger/"

_TIME = pa.timestamp("us", tz="UTC")


def _field(name: str, arrow_type: pa.DataType, description: str) -> pa.Field:
    # the description travels in the Parquet schema, for analysts and the asset's column list
    return pa.field(name, arrow_type, metadata={"description": description})


_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": _TIME,
    "int64": pa.int64(),
    "float64": pa.float64(),
    "list<int64>": pa.list_(pa.int64()),
    "list<float64>": pa.list_(pa.float64()),
}

# The Parquet schema, the same in every day's file (an empty day included)
SCHEMA = pa.schema([_field(name, _ARROW_TYPES[kind], description) for name, kind, description in LEDGER_COLUMNS])
COLUMNS = tuple(SCHEMA.names)
# what a rebuild cannot recompute once retention has deleted an order's files
ARTIFACT_COLUMNS = (
    "engine face_encoder upscaler seeds identity_scores best_identity_score identity_threshold attempts rounds "
    "proofs_passed effective_dpi engine_backend generation_seconds predict_seconds predictions predictions_reused "
    "generation_cost_usd"
).split()


def _pandas_dtype(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type):
        return "str"
    if pa.types.is_int64(arrow_type):
        return "Int64"  # nullable: a count that was never taken is not 0
    if pa.types.is_float64(arrow_type):
        return "float64"
    if pa.types.is_timestamp(arrow_type):
        return "datetime64[us, UTC]"
    return "object"  # lists


DTYPES = {field.name: _pandas_dtype(field.type) for field in SCHEMA}


def ledger_key(day: date | str) -> str:
    return f"{LEDGER_PREFIX}day={date.fromisoformat(str(day)).isoformat()}.parquet"


def _document(store: ArtifactStore, keys: OrderKeys, kind: type[Document]):
    # any of an order's files may be missing: rejected at the selfie, cancelled before its run
    try:
        return keys.load(store, kind)
    except NotFound:
        return None


def _last(order: Order, states: frozenset[OrderState]) -> OrderEvent | None:
    return next((e for e in reversed(order.events) if e.to_state in states), None)


def settled_at(order: Order) -> datetime | None:
    """The order's latest move into a final state: the day file its row belongs in."""
    settled = _last(order, SETTLED)
    return settled.at if settled else None


def _verdict(order: Order) -> str | None:
    """The identity verdict: rejected, passed (proofs reached the customer), or none."""
    last = _last(order, frozenset({OrderState.REJECTED, OrderState.PROOFS_READY}))
    if last is None:
        return None
    return "rejected" if last.to_state == OrderState.REJECTED else "passed"


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def margin_usd(paid_cents, refunded_cents, currency, cost_usd) -> float | None:
    """What an order earned after refunds and generation, in USD: (paid - refunded) / 100
    - cost; None unless the order is in USD and its generation cost is known."""
    if currency != "usd" or any(_missing(v) for v in (paid_cents, cost_usd)):
        return None
    refunded = 0 if _missing(refunded_cents) else refunded_cents
    return round((int(paid_cents) - int(refunded)) / 100 - float(cost_usd), 6)


def ledger_row(order: Order, store: ArtifactStore) -> dict[str, Any]:
    keys = OrderKeys(order.id)
    candidates, validation, master = (_document(store, keys, kind) for kind in (CandidatesInfo, Validation, MasterInfo))
    # what each stage's engine used: the first round, the regenerations (None: none ran), the
    # upscaler. A first round without a record ran before generations were metered: its
    # order's cost is unknown, not the later stages' part of it
    first = candidates.usage if candidates else None
    stages = (first, validation.usage if validation else None, master.usage if master else None)
    usage = Usage.total(*stages) if first is not None else None
    settled, exit_event = _last(order, SETTLED), _last(order, EXITS)
    final = {v: s.similarity for v, s in validation.final_scores().items()} if validation else {}
    known = [v for v in final.values() if v is not None]
    seconds = {stage.value: order.stage_seconds.get(stage) for stage in STAGES}
    ran = [v for v in seconds.values() if v is not None]
    return {
        "order_id": order.id,
        "created_at": order.created_at,
        "settled_at": settled.at if settled else None,
        "day": settled.at.astimezone(UTC).date().isoformat() if settled else None,
        "style_id": order.style_id,
        "product_id": order.product_id,
        "approval": order.approval,
        "tier": order.tier if order.tier is not None else candidates.tier if candidates else None,
        "engine": candidates.engine if candidates else None,
        "face_encoder": validation.encoder if validation else None,
        "upscaler": master.upscaler if master else None,
        "seeds": [c.seed for c in candidates.candidates] if candidates else None,
        "identity_scores": [final[v] for v in sorted(final)] if validation else None,
        "best_identity_score": max(known) if known else None,
        "identity_threshold": validation.threshold if validation else None,
        "attempts": len(validation.scores) if validation else None,
        "rounds": validation.rounds if validation else None,
        "proofs_passed": len(validation.proofs) if validation else None,
        "outcome": settled.to_state.value if settled else None,
        "verdict": _verdict(order),
        "reason": exit_event.reason if exit_event else order.reason,
        **{f"seconds_{stage}": value for stage, value in seconds.items()},
        "seconds_total": round(sum(ran), 3) if ran else None,
        "effective_dpi": master.effective_dpi if master else None,
        "engine_backend": first.backend if first else None,
        "generation_seconds": usage.seconds if usage else None,
        "predict_seconds": usage.predict_seconds if usage else None,
        "predictions": usage.predictions if usage else None,
        "predictions_reused": usage.reused if usage else None,
        "generation_cost_usd": usage.cost_usd if usage else None,
        "amount_cents": order.amount_cents,
        "amount_paid_cents": order.paid_cents,
        "refunded_cents": order.refunded_cents,
        "refund_id": order.refund_id,
        "currency": order.currency,
        "payments": order.payments,
        "margin_usd": margin_usd(order.paid_cents, order.refunded_cents, order.currency, usage.cost_usd if usage else None),
    }


def _plain_list(value) -> list:
    # Parquet hands lists back as numpy arrays, with NaN for a null score: a row holds plain
    # lists with None, as the stage's JSON has them
    items = value.tolist() if hasattr(value, "tolist") else list(value)
    return [None if isinstance(v, float) and math.isnan(v) else v for v in items]


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """The ledger's columns in order with their dtypes, whatever built or read the frame."""
    frame = frame.reindex(columns=list(COLUMNS))
    for name in ("seeds", "identity_scores"):
        frame[name] = frame[name].map(_plain_list, na_action="ignore")
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    for name in ("created_at", "settled_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame.astype(DTYPES).reset_index(drop=True)


def ledger_rows(book: OrderBook, store: ArtifactStore, orders: Iterable[Order | str], workers: int = 8) -> pd.DataFrame:
    """One row per order (an Order, or an id looked up in `book`), in the ledger's schema.
    Each order reads up to three small JSON files: threads hide an object store's latency."""
    resolved = [book.get(o) if isinstance(o, str) else o for o in orders]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda order: ledger_row(order, store), resolved))
    return conform(pd.DataFrame(rows, columns=list(COLUMNS)))


def empty_ledger() -> pd.DataFrame:
    return conform(pd.DataFrame(columns=list(COLUMNS)))


def parquet_bytes(frame: pd.DataFrame, schema: pa.Schema | None = None) -> bytes:
    """Parquet with a fixed schema when given, so an empty day has the same columns and types."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_ledger_day(store: ArtifactStore, day: date | str, frame: pd.DataFrame) -> str:
    """Store one day's rows (replacing that day's file); returns the key."""
    key = ledger_key(day)
    store.put_bytes(key, parquet_bytes(conform(frame), SCHEMA))
    return key


def read_ledger_day(store: ArtifactStore, day: date | str) -> pd.DataFrame | None:
    """One day's rows, or None when that day was never built."""
    try:
        data = store.get_bytes(ledger_key(day))
    except NotFound:
        return None
    return conform(pq.read_table(io.BytesIO(data)).to_pandas())


def ledger_days(store: ArtifactStore) -> list[date]:
    days = []
    for key in store.list(LEDGER_PREFIX):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("day=") and name.endswith(".parquet"):
            try:
                days.append(date.fromisoformat(name[4:-8]))
            except ValueError:
                continue  # not a ledger file: someone else's key under the prefix
    return sorted(days)


def read_ledger(store: ArtifactStore, since: date | None = None) -> pd.DataFrame:
    """Every day from `since` on, one row per order. An order whose refund came a day
    after its rejection can be in both days' files: its latest settlement wins."""
    frames = [read_ledger_day(store, day) for day in ledger_days(store) if since is None or day >= since]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return empty_ledger()
    ledger = pd.concat(frames, ignore_index=True).sort_values(["settled_at", "order_id"], kind="stable")
    return conform(ledger.drop_duplicates("order_id", keep="last"))


def day_window(day: date | str) -> tuple[datetime, datetime]:
    """[start, end) of one UTC day: the orders one day file holds settled in it."""
    start = datetime.combine(date.fromisoformat(str(day)), time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def build_ledger_day(book: SqlOrderBook, store: ArtifactStore, day: date | str) -> pd.DataFrame:
    """The rows the `generation_ledger` asset writes for `day`: every order that settled
    that UTC day, from the orders database and the JSON its stages stored. A rebuild after
    retention deleted some orders' files keeps what the day's previous file knew."""
    settled = book.settled_between(*day_window(day))
    return carry_forward(read_ledger_day(store, day), ledger_rows(book, store, settled), book)


def carry_forward(previous: pd.DataFrame | None, fresh: pd.DataFrame, book: OrderBook) -> pd.DataFrame:
    """Rebuilding a day after retention deleted some orders' files must not erase their
    history: values that came from files missing now are taken from the day's previous
    file, and rows of orders gone from the orders database are kept as they were."""
    if previous is None or previous.empty:
        return conform(fresh)
    old, merged = previous.set_index("order_id"), fresh.set_index("order_id")
    common = merged.index.intersection(old.index)
    for name in ARTIFACT_COLUMNS:
        lost = common[merged.loc[common, name].isna().to_numpy()]
        merged.loc[lost, name] = old.loc[lost, name]
    # the margin follows the cost kept and the refunds as they are now
    money = ("amount_paid_cents", "refunded_cents", "currency", "generation_cost_usd")
    merged["margin_usd"] = [margin_usd(*values) for values in zip(*(merged[c] for c in money), strict=True)]
    gone = [order_id for order_id in old.index.difference(merged.index) if not _known(book, order_id)]
    return conform(pd.concat([merged.reset_index(), old.loc[gone].reset_index()], ignore_index=True))


def _known(book: OrderBook, order_id: str) -> bool:
    try:
        book.get(order_id)
    except NotFound:
        return False
    return True
