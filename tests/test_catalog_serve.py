"""A merchant catalog shot through `photogen serve` (API, Dagster webserver and daemon, the
embedded engines with their shipped models): two SKUs x nine poses become 18 shot partitions
and 2 exports; a shot failed on purpose is retried alone from the operator's CLI; editing one
SKU's photo re-shoots that SKU only.

The fashion shoot runs on the embedded engine, whose shots are packshots (imaging/packshot.py)
that the product lock checks for real. Tiny random-weight FLUX.2 models paint noise, which the
lock rightly refuses on every try (tests/test_jobs_dagster.py shows that path)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import requests

from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs.export import read_metadata
from tests.api_helpers import jpeg_bytes
from tests.product_photos import RUST, garment_photo
from tests.test_serve import PHOTOGEN, REPO, _serve_env, _wait_until, new_api_key, serving

pytestmark = pytest.mark.slow  # photogen serve, 27 shot runs and their exports

POSES = 9


def _photogen(home: Path, *args: str) -> dict:
    done = subprocess.run([str(PHOTOGEN), *args, "--json"], env=_serve_env(home), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _catalog(artifacts: Path, model: str, photos: dict[str, bytes]) -> None:
    folder = artifacts / "catalogs" / "spring"
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rows = ["sku,name,category,product_photo"]
    for sku, photo in photos.items():
        (folder / "photos" / f"{sku}.png").write_bytes(photo)
        rows.append(f"{sku},Tee {sku},tops,photos/{sku}.png")
    (folder / "model.json").write_text(json.dumps({"identity_id": model}))
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n")


def _two_skus(api: str, home: Path, face) -> tuple[str, bytes, bytes]:
    """The shop's model saved over HTTP and a catalog of two tees (navy, rust) in the store:
    the model's identity id and the two photos."""
    auth = new_api_key(home)
    upload = requests.post(
        f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("m.jpg", jpeg_bytes(face))}, timeout=60
    )
    assert upload.status_code == 201, upload.text
    made = requests.post(
        f"{api}/v1/identities", headers=auth, json={"upload_ids": [upload.json()["id"]], "consent": True}, timeout=60
    )
    assert made.status_code == 201, made.text
    navy, rust = png_bytes(garment_photo()[0]), png_bytes(garment_photo(RUST, stripe=(210, 120, 80))[0])
    _catalog(home / "artifacts", made.json()["id"], {"tee-navy": navy, "tee-rust": rust})
    return made.json()["id"], navy, rust


def _jobs(home: Path) -> list[dict]:
    from photogen_pipelines.db.database import open_database
    from photogen_pipelines.db.tables import JobRow
    from photogen_pipelines.jobs import lifecycle

    database = open_database(f"sqlite:///{home / 'orders.db'}")
    with database.session() as session:
        ids = [row.id for row in session.query(JobRow).order_by(JobRow.created_at)]
    return [lifecycle.get(database, job_id, any_caller=True).model_dump(mode="json") for job_id in ids]


def _shot_runs(instance: dg.DagsterInstance, job_id: str, shot: str) -> int:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="shot_job", tags={"photogen/job": job_id}))
    return sum(1 for run in runs if run.tags.get("dagster/partition/shot") == shot)


