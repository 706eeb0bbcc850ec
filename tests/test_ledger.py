"""The generation ledger and rejection metrics, built from real orders run through the real
pipeline on a real Dagster instance: the rows (what each order cost included), the Parquet
contract, the metrics asset and its chart, `photogen report`, and the README's analytics
snippets run as they are written.

One module-scoped set of four orders (each real order costs seconds on a laptop CPU):
  ready      sepia_oil, auto-approved, printed            -> ready, verdict passed
  rejected   starry_swirl, a threshold nobody can reach   -> rejected by the identity gate
  cancelled  starry_swirl, proofs shown, then cancelled   -> cancelled, verdict passed
  unstarted  fauve, cancelled before its run              -> cancelled, no files, no verdict
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

import assets
from assets.analytics import analytics_assets, analytics_job, daily_partitions, generation_ledger
from photogen_pipelines.analytics.ledger import (
    DTYPES,
    SCHEMA,
    STAGES,
    conform,
    ledger_key,
    ledger_rows,
    read_ledger,
    read_ledger_day,
    write_ledger_day,
)
from photogen_pipelines.analytics.ledger_view import current_ledger, database_windows, day_ranges
from photogen_pipelines.analytics.metrics import metrics_key
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.cli import main as cli_main
from photogen_pipelines.cli import report  # noqa: F401  (registers `photogen report`)
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.lifecycle import paid_without_payments, reject, start_generation
from photogen_pipelines.orders.states import Order, OrderEvent, OrderState
from photogen_pipelines.storage.artifacts import CandidatesInfo, MasterInfo, OrderKeys, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from resources import (
    ArtifactStorage,
    CatalogResource,
    OrdersDatabase,
    StoreConfig,
    StyleEngine,
    StyleEngineConfig,
    UpscaleEngine,
    UpscaleEngineConfig,
)
from resources.links import OperatorLinks
from tests.dagster_helpers import local_instance

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "README.md"  # the analysts' snippets live in the README, and run as written
PHOTOGEN = Path(sys.executable).with_name("photogen")
ORDER_ASSETS = [*assets.proof_assets, *assets.print_assets, assets.identity_preserved, assets.print_spec_met]
# what a second of the local engines costs in these tests: the ledger adds up what each stage metered
STYLE_PRICE, UPSCALE_PRICE = 0.001, 0.002
S = OrderState


# -- settled_between, on SQLite and PostgreSQL -----------------------------------------

DAY = datetime(2026, 11, 20, tzinfo=UTC)
PATHS = {
    "ord_ready": [(S.PAID, -1), (S.GENERATING, 9), (S.PROOFS_READY, 9.5), (S.APPROVED, 9.6), (S.RENDERING, 9.7), (S.READY, 10)],
    # rejected a microsecond before midnight, refunded just after: it settles the next day
    "ord_refunded_next_day": [(S.PAID, 20), (S.GENERATING, 21), (S.REJECTED, 24 - 1 / 3.6e9), (S.REFUNDED, 24 + 0.5 / 3600)],
    "ord_still_generating": [(S.PAID, 9), (S.GENERATING, 9.1)],
    "ord_cancelled_at_midnight": [(S.PAID, 12), (S.CANCELLED, 24)],  # [start, end): the next day's
    # delivered, and re-rendering now: its latest final event is still the delivery
    "ord_rerendering": [
        (S.PAID, 1),
        (S.GENERATING, 2),
        (S.PROOFS_READY, 3),
        (S.APPROVED, 4),
        (S.RENDERING, 5),
        (S.READY, 8),
        (S.RENDERING, 31),
    ],
    "ord_rerendered": [
        (S.PAID, 1),
        (S.GENERATING, 2),
        (S.PROOFS_READY, 3),
        (S.APPROVED, 4),
        (S.RENDERING, 5),
        (S.READY, 8),
        (S.RENDERING, 20),
        (S.READY, 25),
    ],
    "ord_day_before": [(S.PAID, -5), (S.CANCELLED, -1)],
}


def _add(book: SqlOrderBook, order_id: str, path: list[tuple[OrderState, float]]) -> None:
    """An order whose events happened at the given hours of DAY (UTC)."""
    at = [DAY + timedelta(hours=-6)] + [DAY + timedelta(hours=h) for _, h in path]
    states = [S.AWAITING_PAYMENT] + [s for s, _ in path]
    events = [OrderEvent(at=at[i], from_state=states[i - 1] if i else None, to_state=states[i]) for i in range(len(states))]
    book.add(
        Order(
            id=order_id,
            style_id="sepia_oil",
            product_id="poster_a3",
            upload_key=f"orders/{order_id}/upload",
            state=states[-1],
            created_at=at[0],
            events=events,
        )
    )


def test_settled_between_picks_orders_by_their_latest_move_into_a_final_state(orders_db):
    book = SqlOrderBook(orders_db)
    for order_id, path in PATHS.items():
        _add(book, order_id, path)
    next_day = DAY + timedelta(days=1)

    day = book.settled_between(DAY, next_day)
    assert [o.id for o in day] == ["ord_rerendering", "ord_ready"]  # oldest settlement first
    assert [e.to_state for e in day[1].events][-1] == S.READY and len(day[1].events) == 7  # whole orders, every event
    assert [o.id for o in book.settled_between(next_day, next_day + timedelta(days=1))] == [
        "ord_cancelled_at_midnight",
        "ord_refunded_next_day",
        "ord_rerendered",
    ]
    # the same instants in another zone, and naive datetimes (taken as UTC), mean the same window
    plus2 = DAY.astimezone(timezone(timedelta(hours=2)))
    assert [o.id for o in book.settled_between(plus2, plus2 + timedelta(days=1))] == ["ord_rerendering", "ord_ready"]
    naive = DAY.replace(tzinfo=None)
    assert [o.id for o in book.settled_between(naive, naive + timedelta(days=1))] == ["ord_rerendering", "ord_ready"]
    assert book.settled_between(DAY - timedelta(days=3), DAY - timedelta(days=2)) == []


# -- four real orders, and the analytics assets for their day ----------------------------


def _impossible_catalog(path: Path) -> CatalogResource:
    catalog = load_styles().model_dump(mode="json")
    catalog["max_rounds"] = 1
    for style in catalog["styles"]:
        style["identity_threshold"] = 0.99  # no stylised face is this close to the photo
    path.write_text(yaml.safe_dump(catalog))
    return CatalogResource(styles_path=str(path))


@pytest.fixture(scope="module")
def world(tmp_path_factory, astronaut_png):
    """Four orders settled today, and both analytics assets materialized for today."""
    root = tmp_path_factory.mktemp("ledger")
    home = root / ".photogen"  # the layout the README's snippet reads
    (home / "dagster").mkdir(parents=True)
    with local_instance(home / "dagster") as instance:
        defs = build_defs(str(home))
        # smaller proofs and one upscaling pass: the ledger cares what an order leaves behind,
        # not how fine its print is, and this halves the cost of the printed order
        quick = {
            **defs.resources,
            "styles": StyleEngine(proof_long_side=768, settings=StyleEngineConfig(price_per_second=STYLE_PRICE)),
            "upscale": UpscaleEngine(target_dpi=150, settings=UpscaleEngineConfig(price_per_second=UPSCALE_PRICE)),
        }
        book, store = defs.resources["orders"].book(), defs.resources["storage"].store()

        def order(style_id: str, variants: int, approval: str) -> str:
            placed = register_local_order(defs, astronaut_png, style_id, "poster_a3", variants, approval=approval)
            instance.add_dynamic_partitions("orders", [placed.id])
            return placed.id

        def run(order_id: str, selection, resources=None) -> None:
            dg.materialize(
                ORDER_ASSETS,
                selection=selection,
                partition_key=order_id,
                instance=instance,
                resources=resources or quick,
                raise_on_error=False,
            )

        ids = {
            "ready": order("sepia_oil", 2, "auto"),
            "rejected": order("starry_swirl", 1, "auto"),
            "cancelled": order("starry_swirl", 1, "customer"),
            "unstarted": order("fauve", 1, "customer"),
        }
        run(ids["ready"], assets.proof_assets)
        run(ids["ready"], assets.print_assets)  # auto-approved: the proof run made it a print partition
        impossible = {**quick, "catalog": _impossible_catalog(root / "styles.yaml")}
        run(ids["rejected"], assets.proof_assets, impossible)  # rejected: never a print partition
        run(ids["cancelled"], assets.proof_assets)
        book.transition(ids["cancelled"], S.CANCELLED, reason="the customer cancelled at the proofs")
        book.transition(ids["unstarted"], S.CANCELLED, reason="the customer cancelled before the run")
        states = {name: book.get(order_id).state for name, order_id in ids.items()}
        assert states == {"ready": S.READY, "rejected": S.REJECTED, "cancelled": S.CANCELLED, "unstarted": S.CANCELLED}

        days = {book.get(order_id).events[-1].at.date().isoformat() for order_id in ids.values()}
        assert len(days) == 1, f"the orders settled on both sides of midnight UTC ({days}): run the tests again"
        day = days.pop()
        analytics = {"orders": defs.resources["orders"], "storage": defs.resources["storage"], "links": defs.resources["links"]}
        result = dg.materialize(analytics_assets, partition_key=day, instance=instance, resources=analytics)
        assert result.success
        yield {
            "root": root,
            "home": home,
            "instance": instance,
            "defs": defs,
            "book": book,
            "store": store,
            "ids": ids,
            "day": day,
            "result": result,
        }


@pytest.fixture(scope="module")
def rows(world) -> dict[str, dict]:
    ledger = read_ledger_day(world["store"], world["day"])
    by_id = {row["order_id"]: row for row in ledger.to_dict("records")}
    return {name: by_id[order_id] for name, order_id in world["ids"].items()}


@pytest.mark.slow
def test_the_ledger_has_one_row_per_settled_order_with_what_it_was_and_how_it_scored(world, rows):
    store, ids, day = world["store"], world["ids"], world["day"]
    assert len(read_ledger_day(store, day)) == 4
    ready = rows["ready"]
    assert (ready["style_id"], ready["product_id"], ready["approval"]) == ("sepia_oil", "poster_a3", "auto")
    assert (ready["outcome"], ready["verdict"], ready["day"]) == ("ready", "passed", day)
    assert ready["engine"].startswith("multistyle26") and ready["face_encoder"].startswith("yunet")
    assert "ncnn" in ready["upscaler"] and ready["effective_dpi"] >= 150
    assert len(ready["seeds"]) == 2 and len(ready["identity_scores"]) == 2
    assert ready["best_identity_score"] == max(ready["identity_scores"]) >= ready["identity_threshold"] == 0.40
    assert ready["attempts"] >= 2 and ready["rounds"] >= 1 and ready["proofs_passed"] >= 1
    order = world["book"].get(ids["ready"])
    for stage in STAGES:
        assert ready[f"seconds_{stage}"] == order.stage_seconds[stage] > 0
    assert ready["seconds_total"] == pytest.approx(sum(order.stage_seconds.values()), abs=1e-3)
    assert ready["settled_at"] == order.events[-1].at and ready["created_at"] == order.created_at
    assert (ready["amount_cents"], ready["amount_paid_cents"], ready["refunded_cents"]) == (3500, 0, 0)  # payments off
    assert (ready["payments"], ready["currency"]) == ("off", "usd") and pd.isna(ready["refund_id"])

    rejected = rows["rejected"]
    assert (rejected["outcome"], rejected["verdict"], rejected["identity_threshold"]) == ("rejected", "rejected", 0.99)
    assert rejected["reason"].startswith("no proof kept the customer's likeness after 1 rounds")
    assert (rejected["attempts"], rejected["rounds"], rejected["proofs_passed"]) == (1, 1, 0)
    assert rejected["best_identity_score"] < 0.99 and len(rejected["seeds"]) == 1
    assert pd.isna(rejected["upscaler"]) and pd.isna(rejected["seconds_print_master"]) and pd.isna(rejected["effective_dpi"])

    cancelled = rows["cancelled"]
    assert (cancelled["outcome"], cancelled["verdict"]) == ("cancelled", "passed")
    assert cancelled["reason"] == "the customer cancelled at the proofs" and cancelled["proofs_passed"] == 1

    # cancelled before its run: no files at all, so nothing but the order's own columns
    unstarted = rows["unstarted"]
    assert (unstarted["outcome"], unstarted["style_id"]) == ("cancelled", "fauve") and pd.isna(unstarted["verdict"])
    for column in ["engine", "face_encoder", "best_identity_score", "attempts", "rounds", "seconds_selfie", "seconds_total"]:
        assert pd.isna(unstarted[column]), column
    assert unstarted["seeds"] is None and unstarted["identity_scores"] is None
    for column in ["engine_backend", "generation_seconds", "predictions", "generation_cost_usd", "margin_usd"]:
        assert pd.isna(unstarted[column]), column


@pytest.mark.slow
def test_the_ledger_adds_up_what_every_stage_metered(world, rows):
    """The printed order metered its first round, any regeneration round and its upscaler:
    its row is their sum, at the engines' prices; its margin is what was paid (nothing,
    payments off) less that cost."""
    store, book = world["store"], world["book"]
    keys = OrderKeys(world["ids"]["ready"])
    first = keys.load(store, CandidatesInfo).usage
    regenerated = keys.load(store, Validation).usage  # None unless a second round ran
    upscaled = keys.load(store, MasterInfo).usage
    stages = [u for u in (first, regenerated, upscaled) if u is not None]
    assert first.backend == upscaled.backend == "embedded" and first.seconds > 0 and upscaled.seconds > 0
    assert upscaled.cost_usd == pytest.approx(upscaled.seconds * UPSCALE_PRICE, rel=1e-3, abs=1e-6)
    ready = rows["ready"]
    assert ready["engine_backend"] == "embedded"
    assert ready["tier"] == book.get(world["ids"]["ready"]).tier == "standard"  # the catalog's default tier
    assert ready["generation_cost_usd"] > 0
    assert ready["generation_cost_usd"] == pytest.approx(sum(u.cost_usd for u in stages), abs=1e-6)
    assert ready["generation_seconds"] == pytest.approx(sum(u.seconds for u in stages), abs=1e-3)
    # a local engine has no provider: no predict time, no predictions
    assert pd.isna(ready["predict_seconds"]) and (ready["predictions"], ready["predictions_reused"]) == (0, 0)
    # the seconds metered are the engine's own, inside the stages' wall time
    assert (
        ready["generation_seconds"]
        < ready["seconds_styled_candidates"] + ready["seconds_validated_proofs"] + ready["seconds_print_master"]
    )
    assert ready["margin_usd"] == pytest.approx(-ready["generation_cost_usd"])  # payments off: nothing paid

    rejected = rows["rejected"]  # never printed: the first round only (max_rounds 1)
    only = OrderKeys(world["ids"]["rejected"]).load(store, CandidatesInfo).usage
    assert rejected["generation_cost_usd"] > 0 and rejected["generation_cost_usd"] == pytest.approx(only.cost_usd, abs=1e-6)
    assert rejected["generation_seconds"] == pytest.approx(only.seconds, abs=1e-3)


@pytest.mark.slow
def test_the_ledger_is_parquet_at_the_contract_key_and_reads_back_unchanged(world):
    store, day, book = world["store"], world["day"], world["book"]
    key = f"analytics/ledger/day={day}.parquet"  # the key layout retention relies on
    assert ledger_key(date.fromisoformat(day)) == key and store.list("analytics/ledger/") == [key]
    raw = store.get_bytes(key)
    schema = pq.read_schema(io.BytesIO(raw))
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in SCHEMA]
    # what retention reads: the order ids, with plain pandas
    assert set(pd.read_parquet(io.BytesIO(raw), columns=["order_id"])["order_id"]) == set(world["ids"].values())

    rebuilt = ledger_rows(book, store, book.settled_between(*_window(day)))
    stored = read_ledger(store)
    assert dict(stored.dtypes) == {name: pd.api.types.pandas_dtype(dtype) for name, dtype in DTYPES.items()}
    pd.testing.assert_frame_equal(
        stored.sort_values("order_id", ignore_index=True), rebuilt.sort_values("order_id", ignore_index=True)
    )
    assert read_ledger(store, since=date.fromisoformat(day) + timedelta(days=1)).empty


def _window(day: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


@pytest.mark.slow
def test_an_empty_day_has_the_same_schema(world, tmp_path):
    store = LocalArtifactStore(tmp_path)
    empty = ledger_rows(world["book"], store, [])
    assert empty.empty and list(empty.columns) == list(SCHEMA.names)
    assert dict(empty.dtypes) == {name: pd.api.types.pandas_dtype(dtype) for name, dtype in DTYPES.items()}
    key = write_ledger_day(store, "2026-11-02", empty)
    assert pq.read_schema(io.BytesIO(store.get_bytes(key))).names == SCHEMA.names
    pd.testing.assert_frame_equal(read_ledger_day(store, "2026-11-02"), empty)


def test_gaps_inside_a_row_survive_the_round_trip(tmp_path):
    """A proof with no face has no score; an order that never ran has no lists at all."""
    store = LocalArtifactStore(tmp_path)
    frame = conform(
        pd.DataFrame(
            [
                {"order_id": "ord_a", "seeds": [1, 2], "identity_scores": [0.5, None], "attempts": 2, "outcome": "rejected"},
                {"order_id": "ord_b", "seeds": None, "identity_scores": None, "attempts": None, "outcome": "cancelled"},
            ]
        )
    )
    write_ledger_day(store, "2026-11-03", frame)
    back = read_ledger_day(store, "2026-11-03")
    pd.testing.assert_frame_equal(back, frame)
    assert back.loc[0, "identity_scores"] == [0.5, None] and back.loc[1, "seeds"] is None and pd.isna(back.loc[1, "attempts"])


@pytest.mark.slow
def test_rejection_metrics_stores_the_table_and_a_chart_and_reports_the_rates(world):
    store, day, result = world["store"], world["day"], world["result"]
    table = pd.read_parquet(io.BytesIO(store.get_bytes(metrics_key(day, "parquet"))))
    by_style = table.set_index("style_id")
    assert by_style.loc["sepia_oil", "rejection_rate"] == 0.0
    assert by_style.loc["starry_swirl", "rejection_rate"] == 0.5  # 1 rejected of 2 with a verdict
    assert (by_style.loc["starry_swirl", "orders"], by_style.loc["starry_swirl", "rejected"]) == (2, 1)
    assert pd.isna(by_style.loc["fauve", "rejection_rate"]) and by_style.loc["fauve", "engine"] == "not styled"
    ledger = read_ledger_day(store, day).set_index("style_id")
    assert by_style.loc["sepia_oil", "proofs_generated"] == ledger.loc["sepia_oil", "attempts"] >= 2

    png = store.get_bytes(metrics_key(day, "png"))
    with Image.open(io.BytesIO(png)) as chart:
        assert chart.format == "PNG" and chart.width >= 800 and chart.height >= 300
    shutil.copyfile(store.path(metrics_key(day, "png")), "/tmp/photogen_rejection_chart.png")  # for a person to look at

    metadata = result.asset_materializations_for_node("rejection_metrics")[0].metadata
    assert metadata["rejection_rate"].value == pytest.approx(1 / 3, abs=1e-4)  # 1 rejected of 3 with a verdict
    assert (metadata["orders"].value, metadata["verdicts"].value, metadata["rejected"].value) == (4, 3, 1)
    table_md = metadata["rejection_rate_by_style"].value
    assert "| starry_swirl | 2 | 2 | 1 | 50% |" in table_md and "| sepia_oil | 1 | 1 | 0 | 0% |" in table_md
    # no PHOTOGEN_PUBLIC_BASE_URL here: a note instead of a link (tests/test_rejection_chart.py: the link)
    assert "PHOTOGEN_PUBLIC_BASE_URL" in metadata["chart"].value and metrics_key(day, "png") in metadata["chart"].value
    assert metadata["table"].value == store.uri(metrics_key(day, "parquet"))

    ledger_metadata = result.asset_materializations_for_node("generation_ledger")[0].metadata
    assert ledger_metadata["dagster/partition_row_count"].value == 4
    assert ledger_metadata["path"].value == store.uri(ledger_key(day))
    assert (ledger_metadata["outcome_ready"].value, ledger_metadata["outcome_cancelled"].value) == (1, 2)
    assert len(ledger_metadata["preview"].value.records) == 4
    # images are linked, never inlined
    everything = json.dumps([str(v) for m in (metadata, ledger_metadata) for v in m.values()])
    assert "base64" not in everything and "data:image" not in everything and len(everything) < 20_000


def test_the_analytics_job_runs_daily_partitions_of_both_assets():
    assert daily_partitions.get_first_partition_key() == "2026-11-01"
    assert daily_partitions.get_last_partition_key() == datetime.now(UTC).date().isoformat()  # today, for the day so far
    defs = dg.Definitions(
        assets=analytics_assets,
        jobs=[analytics_job],
        resources={
            "orders": OrdersDatabase(url="sqlite://"),
            "storage": ArtifactStorage(settings=StoreConfig(root="/nonexistent")),
            "links": OperatorLinks(),
        },
    )
    job = defs.resolve_job_def("analytics_job")
    assert job.partitions_def == daily_partitions
    built = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert built == {"generation_ledger", "rejection_metrics", "job_ledger"}
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert specs["rejection_metrics"].group_name == specs["generation_ledger"].group_name == "analytics"
    assert [c.name for c in specs["generation_ledger"].metadata["dagster/column_schema"].columns] == SCHEMA.names


@pytest.mark.slow
def test_a_rebuild_after_retention_deleted_the_files_keeps_the_history(world, tmp_path):
    """Retention deletes an order's files once the ledger has its row; rebuilding that day
    later (a backfill) must not turn the row's scores into nulls."""
    day, instance = world["day"], world["instance"]
    pruned = LocalArtifactStore(tmp_path / "artifacts")  # the same orders, every order file gone
    pruned.put_bytes(ledger_key(day), world["store"].get_bytes(ledger_key(day)))
    resources = {
        "orders": world["defs"].resources["orders"],
        "storage": ArtifactStorage(settings=StoreConfig(root=str(pruned.root))),
    }
    assert dg.materialize([generation_ledger], partition_key=day, instance=instance, resources=resources).success
    before, after = (read_ledger_day(s, day).sort_values("order_id", ignore_index=True) for s in (world["store"], pruned))
    pd.testing.assert_frame_equal(after, before)
    # and without the previous file, the rebuild has only what the database knows
    pruned.delete(ledger_key(day))
    assert dg.materialize([generation_ledger], partition_key=day, instance=instance, resources=resources).success
    bare = read_ledger_day(pruned, day).set_index("order_id").loc[world["ids"]["ready"]]
    assert pd.isna(bare["engine"]) and bare["outcome"] == "ready" and bare["seconds_total"] > 0
    assert not pruned.exists(OrderKeys(world["ids"]["ready"]).validation)


