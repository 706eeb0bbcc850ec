"""`photogen demo --kind KIND`: one studio job run through Dagster on the local instance, as
a user runs it (the installed command, a real process, a home in tmp), with the embedded
engines: a fashion shoot's packshots held by the product lock, a pose pack's takes gated on
identity, and the kinds the embedded engine cannot make refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photogen_pipelines.jobs.export import read_metadata

PHOTOGEN = Path(sys.executable).with_name("photogen")


def photogen(tmp_path: Path, *args: str, returncode: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PHOTOGEN_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "PHOTOGEN_ENGINE": "embedded",
    }
    env.pop("PHOTOGEN_VIDEO_MODELS_DIR", None)
    result = subprocess.run(
        [str(PHOTOGEN), "demo", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == returncode, (args, result.returncode, result.stderr)
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # refused before the home is made: not even its line
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def fashion_shoot(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("fashion")
    result = photogen(tmp_path, "--kind", "fashion_shoot", "--poses", "front,back", "--json")
    summary = json.loads(result.stdout)  # ONE JSON object: progress and logs stay on stderr
    summary["_stderr"] = result.stderr
    return summary


@pytest.mark.slow
def test_a_fashion_shoot_delivers_two_packshots_held_by_the_product_lock(fashion_shoot):
    assert fashion_shoot["kind"] == "fashion_shoot" and fashion_shoot["state"] == "ready"
    shots = fashion_shoot["shots"]
    assert [(s["name"], s["position"], s["outcome"]) for s in shots] == [("front", 0, "passed"), ("back", 1, "passed")]
    for shot in shots:
        assert shot["scores"]["product_ssim"] >= 0.8 and "identity" not in shot["scores"]  # a packshot has no face
        assert shot["tries"] >= 1 and shot["reason"] is None
        assert "packshot" in shot["made"]  # the embedded engine says it made packshots, not poses
        assert len(shot["files"]) == 1 and Path(shot["files"][0]).is_file()
        assert Path(shot["files"][0]).is_relative_to(fashion_shoot["out"])
    assert "packshots" in fashion_shoot["embedded"]
    # progress on stderr, one line per shot, as the order demo's stages
    assert "shot 1/2 front: passed (product SSIM" in fashion_shoot["_stderr"]
    assert "shot 2/2 back: passed (product SSIM" in fashion_shoot["_stderr"]


@pytest.mark.slow
def test_the_fashion_shoots_zip_validates_and_matches_the_summary(fashion_shoot):
    archive = Path(fashion_shoot["zip"])
    assert archive == Path(fashion_shoot["out"]) / "export.zip" and archive.parent.name == fashion_shoot["job"]
    metadata = read_metadata(archive.read_bytes())
    assert metadata.job_id == fashion_shoot["job"] and metadata.kind == "fashion_shoot"
    assert [(s.name, s.outcome) for s in metadata.shots] == [("front", "passed"), ("back", "passed")]
    assert {s.name: s.attempts[-1].scores["product_ssim"] for s in metadata.shots} == {
        s["name"]: s["scores"]["product_ssim"] for s in fashion_shoot["shots"]
    }
    assert all(set(s.files) == {"full", "2048", "1024"} for s in metadata.shots)


@pytest.mark.slow
def test_a_fashion_shoot_picture_is_a_real_packshot(fashion_shoot):
    front = fashion_shoot["shots"][0]["files"][0]
    with Image.open(front) as opened:
        assert opened.format == "PNG" and opened.size == (2048, 2048)  # the 1:1 catalog packshot at zoom size
        picture = np.asarray(opened.convert("RGB"))
    assert picture[5, 5].min() >= 235  # the white seamless backdrop at the corner
    # the product is in it: a large region far from the backdrop, with detail, not a blank frame
    darker = picture.mean(axis=2) < 200
    assert 0.05 < darker.mean() < 0.8
    assert picture[darker].std() > 20


@pytest.mark.slow
def test_a_pose_pack_gives_two_takes_gated_on_identity(tmp_path):
    summary = json.loads(photogen(tmp_path, "--kind", "pose_pack", "--poses", "headshot,smiling", "--json").stdout)
    assert summary["kind"] == "pose_pack" and summary["state"] == "ready"
    assert [s["name"] for s in summary["shots"]] == ["headshot", "smiling"]
    for shot in summary["shots"]:
        assert shot["outcome"] == "passed" and shot["scores"]["identity"] >= 0.3  # passed its style's identity gate
        assert "not a new pose" in shot["made"]
        assert Path(shot["files"][0]).is_file()
    assert summary["home"] == str(tmp_path / "home")
    assert len(read_metadata(Path(summary["zip"]).read_bytes()).shots) == 2


def test_a_try_on_on_the_embedded_engine_is_refused_naming_the_engines_that_can(tmp_path):
    line = one_error_line(photogen(tmp_path, "--kind", "try_on", returncode=2))
    assert line.startswith("photogen: error: the embedded engine cannot make a try_on; these can: ")
    assert "flux2-klein" in line and line.endswith("[kind_needs_engine]")
    assert not (tmp_path / "home").exists()  # refused before anything was made


def test_an_unknown_kind_is_refused_in_one_line(tmp_path):
    line = one_error_line(photogen(tmp_path, "--kind", "nope", returncode=2))
    assert "unknown kind 'nope'" in line and "fashion_shoot" in line and line.endswith("[unknown_kind]")


def test_options_the_kind_does_not_take_are_refused(tmp_path):
    line = one_error_line(photogen(tmp_path, "--kind", "pose_pack", "--poses", "headshot,moonwalk", returncode=2))
    assert "unknown: moonwalk" in line and line.endswith("[unknown_pose]")
    garment = tmp_path / "garment.png"
    garment.write_bytes(b"never read: the option is refused first")
    line = one_error_line(photogen(tmp_path, "--kind", "pose_pack", "--garment", str(garment), returncode=2))
    assert "--garment" in line
    line = one_error_line(photogen(tmp_path, "--kind", "living_portrait", returncode=2))
    assert "--video-models" in line and line.endswith("[kind_needs_engine]")


def test_the_job_summary_says_what_the_embedded_engine_made_and_where_the_files_are(capsys, tmp_path):
    from photogen_pipelines.cli.demo_jobs import print_job_summary

    folder = tmp_path / "home" / "photogen-demo" / "job_1"
    summary = {
        "job": "job_1",
        "kind": "fashion_shoot",
        "state": "ready",
        "reason": "1 of 2 shots passed",
        "embedded": "product packshots on studio backdrops at the catalog's aspect ratios, without a model",
        "portrait_order": None,
        "seconds": 21.04,
        "zip": str(folder / "export.zip"),
        "shots": [
            {
                "name": "front",
                "position": 0,
                "outcome": "passed",
                "tries": 1,
                "scores": {"product_ssim": 0.991, "explicit": 0.0},
                "reason": None,
                "files": [str(folder / "shots" / "00_front.png")],
                "made": "a packshot of the product on the white seamless backdrop, 1:1",
            },
            {
                "name": "back",
                "position": 1,
                "outcome": "rejected",
                "tries": 4,
                "scores": {"product_ssim": 0.41},
                "reason": "the product changed",
                "files": [],
                "made": "a packshot",
            },
        ],
        "out": str(folder),
        "dagster_home": str(tmp_path / "home" / "dagster"),
        "home": str(tmp_path / "home"),
    }
    print_job_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Job job_1: ready (fashion_shoot, 1 of 2 shots passed)"
    assert lines[2] == f"  files copied to {folder}/"
    assert lines[3].startswith("  the embedded engine made product packshots")
    assert lines[4] == "  shot 0 front: passed, product SSIM 0.99  shots/00_front.png"
    assert lines[5].strip().startswith("a packshot of the product on the white seamless backdrop")
    assert lines[6] == "  shot 1 back: rejected after 4 tries: the product changed"
    assert any(line.startswith("  export:     export.zip") for line in lines)
    assert lines[-1].startswith("  see the runs: ") and f"ui --home {tmp_path / 'home'}" in lines[-1]
