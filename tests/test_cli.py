"""The installed `photogen` command, run as a customer runs it: a real process each time.

`faces` and `identity` run the real YuNet/SFace models on the test faces; the catalogs
are checked against docs/architecture.md §7; one full `photogen demo` order runs start to finish.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageOps
from skimage import data

from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "tests" / "data" / "faces"
PHOTOGEN = Path(sys.executable).with_name("photogen")
PEOPLE = ["ardern_2022", "macron_2025", "obama_senate", "astronaut"]
SFACE_THRESHOLD = 0.363
STAGES = {"selfie", "styled_candidates", "validated_proofs", "print_master", "print_file"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def env(workdir) -> dict[str, str]:
    """Local state under tmp: nothing touches the repository's .photogen."""
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir()
    if (REPO / "dagster.yaml").is_file():
        shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return {**os.environ, "PHOTOGEN_HOME": str(workdir / "photogen_home"), "DAGSTER_HOME": str(dagster_home)}


def photogen(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(PHOTOGEN), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result


def run_all(env: dict[str, str], cwd: Path, commands: dict) -> dict:
    """Independent commands in parallel processes; each pays Python's start-up."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(commands, pool.map(lambda args: photogen(env, cwd, *args), commands.values()), strict=True))


@pytest.fixture(scope="module")
def face_files(workdir) -> dict[str, Path]:
    files = {name: FACES / f"{name}.jpg" for name in PEOPLE if name != "astronaut"}
    files["astronaut"] = workdir / "astronaut.png"
    Image.fromarray(data.astronaut()).save(files["astronaut"])
    return files


@pytest.fixture(scope="module")
def altered_copies(workdir, face_files) -> dict[str, Path]:
    """Each face re-encoded as a JPEG at q70, resized to 2/3 and mirrored."""
    copies = {}
    for name, path in face_files.items():
        image = Image.open(path).convert("RGB")
        image = ImageOps.mirror(image.resize((image.width * 2 // 3, image.height * 2 // 3), Image.LANCZOS))
        copies[name] = workdir / f"{name}_altered.jpg"
        image.save(copies[name], format="JPEG", quality=70)
    return copies


@pytest.fixture(scope="module")
def faces_json(env, workdir, face_files) -> dict[str, dict]:
    results = run_all(env, workdir, {name: ("faces", str(path), "--json") for name, path in face_files.items()})
    return {name: json.loads(result.stdout) for name, result in results.items()}


@pytest.fixture(scope="module")
def identity_json(env, workdir, face_files, altered_copies) -> dict[tuple[str, str], dict]:
    commands = {(name, "altered"): ("identity", str(face_files[name]), str(altered_copies[name]), "--json") for name in PEOPLE}
    for a, b in itertools.combinations(PEOPLE, 2):
        commands[(a, b)] = ("identity", str(face_files[a]), str(face_files[b]), "--json")
    return {key: json.loads(result.stdout) for key, result in run_all(env, workdir, commands).items()}


# -- faces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", PEOPLE)
def test_faces_finds_the_one_face(faces_json, face_files, name):
    payload = faces_json[name]
    width, height = Image.open(face_files[name]).size
    assert payload["image"] == str(face_files[name])
    assert len(payload["faces"]) == 1, payload
    face = payload["faces"][0]
    assert face["score"] > 0.8
    x, y, w, h = face["box"]
    assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (face["box"], width, height)
    # a portrait's face: not a speck, not the whole frame, a bit taller than wide
    assert 0.1 * width < w < 0.8 * width and 0.1 * height < h < 0.8 * height
    assert 0.6 < w / h < 1.2
    (left_eye, right_eye, nose, mouth_left, mouth_right) = face["landmarks"]
    for px, py in face["landmarks"]:
        assert x <= px <= x + w and y <= py <= y + h
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])  # upright


# -- identity -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", PEOPLE)
def test_identity_same_person_survives_reencode_resize_and_mirror(identity_json, name):
    payload = identity_json[(name, "altered")]
    assert payload["same_person"] is True
    assert payload["similarity"] > 0.6, payload
    assert payload["threshold"] == pytest.approx(SFACE_THRESHOLD)
    assert "sface" in payload["encoder"]


@pytest.mark.slow
@pytest.mark.parametrize("a, b", list(itertools.combinations(PEOPLE, 2)))
def test_identity_different_people(identity_json, a, b):
    payload = identity_json[(a, b)]
    assert payload["same_person"] is False
    assert payload["similarity"] < SFACE_THRESHOLD, payload


@pytest.mark.slow
def test_identity_human_output_is_one_verdict_line(env, workdir, face_files, altered_copies, identity_json):
    same = photogen(env, workdir, "identity", str(face_files["obama_senate"]), str(altered_copies["obama_senate"]))
    different = photogen(env, workdir, "identity", str(face_files["obama_senate"]), str(face_files["ardern_2022"]))
    expected = [
        (same, "same person", ("obama_senate", "altered")),
        (different, "different people", ("ardern_2022", "obama_senate")),
    ]
    for result, verdict, key in expected:
        lines = result.stdout.splitlines()
        assert len(lines) == 1, result.stdout
        assert verdict in lines[0]
        assert f"{identity_json[key]['similarity']:.3f}" in lines[0]  # the same number as --json
        assert result.stderr == ""


# -- catalogs -------------------------------------------------------------------------


def test_styles_json_lists_styles_with_identity_thresholds(env, workdir):
    catalog = json.loads(photogen(env, workdir, "styles", "--json").stdout)
    styles = catalog["styles"]
    assert len(styles) >= 6
    ids = [s["id"] for s in styles]
    assert len(set(ids)) == len(ids)
    for style in styles:
        assert 0.0 < style["identity_threshold"] < 1.0, style
        assert style["name"] and style["description"]


def test_products_json_has_print_pixel_sizes(env, workdir):
    products = json.loads(photogen(env, workdir, "products", "--json").stdout)
    by_name = {p["id"]: p for p in products}
    sizes = {p["id"]: tuple(p["pixel_size"]) for p in products}
    twelve_by_eighteen = [pid for pid, p in by_name.items() if (p["width_in"], p["height_in"]) == (12, 18)]
    assert twelve_by_eighteen, by_name.keys()
    # 12 x 18 in at 300 DPI plus 4 mm of bleed on every side (docs/architecture.md §7)
    assert sizes[twelve_by_eighteen[0]] == (3694, 5494)
    a_sizes = {(p["width_mm"], p["height_mm"]): sizes[pid] for pid, p in by_name.items() if p["width_mm"]}
    assert a_sizes[(297, 420)] == (3508, 4961)  # A3
    assert a_sizes[(420, 594)] == (4961, 7016)  # A2
    for product in products:
        assert product["dpi"] == 300 and product["min_dpi"] >= 150 and product["price_cents"] > 0


# -- one full order -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(env, workdir) -> dict:
    home, out = workdir / "demo_home", workdir / "demo_out"
    result = photogen(env, workdir, "demo", "--json", "--variants", "2", "--home", str(home), "--out", str(out), timeout=600)
    summary = json.loads(result.stdout)  # ONE JSON object: progress and logs stay on stderr
    assert isinstance(summary, dict)
    summary["_home"], summary["_out"] = home, out
    return summary


@pytest.mark.slow
def test_demo_order_is_ready_with_every_file(demo):
    assert demo["outcome"] == "ready", demo.get("reason")
    paths = [demo["print_file"], demo["manifest"], demo["dagster_home"]] + [p["path"] for p in demo["proofs"]]
    for path in paths:
        assert Path(path).exists(), path
    for path in (demo["print_file"], demo["manifest"], *(p["path"] for p in demo["proofs"])):
        assert Path(path).is_relative_to(demo["_out"]), path
    recorded = SqlOrderBook(Database(f"sqlite:///{demo['_home'] / 'orders.db'}")).get(demo["order_id"])
    assert recorded.state == OrderState.READY and recorded.approved_proof == demo["chosen_proof"]
    manifest = json.loads(Path(demo["manifest"]).read_text())
    assert manifest["pixel_size"] == demo["pixel_size"]


@pytest.mark.slow
def test_demo_print_file_is_print_ready(demo):
    with Image.open(demo["print_file"]) as printed:
        assert list(printed.size) == demo["pixel_size"]
        assert tuple(round(v) for v in printed.info["dpi"]) == (300, 300)
        assert printed.mode == "RGB"
        icc = printed.info.get("icc_profile")
        assert icc, "no embedded ICC profile"
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    assert "srgb" in description.lower(), description
    assert demo["effective_dpi"] >= 150


@pytest.mark.slow
def test_demo_proofs_pass_the_identity_gate_and_the_best_is_chosen(demo):
    proofs = demo["proofs"]
    assert len(proofs) == 2
    threshold = demo["identity_threshold"]
    assert 0.0 < threshold < 1.0
    # each proof is a different take, named for the customer
    assert all(p["take"] for p in proofs) and len({p["take"] for p in proofs}) == len(proofs)
    for proof in proofs:
        assert proof["identity_score"] >= threshold, proof
        with Image.open(proof["path"]) as image:
            assert image.size[0] > 0
    best = max(proofs, key=lambda p: p["identity_score"])
    assert demo["chosen_proof"] == best["variant"]


@pytest.mark.slow
def test_demo_reports_time_per_stage(demo):
    stages = demo["seconds_per_stage"]
    assert set(stages) == STAGES
    assert all(seconds > 0 for seconds in stages.values()), stages
    assert sum(stages.values()) <= demo["seconds_total"]
