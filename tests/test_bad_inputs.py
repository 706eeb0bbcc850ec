"""Bad customer inputs end with a clear reason and a stable code, never a traceback.

Every bad file is built here from real images. The core (`decode_upload`,
`prepare_selfie`) must raise `BadInput` with the right `code`; the installed `photogen`
command must exit 2 with exactly one `photogen: error:` line on stderr and no traceback.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_products
from photogen_pipelines.db.database import Database
from photogen_pipelines.engines.base import Face
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.stages import MIN_FACE_PX, SELFIE_MIN_FACE_SCORE, prepare_selfie, selfie_face
from photogen_pipelines.imaging.images import MAX_ASPECT_RATIO, MIN_UPLOAD_SIDE, Box, decode_upload
from photogen_pipelines.orders.book import SqlOrderBook

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "tests" / "data" / "faces"
PHOTOGEN = Path(sys.executable).with_name("photogen")
BOMB_SIDE = 20_000
ORIENTATION = 0x0112

# code -> how the bad file is made (see `bad_files`)
DECODE_CASES = ["empty_file", "not_an_image", "truncated_image", "image_too_large"]
FACE_CASES = ["no_face", "several_faces", "face_too_small"]
ALL_CASES = DECODE_CASES + FACE_CASES


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of width x height, written row by row: it never holds
    the image in memory, and compresses to a few tens of KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"\x00" * (1 + (width + 7) // 8) * 100  # 100 rows: filter byte + packed bits each
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(rows) for _ in range(height // 100)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _face(name: str) -> Image.Image:
    return Image.open(FACES / f"{name}.jpg").convert("RGB")


def _at_height(image: Image.Image, height: int) -> Image.Image:
    return image.resize((round(image.width * height / image.height), height), Image.LANCZOS)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> OpenCvFaceAnalyzer:
    return OpenCvFaceAnalyzer()


@pytest.fixture(scope="module")
def product():
    return load_products().get("poster_12x18")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """One bad upload per error code, each a real file on disk."""
    folder = tmp_path_factory.mktemp("bad")
    ardern, macron = _face("ardern_2022"), _face("macron_2025")
    files: dict[str, bytes] = {}

    files["empty_file"] = b""
    files["not_an_image"] = (REPO / "tests" / "data" / "faces" / "CREDITS.md").read_bytes()
    whole = _jpeg(ardern)
    files["truncated_image"] = whole[: len(whole) // 2]
    # a 1-bit PNG whose header says 20000x20000: 400 MP, a few tens of KB on disk
    files["image_too_large"] = _png_bomb(BOMB_SIDE, BOMB_SIDE)  # BOMB_SIDE is a multiple of 100
    files["no_face"] = _jpeg(Image.fromarray(data.rocket()))
    # two people side by side at the same height
    left, right = _at_height(ardern, 700), _at_height(macron, 700)
    pair = Image.new("RGB", (left.width + right.width, 700))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    files["several_faces"] = _jpeg(pair)
    # Ardern's face is ~277 px wide in her photo: scale it to ~40 px on a 640 px canvas
    small = ardern.resize((round(ardern.width * 40 / 277), round(ardern.height * 40 / 277)), Image.LANCZOS)
    canvas = Image.new("RGB", (640, 640), (190, 190, 190))
    canvas.paste(small, (300, 250))
    files["face_too_small"] = _png(canvas)

    paths = {}
    for code, payload in files.items():
        # every bad file is named like a photo, so only the bytes can give it away
        path = folder / f"{code}.{'png' if code == 'face_too_small' else 'jpg'}"
        path.write_bytes(payload)
        paths[code] = path
    return paths


# -- the bad files are what they claim to be ------------------------------------------


def test_the_pixel_bomb_is_small_on_disk_and_huge_in_its_header(bad_files, monkeypatch):
    path = bad_files["image_too_large"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # this test reads the header on purpose
    assert path.stat().st_size < 200_000
    with Image.open(path) as header_only:
        assert (header_only.format, header_only.mode, header_only.size) == ("PNG", "1", (BOMB_SIDE, BOMB_SIDE))
        header_only.verify()  # well-formed chunks and CRCs, checked without decoding the pixels


def test_the_face_cases_are_decodable_photos(bad_files, analyzer):
    """no_face / several_faces / face_too_small must fail for the face, not the file."""
    found = {code: analyzer.detect(np.asarray(decode_upload(bad_files[code].read_bytes()))) for code in FACE_CASES}
    assert found["no_face"] == []
    assert len(found["several_faces"]) == 2
    (small,) = found["face_too_small"]
    assert 25 < small.box.w < MIN_FACE_PX, small.box


# -- the core -------------------------------------------------------------------------


@pytest.mark.parametrize("code", DECODE_CASES)
def test_decode_upload_refuses_with_a_stable_code(bad_files, code):
    with pytest.raises(BadInput) as caught:
        decode_upload(bad_files[code].read_bytes())
    assert caught.value.code == code
    assert str(caught.value)  # a sentence for the customer, not an empty exception


def test_the_pixel_bomb_is_refused_before_it_is_decoded(bad_files):
    payload = bad_files["image_too_large"].read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(BadInput, match="400 MP; the limit is 40 MP") as caught:
        decode_upload(payload)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert caught.value.code == "image_too_large"
    assert grown_mib < 100, f"decoding the bomb's header grew the process by {grown_mib:.0f} MiB"


@pytest.mark.parametrize("code", ALL_CASES)
def test_prepare_selfie_refuses_with_a_stable_code(bad_files, analyzer, product, code):
    with pytest.raises(BadInput) as caught:
        prepare_selfie(bad_files[code].read_bytes(), product, analyzer, proof_long_side=512)
    assert caught.value.code == code, str(caught.value)


def test_face_too_small_names_the_sizes(bad_files, analyzer, product):
    with pytest.raises(BadInput, match=rf"face is only \d+x\d+ px; at least {MIN_FACE_PX} px"):
        prepare_selfie(bad_files["face_too_small"].read_bytes(), product, analyzer, proof_long_side=512)


def test_the_same_face_large_enough_is_accepted(analyzer, product):
    """The control for face_too_small: the same photo, face ~100 px, passes."""
    ardern = _face("ardern_2022")
    scaled = ardern.resize((round(ardern.width * 100 / 277), round(ardern.height * 100 / 277)), Image.LANCZOS)
    canvas = Image.new("RGB", (640, 640), (190, 190, 190))
    canvas.paste(scaled, (200, 150))
    selfie = prepare_selfie(_png(canvas), product, analyzer, proof_long_side=512)
    assert selfie.face.box.w >= MIN_FACE_PX
    assert max(selfie.portrait.shape[:2]) == 512
    assert selfie.embedding.shape == (128,)


# -- slivers and strips: refused before anything detects -------------------------------

# (width, height) -> code; a 4000x1 strip crashed cv2.resize (a side rounded to 0 px) and a
# 1x2000 one was "a face of infx0 px"
SHAPES = {
    (4000, 1): "image_too_small",
    (1, 2000): "image_too_small",
    (MIN_UPLOAD_SIDE - 1, 640): "image_too_small",
    (4000, 900): "image_too_narrow",
    (600, MAX_ASPECT_RATIO * 600 + 1): "image_too_narrow",
}


@pytest.mark.parametrize("size, code", SHAPES.items(), ids=[f"{w}x{h}" for w, h in SHAPES])
def test_a_sliver_or_a_strip_is_refused_before_detection(analyzer, product, size, code):
    payload = _png(Image.new("RGB", size, (190, 190, 190)))
    for refuse in (lambda: decode_upload(payload), lambda: prepare_selfie(payload, product, analyzer, proof_long_side=512)):
        with pytest.raises(BadInput) as caught:
            refuse()
        assert caught.value.code == code, str(caught.value)
        assert f"{size[0]}x{size[1]}" in str(caught.value)


def test_the_smallest_and_the_narrowest_image_allowed_decode():
    for size in ((MIN_UPLOAD_SIDE, MIN_UPLOAD_SIDE), (MIN_UPLOAD_SIDE, MAX_ASPECT_RATIO * MIN_UPLOAD_SIDE), (2000, 500)):
        assert decode_upload(_png(Image.new("RGB", size, (190, 190, 190)))).size == size


@pytest.mark.parametrize("shape", [(1, 4000), (2000, 1), (3, 900), (10, 10), (1, 1)])
def test_the_detector_finds_no_face_in_a_sliver_and_never_fails(analyzer, shape):
    # YuNet on a picture a few pixels across reported faces of 0x0 px at 1e35, scored 1.0
    assert analyzer.detect(np.full((*shape, 3), 128, np.uint8), min_score=0.0) == []


class _StubFaces:
    """A detector that reports what it is given, as a backend with YuNet's habits would."""

    def __init__(self, *boxes: Box):
        self.boxes = boxes

    def detect(self, rgb, min_score=0.75):
        return [Face(box, 1.0, ((0.0, 0.0),) * 5, np.zeros(15, np.float32)) for box in self.boxes]


