"""Studio jobs through Dagster on a real (SQLite) instance: each shot its own partition
(job x shot), the export assembled from the settled shots, the sensors that turn jobs into
runs, a shot retried alone, and the pack's consistency check rejecting an impostor shot.
Real photos and the embedded engines (the CPU versions the kinds catalog names)."""

from __future__ import annotations

import io
import zipfile

import dagster as dg
import numpy as np
import pytest
from PIL import Image

import assets
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.export import read_metadata
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.states import JobState, ShotState, partition_key
from photogen_pipelines.orders.uploads import take_product_photo, take_upload
from photogen_pipelines.workflows.jobs import JobRequest, place_job
from sensors.jobs import paid_jobs, settled_jobs
from tests.dagster_helpers import job_placement, local_instance
from tests.product_photos import garment_photo

JOB_ASSETS = assets.jobs_assets


@pytest.fixture
def instance(tmp_path):
    with local_instance(tmp_path / "dagster") as instance:
        yield instance


@pytest.fixture
def defs(tmp_path):
    return build_defs(str(tmp_path / "home"))


def _placement(defs):
    return job_placement(defs.resources)


def _materialize(defs, instance, selection, key, tags=None):
    return dg.materialize(
        JOB_ASSETS, selection=selection, partition_key=key, instance=instance, resources=defs.resources, tags=tags
    )


def _run_job(defs, instance, job) -> None:
    instance.add_dynamic_partitions("jobs", [job.id])
    for shot in job.shots:
        assert _materialize(defs, instance, [assets.job_shots], partition_key(job.id, shot.name)).success
    assert _materialize(defs, instance, [assets.job_export], job.id).success


def test_a_pose_pack_runs_shot_by_shot_and_delivers_its_zip(defs, instance, face_images):
    place = _placement(defs)
    upload = take_upload(place.database, place.store, place.faces, png_bytes(face_images["astronaut"]), consent=True)
    request = JobRequest(
        kind="pose_pack", upload_ids=(upload.id,), style_id="sepia_oil", poses=("headshot", "smiling", "profile")
    )
    job = place_job(place, request, None, "pack-1").job
    assert job.state == JobState.PAID and [s.name for s in job.shots] == ["headshot", "smiling", "profile"]

    # the sensor asks for one run per shot, each its own partition, and adds the job's key
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = paid_jobs(context)
    assert sorted(r.partition_key for r in result.run_requests) == sorted(
        partition_key(job.id, s) for s in ("headshot", "smiling", "profile")
    )
    assert {r.run_key for r in result.run_requests} == {f"shot:{job.id}:{s.name}:0" for s in job.shots}
    assert result.dynamic_partitions_requests[0].partition_keys == [job.id]

    instance.add_dynamic_partitions("jobs", [job.id])
    for shot in job.shots:
        run = _materialize(defs, instance, [assets.job_shots], partition_key(job.id, shot.name))
        metadata = run.asset_materializations_for_node("job_shots")[0].metadata
        assert metadata["outcome"].value == "passed" and metadata["score_identity"].value >= 0.3
    generating = lifecycle.get(place.database, job.id, any_caller=True)
    assert generating.state == JobState.GENERATING and generating.all_settled

    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        exports = settled_jobs(context).run_requests
    assert [r.partition_key for r in exports] == [job.id]

    assert _materialize(defs, instance, [assets.job_export], job.id).success
    ready = lifecycle.get(place.database, job.id, any_caller=True)
    assert ready.state == JobState.READY
    archive = place.store.get_bytes(JobKeys(job.id).export)
    metadata = read_metadata(archive)
    assert [s.outcome for s in metadata.shots] == ["passed"] * 3
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        names = set(zipped.namelist())
        for shot in metadata.shots:
            assert set(shot.files) == {"full", "2048", "1024"} and set(shot.files.values()) <= names
            full = Image.open(io.BytesIO(zipped.read(shot.files["full"])))
            assert full.format == "PNG" and full.size == tuple(shot.size)
    # the UI's lineage: every shot a materialized partition of job_shots
    shots = instance.get_materialized_partitions(dg.AssetKey("job_shots"))
    assert {partition_key(job.id, s) for s in ("headshot", "smiling", "profile")} <= set(shots)


