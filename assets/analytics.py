"""Analytics assets: the per-order generation ledger and the rejection metrics built on
it, and the per-shot job ledger of the studio's jobs, one partition per UTC day. Analysts
read the Parquet files, not the event log."""

import dagster as dg

from photogen_pipelines.analytics.job_ledger import JOB_LEDGER_COLUMNS
from photogen_pipelines.analytics.ledger_columns import LEDGER_COLUMNS
from photogen_pipelines.orders.states import SETTLED, OrderState
from resources import ArtifactStorage, OrdersDatabase
from resources.links import OperatorLinks

# pandas, pyarrow and the ledger load inside the assets: every run process imports this
# module with the code location, and only the analytics runs need them (~0.6 s a run)

GROUP = "analytics"
OUTCOMES = [OrderState.READY.value, *sorted(s.value for s in SETTLED - {OrderState.READY})]
PREVIEW_COLUMNS = [
    "order_id",
    "style_id",
    "outcome",
    "best_identity_score",
    "attempts",
    "rounds",
    "seconds_total",
    "generation_cost_usd",
]

# end_offset=1: today is a partition too, so an operator can look at the day so far;
# the nightly run rebuilds yesterday once it is complete
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)

_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, kind, description=description) for name, kind, description in LEDGER_COLUMNS]
)
_JOB_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, kind, description=description) for name, kind, description in JOB_LEDGER_COLUMNS]
)


def _cell(name: str, value):
    import numpy as np
    import pandas as pd

    if pd.isna(value):
        return None
    if isinstance(value, float):
        return round(value, 6 if name.endswith("_usd") else 3)  # a generation can cost a fraction of a cent
    return int(value) if isinstance(value, int | np.integer) else str(value)


def _preview(frame) -> dg.TableMetadataValue:
    """The first rows, as a table the asset page renders."""
    kinds = {"f": "float", "i": "int"}
    columns = [dg.TableColumn(name, kinds.get(frame[name].dtype.kind, "string")) for name in PREVIEW_COLUMNS]
    rows = frame[PREVIEW_COLUMNS].head(5).astype(object).to_dict("records")
    records = [dg.TableRecord({k: _cell(k, v) for k, v in row.items()}) for row in rows]
    return dg.TableMetadataValue(records=records, schema=dg.TableSchema(columns=columns))


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    metadata={"dagster/column_schema": _COLUMN_SCHEMA},
)
def generation_ledger(
    context: dg.AssetExecutionContext, orders: OrdersDatabase, storage: ArtifactStorage
) -> dg.MaterializeResult:
    """One row per order settled that day (UTC): what it was, how it scored, what it took and
    cost; and, in its metadata, the day's credits (analytics/credits.py) to plot beside them."""
    from datetime import date

    from photogen_pipelines.analytics.credits import CREDIT_METADATA, credit_day
    from photogen_pipelines.analytics.ledger import build_ledger_day, write_ledger_day

    day, store = context.partition_key, storage.store()
    # the core builds the rows (`photogen report` builds the orders no file holds yet the same way);
    # a rebuild after retention deleted some orders' files keeps what the last build knew
    frame = build_ledger_day(orders.book(), store, day)
    key = write_ledger_day(store, day, frame)
    counts = frame["outcome"].value_counts()
    context.log.info(f"generation_ledger: {len(frame)} orders settled on {day} -> {key}")
    with orders.database().session() as session:
        credits = credit_day(session, date.fromisoformat(day))
    return dg.MaterializeResult(
        metadata={
            "dagster/partition_row_count": dg.IntMetadataValue(len(frame)),
            "orders": dg.IntMetadataValue(len(frame)),
            "path": dg.MetadataValue.path(store.uri(key)),
            "preview": _preview(frame),
            **{f"outcome_{state}": dg.IntMetadataValue(int(counts.get(state, 0))) for state in OUTCOMES},
            **{f"credits/{name}": dg.IntMetadataValue(getattr(credits, name)) for name in CREDIT_METADATA},
        }
    )


# Dagster's Plots tab draws every int and float entry across the partitions, one plot per
# label, labels sorted (the first 100 labels found): `rejection_rate/<style>` sits beside
# `rejection_rate`. A style without orders that day, or without a verdict (None), is a gap.
STYLE_RATE = "rejection_rate/"