DEGENERATE = [Box(1.8e34, -3.3e35, 0.0, 0.0), Box(float("inf"), 0.0, float("inf"), float("inf")), Box(-500.0, 10.0, 80.0, 80.0)]


def test_a_degenerate_detection_is_not_a_face():
    image = np.full((640, 480, 3), 128, np.uint8)
    with pytest.raises(BadInput) as caught:
        selfie_face(image, _StubFaces(*DEGENERATE))
    assert caught.value.code == "no_face", str(caught.value)
    # nor is it the largest of the faces, nor a second person
    real = Box(100.0, 100.0, 120.0, 150.0)
    assert selfie_face(image, _StubFaces(DEGENERATE[1], real, DEGENERATE[0])).box == real


# -- EXIF orientation, metadata, alpha ------------------------------------------------


@pytest.mark.parametrize("orientation, stored_as", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied_and_metadata_dropped(analyzer, orientation, stored_as):
    upright = _face("obama_senate")
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "PhoneModel"  # Model
    payload = _jpeg(upright.transpose(stored_as), exif=exif.tobytes())
    with Image.open(io.BytesIO(payload)) as stored:  # the camera's file really is sideways, with a tag
        assert stored.size == (upright.height, upright.width)
        assert stored.getexif()[ORIENTATION] == orientation
        raw = np.asarray(stored.convert("RGB"))

    decoded = decode_upload(payload)

    assert decoded.mode == "RGB"
    assert decoded.size == upright.size
    error = np.abs(np.asarray(decoded, dtype=np.int16) - np.asarray(upright, dtype=np.int16)).mean()
    assert error < 6, f"decoded pixels differ from the upright photo by {error:.1f} on average"
    found = analyzer.detect(np.asarray(decoded), min_score=SELFIE_MIN_FACE_SCORE)
    assert len(found) == 1 and found[0].score > 0.9
    sideways = analyzer.detect(raw, min_score=SELFIE_MIN_FACE_SCORE)
    assert sideways == [], f"the sideways pixels already pass the selfie bar: {[f.score for f in sideways]}"
    assert "exif" not in decoded.info
    assert "icc_profile" not in decoded.info
    assert len(decoded.getexif()) == 0


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_png_decodes_to_rgb_on_white(mode):
    photo = _at_height(_face("macron_2025"), 300).convert(mode)
    pixels = np.array(photo)
    pixels[:50, :50, -1] = 0  # a fully transparent corner
    payload = _png(Image.fromarray(pixels, mode))

    decoded = decode_upload(payload)

    assert decoded.mode == "RGB"
    assert decoded.size == photo.size
    rgb = np.asarray(decoded)
    assert (rgb[:50, :50] == 255).all()  # transparent → white, not black
    opaque = np.asarray(photo.convert("RGB"))[100:, 100:]
    assert np.abs(rgb[100:, 100:].astype(int) - opaque.astype(int)).max() <= 1


# -- the command line, as a customer runs it ------------------------------------------


def _cli_env(root: Path) -> dict[str, str]:
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    if (REPO / "dagster.yaml").is_file():
        shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return {**os.environ, "PHOTOGEN_HOME": str(root / "photogen_home"), "DAGSTER_HOME": str(dagster_home)}


def _cli_cases(bad_files: dict[str, Path], root: Path) -> dict[str, tuple[list[str], Path | None]]:
    """name -> (arguments, demo home or None). Each runs as its own process."""
    good = str(FACES / "obama_senate.jpg")
    cases: dict[str, tuple[list[str], Path | None]] = {}
    for code in DECODE_CASES:
        cases[f"faces:{code}"] = (["faces", str(bad_files[code])], None)
    cases["faces:unreadable_file"] = (["faces", str(root / "missing.jpg")], None)
    cases["identity:no_face"] = (["identity", good, str(bad_files["no_face"]), "--json"], None)
    cases["identity:not_an_image"] = (["identity", str(bad_files["not_an_image"]), good, "--json"], None)

    def demo(name: str, *args: str) -> tuple[list[str], Path]:
        home = root / f"home_{name}"
        return ["demo", *args, "--home", str(home), "--out", str(root / f"out_{name}")], home

    for code in ALL_CASES:
        cases[f"demo:{code}"] = demo(code, "--selfie", str(bad_files[code]))
    for option in ("--style", "--product"):
        cases[f"demo:unknown{option}"] = demo(option[2:], option, "nope")
    return cases


@pytest.fixture(scope="module")
def cli_runs(bad_files, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path | None]]:
    """Every CLI case at once, in parallel processes (each pays Python's start-up)."""
    root = tmp_path_factory.mktemp("cli")
    env = _cli_env(root)
    cases = _cli_cases(bad_files, root)

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([str(PHOTOGEN), *args], capture_output=True, text=True, env=env, cwd=root, timeout=120)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip(cases, pool.map(run, (args for args, _ in cases.values())), strict=True))
    return {name: (results[name], cases[name][1]) for name in cases}


