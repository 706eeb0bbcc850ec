"""Cost per order: the ledger adds up what every stage's engine recorded (the first round,
the regenerations, the upscaler), works out each order's margin, keeps nulls for orders
from before metering, and `photogen report` and the `rejection_metrics` asset show the cost
per style, engine backend and tier beside the rejection rate.

The orders and their artifacts are written by hand with known usage records, so every
number below is known in advance (no model runs):

  ord_paid       sepia_oil     premium  replicate  paid $45.00, delivered; a regeneration round; a metered upscaler
  ord_refunded   starry_swirl  premium  replicate  paid $45.00, rejected by the identity gate, refunded
  ord_local      sepia_oil     standard embedded   payments off, delivered
  ord_eur        sepia_oil     standard embedded   paid €39.00, delivered: no margin in USD
  ord_old        starry_swirl  (none)   -          delivered before tiers and metering (tests/data/artifacts_v1)
  ord_unstarted  fauve         standard -          cancelled before its run: no files
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from photogen_pipelines.analytics.ledger import (
    DTYPES,
    SCHEMA,
    build_ledger_day,
    carry_forward,
    ledger_key,
    ledger_rows,
    margin_usd,
    read_ledger,
    read_ledger_day,
    write_ledger_day,
)
from photogen_pipelines.analytics.metrics import NO_TIER, NOT_METERED
from photogen_pipelines.cli import main as cli_main
from photogen_pipelines.cli import report  # noqa: F401  (registers `photogen report`)
from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderEvent, OrderState
from photogen_pipelines.storage.artifacts import (
    CandidateParams,
    CandidatesInfo,
    MasterInfo,
    OrderKeys,
    ProofScore,
    Usage,
    Validation,
)
from photogen_pipelines.storage.stores import LocalArtifactStore

S = OrderState
V1 = Path(__file__).parent / "data" / "artifacts_v1"
DAY = datetime(2026, 11, 20, tzinfo=UTC)
COST_COLUMNS = [
    "engine_backend",
    "generation_seconds",
    "predict_seconds",
    "predictions",
    "predictions_reused",
    "generation_cost_usd",
    "margin_usd",
]
DELIVERED = [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY]


def _usage(backend: str, seconds: float, cost: float, predict=None, predictions=0, reused=0) -> Usage:
    return Usage(backend=backend, seconds=seconds, predict_seconds=predict, predictions=predictions, reused=reused, cost_usd=cost)


# order id -> the order's columns, its path through the states, and the usage its stages
# recorded (first round, regenerations, upscaler; None: the stage wrote no usage)
ORDERS = {
    "ord_paid": (
        {"style_id": "sepia_oil", "tier": "premium", "payments": "stripe", "paid_cents": 4500},
        DELIVERED,
        (
            _usage("replicate", 12.5, 0.05, predict=10.0, predictions=4, reused=1),
            _usage("replicate", 6.25, 0.025, predict=5.0, predictions=2),
            _usage("runpod", 3.0, 0.008, predictions=1),
        ),
    ),
    "ord_refunded": (
        {"style_id": "starry_swirl", "tier": "premium", "payments": "stripe", "paid_cents": 4500, "refunded_cents": 4500},
        [S.PAID, S.GENERATING, S.REJECTED, S.REFUNDED],
        (
            _usage("replicate", 10.0, 0.04, predict=8.0, predictions=4),
            _usage("replicate", 5.0, 0.02, predict=4.0, predictions=2, reused=2),
            None,
        ),
    ),
    "ord_local": (
        {"style_id": "sepia_oil", "tier": "standard"},
        DELIVERED,
        (_usage("embedded", 40.0, 0.004), None, _usage("embedded", 20.0, 0.002)),
    ),
    "ord_eur": (
        {"style_id": "sepia_oil", "tier": "standard", "payments": "stripe", "paid_cents": 3900, "currency": "eur"},
        DELIVERED,
        (_usage("embedded", 30.0, 0.003), None, None),
    ),
    "ord_old": ({"style_id": "starry_swirl", "tier": None}, DELIVERED, "v1"),
    "ord_unstarted": ({"style_id": "fauve", "tier": "standard"}, [S.PAID, S.CANCELLED], None),
}


def _order(order_id: str, columns: dict, path: list[OrderState]) -> Order:
    """Placed six hours before DAY, its events an hour apart from DAY on (UTC)."""
    states = [S.AWAITING_PAYMENT, *path]
    at = [DAY - timedelta(hours=6)] + [DAY + timedelta(hours=h) for h in range(1, len(path) + 1)]
    events = [OrderEvent(at=at[i], from_state=states[i - 1] if i else None, to_state=states[i]) for i in range(len(states))]
    return Order(
        id=order_id,
        product_id="poster_a3",
        upload_key=f"orders/{order_id}/upload",
        amount_cents=4500,
        state=states[-1],
        created_at=at[0],
        events=events,
        **columns,
    )


def _store_artifacts(store: LocalArtifactStore, order_id: str, usage) -> None:
    keys = OrderKeys(order_id)
    if usage == "v1":  # what the stages wrote before tiers and metering
        for name, kind in (("candidates.json", CandidatesInfo), ("validation.json", Validation), ("master.json", MasterInfo)):
            store.put_bytes(keys.key_of(kind), (V1 / "ready" / name).read_bytes())
        return
    if usage is None:
        return
    first, regenerations, upscaler = usage
    rejected = regenerations is not None and upscaler is None
    keys.save(
        store,
        CandidatesInfo(
            style="any",
            engine="an engine",
            candidates=[CandidateParams(variant=0, round=0, seed=7, strength=0.5)],
            tier="ignored: the order's tier wins",
            usage=first,
        ),
    )
    last = 0.3 if rejected else 0.62
    scores = [
        ProofScore(variant=0, round=0, strength=0.5, similarity=0.3, faces=1, passed=False),
        ProofScore(variant=0, round=1, strength=0.45, similarity=last, faces=1, passed=not rejected),
    ]
    proofs = {} if rejected else {0: keys.proof(0)}
    validation = Validation(
        threshold=0.4,
        encoder="an encoder",
        rounds=2,
        proofs=proofs,
        best_variant=None if rejected else 0,
        scores=scores,
        rejected=rejected,
        usage=regenerations,
    )
    keys.save(store, validation)
    if upscaler is not None or not rejected:
        master = MasterInfo(
            passes=[4],
            native_size=(100, 100),
            pixel_size=(400, 400),
            effective_dpi=200.0,
            proof=0,
            upscaler="an upscaler",
            usage=upscaler,
        )
        keys.save(store, master)


@pytest.fixture
def shop(tmp_path):
    """The six orders in a SQLite orders database, their artifacts in a local store."""
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    database = Database(url)
    database.migrate()
    book, store = SqlOrderBook(database), LocalArtifactStore(tmp_path / "artifacts")
    for order_id, (columns, path, usage) in ORDERS.items():
        book.add(_order(order_id, columns, path))
        _store_artifacts(store, order_id, usage)
    yield {"url": url, "book": book, "store": store, "root": tmp_path}
    database.dispose()


def _rows(shop) -> dict[str, dict]:
    frame = ledger_rows(shop["book"], shop["store"], list(ORDERS))
    return {row["order_id"]: row for row in frame.to_dict("records")}


# -- the ledger's cost columns ---------------------------------------------------------------------


def test_a_row_carries_the_summed_usage_of_all_three_stages(shop):
    paid = _rows(shop)["ord_paid"]
    assert (paid["tier"], paid["engine_backend"]) == ("premium", "replicate")  # the first round's backend
    assert paid["generation_cost_usd"] == pytest.approx(0.05 + 0.025 + 0.008)
    assert paid["generation_seconds"] == pytest.approx(12.5 + 6.25 + 3.0)
    assert paid["predict_seconds"] == pytest.approx(15.0)  # the upscaler's provider reported none
    assert (paid["predictions"], paid["predictions_reused"]) == (7, 1)
    assert (paid["amount_paid_cents"], paid["refunded_cents"], paid["currency"]) == (4500, 0, "usd")
    assert paid["margin_usd"] == pytest.approx(45.00 - 0.083)

    refunded = _rows(shop)["ord_refunded"]  # no print master: two stages' usage
    assert refunded["generation_cost_usd"] == pytest.approx(0.06) and refunded["generation_seconds"] == 15.0
    assert (refunded["predictions"], refunded["predictions_reused"], refunded["verdict"]) == (6, 2, "rejected")
    assert refunded["margin_usd"] == pytest.approx(-0.06)  # refunded in full: the generation was the loss


def test_local_engines_and_other_currencies(shop):
    rows = _rows(shop)
    local = rows["ord_local"]
    assert (local["engine_backend"], local["generation_cost_usd"], local["generation_seconds"]) == ("embedded", 0.006, 60.0)
    assert pd.isna(local["predict_seconds"]) and (local["predictions"], local["predictions_reused"]) == (0, 0)
    assert local["payments"] == "off" and local["margin_usd"] == pytest.approx(-0.006)  # nothing paid: minus the cost
    eur = rows["ord_eur"]
    assert eur["generation_cost_usd"] == pytest.approx(0.003) and eur["amount_paid_cents"] == 3900
    assert pd.isna(eur["margin_usd"])  # euros paid, dollars spent: no margin without an exchange rate


def test_orders_from_before_metering_give_nulls_not_errors(shop):
    rows = _rows(shop)
    old = rows["ord_old"]
    assert old["engine"].startswith("multistyle26") and old["outcome"] == "ready"  # its artifacts were read
    for column in ["tier", *COST_COLUMNS]:
        assert pd.isna(old[column]), column
    unstarted = rows["ord_unstarted"]
    assert unstarted["tier"] == "standard"
    for column in COST_COLUMNS:
        assert pd.isna(unstarted[column]), column


def test_an_order_styled_before_metering_has_no_cost_even_if_a_later_stage_recorded_one(shop, tmp_path):
    """Styled before the deploy that brought metering, printed after it: the upscaler's
    cost alone is not the order's cost."""
    store = LocalArtifactStore(tmp_path / "mixed")
    _store_artifacts(store, "ord_mixed", "v1")
    keys = OrderKeys("ord_mixed")
    master = keys.load(store, MasterInfo).model_copy(update={"usage": _usage("embedded", 20.0, 0.002)})
    keys.save(store, master)
    order = _order("ord_mixed", {"style_id": "sepia_oil", "tier": "standard"}, DELIVERED)
    row = ledger_rows(shop["book"], store, [order]).iloc[0]
    assert row["upscaler"].startswith("REALESRGAN") and row["tier"] == "standard"
    for column in COST_COLUMNS:
        assert pd.isna(row[column]), column


