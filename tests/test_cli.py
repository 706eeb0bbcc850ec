"""The installed `photogen` command, run as a customer runs it: a real process each time.

`faces` and `identity` run the real YuNet/SFace models on the test faces; the catalogs
are checked against docs/architecture.md §7; every command that uses a home names it on
stderr; one full `photogen demo` order runs start to finish, the one README.md shows.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageOps
from skimage import data

from photogen_pipelines.catalog import load_styles
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


def photogen(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 120, returncode: int = 0
) -> subprocess.CompletedProcess:
    result = subprocess.run([str(PHOTOGEN), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == returncode, (args, result.returncode, result.stderr)
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
def test_identity_human_output_is_a_verdict_line_and_where_its_threshold_comes_from(
    env, workdir, face_files, altered_copies, identity_json
):
    same = photogen(env, workdir, "identity", str(face_files["obama_senate"]), str(altered_copies["obama_senate"]))
    different = photogen(env, workdir, "identity", str(face_files["obama_senate"]), str(face_files["ardern_2022"]))
    expected = [
        (same, "same person", ("obama_senate", "altered")),
        (different, "different people", ("ardern_2022", "obama_senate")),
    ]
    for result, verdict, key in expected:
        lines = result.stdout.splitlines()
        assert len(lines) == 2, result.stdout
        assert lines[0].endswith(f": {verdict}")
        assert f"{identity_json[key]['similarity']:.3f}" in lines[0]  # the same number as --json
        assert result.stderr == ""


def test_identity_says_its_threshold_is_the_encoders_not_the_gates_and_style_uses_the_gates(env, workdir, face_files):
    """The default threshold is SFace's photo-to-photo one (0.363); the identity gate judges
    proofs by each style's own (styles.yaml): the output says which it used, `--style` uses a
    style's, and the per-style ones are listed."""
    styles = load_styles()
    gate = {s.id: s.identity_threshold for s in styles.styles}
    style = next(s for s in styles.styles if s.identity_threshold != SFACE_THRESHOLD)
    a, b = str(face_files["obama_senate"]), str(face_files["ardern_2022"])
    runs = run_all(
        env,
        workdir,
        {
            "text": ("identity", a, b),
            "json": ("identity", a, b, "--json"),
            "style_text": ("identity", a, a, "--style", style.id),
            "style_json": ("identity", a, b, "--style", style.id, "--json"),
        },
    )
    default = json.loads(runs["json"].stdout)
    assert (default["threshold"], default["threshold_source"], default["style_id"]) == (SFACE_THRESHOLD, "encoder", None)
    assert default["gate_thresholds"] == gate
    first, listing = runs["text"].stdout.splitlines()
    assert "threshold 0.363: the face encoder's photo-to-photo one, not the identity gate's" in first
    for style_id, threshold in gate.items():  # every style's gate threshold, where a reader sees it
        assert re.search(rf"{threshold:.2f} for [a-z_, ]*\b{style_id}\b", listing), listing
    assert "--style ID" in listing

    judged = json.loads(runs["style_json"].stdout)
    assert (judged["threshold"], judged["threshold_source"], judged["style_id"]) == (style.identity_threshold, "style", style.id)
    assert judged["similarity"] == default["similarity"] and judged["same_person"] is False
    assert judged["verdict"] == f"fails {style.id}'s identity gate"
    (line,) = runs["style_text"].stdout.splitlines()  # one photo against itself: passes any gate
    assert f"threshold {style.identity_threshold:.2f}: the identity gate's for {style.id}" in line
    assert line.endswith(f"passes {style.id}'s identity gate"), line


def test_identity_refuses_an_unknown_style_and_two_thresholds(env, workdir, face_files):
    a = str(face_files["obama_senate"])
    unknown = photogen(env, workdir, "identity", a, a, "--style", "nope", returncode=2)
    both = photogen(env, workdir, "identity", a, a, "--style", "ink_etching", "--threshold", "0.5", returncode=2)
    assert unknown.stderr.startswith("photogen: error: unknown style 'nope'") and unknown.stderr.count("\n") == 1
    assert both.stderr == "photogen: error: give --style or --threshold, not both\n"


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


def test_photogen_kinds_lists_each_kind_with_its_inputs(env, workdir):
    text = photogen(env, workdir, "kinds").stdout
    assert "fashion_shoot: Fashion catalog shoot." in text
    assert "shots    9: front, back, left" in text and "on CPU   refused: needs one of the engines above" in text
    listed = json.loads(photogen(env, workdir, "kinds", "--json").stdout)
    by_id = {kind["id"]: kind for kind in listed}
    assert by_id["fashion_shoot"]["shot_names"] == [
        "front",
        "back",
        "left",
        "right",
        "three_quarter",
        "walking",
        "seated",
        "hand_on_hip",
        "close_up",
    ]
    assert [i["name"] for i in by_id["try_on"]["inputs"]] == ["person", "garment"]
    assert by_id["living_portrait"]["embedded"] is None


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