@pytest.mark.slow
def test_a_day_without_orders_has_an_empty_ledger_and_says_so(world, tmp_path):
    storage = ArtifactStorage(settings=StoreConfig(root=str(tmp_path / "artifacts")))
    resources = {"orders": world["defs"].resources["orders"], "storage": storage, "links": world["defs"].resources["links"]}
    result = dg.materialize(analytics_assets, partition_key="2026-11-02", instance=world["instance"], resources=resources)
    assert result.success
    store = storage.store()
    assert read_ledger_day(store, "2026-11-02").empty
    metadata = result.asset_materializations_for_node("rejection_metrics")[0].metadata
    assert (metadata["orders"].value, metadata["rejection_rate"].value) == (0, None)
    assert metadata["rejection_rate_by_style"].value == "No orders settled this day."
    with Image.open(io.BytesIO(store.get_bytes(metrics_key("2026-11-02", "png")))) as chart:
        assert chart.format == "PNG"
    assert pd.read_parquet(io.BytesIO(store.get_bytes(metrics_key("2026-11-02", "parquet")))).empty


# -- photogen report ---------------------------------------------------------------------


def _report(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli_main.cli, ["report", *args], env=env)


def _after_home_line(stderr: str) -> str:
    """The report's stderr after the line every home-using command starts with (cli/common.py)."""
    lines = stderr.splitlines(keepends=True)
    assert lines and lines[0].startswith("[photogen] home "), stderr
    return "".join(lines[1:])