def test_margin_usd():
    assert margin_usd(4500, 0, "usd", 0.083) == 44.917
    assert margin_usd(4500, 1500, "usd", 0.5) == 29.5
    assert margin_usd(4500, pd.NA, "usd", 0.5) == 44.5  # no refund recorded
    assert margin_usd(4500, 0, "usd", None) is None  # cost unknown
    assert margin_usd(4500, 0, "usd", float("nan")) is None
    assert margin_usd(4500, 0, "eur", 0.5) is None
    assert margin_usd(None, 0, "usd", 0.5) is None


def test_the_cost_columns_are_typed_and_survive_parquet(shop):
    types = {field.name: str(field.type) for field in SCHEMA}
    assert {c: types[c] for c in ["tier", *COST_COLUMNS]} == {
        "tier": "string",
        "engine_backend": "string",
        "generation_seconds": "double",
        "predict_seconds": "double",
        "predictions": "int64",
        "predictions_reused": "int64",
        "generation_cost_usd": "double",
        "margin_usd": "double",
    }
    assert all(SCHEMA.field(c).metadata[b"description"] for c in COST_COLUMNS)
    assert "null unless the currency is usd" in SCHEMA.field("margin_usd").metadata[b"description"].decode()
    store, day = shop["store"], DAY.date()
    built = build_ledger_day(shop["book"], store, day)
    assert set(built["order_id"]) == set(ORDERS)
    write_ledger_day(store, day, built)
    back = read_ledger_day(store, day)
    pd.testing.assert_frame_equal(back, built)
    assert dict(back.dtypes) == {name: pd.api.types.pandas_dtype(dtype) for name, dtype in DTYPES.items()}
    assert str(back["predictions"].dtype) == "Int64" and back["predictions"].isna().sum() == 2  # old, unstarted


