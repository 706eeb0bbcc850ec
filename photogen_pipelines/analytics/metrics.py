"""Rejection metrics from the generation ledger: how often the identity gate turns an
order away per style and engine, what it costs in proofs and rounds, how close the
proofs came, how long each stage took, and what generating the orders cost (USD, summed
over every stage's engine). Plus a chart an operator reads at a glance."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.analytics.ledger import STAGES

METRICS_PREFIX = "analytics/rejection_metrics/"
NOT_STYLED = "not styled"  # the engine of an order that stopped before styled_candidates
NOT_METERED = "not recorded"  # the engine_backend of an order never styled, or styled before metering
NO_TIER = "before tiers"  # the tier of an order placed before quality tiers existed
# what a group column's null means, so it can be a group of its own
GROUP_LABELS = {"engine": NOT_STYLED, "engine_backend": NOT_METERED, "tier": NO_TIER}
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "pad": 1.0}  # labels stay legible over the overall-rate line
GROUP_DTYPES = {"style_id": "str", "engine": "str", "engine_backend": "str", "tier": "str", "product_id": "str", "day": "str"}
METRIC_DTYPES = {
    "orders": "Int64",
    "verdicts": "Int64",  # passed the identity gate or rejected
    "rejected": "Int64",
    "rejection_rate": "float64",  # rejected / verdicts; NaN: no verdict yet
    "proofs_generated": "Int64",  # every scored proof, regenerations included
    "rounds_mean": "float64",
    "rounds_max": "Int64",
    "identity_p10": "float64",  # over the final score of every variant
    "identity_median": "float64",
    "identity_p90": "float64",
    **{f"median_seconds_{stage}": "float64" for stage in STAGES},
    "median_seconds_total": "float64",
    # what generating cost, over the orders with a recorded cost (those that generated
    # since generations are metered): every stage's engine summed, in USD
    "orders_costed": "Int64",
    "generation_cost_usd_mean": "float64",  # NaN: no order with a recorded cost
    "generation_cost_usd_total": "float64",
    "generation_seconds_mean": "float64",  # metered engine seconds
    "predictions_reused": "Int64",  # remote predictions found done on a retry, not paid again
}


def metrics_key(day: date | str, extension: str) -> str:
    """`analytics/rejection_metrics/day=YYYY-MM-DD.parquet` (the table) or `.png` (the chart)."""
    return f"{METRICS_PREFIX}day={date.fromisoformat(str(day)).isoformat()}.{extension}"


# The chart's link, served by the storefront API (storefront_api/api/routes/metrics.py) from
# the artifact store, local or S3. Dagster keeps a materialization's metadata for good, so
# the link must work for as long: it is signed for the day, never expiring, under a purpose
# of its own. That is safe for what it shows: rates and order counts per style, no customer
# and no order in it, no other file reachable with it (the signature names the day, the
# route serves only that day's chart). The signature still keeps the daily volumes from
# anyone who merely guesses a URL. Rotating PHOTOGEN_SECRET_KEY revokes every such link
# (and the order tokens and file links with them); rematerialize a day for a new one.
CHART_LINK = "rejection_chart"


def chart_path(day: date | str) -> str:
    """`/v1/metrics/rejections/YYYY-MM-DD.png`: where the API serves a day's chart."""
    return f"/v1/metrics/rejections/{date.fromisoformat(str(day)).isoformat()}.png"


def chart_url(base_url: str, signer: Signer, day: date | str) -> str:
    """The day's chart, signed for good, under the API's public base URL."""
    day = date.fromisoformat(str(day)).isoformat()
    return f"{base_url.rstrip('/')}{chart_path(day)}?signature={signer.link_signature(CHART_LINK, day)}"


def chart_signature_valid(signer: Signer, day: date, signature: str) -> bool:
    return signer.link_signature_valid(CHART_LINK, day.isoformat(), signature)


def _scores(group: pd.DataFrame) -> np.ndarray:
    values = [s for scores in group["identity_scores"].dropna() for s in scores if s is not None]
    return np.asarray(values, dtype=float)


def _metrics(group: pd.DataFrame) -> dict:
    verdicts = int(group["verdict"].notna().sum())
    rejected = int((group["verdict"] == "rejected").sum())
    scores = _scores(group)
    rounds = group["rounds"].dropna()
    cost, seconds = group["generation_cost_usd"].dropna(), group["generation_seconds"].dropna()
    quantile = (lambda q: float(np.quantile(scores, q))) if scores.size else (lambda q: math.nan)
    return {
        "orders": len(group),
        "verdicts": verdicts,
        "rejected": rejected,
        "rejection_rate": rejected / verdicts if verdicts else math.nan,
        "proofs_generated": int(group["attempts"].fillna(0).sum()),
        "rounds_mean": float(rounds.mean()) if len(rounds) else math.nan,
        "rounds_max": int(rounds.max()) if len(rounds) else None,
        "identity_p10": quantile(0.1),
        "identity_median": quantile(0.5),
        "identity_p90": quantile(0.9),
        **{f"median_seconds_{s}": float(group[f"seconds_{s}"].median()) for s in STAGES},  # NaN when the stage never ran
        "median_seconds_total": float(group["seconds_total"].median()),
        "orders_costed": len(cost),
        "generation_cost_usd_mean": float(cost.mean()) if len(cost) else math.nan,
        "generation_cost_usd_total": float(cost.sum()) if len(cost) else math.nan,
        "generation_seconds_mean": float(seconds.mean()) if len(seconds) else math.nan,
        "predictions_reused": int(group["predictions_reused"].fillna(0).sum()),
    }