def _numbers(payload: dict) -> dict:
    """What the report computed, without where it read it."""
    return {k: v for k, v in payload.items() if k not in ("days", "sources", "by_day")}


@pytest.mark.slow
def test_report_json_gives_the_numbers_per_style(world):
    result = _report("--json", "--home", str(world["home"]))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["orders"], payload["verdicts"], payload["rejected"]) == (4, 3, 1)
    assert payload["rejection_rate"] == pytest.approx(0.3333, abs=1e-4) and payload["days"] == [world["day"]]
    styles = {s["style_id"]: s for s in payload["styles"]}
    assert set(styles) == {"sepia_oil", "starry_swirl", "fauve"}
    assert (styles["starry_swirl"]["rejection_rate"], styles["sepia_oil"]["rejection_rate"]) == (0.5, 0.0)
    assert styles["fauve"]["rejection_rate"] is None and styles["fauve"]["identity_median"] is None
    # every settled order is in the ledger: nothing was read directly from the orders database
    assert payload["sources"] == {
        "ledger": {"days": [world["day"]], "orders": 4},
        "orders_db": {"read": True, "days": [], "orders": 0, "order_ids": []},
    }
    assert payload["by_day"] == [
        {"day": world["day"], "orders": 4, "from_ledger": 4, "from_orders_db": 0, "ledger_file": True, "source": "ledger"}
    ]
    ready = read_ledger_day(world["store"], world["day"]).set_index("style_id").loc["sepia_oil"]
    assert styles["sepia_oil"]["median_seconds"]["print_master"] == round(ready["seconds_print_master"], 3)
    # what generating cost, beside the rates: per style, per engine backend, per tier
    assert styles["sepia_oil"]["generation_cost_usd_total"] == round(ready["generation_cost_usd"], 6) > 0
    assert (styles["fauve"]["orders_costed"], styles["fauve"]["generation_cost_usd_mean"]) == (0, None)
    engines = {e["engine_backend"]: e for e in payload["engines"]}
    assert set(engines) == {"embedded", "not recorded"} and engines["embedded"]["orders_costed"] == 3
    assert engines["embedded"]["generation_cost_usd_total"] == pytest.approx(payload["generation_cost_usd_total"])
    assert [(t["tier"], t["orders"]) for t in payload["tiers"]] == [("standard", 4)]
    assert styles["sepia_oil"]["identity_median"] == pytest.approx(pd.Series(ready["identity_scores"]).median(), abs=1e-4)

    text = _report("--home", str(world["home"]))
    assert text.exit_code == 0 and _after_home_line(text.stderr) == ""
    assert f"ledger: {world['day']} (4 orders); read directly from the orders database: nothing the ledger lacks" in text.stdout
    assert re.search(r"starry_swirl\s+2\s+1/2\s+50%", text.stdout) and re.search(r"sepia_oil\s+1\s+0/1\s+0%", text.stdout)
    since = json.loads(_report("--json", "--since", "2099-01-01", "--home", str(world["home"])).stdout)
    assert (since["orders"], since["styles"], since["since"]) == (0, [], "2099-01-01")