EXPECTED_CLI = {
    **{f"faces:{code}": code for code in DECODE_CASES},
    "faces:unreadable_file": "unreadable_file",
    "identity:no_face": "no_face",
    "identity:not_an_image": "not_an_image",
    **{f"demo:{code}": code for code in ALL_CASES},
}


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("photogen: error:")]


def _assert_clean_failure(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = _error_lines(result)
    assert len(errors) == 1, result.stderr
    others = [line for line in result.stderr.splitlines() if line not in errors]
    # the demo reports its progress on stderr; nothing else may be there (no warnings)
    assert all(line.startswith("[photogen] ") for line in others), result.stderr
    assert result.stdout == ""
    return errors[0]


def _assert_no_order_left(home: Path) -> None:
    database = home / "orders.db"
    left = [o.id for o in SqlOrderBook(Database(f"sqlite:///{database}")).list()] if database.exists() else []
    assert left == [], f"an order was recorded for a refused upload: {left}"
    artifacts = home / "artifacts"
    stored = [p for p in artifacts.rglob("*") if p.is_file()] if artifacts.exists() else []
    assert stored == [], f"a refused upload was stored: {stored}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXPECTED_CLI))
def test_cli_bad_input_is_one_clear_line(cli_runs, case):
    result, home = cli_runs[case]
    line = _assert_clean_failure(result)
    assert line.endswith(f"[{EXPECTED_CLI[case]}]"), line
    if case.startswith("faces:") or case.startswith("identity:"):
        assert result.stderr.count("\n") == 1, result.stderr  # nothing but the error line
    if home is not None:
        _assert_no_order_left(home)


@pytest.mark.slow
@pytest.mark.parametrize("option, code", [("--style", "unknown_style"), ("--product", "unknown_product")])
def test_demo_unknown_catalog_id_is_named(cli_runs, option, code):
    result, home = cli_runs[f"demo:unknown{option}"]
    line = _assert_clean_failure(result)
    assert "'nope'" in line and line.endswith(f"[{code}]"), line
    _assert_no_order_left(home)


def test_a_16_bit_greyscale_png_is_scaled_not_clipped():
    gradient = np.linspace(0, 65535, 256 * 256).reshape(256, 256).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="PNG")
    decoded = np.asarray(decode_upload(buffer.getvalue()))
    assert decoded.shape == (256, 256, 3)
    assert 120 < decoded.mean() < 135 and decoded.min() == 0 and decoded.max() == 255


def test_a_detection_mostly_outside_the_picture_is_not_a_face_and_one_cut_by_the_frame_is():
    # what YuNet once reported on a 900x3 sliver (CI, 2026-12-06): a 63x154 box, score 1.0
    from photogen_pipelines.engines.faces_opencv import _is_a_face

    def row(x, y, w, h):
        return np.array([x, y, w, h, *([0.0] * 10), 1.0], np.float32)

    assert not _is_a_face(row(301.8, -105.6, 63.6, 154.0), 900, 3)
    assert _is_a_face(row(100, -40, 100, 120), 640, 480)  # a face whose forehead the frame cuts (2/3 inside)
    assert not _is_a_face(row(600, 400, 100, 120), 640, 480)  # a quarter inside
