"""A job's shots planned from its kind, and its delivery ZIP: three resolutions of every
passing shot and a metadata.json that validates against its model. Real pictures (scikit-image's
photographs, enlarged where a test needs a picture over 2048 px)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from skimage import data

from photogen_pipelines.catalog.kinds import load_kinds
from photogen_pipelines.errors import BadInput
from photogen_pipelines.jobs.export import AttemptRecord, JobCost, JobMetadata, ModelVersion, ShotRecord, build_zip, read_metadata
from photogen_pipelines.jobs.plan import plan_shots


def test_a_fashion_shoot_paints_every_pose_from_one_seed_and_retries_with_new_ones():
    catalog = load_kinds()
    shots = plan_shots(catalog, catalog.get("fashion_shoot"), job_seed=1234)
    assert [s.name for s in shots] == catalog.get("fashion_shoot").poses and [s.position for s in shots] == list(range(9))
    assert {s.seed for s in shots} == {1234}  # locked across poses
    assert shots[0].pose_words == catalog.poses["front"]
    retries = [shots[0].seed_of(attempt) for attempt in range(4)]
    assert retries[0] == 1234 and len(set(retries)) == 4
    assert plan_shots(catalog, catalog.get("fashion_shoot"), job_seed=1234) == shots  # the same plan again


def test_a_pose_pack_gives_each_shot_its_own_seed_and_takes_the_jobs_poses():
    catalog = load_kinds()
    pack = catalog.get("pose_pack")
    shots = plan_shots(catalog, pack, job_seed=7, poses=["profile", "headshot"])
    assert [s.name for s in shots] == ["profile", "headshot"] and shots[0].seed != shots[1].seed
    every = plan_shots(catalog, pack, job_seed=7)
    seeds = [s.seed_of(a) for s in every for a in range(3)]
    assert len(every) == 8 and len(set(seeds)) == len(seeds)  # no two attempts of a pack share a seed
    with pytest.raises(BadInput) as refused:
        plan_shots(catalog, pack, job_seed=7, poses=["headshot", "cartwheel"])
    assert refused.value.code == "unknown_pose"
    proofs = plan_shots(catalog, catalog.get("portrait_print"), job_seed=7, proofs=3)
    assert [s.name for s in proofs] == ["proof_0", "proof_1", "proof_2"] and proofs[0].pose_words is None


def _metadata(shots: list[ShotRecord]) -> JobMetadata:
    return JobMetadata(
        job_id="job_0123456789abcdef",
        kind="fashion_shoot",
        tier="standard",
        made_at=datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
        shots=shots,
        models=[ModelVersion(role="stylizer", name="flux2-klein", version="FLUX.2-klein-4B")],
        cost=JobCost(usd=0.042, seconds=12.5),
    )


def _shot(name: str, position: int, passed: bool) -> ShotRecord:
    attempts = [AttemptRecord(attempt=0, seed=11, scores={"identity": 0.61, "product_lock": 0.7}, passed=False, reason="x")]
    if passed:
        attempts.append(AttemptRecord(attempt=1, seed=22, scores={"identity": 0.66, "product_lock": 0.93}, passed=True))
    return ShotRecord(
        name=name,
        position=position,
        outcome="passed" if passed else "rejected",
        seed=attempts[-1].seed,
        retries=len(attempts) - 1,
        attempts=attempts,
        reason=None if passed else "the product changed: SSIM 0.70 under 0.85",
    )


def test_the_zip_holds_three_resolutions_of_each_passing_shot_and_valid_metadata():
    large = np.asarray(Image.fromarray(data.astronaut()).resize((2400, 3000), Image.LANCZOS))  # 4:5, over 2048
    small = np.asarray(Image.fromarray(data.coffee()).resize((1500, 1000), Image.LANCZOS))  # under 2048
    metadata = _metadata([_shot("front", 0, True), _shot("back", 1, True), _shot("seated", 2, False)])
    archive = build_zip(metadata, {"front": large, "back": small})

    members = zipfile.ZipFile(io.BytesIO(archive))
    read = read_metadata(archive)
    assert [s.outcome for s in read.shots] == ["passed", "passed", "rejected"]
    expected_sizes = {"front": {"full": (2400, 3000), "2048": (1638, 2048), "1024": (819, 1024)}}
    expected_sizes["back"] = {"full": (1500, 1000), "2048": (1500, 1000), "1024": (1024, 683)}  # never enlarged
    for shot in read.shots[:2]:
        assert shot.size == expected_sizes[shot.name]["full"] and shot.retries == 1 and shot.seed == 22
        for label, name in shot.files.items():
            picture = Image.open(io.BytesIO(members.read(name)))
            assert picture.size == expected_sizes[shot.name][label], (shot.name, label)
            assert picture.format == ("PNG" if label == "full" else "JPEG")
        full = np.asarray(Image.open(io.BytesIO(members.read(shot.files["full"]))))
        assert np.array_equal(full, large if shot.name == "front" else small)  # the full picture is lossless
    rejected = read.shots[2]
    assert rejected.files == {} and rejected.size is None and "SSIM" in rejected.reason
    assert sorted(members.namelist()) == sorted(["metadata.json", *(name for shot in read.shots for name in shot.files.values())])
    raw = json.loads(members.read("metadata.json"))
    assert raw["shots"][0]["attempts"][1]["scores"]["product_lock"] == pytest.approx(0.93) and raw["cost"]["usd"] == 0.042


def test_a_zip_whose_pictures_do_not_match_its_shots_is_not_made_and_bad_metadata_does_not_validate():
    metadata = _metadata([_shot("front", 0, True), _shot("seated", 1, False)])
    picture = data.astronaut()
    for pictures in ({}, {"front": picture, "seated": picture}):
        with pytest.raises(ValueError, match="passing shots"):
            build_zip(metadata, pictures)
    document = json.loads(_metadata([_shot("front", 0, True)]).model_dump_json())
    document["shots"][0]["attempts"] = []
    with pytest.raises(ValidationError):
        JobMetadata.model_validate(document)