def test_report_says_how_to_build_a_missing_ledger_and_refuses_a_bad_date(tmp_path):
    empty = _report("--home", str(tmp_path / "nothing"))
    assert empty.exit_code == 0 and empty.stdout == ""
    assert len(_after_home_line(empty.stderr).strip().splitlines()) == 1
    assert "materialize the generation_ledger asset" in empty.stderr
    as_json = _report("--json", "--home", str(tmp_path / "nothing"))
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["orders"] == 0
    assert json.loads(as_json.stdout)["sources"]["orders_db"]["read"] is False  # no orders.db in that home
    assert not (tmp_path / "nothing").exists()  # a report makes no home, no database, no ledger
    bad = _report("--since", "21/11/2026", "--home", str(tmp_path))
    assert bad.exit_code == 2 and bad.stderr.strip().count("\n") == 0 and "YYYY-MM-DD" in bad.stderr


def _rejected_now(book: SqlOrderBook, order_id: str, style_id: str = "starry_swirl") -> Order:
    """An order placed, paid and rejected by the identity gate just now, through the
    lifecycle the pipeline uses (no model runs: the report reads the database, not images)."""
    book.add(Order(id=order_id, style_id=style_id, product_id="poster_a3", upload_key=f"uploads/{order_id}"))
    paid_without_payments(book, order_id)
    start_generation(book, order_id)
    return reject(book, order_id, "no proof kept the customer's likeness after 1 rounds")