def test_a_day_file_from_before_the_cost_columns_reads_with_nulls(shop):
    store = shop["store"]
    old_schema = pa.schema([f for f in SCHEMA if f.name not in ("tier", *COST_COLUMNS)])
    frame = ledger_rows(shop["book"], store, ["ord_paid"]).drop(columns=["tier", *COST_COLUMNS])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, schema=old_schema, preserve_index=False), buffer)
    store.put_bytes(ledger_key("2026-11-19"), buffer.getvalue())
    back = read_ledger(store)
    assert list(back.columns) == SCHEMA.names and len(back) == 1
    assert back[["tier", *COST_COLUMNS]].isna().all().all() and back.loc[0, "order_id"] == "ord_paid"


def test_a_rebuild_after_retention_keeps_the_cost_and_follows_a_later_refund(shop, tmp_path):
    """Retention deleted the order's files after the ledger had its row; the customer was
    refunded after that: the rebuild keeps the cost and the margin takes the refund."""
    store, book = shop["store"], shop["book"]
    previous = ledger_rows(book, store, ["ord_paid"])
    pruned = LocalArtifactStore(tmp_path / "pruned")  # no order files at all
    refunded = book.get("ord_paid").model_copy(update={"refunded_cents": 4500})
    fresh = ledger_rows(book, pruned, [refunded])
    assert pd.isna(fresh.loc[0, "generation_cost_usd"]) and pd.isna(fresh.loc[0, "margin_usd"])
    row = carry_forward(previous, fresh, book).iloc[0]
    assert row["generation_cost_usd"] == pytest.approx(0.083) and row["engine_backend"] == "replicate"
    assert (row["predictions"], row["generation_seconds"], row["refunded_cents"]) == (7, 21.75, 4500)
    assert row["margin_usd"] == pytest.approx(-0.083)


