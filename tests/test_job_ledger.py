"""The job ledger: real studio jobs (a pose pack of the astronaut's photo, a fashion shoot of
a drawn t-shirt) made shot by shot on the embedded engines without Dagster, then one row per
shot built from the orders database and the stored shot records, the `job_ledger` asset
materialized for the day on a real local Dagster instance (its Parquet read back with
pandas), and `photogen report --jobs` per kind, before and after the day's file exists.
On SQLite and PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from assets.analytics import analytics_assets, analytics_job, daily_partitions, job_ledger
from photogen_pipelines.analytics.job_ledger import (
    COLUMNS,
    DTYPES,
    GATE_SCORES,
    build_job_ledger_day,
    job_ledger_key,
    latest_rows,
    per_kind,
    read_job_ledger_day,
)
from photogen_pipelines.cli import main as cli_main
from photogen_pipelines.cli import report  # noqa: F401  (registers `photogen report`)
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.export import ModelVersion
from photogen_pipelines.jobs.plan import plan_shots
from photogen_pipelines.jobs.results import reject_stored_shot, save_shot, stored_shot
from photogen_pipelines.jobs.shots import ShotEngines, make_shot
from photogen_pipelines.jobs.states import Job, JobState
from photogen_pipelines.orders.uploads import take_product_photo, take_upload
from photogen_pipelines.workflows.jobs import JobRequest, Placement, place_job, shot_inputs
from resources import ArtifactStorage, OrdersDatabase, StoreConfig
from resources.links import OperatorLinks
from sensors.analytics import nightly_analytics
from tests.dagster_helpers import job_placement, local_instance
from tests.product_photos import garment_photo

COST_PER_SHOT = 0.0125  # what each shot is said to have cost: the ledger carries it through
MODELS = [ModelVersion(role="stylizer", name="embedded", version="test")]


def _placement(defs):
    return job_placement(defs.resources)


def _make_every_shot(defs, place: Placement, job: Job) -> Job:
    """What the `job_shots` asset does for each shot, without Dagster: made, gated, stored, settled."""
    resources = defs.resources
    catalog = resources["catalog"]
    kind = catalog.kinds().get(job.kind)
    tier = catalog.products().tier(job.tier)
    engines = ShotEngines(
        stylizer=resources["styles"].stylizer_for(tier.engine, tier.steps),
        faces=place.faces,
        safety=resources["safety"].gate(catalog.quality()),
        retry_decay=catalog.styles().retry_decay,
    )
    inputs = shot_inputs(place.database, place.store, place.faces, catalog.styles(), job)
    lifecycle.start_generating(place.database, job.id)
    for planned in plan_shots(catalog.kinds(), kind, job.seed, job.inputs.get("poses")):
        outcome = make_shot(kind, planned, inputs, engines, embedded=True)
        save_shot(place.store, job.id, outcome, MODELS, COST_PER_SHOT)
        record = outcome.record
        lifecycle.settle_shot(
            place.database, job.id, planned.name, outcome.passed, len(record.attempts), record.attempts[-1].scores, record.reason
        )
    return lifecycle.get(place.database, job.id, any_caller=True)


@pytest.fixture
def shop(tmp_path, database_url, face_images):
    """Two settled jobs: a pose pack (both shots passed) and a fashion shoot whose second
    shot the pack's consistency check turned away after the fact."""
    defs = build_defs(str(tmp_path / "home"), database_url=database_url)
    place = _placement(defs)
    person = take_upload(place.database, place.store, place.faces, png_bytes(face_images["astronaut"]), consent=True)
    pack = place_job(
        place,
        JobRequest(kind="pose_pack", upload_ids=(person.id,), style_id="sepia_oil", poses=("headshot", "smiling")),
        None,
        "pack",
    ).job
    model = take_upload(place.database, place.store, place.faces, png_bytes(face_images["ardern"]), consent=True)
    garment = take_product_photo(place.database, place.store, png_bytes(garment_photo()[0]))
    shoot_request = JobRequest(
        kind="fashion_shoot", upload_ids=(model.id,), product_upload_id=garment.id, poses=("front", "back")
    )
    shoot = place_job(place, shoot_request, None, "shoot").job
    _make_every_shot(defs, place, pack)
    _make_every_shot(defs, place, shoot)
    reason = "the shot shows another person than the rest of the pack (a test's verdict)"
    reject_stored_shot(place.store, shoot.id, "back", reason)
    lifecycle.reject_shot(place.database, shoot.id, "back", reason)
    jobs = {job.kind: lifecycle.finish(place.database, job.id) for job in (pack, shoot)}
    yield {"defs": defs, "place": place, "jobs": jobs, "person_uploads": {person.id, model.id, garment.id}, "root": tmp_path}
    place.database.dispose()