def test_the_orders_database_is_read_where_the_ledger_has_no_file_and_from_its_newest_day_on():
    def at(day: str) -> datetime:
        return datetime.fromisoformat(day).replace(tzinfo=UTC)

    since = date(2026, 11, 5)
    assert database_windows([], None) == [(datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))]
    assert database_windows([], since) == [(at("2026-11-05"), datetime(9999, 1, 1, tzinfo=UTC))]
    files = [date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 9), date(2026, 11, 10)]
    assert database_windows(files, since) == [
        (at("2026-11-07"), at("2026-11-09")),  # the gap
        (at("2026-11-10"), datetime(9999, 1, 1, tzinfo=UTC)),  # the newest file's day may be partial, and all after it
    ]
    assert database_windows(files[2:], since)[0] == (at("2026-11-05"), at("2026-11-09"))
    assert day_ranges(files + [date(2026, 11, 11)]) == "2026-11-05..2026-11-06, 2026-11-09..2026-11-11"


def test_report_shows_orders_that_settled_without_a_ledger_and_says_where_it_read_them(orders_db, database_url, tmp_path):
    """On SQLite and PostgreSQL: orders settle, the report shows them before anyone builds
    the ledger, the numbers stay the same once a day's file exists, and each line of the
    output says where the rows came from."""
    book = SqlOrderBook(orders_db)
    _add(book, "ord_ready", PATHS["ord_ready"])  # delivered on DAY, its proofs passed the gate
    _add(book, "ord_day_before", PATHS["ord_day_before"])  # cancelled the day before
    now = _rejected_now(book, "ord_now")  # rejected just now
    today = now.events[-1].at.date()
    before, day = date.fromisoformat("2026-11-19"), DAY.date()
    artifacts = tmp_path / "artifacts"
    env = {"PHOTOGEN_DATABASE_URL": database_url, "PHOTOGEN_ARTIFACTS_ROOT": str(artifacts)}
    home = ["--home", str(tmp_path / "home")]

    # no ledger at all: the report reads every settled order from the orders database, and says so
    text = _report(*home, env=env)
    assert text.exit_code == 0, text.output
    assert "no generation ledger" in text.stderr and "materialize the generation_ledger asset" in text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"3 orders settled from {before} to {today} (UTC); 1 of the 2 with a verdict were rejected")
    assert lines[1] == (
        f"ledger: none yet; read directly from the orders database: {day_ranges([before, day, today])} "
        "(3 orders, not in the ledger yet)"
    )
    assert re.search(r"starry_swirl\s+1\s+1/1\s+100%", text.stdout) and re.search(r"sepia_oil\s+2\s+0/1\s+0%", text.stdout)
    direct = json.loads(_report("--json", *home, env=env).stdout)
    assert (direct["orders"], direct["verdicts"], direct["rejected"]) == (3, 2, 1)
    assert direct["days"] == [before.isoformat(), day.isoformat(), today.isoformat()]
    assert direct["sources"] == {
        "ledger": {"days": [], "orders": 0},
        "orders_db": {
            "read": True,
            "days": direct["days"],
            "orders": 3,
            "order_ids": ["ord_day_before", "ord_ready", "ord_now"],  # oldest settlement first
        },
    }
    assert [(d["day"], d["source"], d["from_orders_db"]) for d in direct["by_day"]] == [
        (d, "orders_db", 1) for d in direct["days"]
    ]
    store = LocalArtifactStore(artifacts)
    read_directly = current_ledger(store, book).rows

    # the generation_ledger asset builds DAY's file: the same rows the report read directly
    resources = {
        "orders": OrdersDatabase(url=database_url),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(artifacts))),
    }
    assert dg.materialize([generation_ledger], partition_key=day.isoformat(), resources=resources).success
    built = read_ledger_day(store, day)
    pd.testing.assert_frame_equal(built, read_directly[read_directly["day"] == day.isoformat()].reset_index(drop=True))

    with_ledger = json.loads(_report("--json", *home, env=env).stdout)
    assert _numbers(with_ledger) == _numbers(direct)  # the same numbers, whichever way the rows came
    assert with_ledger["sources"]["ledger"] == {"days": [day.isoformat()], "orders": 1}
    # the day before has no file (a gap), and today is after the newest file: both read directly
    assert with_ledger["sources"]["orders_db"]["order_ids"] == ["ord_day_before", "ord_now"]
    assert {d["day"]: d["source"] for d in with_ledger["by_day"]} == {
        before.isoformat(): "orders_db",
        day.isoformat(): "ledger",
        today.isoformat(): "orders_db",
    }
    text = _report(*home, env=env)
    assert _after_home_line(text.stderr) == "" and text.stdout.splitlines()[1] == (
        f"ledger: {day} (1 order); read directly from the orders database: {day_ranges([before, today])} "
        "(2 orders, not in the ledger yet)"
    )

    # an order that settled on DAY after its file was built, and one delivered that day and
    # re-rendered since: the newest file is topped up from the orders database
    _add(book, "ord_late", [(S.PAID, 12), (S.CANCELLED, 23)])
    book.transition("ord_ready", S.RENDERING)
    book.transition("ord_ready", S.READY)
    late = json.loads(_report("--json", *home, env=env).stdout)
    assert late["orders"] == 4 and late["sources"]["ledger"]["orders"] == 0  # ord_ready's row in the file is out of date
    assert late["sources"]["orders_db"]["order_ids"] == ["ord_day_before", "ord_late", "ord_now", "ord_ready"]
    by_day = {d["day"]: d for d in late["by_day"]}
    assert by_day[day.isoformat()] == {
        "day": day.isoformat(),
        "orders": 1,
        "from_ledger": 0,
        "from_orders_db": 1,
        "ledger_file": True,
        "source": "ledger+orders_db",
    }
    assert (by_day[today.isoformat()]["orders"], by_day[today.isoformat()]["source"]) == (2, "orders_db")

    # --since leaves out what settled before it, from either source
    since = json.loads(_report("--json", "--since", today.isoformat(), *home, env=env).stdout)
    assert since["sources"]["orders_db"]["order_ids"] == ["ord_now", "ord_ready"] and since["sources"]["ledger"]["days"] == []