def rejection_table(ledger: pd.DataFrame, by: Sequence[str] = ("style_id", "engine")) -> pd.DataFrame:
    """One row per group (default: per style and style-engine version), sorted by group.
    Also per `engine_backend` or `tier`: a null is a group of its own (GROUP_LABELS)."""
    by = list(by)
    frame = ledger.assign(**{name: ledger[name].fillna(label).astype("str") for name, label in GROUP_LABELS.items()})
    rows = [
        {**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), **_metrics(group)}
        for key, group in frame.groupby(by, sort=True, dropna=False)
    ]
    table = pd.DataFrame(rows, columns=[*by, *METRIC_DTYPES])
    return table.astype({**{c: GROUP_DTYPES.get(c, "str") for c in by}, **METRIC_DTYPES}).reset_index(drop=True)


def summary(ledger: pd.DataFrame) -> dict:
    """The whole ledger as one group: the numbers an operator plots day by day."""
    metrics = _metrics(ledger) if len(ledger) else {k: 0 if dtype == "Int64" else math.nan for k, dtype in METRIC_DTYPES.items()}
    return {
        **{k: metrics[k] for k in ("orders", "verdicts", "rejected", "proofs_generated")},
        **{k: _rounded(metrics[k], 4) for k in ("rejection_rate", "identity_median")},
        "orders_costed": metrics["orders_costed"],
        **{k: _rounded(metrics[k], 6) for k in ("generation_cost_usd_total", "generation_cost_usd_mean")},
        "generation_seconds_mean": _rounded(metrics["generation_seconds_mean"], 3),
        "predictions_reused": metrics["predictions_reused"],
    }