# -- the home every command names ------------------------------------------------------------

HOME_LINE = re.compile(r"^\[photogen\] home (?P<home>/\S+) \((?P<source>[^)]*)\)(?P<rest>.*)$")


def home_line(stderr: str) -> re.Match:
    """The first stderr line: the home the command used and where that came from."""
    match = HOME_LINE.match(stderr.splitlines()[0] if stderr else "")
    assert match, stderr
    return match


def test_every_command_with_a_home_names_it_on_stderr_and_leaves_stdout_to_its_answer(env, tmp_path):
    """A key made in one home and a service on another was a newcomer's first 401: each
    command says which home it used, and why that one, on stderr only."""
    named, from_env = tmp_path / "named", tmp_path / "from_env"
    no_home = {k: v for k, v in env.items() if k != "PHOTOGEN_HOME"}
    runs = {
        "--home": photogen(no_home, tmp_path, "api-key", "create", "--name", "shop", "--home", "named"),
        "PHOTOGEN_HOME": photogen({**no_home, "PHOTOGEN_HOME": str(from_env)}, tmp_path, "api-key", "create", "--name", "shop"),
        "default": photogen(no_home, tmp_path, "api-key", "create", "--name", "shop"),
        "json": photogen(no_home, tmp_path, "api-key", "create", "--name", "shop", "--home", str(named), "--json"),
        "list": photogen(no_home, tmp_path, "api-key", "list", "--home", str(named)),
        "upgrade": photogen(no_home, tmp_path, "db", "upgrade", "--home", str(named)),
        "report": photogen(no_home, tmp_path, "report", "--json", "--home", str(tmp_path / "never")),
    }
    expected = {
        "--home": (named, "from --home"),
        "PHOTOGEN_HOME": (from_env, "from PHOTOGEN_HOME"),
        "default": (tmp_path / ".photogen", "the default, ./.photogen here; --home or PHOTOGEN_HOME picks another"),
    }
    for name, (home, source) in expected.items():
        line = home_line(runs[name].stderr)
        assert (line["home"], line["source"], line["rest"]) == (str(home), source, ""), runs[name].stderr
        assert re.fullmatch(r"pgk_\S+\n", runs[name].stdout), runs[name].stdout  # KEY=$(…) gets the secret alone
        assert (home / "orders.db").exists()
    assert json.loads(runs["json"].stdout)["name"] == "shop"  # --json stays one JSON object
    assert len(runs["list"].stdout.splitlines()) == 2 and home_line(runs["list"].stderr)["home"] == str(named)
    assert home_line(runs["upgrade"].stderr)["source"] == "from --home"
    # a report reads a home and makes none: it says so
    assert home_line(runs["report"].stderr)["source"] == "from --home; not made yet"
    assert json.loads(runs["report"].stdout)["orders"] == 0 and not (tmp_path / "never").exists()


def test_the_home_line_names_a_database_url_without_its_password(env, tmp_path):
    orders = tmp_path / "elsewhere.db"
    elsewhere = {**env, "PHOTOGEN_DATABASE_URL": f"sqlite:///{orders}"}
    made = photogen(elsewhere, tmp_path, "api-key", "create", "--name", "shop")
    line = home_line(made.stderr)
    assert line["home"] == env["PHOTOGEN_HOME"]
    assert line["rest"] == f"; orders database sqlite:///{orders} (from PHOTOGEN_DATABASE_URL, not the home's)"
    assert orders.exists()
    # a server's URL: its password never reaches the terminal (the report cannot reach it: exit 1)
    secret = {**env, "PHOTOGEN_DATABASE_URL": "postgresql://shop:hunter2@127.0.0.1:9/photogen"}
    refused = photogen(secret, tmp_path, "report", returncode=1)
    assert "postgresql://shop:***@127.0.0.1:9/photogen (from PHOTOGEN_DATABASE_URL" in home_line(refused.stderr)["rest"]
    assert "hunter2" not in refused.stderr + refused.stdout


def test_redact_url_hides_passwords_only():
    from photogen_pipelines.cli.common import redact_url

    assert redact_url("postgresql+psycopg://shop:p@ss:w0rd@db:5432/photogen") == "postgresql+psycopg://shop:***@db:5432/photogen"
    assert redact_url("postgresql://db.internal/photogen?user=shop&password=x1&sslmode=require") == (
        "postgresql://db.internal/photogen?user=shop&password=***&sslmode=require"
    )
    for plain in ("postgresql://shop@db:5432/photogen", "sqlite:////srv/a:b/orders.db", "s3://bucket/prefix"):
        assert redact_url(plain) == plain


# -- one full order -------------------------------------------------------------------

README = REPO / "README.md"