# -- photogen report -----------------------------------------------------------------------------


def _report(shop, *args: str):
    env = {"PHOTOGEN_DATABASE_URL": shop["url"], "PHOTOGEN_ARTIFACTS_ROOT": str(shop["store"].root)}
    result = CliRunner().invoke(cli_main.cli, ["report", *args, "--home", str(shop["root"] / "home")], env=env)
    assert result.exit_code == 0, result.output
    return result


def _costs(group: dict) -> tuple:
    return (
        group["orders"],
        group["rejected"],
        group["orders_costed"],
        group["generation_cost_usd_total"],
        group["generation_cost_usd_mean"],
        group["predictions_reused"],
    )


def test_report_json_has_the_cost_per_style_engine_and_tier(shop):
    payload = json.loads(_report(shop, "--json").stdout)  # no ledger file: every row read directly
    assert payload["sources"]["orders_db"]["orders"] == 6
    assert (payload["orders"], payload["orders_costed"], payload["predictions_reused"]) == (6, 4, 3)
    assert payload["generation_cost_usd_total"] == pytest.approx(0.152)
    assert payload["generation_cost_usd_mean"] == pytest.approx(0.038)
    assert payload["generation_seconds_mean"] == pytest.approx((21.75 + 15 + 60 + 30) / 4, abs=1e-3)

    styles = {s["style_id"]: s for s in payload["styles"]}
    assert _costs(styles["sepia_oil"]) == (3, 0, 3, 0.092, 0.030667, 1)
    assert _costs(styles["starry_swirl"]) == (2, 1, 1, 0.06, 0.06, 2)  # ord_old has no cost: not a cost of 0
    assert _costs(styles["fauve"]) == (1, 0, 0, None, None, 0)
    assert styles["starry_swirl"]["rejection_rate"] == 0.5 and styles["sepia_oil"]["median_seconds"]["total"] is None

    engines = {e["engine_backend"]: e for e in payload["engines"]}
    assert list(engines) == ["embedded", NOT_METERED, "replicate"]
    assert _costs(engines["replicate"]) == (2, 1, 2, 0.143, 0.0715, 3)
    assert engines["replicate"]["rejection_rate"] == 0.5 and engines["replicate"]["generation_seconds_mean"] == 18.375
    assert _costs(engines["embedded"]) == (2, 0, 2, 0.009, 0.0045, 0)
    assert _costs(engines[NOT_METERED]) == (2, 0, 0, None, None, 0)

    tiers = {t["tier"]: t for t in payload["tiers"]}
    assert list(tiers) == [NO_TIER, "premium", "standard"]
    assert _costs(tiers["premium"]) == (2, 1, 2, 0.143, 0.0715, 3)
    assert _costs(tiers["standard"]) == (3, 0, 2, 0.009, 0.0045, 0)
    assert _costs(tiers[NO_TIER]) == (1, 0, 0, None, None, 0)

    # the same numbers once the day's ledger file exists
    write_ledger_day(shop["store"], DAY.date(), build_ledger_day(shop["book"], shop["store"], DAY.date()))
    from_ledger = json.loads(_report(shop, "--json").stdout)
    assert from_ledger["sources"]["ledger"]["orders"] == 6
    for key in ("styles", "engines", "tiers", "generation_cost_usd_total", "orders_costed"):
        assert from_ledger[key] == payload[key], key