def test_a_catalog_is_shot_sku_by_pose_through_serve_a_failed_shot_is_retried_alone_and_an_edit_reshoots_one_sku(
    tmp_path, face_images
):
    with serving(tmp_path, {}) as (process, api, home, log):
        model, navy, rust = _two_skus(api, home, face_images["ardern"])
        artifacts = home / "artifacts"

        def ready(count: int) -> list[dict]:
            jobs = _jobs(home)
            assert not [j for j in jobs if j["state"] in ("failed", "rejected")], jobs
            return jobs if len(jobs) == count and all(j["state"] == "ready" for j in jobs) else []

        first = _wait_until(lambda: ready(2), 420, "the catalog's two SKUs to be shot", process, log)
        assert sorted(j["sku"] for j in first) == ["tee-navy", "tee-rust"]
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            shots = set(instance.get_materialized_partitions(dg.AssetKey("job_shots")))
            assert len(shots) == 2 * POSES == len({f"{j['id']}|{s['name']}" for j in first for s in j["shots"]} & shots)
            assert set(instance.get_materialized_partitions(dg.AssetKey("job_export"))) == {j["id"] for j in first}
            for job in first:
                archive = (artifacts / "jobs" / job["id"] / "export.zip").read_bytes()
                metadata = read_metadata(archive)
                assert [s.outcome for s in metadata.shots] == ["passed"] * POSES
                assert all(s.attempts[-1].scores["product_ssim"] >= 0.8 for s in metadata.shots)

            # a shot failed on purpose: the job's product photo is gone when the operator retries it
            navy_job = next(j for j in first if j["sku"] == "tee-navy")
            product = artifacts / "jobs" / navy_job["id"] / "product.png"
            kept = product.read_bytes()
            product.unlink()
            _photogen(home, "jobs", "retry", navy_job["id"], "walking")

            def walking() -> dict:
                job = _photogen(home, "jobs", "show", navy_job["id"])
                shot = next(s for s in job["shots"] if s["name"] == "walking")
                return job if job["state"] == "ready" and shot["state"] != "pending" else {}

            failed = _wait_until(walking, 240, "the failed shot to settle and the export to follow", process, log)
            shot = next(s for s in failed["shots"] if s["name"] == "walking")
            assert shot["state"] == "rejected" and "failed" in shot["reason"], shot
            assert [s["state"] for s in failed["shots"]].count("passed") == POSES - 1

            # retried alone, with the photo back: only its partition runs again
            product.write_bytes(kept)
            _photogen(home, "jobs", "retry", navy_job["id"], "walking")
            _wait_until(
                lambda: (
                    all(s["state"] == "passed" for s in _photogen(home, "jobs", "show", navy_job["id"])["shots"])
                    and _photogen(home, "jobs", "show", navy_job["id"])["state"] == "ready"
                ),
                240,
                "the retried shot to pass",
                process,
                log,
            )
            assert _shot_runs(instance, navy_job["id"], "walking") == 3
            assert all(_shot_runs(instance, navy_job["id"], s["name"]) == 1 for s in navy_job["shots"] if s["name"] != "walking")

            # the merchant gives the rust tee a new photo: that SKU alone is shot again
            _catalog(artifacts, model, {"tee-navy": navy, "tee-rust": png_bytes(garment_photo((40, 110, 60))[0])})
            after = _wait_until(lambda: ready(3), 300, "the edited SKU to be shot again", process, log)
            again = [j for j in after if j["id"] not in {f["id"] for f in first}]
            assert [j["sku"] for j in again] == ["tee-rust"] and len(again[0]["shots"]) == POSES
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="shot_job"))
            assert len(runs) == 3 * POSES + 2  # 27 shots, and the two retries of the failed one
            assert len(set(instance.get_materialized_partitions(dg.AssetKey("job_export")))) == 3
        finally:
            instance.dispose()


def test_on_tiny_flux2_models_a_catalog_runs_as_shot_partitions_each_refused_with_its_tries(tmp_path, face_images):
    """The same catalog on the production engine's code path with tiny random-weight FLUX.2
    [klein] models (`photogen dev make-tiny-models --family flux2-klein`): every one of the 18
    shots is painted from the model's photo and the garment's, four tries each with new seeds;
    the noise the tiny weights paint shows no face, so each shot is refused with its reason and
    the jobs end rejected. (The edit that re-shoots one SKU is the test above's.)"""
    from photogen_pipelines.devtools.tiny_models import write_tiny_models

    models = tmp_path / "tiny-flux2"
    write_tiny_models(models, family="flux2-klein")
    env = {"PHOTOGEN_ENGINE": "flux2-klein", "PHOTOGEN_MODELS_DIR": str(models)}
    with serving(tmp_path, env) as (process, api, home, log):
        _two_skus(api, home, face_images["ardern"])
        artifacts = home / "artifacts"

        def settled(count: int) -> list[dict]:
            jobs = _jobs(home)
            return jobs if len(jobs) == count and all(j["state"] in ("ready", "rejected") for j in jobs) else []

        first = _wait_until(lambda: settled(2), 600, "the catalog's two SKUs to be tried", process, log)
        tries = 1 + 3  # the fashion shoot's max_retries
        for job in first:
            assert job["engine"] == "flux2-klein" and job["state"] == "rejected"
            assert [s["tries"] for s in job["shots"]] == [tries] * POSES
            assert all(s["reason"] for s in job["shots"])  # the first gate that refused the last try, said
            metadata = read_metadata((artifacts / "jobs" / job["id"] / "export.zip").read_bytes())
            for shot in metadata.shots:
                assert shot.outcome == "rejected" and len({a.seed for a in shot.attempts}) == tries
                # one seed across the set: every pose's first try paints from the job's seed
                assert shot.attempts[0].seed == metadata.shots[0].attempts[0].seed
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        try:
            assert len(set(instance.get_materialized_partitions(dg.AssetKey("job_shots")))) == 2 * POSES
            assert set(instance.get_materialized_partitions(dg.AssetKey("job_export"))) == {j["id"] for j in first}
            assert len(instance.get_runs(filters=dg.RunsFilter(job_name="shot_job"))) == 2 * POSES
        finally:
            instance.dispose()