def _report(shop, *args: str):
    env = {
        "PHOTOGEN_DATABASE_URL": shop["defs"].resources["orders"].url,
        "PHOTOGEN_ARTIFACTS_ROOT": str(shop["place"].store.root),
    }
    result = CliRunner().invoke(cli_main.cli, ["report", "--jobs", *args, "--home", str(shop["root"] / "report-home")], env=env)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


def test_the_ledger_has_a_row_per_shot_with_its_gates_scores_retries_and_cost(shop):
    place, jobs = shop["place"], shop["jobs"]
    pack, shoot = jobs["pose_pack"], jobs["fashion_shoot"]
    assert (pack.state, shoot.state) == (JobState.READY, JobState.READY)
    day = pack.updated_at.date()
    frame = build_job_ledger_day(place.database, place.store, day)

    assert list(frame.columns) == list(COLUMNS) and {n: str(t) for n, t in frame.dtypes.items()} == {
        n: str(pd.Series(dtype=t).dtype) for n, t in DTYPES.items()
    }
    rows = frame.set_index(["job_id", "shot"])
    assert list(rows.index) == [(pack.id, "headshot"), (pack.id, "smiling"), (shoot.id, "front"), (shoot.id, "back")]
    for job in (pack, shoot):
        for shot in job.shots:
            row, stored = rows.loc[(job.id, shot.name)], stored_shot(place.store, job.id, shot.name)
            assert (row["kind"], row["tier"], row["engine"], row["job_state"]) == (job.kind, job.tier, "embedded", "ready")
            assert (row["position"], row["tries"], row["retries"], row["seed"]) == (
                shot.position, shot.tries, stored.record.retries, stored.record.seed,
            )  # fmt: skip
            assert row["tries"] == row["retries"] + 1 and row["cost_usd"] == COST_PER_SHOT
            assert row["seconds"] == stored.seconds > 0
            assert row["settled_at"] == row["updated_at"] == job.updated_at and row["created_at"] == job.created_at
            assert row["day"] == day.isoformat()

    # a pose has a face to gate and no product; a packshot the product lock and no face
    headshot, front = rows.loc[(pack.id, "headshot")], rows.loc[(shoot.id, "front")]
    assert headshot["identity"] >= 0.3 and pd.isna(headshot["product_ssim"]) and headshot["outcome"] == "passed"
    assert front["product_ssim"] >= 0.8 and pd.isna(front["identity"]) and front["outcome"] == "passed"
    assert frame["explicit"].notna().all() and frame["lowest_frame_identity"].isna().all()  # no video here
    back = rows.loc[(shoot.id, "back")]
    assert back["outcome"] == "rejected" and "another person" in back["reason"] and back["product_ssim"] >= 0.8
    assert pd.isna(headshot["reason"])
    # the job's credits once per job, on its first shot (payments off: 0)
    assert [(r["position"], r["job_credits"]) for r in frame.to_dict("records")] == [(0, 0), (1, None), (0, 0), (1, None)]

    # no personal data: no upload or identity ids, no customer_ref
    assert not {c for c in COLUMNS if "upload" in c or "customer" in c or c == "identity_id"}
    cells = {str(v) for v in frame.astype(object).to_numpy().ravel()}
    assert not cells & shop["person_uploads"]

    # another day holds none of them
    assert build_job_ledger_day(place.database, place.store, day - timedelta(days=1)).empty


def test_a_job_met_in_two_days_files_keeps_its_latest_rows(shop):
    place, pack = shop["place"], shop["jobs"]["pose_pack"]
    today = build_job_ledger_day(place.database, place.store, pack.updated_at.date())
    yesterday = today.assign(
        updated_at=today["updated_at"] - timedelta(days=1), job_state="generating", outcome="pending", day="earlier"
    )
    latest = latest_rows(pd.concat([today, yesterday], ignore_index=True))
    pd.testing.assert_frame_equal(latest, today)