def test_an_impostor_shot_is_rejected_by_the_packs_consistency_and_a_shot_is_retried_alone(defs, instance, face_images):
    place = _placement(defs)
    upload = take_upload(place.database, place.store, place.faces, png_bytes(face_images["astronaut"]), consent=True)
    request = JobRequest(
        kind="pose_pack", upload_ids=(upload.id,), style_id="sepia_oil", poses=("headshot", "smiling", "profile")
    )
    job = place_job(place, request, None, "pack-2").job
    instance.add_dynamic_partitions("jobs", [job.id])
    for shot in job.shots:
        _materialize(defs, instance, [assets.job_shots], partition_key(job.id, shot.name))
    # a doctored output: the smiling shot is someone else
    place.store.put_bytes(JobKeys(job.id).shot_picture("smiling"), png_bytes(face_images["obama"]))
    assert _materialize(defs, instance, [assets.job_export], job.id).success
    judged = lifecycle.get(place.database, job.id, any_caller=True)
    assert judged.state == JobState.READY
    assert judged.shot("smiling").state == ShotState.REJECTED and "another person" in judged.shot("smiling").reason
    metadata = read_metadata(place.store.get_bytes(JobKeys(job.id).export))
    assert {s.name: s.outcome for s in metadata.shots} == {"headshot": "passed", "smiling": "rejected", "profile": "passed"}

    # the operator retries that one shot alone; the others keep their pictures and tries
    before = {s.name: s.updated_at for s in judged.shots}
    rerun = _materialize(defs, instance, [assets.job_shots], partition_key(job.id, "smiling"), tags={"photogen/rerun": "true"})
    assert rerun.success
    retried = lifecycle.get(place.database, job.id, any_caller=True)
    assert retried.state == JobState.GENERATING and retried.shot("smiling").state == ShotState.PASSED
    assert {s.name: s.updated_at for s in retried.shots if s.name != "smiling"} == {
        k: v for k, v in before.items() if k != "smiling"
    }
    assert _materialize(defs, instance, [assets.job_export], job.id).success
    assert lifecycle.get(place.database, job.id, any_caller=True).state == JobState.READY
    metadata = read_metadata(place.store.get_bytes(JobKeys(job.id).export))
    assert [s.outcome for s in metadata.shots] == ["passed"] * 3


def test_a_fashion_shoot_on_the_embedded_engine_is_packshots_with_the_product_lock_holding(defs, instance, face_images):
    place = _placement(defs)
    model = take_upload(place.database, place.store, place.faces, png_bytes(face_images["ardern"]), consent=True)
    photo, _ = garment_photo()
    product = take_product_photo(place.database, place.store, png_bytes(photo))
    request = JobRequest(
        kind="fashion_shoot", upload_ids=(model.id,), product_upload_id=product.id, poses=("front", "back", "walking")
    )
    job = place_job(place, request, None, "shoot-1").job
    _run_job(defs, instance, job)
    done = lifecycle.get(place.database, job.id, any_caller=True)
    assert done.state == JobState.READY
    for shot in done.shots:
        assert shot.state == ShotState.PASSED and shot.scores["product_ssim"] >= 0.8
        assert "identity" not in shot.scores  # a packshot has no person to gate
    metadata = read_metadata(place.store.get_bytes(JobKeys(job.id).export))
    assert {m.role for m in metadata.models} >= {"segmentation", "content safety"}
    sizes = {s.name: tuple(s.size) for s in metadata.shots}
    assert sizes["front"] == (2048, 2048) and sizes["back"] == (1638, 2048)  # 1:1 and 4:5 packshots
    picture = np.asarray(Image.open(io.BytesIO(place.store.get_bytes(JobKeys(job.id).shot_picture("front")))).convert("RGB"))
    assert picture[5, 5].min() >= 235  # the white seamless backdrop, not the photo's grey


def test_a_rejected_credit_paid_job_gets_its_credits_back_once_from_the_sensor(defs, face_images):
    from photogen_pipelines.credits import wallet
    from photogen_pipelines.credits.wallet import EntryKind
    from sensors.jobs import job_credit_settlements

    place = _placement(defs)
    with place.database.session() as session:
        customer = wallet.open_wallet(session, place.products, None, "cust-r")
        wallet.post(session, customer, EntryKind.GRANT, 100, key="grant-r", reason="a pack")
    upload = take_upload(place.database, place.store, place.faces, png_bytes(face_images["astronaut"]), consent=True)
    request = JobRequest(kind="pose_pack", upload_ids=(upload.id,), style_id="sepia_oil", poses=("headshot",),
                         payment="credits", customer_ref="cust-r")  # fmt: skip
    job = place_job(place, request, None, "pack-r").job
    assert job.credits_paid == 60 and job.payments == "credits"
    # a payments-off job rejected before it is no refund owed, and must not hold the sensor back
    free = place_job(place, JobRequest(kind="pose_pack", upload_ids=(upload.id,), style_id="sepia_oil"), None, "pack-free").job
    for each in (free, job):
        lifecycle.start_generating(place.database, each.id)
        for shot in each.shots:
            lifecycle.settle_shot(place.database, each.id, shot.name, False, 3, None, "no face found in the shot")
        assert lifecycle.finish(place.database, each.id).state == JobState.REJECTED
    for _ in range(2):  # ticks repeated: one refund
        with dg.build_sensor_context(resources=defs.resources) as context:
            job_credit_settlements(context)
    refunded = lifecycle.get(place.database, job.id, any_caller=True)
    assert refunded.state == JobState.REFUNDED and refunded.credits_refunded == 60
    assert lifecycle.get(place.database, free.id, any_caller=True).state == JobState.REJECTED
    with place.database.session() as session:
        assert wallet.open_wallet(session, place.products, None, "cust-r").id  # still there
        balance = sum(e.amount for e in wallet.entries(session, customer.id))
    assert balance == 110  # the welcome 10, the pack's 100: the spend came back once