@pytest.mark.slow
def test_report_reads_real_orders_directly_as_the_ledger_asset_would_write_them(world, tmp_path):
    """The four orders run through the real pipeline: read directly from the orders
    database (their artifacts, no ledger file), then from the file the asset builds."""
    day = world["day"]
    artifacts = tmp_path / "artifacts"  # the same order files, no ledger
    shutil.copytree(world["store"].root, artifacts, ignore=shutil.ignore_patterns("analytics"))
    env = {"PHOTOGEN_DATABASE_URL": world["defs"].resources["orders"].url, "PHOTOGEN_ARTIFACTS_ROOT": str(artifacts)}
    home = ["--home", str(world["home"])]
    direct = json.loads(_report("--json", *home, env=env).stdout)
    from_ledger = json.loads(_report("--json", *home).stdout)
    assert _numbers(direct) == _numbers(from_ledger) and direct["rejected"] == 1
    assert direct["sources"]["orders_db"]["orders"] == 4 and direct["sources"]["ledger"]["orders"] == 0
    assert direct["by_day"] == [
        {"day": day, "orders": 4, "from_ledger": 0, "from_orders_db": 4, "ledger_file": False, "source": "orders_db"}
    ]
    store = LocalArtifactStore(artifacts)
    read_directly = current_ledger(store, world["book"]).rows.sort_values("order_id", ignore_index=True)
    pd.testing.assert_frame_equal(read_directly, read_ledger_day(world["store"], day).sort_values("order_id", ignore_index=True))

    resources = {
        "orders": world["defs"].resources["orders"],
        "storage": ArtifactStorage(settings=StoreConfig(root=str(artifacts))),
    }
    assert dg.materialize([generation_ledger], partition_key=day, instance=world["instance"], resources=resources).success
    pd.testing.assert_frame_equal(read_ledger_day(store, day).sort_values("order_id", ignore_index=True), read_directly)
    after = json.loads(_report("--json", *home, env=env).stdout)
    assert _numbers(after) == _numbers(direct) and after["sources"] == from_ledger["sources"]