def rates_by_style(ledger: pd.DataFrame) -> dict[str, float | None]:
    """Each style's rejection rate over all its engines, rounded like `summary`'s, for the
    styles with an order that day (None: none of its orders has a verdict yet)."""
    table = rejection_table(ledger, by=("style_id",))
    return {str(row.style_id): _rounded(float(row.rejection_rate), 4) for row in table.itertuples(index=False)}


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _unknown(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def rate_text(rate: float) -> str:
    return "—" if _unknown(rate) else f"{rate:.0%}"


def usd_text(amount: float | None) -> str:
    """$0.0123: generation costs are fractions of a cent to a few dollars an order."""
    return "—" if _unknown(amount) else f"${amount:,.4f}"


def rejection_markdown(table: pd.DataFrame) -> str:
    """The per-style rates as a markdown table (the asset page shows it as a table)."""
    if table.empty:
        return "No orders settled this day."
    engines = table["engine"].nunique() > 1 if "engine" in table else False
    head = ["style", *(["engine"] if engines else []), "orders", "verdicts", "rejected", "rejection rate", "median identity"]
    lines = ["| " + " | ".join([*head, *COST_HEAD]) + " |", "|" + "---|" * (len(head) + len(COST_HEAD))]
    for row in table.itertuples(index=False):
        median = "—" if math.isnan(row.identity_median) else f"{row.identity_median:.2f}"
        cells = [row.style_id, *([row.engine] if engines else [])]
        cells += [str(row.orders), str(row.verdicts), str(row.rejected), rate_text(row.rejection_rate), median]
        lines.append("| " + " | ".join([*cells, *_cost_cells(row)]) + " |")
    return "\n".join(lines)


COST_HEAD = ["orders with a cost", "mean cost", "total cost", "mean engine seconds", "predictions reused"]


def _cost_cells(row) -> list[str]:
    seconds = row.generation_seconds_mean
    return [
        str(row.orders_costed),
        usd_text(row.generation_cost_usd_mean),
        usd_text(row.generation_cost_usd_total),
        "—" if math.isnan(seconds) else f"{seconds:.1f}",
        str(row.predictions_reused),
    ]


def cost_markdown(table: pd.DataFrame, by: str = "engine_backend", label: str = "engine") -> str:
    """Orders, rejection rate and generation cost per `by` (one group column of
    `rejection_table(ledger, by=(by,))`) as a markdown table."""
    if table.empty:
        return "No orders settled this day."
    head = [label, "orders", "verdicts", "rejected", "rejection rate", *COST_HEAD]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.itertuples(index=False):
        cells = [getattr(row, by), str(row.orders), str(row.verdicts), str(row.rejected), rate_text(row.rejection_rate)]
        lines.append("| " + " | ".join([*cells, *_cost_cells(row)]) + " |")
    return "\n".join(lines)


def _chart_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The bars to draw. With one style engine, one bar per style (orders that stopped
    before styling count in their style's bar). With several, one bar per engine; orders
    that never reached an engine get a bar of their own only if they were rejected (at
    the selfie), or if their style has no other bar."""
    table = table if "engine" in table else table.assign(engine=NOT_STYLED)
    real = sorted(e for e in table["engine"].unique() if e != NOT_STYLED)
    if len(real) <= 1:
        folded = table.groupby("style_id", as_index=False)[["orders", "verdicts", "rejected"]].sum()
        folded["engine"] = real[0] if real else NOT_STYLED
    else:
        others = set(table.loc[table["engine"] != NOT_STYLED, "style_id"])
        keep = (table["engine"] != NOT_STYLED) | (table["verdicts"] > 0) | ~table["style_id"].isin(others)
        folded = table.loc[keep, ["style_id", "engine", "orders", "verdicts", "rejected"]]
    verdicts = folded["verdicts"].astype(float)
    return folded.assign(rejection_rate=(folded["rejected"].astype(float) / verdicts).where(verdicts > 0))


def _empty_chart(title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title, loc="left", fontsize=13, fontweight="bold")
    axes.text(0.5, 0.45, "No orders settled this day", ha="center", va="center", fontsize=13, color="#555555")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def rejection_chart_png(table: pd.DataFrame, title: str = "Rejection rate per style") -> bytes:
    """Horizontal bars, one per style (per style and engine when there are several
    engines), worst style on top, each labelled with its rate, rejected of verdicts and
    its order count; a dashed line marks the overall rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    rows = _chart_rows(table)
    if rows.empty:
        return _empty_chart(title)
    worst = rows.groupby("style_id")["rejection_rate"].max().fillna(-1.0).sort_values(kind="stable")
    styles = list(worst.index)  # drawn bottom to top: the worst style ends up on top
    engines = sorted(rows["engine"].unique(), key=lambda e: (e == NOT_STYLED, e))
    colors = dict(zip(engines, ["#c0392b", "#2874a6", "#7d3c98", "#d68910", "#117a65", "#7f8c8d"] * 4, strict=False))
    bar = 0.8 / len(engines)

    figure = Figure(figsize=(10, 2.2 + 0.5 * len(styles) * (1 + 0.6 * (len(engines) - 1))), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    order = {engine: i for i, engine in enumerate(engines)}
    for y, style in enumerate(styles):
        bars = rows[rows["style_id"] == style].sort_values("engine", key=lambda e: e.map(order))
        for i, row in enumerate(bars.to_dict("records")):
            offset = y + ((len(bars) - 1) / 2 - i) * bar  # centred on the style; the legend's first engine on top
            orders = f"{int(row['orders'])} order{'' if int(row['orders']) == 1 else 's'}"
            rate = row["rejection_rate"]
            if pd.isna(rate):
                axes.text(0.005, offset, f"no verdict yet · {orders}", va="center", fontsize=10, color="#7f8c8d", bbox=LABEL_BOX)
                continue
            # a 0% bar keeps a sliver of its colour, so every engine's bar can be told apart
            label = row["engine"] if row["engine"] != NOT_STYLED else f"{NOT_STYLED}: rejected at the selfie"
            axes.barh(offset, max(rate, 0.004), height=bar * 0.85, color=colors[row["engine"]], label=label)
            text = f"{rate:.0%}   {int(row['rejected'])} of {int(row['verdicts'])} rejected · {orders}"
            axes.text(rate + 0.012, offset, text, va="center", fontsize=10, bbox=LABEL_BOX, zorder=3)
    verdicts = int(rows["verdicts"].sum())
    if verdicts and len(styles) > 1:
        overall = rows["rejected"].sum() / verdicts
        axes.axvline(overall, color="#888888", linestyle="--", linewidth=1, zorder=1)
        axes.text(overall, len(styles) - 0.45, f" all styles {overall:.0%}", fontsize=9, color="#555555", va="bottom")
    axes.set_yticks(range(len(styles)), styles, fontsize=11)
    axes.set_ylim(-0.6, len(styles) - 0.2)
    axes.set_xlim(0, 1.5)  # room on the right for the labels
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    axes.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes.set_xlabel("rejected ÷ orders with a verdict (passed the identity gate, or rejected)")
    axes.grid(axis="x", color="#dddddd")
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if len(engines) > 1:
        handles, labels = axes.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axes.legend(unique.values(), unique.keys(), title="style engine", loc="lower right", fontsize=9)
        axes.set_title(title, loc="left", fontsize=13, fontweight="bold")
    else:
        axes.set_title(title, loc="left", fontsize=13, fontweight="bold", pad=22)
        axes.text(0, 1.01, f"style engine: {engines[0]}", transform=axes.transAxes, fontsize=10, color="#555555", va="bottom")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