def test_report_text_shows_the_cost_beside_the_rejection_rate(shop):
    text = _report(shop).stdout
    print(text)  # for a person to read: pytest -s
    assert "Generation cost: $0.1520 for the 4 of 6 orders with a recorded cost ($0.0380 an order)" in text
    assert re.search(r"\nengine\s+orders\s+rejected\s+rate\s+costed\s+mean cost\s+total cost\s+seconds\s+reused\n", text)
    assert re.search(r"\nreplicate\s+2\s+1/2\s+50%\s+2\s+\$0\.0715\s+\$0\.1430\s+18\.4\s+3\n", text)
    assert re.search(r"\nnot recorded\s+2\s+0/1\s+0%\s+0\s+—\s+—\s+—\s+0\n", text)
    assert re.search(r"\nsepia_oil\s+3\s+0/3\s+0%\s+3\s+\$0\.0307\s+\$0\.0920\s+", text)
    assert re.search(r"\npremium\s+2\s+1/2\s+50%\s+2\s+\$0\.0715\s+\$0\.1430\s+", text)
    # the per-style rejection table above it is unchanged
    assert re.search(r"\nstarry_swirl\s+2\s+1/2\s+50%\s+0\.61\s", text)


# -- the rejection_metrics asset -----------------------------------------------------------------


def test_rejection_metrics_records_the_cost_and_the_cost_per_engine(shop):
    import dagster as dg

    from assets.analytics import analytics_assets
    from resources import ArtifactStorage, OrdersDatabase, StoreConfig
    from resources.links import OperatorLinks

    resources = {
        "orders": OrdersDatabase(url=shop["url"]),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(shop["store"].root))),
        "links": OperatorLinks(),
    }
    result = dg.materialize(analytics_assets, partition_key=DAY.date().isoformat(), resources=resources)
    assert result.success
    metadata = result.asset_materializations_for_node("rejection_metrics")[0].metadata
    assert metadata["generation_cost_usd"].value == pytest.approx(0.152)
    assert metadata["generation_cost_usd_mean"].value == pytest.approx(0.038)
    assert (metadata["orders_costed"].value, metadata["predictions_reused"].value) == (4, 3)
    by_engine = metadata["cost_by_engine"].value
    assert "| replicate | 2 | 2 | 1 | 50% | 2 | $0.0715 | $0.1430 | 18.4 | 3 |" in by_engine
    by_style = metadata["rejection_rate_by_style"].value  # two engine versions (ord_old's): per style and engine
    assert "| sepia_oil | an engine | 3 | 3 | 0 | 0% | 0.62 | 3 | $0.0307 | $0.0920 |" in by_style
    table = pd.read_parquet(io.BytesIO(shop["store"].get_bytes("analytics/rejection_metrics/day=2026-11-20.parquet")))
    per_style = table.groupby("style_id")["generation_cost_usd_total"].sum()
    assert per_style["sepia_oil"] == pytest.approx(0.092) and per_style["starry_swirl"] == pytest.approx(0.06)
    ledger_preview = result.asset_materializations_for_node("generation_ledger")[0].metadata["preview"].value
    ledger = read_ledger_day(shop["store"], DAY.date()).set_index("order_id")["generation_cost_usd"]
    shown = {r.data["order_id"]: r.data["generation_cost_usd"] for r in ledger_preview.records}
    assert len(shown) == 5 and any(cost is None for cost in shown.values())  # ord_old's
    assert shown == {order_id: None if pd.isna(ledger[order_id]) else ledger[order_id] for order_id in shown}