@pytest.mark.slow
def test_report_runs_as_a_real_process(world):
    command = [str(PHOTOGEN)]
    done = subprocess.run(
        [*command, "report", "--json", "--home", str(world["home"])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=world["root"],
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["rejected"] == 1
    bad = subprocess.run([*command, "report", "--since", "yesterday"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("photogen: error: --since") and "Traceback" not in bad.stderr


# -- the README's analytics snippets, run as written ------------------------------------------------------


def _snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", DOCS.read_text(), re.S)
    assert match, f"no snippet {name} in {DOCS}"
    return match.group(1)


def _exec(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOCS), "exec"), {"__name__": "__snippet__"})
    return out.getvalue()


@pytest.mark.slow
def test_the_pandas_snippet_prints_the_rejection_rate_per_style(world, monkeypatch):
    monkeypatch.chdir(world["root"])  # where .photogen/ is
    lines = dict(line.split() for line in _exec(_snippet("ledger-pandas")).strip().splitlines()[1:])
    assert lines == {"sepia_oil": "0%", "starry_swirl": "50%"}  # fauve has no verdict yet


@pytest.mark.slow
def test_the_fetch_materializations_snippet_prints_each_days_metrics(world, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(world["home"] / "dagster"))
    output = _exec(_snippet("fetch-materializations"))
    assert f"{world['day']} 4 orders 33% rejected" in output.splitlines()


@pytest.mark.slow
def test_the_costs_snippet_prints_margin_per_order_and_cost_per_style(world, tmp_path, monkeypatch):
    """Run on a copy of the ledger folder with an older day file written before the cost
    columns existed (the oldest file: a plain read of the folder would drop them)."""
    folder = tmp_path / ".photogen" / "artifacts" / "analytics" / "ledger"
    shutil.copytree(world["store"].path("analytics/ledger/"), folder)
    new_columns = ["tier", "engine_backend", "generation_seconds", "predict_seconds", "predictions"]
    new_columns += ["predictions_reused", "generation_cost_usd", "margin_usd"]
    ledger = read_ledger_day(world["store"], world["day"])
    before = ledger.head(1).assign(order_id="ord_before_costs", day="2026-11-01").drop(columns=new_columns)
    old_schema = pa.schema([f for f in SCHEMA if f.name not in new_columns])
    pq.write_table(pa.Table.from_pandas(before, schema=old_schema, preserve_index=False), folder / "day=2026-11-01.parquet")
    monkeypatch.chdir(tmp_path)

    rows = [line.split() for line in _exec(_snippet("ledger-costs")).strip().splitlines()]
    margins = {r[0]: float(r[1]) for r in rows if r[0].startswith("ord_")}
    costed = ledger[ledger["generation_cost_usd"].notna()]
    assert set(margins) == set(costed["order_id"]) and len(margins) == 3  # not the unstarted order, nor the old one
    for row in costed.to_dict("records"):  # payments off: nothing paid, the margin is minus the cost
        assert margins[row["order_id"]] == pytest.approx(row["margin_usd"], abs=1e-4)
        assert row["margin_usd"] == pytest.approx(-row["generation_cost_usd"]) and row["margin_usd"] < 0
    styles = {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in rows if r[0] in set(ledger["style_id"])}
    per_style = costed.groupby("style_id")["generation_cost_usd"]
    assert set(styles) == {"sepia_oil", "starry_swirl"}  # fauve's order never generated
    for style, (orders, mean, total) in styles.items():
        assert orders == per_style.count()[style] and total == pytest.approx(per_style.sum()[style], abs=1e-4)
        assert mean == pytest.approx(per_style.mean()[style], abs=1e-4)