def test_the_asset_writes_the_days_parquet_and_the_report_gives_the_numbers_per_kind(shop):
    place, pack, shoot = shop["place"], shop["jobs"]["pose_pack"], shop["jobs"]["fashion_shoot"]
    day = pack.updated_at.astimezone(UTC).date().isoformat()
    store = place.store

    # before any file: every job read directly from the orders database
    direct = json.loads(_report(shop, "--json").stdout)
    assert direct["sources"] == {"ledger": {"days": [], "jobs": 0}, "orders_db": {"read": True, "jobs": 2}}
    assert (direct["jobs"], direct["shots"], direct["passed"], direct["rejected"], direct["pending"]) == (2, 4, 3, 1, 0)
    kinds = {k["kind"]: k for k in direct["kinds"]}
    assert set(kinds) == {"pose_pack", "fashion_shoot"}
    assert (kinds["pose_pack"]["jobs"], kinds["pose_pack"]["shots"], kinds["pose_pack"]["passed_rate"]) == (1, 2, 1.0)
    assert (kinds["fashion_shoot"]["passed"], kinds["fashion_shoot"]["rejected"], kinds["fashion_shoot"]["passed_rate"]) == (
        1,
        1,
        0.5,
    )
    for job in (pack, shoot):
        stored = [stored_shot(store, job.id, s.name) for s in job.shots]
        numbers = kinds[job.kind]
        assert numbers["median_retries"] == pd.Series([s.record.retries for s in stored]).median()
        assert numbers["median_seconds_per_shot"] == pytest.approx(pd.Series([s.seconds for s in stored]).median(), abs=1e-3)
        assert numbers["cost_usd_per_shot"] == COST_PER_SHOT and numbers["cost_usd_total"] == pytest.approx(2 * COST_PER_SHOT)

    # the asset builds the day on a real local Dagster instance; its Parquet reads back with pandas
    resources = {
        "orders": OrdersDatabase(url=shop["defs"].resources["orders"].url),
        "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
    }
    with local_instance(shop["root"] / "dagster") as instance:
        result = dg.materialize([job_ledger], partition_key=day, instance=instance, resources=resources)
        assert result.success
        metadata = result.asset_materializations_for_node("job_ledger")[0].metadata
    assert (metadata["shots"].value, metadata["jobs"].value) == (4, 2)
    assert (metadata["passed/fashion_shoot"].value, metadata["rejected/fashion_shoot"].value) == (1, 1)
    assert metadata["by_kind"].value["pose_pack"] == {"jobs": 1, "shots": 2, "passed": 2, "rejected": 0, "pending": 0}
    assert metadata["path"].value == store.uri(job_ledger_key(day))
    parquet = pd.read_parquet(store.path(job_ledger_key(day)))
    assert list(parquet.columns) == list(COLUMNS) and len(parquet) == 4
    assert sorted(parquet["outcome"]) == ["passed", "passed", "passed", "rejected"]
    built = read_job_ledger_day(store, day)
    pd.testing.assert_frame_equal(built, build_job_ledger_day(place.database, store, day))
    assert per_kind(built) == direct["kinds"]

    # with the file: the same numbers, read from the ledger
    from_ledger = json.loads(_report(shop, "--json").stdout)
    assert from_ledger["sources"] == {"ledger": {"days": [day], "jobs": 2}, "orders_db": {"read": True, "jobs": 0}}
    assert from_ledger["kinds"] == direct["kinds"] and from_ledger["days"] == [day]
    text = _report(shop).stdout
    assert re.search(r"pose_pack\s+1\s+2\s+2/2\s+100%", text) and re.search(r"fashion_shoot\s+1\s+2\s+1/2\s+50%", text)
    assert f"job ledger: {day} (2 jobs); read directly from the orders database: 0 jobs" in text

    # an operator's retry moves the job to the day of that change: read directly again, its shot pending
    lifecycle.retry_shot(place.database, shoot.id, "back")
    retried = json.loads(_report(shop, "--json").stdout)
    assert retried["sources"]["orders_db"]["jobs"] == 1 and retried["pending"] == 1
    later = json.loads(_report(shop, "--json", "--since", (datetime.now(UTC).date() + timedelta(days=1)).isoformat()).stdout)
    assert (later["jobs"], later["kinds"]) == (0, [])


def test_the_job_ledger_is_built_nightly_with_the_other_analytics():
    assert job_ledger in analytics_assets and job_ledger.partitions_def == daily_partitions
    assert nightly_analytics.job_name == analytics_job.name
    defs = dg.Definitions(
        assets=analytics_assets,
        jobs=[analytics_job],
        resources={
            "orders": OrdersDatabase(url="sqlite://"),
            "storage": ArtifactStorage(settings=StoreConfig(root="/none")),
            "links": OperatorLinks(),
        },
    )
    executable = {k.to_user_string() for k in defs.resolve_job_def("analytics_job").asset_layer.executable_asset_keys}
    assert "job_ledger" in executable
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == "job_ledger")
    assert spec.group_name == "analytics" and set(spec.kinds) == {"pandas", "parquet"}
    assert [c.name for c in spec.metadata["dagster/column_schema"].columns] == list(COLUMNS)
    assert {"identity", "product_ssim", "explicit", "lowest_frame_identity"} == set(GATE_SCORES) <= set(COLUMNS)