def _chart(links: OperatorLinks, day: str, chart_key: str) -> dg.MetadataValue:
    """The chart's link, served by the storefront API over http(s), or why there is none;
    never the image itself (it would go into the event log) nor a file:// or s3:// path
    that a browser on the UI's page cannot open."""
    url = links.rejection_chart_url(day)
    if url is not None:
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.md(
        f"No link: set `PHOTOGEN_PUBLIC_BASE_URL` (where operators reach the storefront API) and "
        f"materialize this day again. The chart is stored as `{chart_key}` in the artifact store; "
        "the per-style rates are plotted under Plots (`rejection_rate/<style>`)."
    )


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas", "matplotlib"}, deps=[generation_ledger])
def rejection_metrics(context: dg.AssetExecutionContext, storage: ArtifactStorage, links: OperatorLinks) -> dg.MaterializeResult:
    """Per style and engine: how often the identity gate rejects, the proofs, rounds and
    seconds it takes, and what generating the orders cost (per style and per engine backend).
    The chart opens from the `chart` link (the storefront API serves it); each style's rate
    is plotted across days as `rejection_rate/<style>`."""
    from photogen_pipelines.analytics.ledger import parquet_bytes, read_ledger_day
    from photogen_pipelines.analytics.metrics import (
        NOT_STYLED,
        cost_markdown,
        metrics_key,
        rates_by_style,
        rejection_chart_png,
        rejection_markdown,
        rejection_table,
        summary,
    )

    day, store = context.partition_key, storage.store()
    ledger = read_ledger_day(store, day)
    if ledger is None:
        raise dg.Failure(description=f"no generation ledger for {day}: materialize generation_ledger first", allow_retries=False)
    table = rejection_table(ledger)  # per style and engine version
    table_key, chart_key = metrics_key(day, "parquet"), metrics_key(day, "png")
    store.put_bytes(table_key, parquet_bytes(table))
    # the chart is stored and linked (served by the storefront API): images never go into the event log
    store.put_bytes(chart_key, rejection_chart_png(table, title=f"Rejection rate per style · {day}"))
    engines = {e for e in table["engine"] if e != NOT_STYLED}
    shown = table if len(engines) > 1 else rejection_table(ledger, by=("style_id",))
    overall = summary(ledger)
    context.log.info(f"rejection_metrics: {overall['rejected']} of {overall['verdicts']} orders with a verdict rejected on {day}")
    return dg.MaterializeResult(
        metadata={
            "rejection_rate": dg.FloatMetadataValue(overall["rejection_rate"]),  # None: no verdict that day
            "orders": dg.IntMetadataValue(overall["orders"]),
            "verdicts": dg.IntMetadataValue(overall["verdicts"]),
            "rejected": dg.IntMetadataValue(overall["rejected"]),
            "proofs_generated": dg.IntMetadataValue(overall["proofs_generated"]),
            "identity_median": dg.FloatMetadataValue(overall["identity_median"]),
            # USD over the orders with a recorded cost (None: no order generated since metering)
            "generation_cost_usd": dg.FloatMetadataValue(overall["generation_cost_usd_total"]),
            "generation_cost_usd_mean": dg.FloatMetadataValue(overall["generation_cost_usd_mean"]),
            "orders_costed": dg.IntMetadataValue(overall["orders_costed"]),
            "predictions_reused": dg.IntMetadataValue(overall["predictions_reused"]),
            "rejection_rate_by_style": dg.MetadataValue.md(rejection_markdown(shown)),
            "cost_by_engine": dg.MetadataValue.md(cost_markdown(rejection_table(ledger, by=("engine_backend",)))),
            "chart": _chart(links, day, chart_key),
            "table": dg.MetadataValue.path(store.uri(table_key)),
            "engines": dg.JsonMetadataValue(sorted(engines)),
            **{f"{STYLE_RATE}{style}": dg.FloatMetadataValue(rate) for style, rate in sorted(rates_by_style(ledger).items())},
        }
    )


SHOT_OUTCOMES = ("passed", "rejected")


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    metadata={"dagster/column_schema": _JOB_COLUMN_SCHEMA},
)
def job_ledger(context: dg.AssetExecutionContext, orders: OrdersDatabase, storage: ArtifactStorage) -> dg.MaterializeResult:
    """One row per shot of every studio job that changed that day (UTC): its outcome, scores, retries and cost."""
    from photogen_pipelines.analytics.job_ledger import build_job_ledger_day, per_kind, write_job_ledger_day

    day, store = context.partition_key, storage.store()
    frame = build_job_ledger_day(orders.database(), store, day)
    key = write_job_ledger_day(store, day, frame)
    kinds = per_kind(frame)
    context.log.info(f"job_ledger: {len(frame)} shots of {frame['job_id'].nunique()} jobs changed on {day} -> {key}")
    return dg.MaterializeResult(
        metadata={
            "dagster/partition_row_count": dg.IntMetadataValue(len(frame)),
            "shots": dg.IntMetadataValue(len(frame)),
            "jobs": dg.IntMetadataValue(int(frame["job_id"].nunique())),
            "path": dg.MetadataValue.path(store.uri(key)),
            # per kind: plotted across days under Plots (`passed/<kind>`, `rejected/<kind>`)
            **{f"{outcome}/{row['kind']}": dg.IntMetadataValue(row[outcome]) for row in kinds for outcome in SHOT_OUTCOMES},
            "by_kind": dg.JsonMetadataValue(
                {row["kind"]: {k: row[k] for k in ("jobs", "shots", "passed", "rejected", "pending")} for row in kinds}
            ),
        }
    )


analytics_assets = [generation_ledger, rejection_metrics, job_ledger]

analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.assets(*analytics_assets),
    description="The generation ledger, the rejection metrics and the job ledger for one UTC day.",
)