def readme_demo_sample() -> dict:
    """The order demo README.md shows (not a studio job's, `--kind`): its options, and the print
    file line it prints."""
    text = README.read_text()
    (command,) = re.findall(r"^\$ \.venv/bin/photogen demo (?!--kind)(.*)$", text, re.M)
    (printed,) = re.findall(r"print file: \S+  \((\d+)x(\d+) px, tagged (\d+) DPI, ([\d.]+) effective DPI\)", text)
    return {
        "args": command.split(),
        "pixel_size": [int(printed[0]), int(printed[1])],
        "dpi": int(printed[2]),
        "effective_dpi": float(printed[3]),
    }


@pytest.fixture(scope="module")
def demo(env, workdir) -> dict:
    """The README's demo (its style and product), 2 proofs, with --home and no --out."""
    home = workdir / "demo_home"
    args = readme_demo_sample()["args"]
    result = photogen(env, workdir, "demo", *args, "--json", "--variants", "2", "--home", str(home), timeout=600)
    summary = json.loads(result.stdout)  # ONE JSON object: progress and logs stay on stderr
    assert isinstance(summary, dict)
    assert home_line(result.stderr)["home"] == str(home)
    summary["_home"], summary["_out"], summary["_args"] = home, home / "photogen-demo", args
    return summary


@pytest.mark.slow
def test_demo_order_is_ready_with_every_file(demo, workdir):
    assert demo["outcome"] == "ready", demo.get("reason")
    paths = [demo["print_file"], demo["manifest"], demo["dagster_home"]] + [p["path"] for p in demo["proofs"]]
    for path in paths:
        assert Path(path).exists(), path
    # without --out, into the home it was given: nothing lands in the current folder
    assert demo["out"] == str(demo["_out"] / demo["order_id"]) and demo["home"] == str(demo["_home"])
    assert not (workdir / "photogen-demo").exists()
    for path in (demo["print_file"], demo["manifest"], *(p["path"] for p in demo["proofs"])):
        assert Path(path).is_relative_to(demo["out"]), path
    recorded = SqlOrderBook(Database(f"sqlite:///{demo['_home'] / 'orders.db'}")).get(demo["order_id"])
    assert recorded.state == OrderState.READY and recorded.approved_proof == demo["chosen_proof"]
    manifest = json.loads(Path(demo["manifest"]).read_text())
    assert manifest["pixel_size"] == demo["pixel_size"]


@pytest.mark.slow
def test_the_readme_demo_sample_prints_what_the_demo_prints(demo):
    sample = readme_demo_sample()
    assert demo["product_id"] in sample["args"] and demo["style_id"] in sample["args"]
    assert (demo["pixel_size"], demo["dpi"], demo["effective_dpi"]) == (
        sample["pixel_size"],
        sample["dpi"],
        sample["effective_dpi"],
    )


def test_demo_copies_into_the_home_named_else_the_current_folder(monkeypatch, tmp_path):
    from photogen_pipelines.cli.demo import default_out
    from photogen_pipelines.settings import LocalPaths

    monkeypatch.delenv("PHOTOGEN_HOME", raising=False)
    assert default_out(None, LocalPaths.resolve(None)) == Path("photogen-demo")
    assert default_out("h", LocalPaths.resolve("h")) == LocalPaths.resolve("h").home / "photogen-demo"
    monkeypatch.setenv("PHOTOGEN_HOME", str(tmp_path / "env"))
    assert default_out(None, LocalPaths.resolve(None)) == tmp_path / "env" / "photogen-demo"


def test_demo_summary_says_where_it_copied_the_files_and_how_to_see_the_runs(capsys, tmp_path):
    from photogen_pipelines.cli.demo import _print_summary

    folder = tmp_path / "home" / "photogen-demo" / "ord_1"
    summary = {
        "order_id": "ord_1",
        "outcome": "ready",
        "reason": "",
        "proofs": [{"variant": 0, "take": "As catalogued", "path": str(folder / "proofs/proof_0.png"), "identity_score": 0.78}],
        "chosen_proof": 0,
        "identity_threshold": 0.4,
        "print_file": str(folder / "print/print_file.jpg"),
        "manifest": str(folder / "print/manifest.json"),
        "pixel_size": [3508, 4961],
        "dpi": 300,
        "effective_dpi": 247.7,
        "seconds_per_stage": {"selfie": 0.4},
        "seconds_total": 40.0,
        "dagster_home": str(tmp_path / "home" / "dagster"),
        "out": str(folder),
        "home": str(tmp_path / "home"),
    }
    _print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == f"  files copied to {folder}/"
    assert lines[3] == "  proof 0 (As catalogued): identity 0.78 (gate ≥ 0.40)  proofs/proof_0.png  <- approved"
    assert lines[4] == "  print file: print/print_file.jpg  (3508x4961 px, tagged 300 DPI, 247.7 effective DPI)"
    assert lines[-1].startswith("  see the runs: ") and f"ui --home {tmp_path / 'home'}  (Dagster instance" in lines[-1]


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
