"""The living portrait's parts (issue 25): Wan image-to-video on tiny random-weight models
written in the production layout and read back by the production loader; the MP4 and its
poster read back with PyAV (its own FFmpeg, no system ffmpeg); the identity gate on
sampled frames with the real embedded YuNet + SFace and real photos of three people."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photogen_pipelines.devtools.tiny_wan import write_tiny_wan_models
from photogen_pipelines.engines.video_wan import FOLDER, WanAnimator, folder_variant, model_frame_count
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.factories import FaceEngineSettings, face_analyzer
from photogen_pipelines.generation.stages import SELFIE_MIN_FACE_SCORE, detect_faces
from photogen_pipelines.generation.video_gate import video_identity_gate
from photogen_pipelines.imaging.video import mp4_bytes, poster_png, probe, read_frames, sample_frames, sample_indices

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE = (48, 64)  # width, height: not a multiple of the 5B's 32, so the engine's crop is exercised
FPS = 8
SECONDS = 0.5  # 4 frames; the model makes 5 (4k + 1)


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory) -> Path:
    return write_tiny_wan_models(tmp_path_factory.mktemp("wan") / "models")


@pytest.fixture(scope="module")
def animator(tiny_wan) -> WanAnimator:
    return WanAnimator(tiny_wan, device="cpu")


@pytest.fixture(scope="module")
def faces():
    return face_analyzer(FaceEngineSettings())  # the embedded YuNet + SFace


@pytest.fixture(scope="module")
def portraits() -> dict[str, np.ndarray]:
    folder = Path(__file__).parent / "data" / "faces"
    return {path.stem.split("_")[0]: np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.jpg"))}


@pytest.fixture(scope="module")
def tiny_frames(animator, portraits) -> list[np.ndarray]:
    return animator.animate(portraits["obama"], "a gentle smile", SECONDS, FPS, seed=7, size=SIZE)


def _embedding(image: np.ndarray, faces) -> np.ndarray:
    [face] = detect_faces(image, faces, SELFIE_MIN_FACE_SCORE)
    return faces.embed(image, face)


def _slow_zoom(photo: np.ndarray, frames: int, size: tuple[int, int] = (256, 288), zoom: float = 1.15) -> list[np.ndarray]:
    """The photo pushed in slowly towards its centre: real pixels that move."""
    picture = Image.fromarray(photo)
    width, height = picture.size
    video = []
    for i in range(frames):
        scale = 1 / (1 + (zoom - 1) * i / (frames - 1))
        w, h = width * scale, height * scale
        box = ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
        video.append(np.asarray(picture.resize(size, Image.LANCZOS, box=box)))
    return video


# -- the engine ------------------------------------------------------------------------


def test_the_tiny_folder_is_wan_2_2_ti2v_5b_as_published(tiny_wan):
    index = json.loads((tiny_wan / FOLDER / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    assert folder_variant(tiny_wan / FOLDER).key == "wan2.2-ti2v-5b"
    assert not (tiny_wan / FOLDER / "image_encoder").exists()


def test_the_dev_command_writes_the_same_folder(tmp_path, tiny_wan):
    target = tmp_path / "tiny-wan"
    photogen = Path(sys.executable).with_name("photogen")
    done = subprocess.run(
        [str(photogen), "dev", "make-tiny-models", "--family", "wan-i2v", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tiny random-weight wan-i2v models")
    for part in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (target / FOLDER / part).read_bytes() == (tiny_wan / FOLDER / part).read_bytes()  # the same seed, the same weights
    assert "steps: 2" in (target / "photogen-engine.yaml").read_text()


def test_animate_gives_the_asked_frames_at_the_asked_size_the_same_per_seed(animator, portraits, tiny_frames):
    assert len(tiny_frames) == round(SECONDS * FPS) == 4
    assert model_frame_count(4) == 5
    for frame in tiny_frames:
        assert frame.shape == (SIZE[1], SIZE[0], 3) and frame.dtype == np.uint8
    again = animator.animate(portraits["obama"], "a gentle smile", SECONDS, FPS, seed=7, size=SIZE)
    assert all(np.array_equal(a, b) for a, b in zip(tiny_frames, again, strict=True))
    other = animator.animate(portraits["obama"], "a gentle smile", SECONDS, FPS, seed=8, size=SIZE)
    assert any(not np.array_equal(a, b) for a, b in zip(tiny_frames, other, strict=True))
    # the frames move: a video, not one picture repeated
    assert any(not np.array_equal(tiny_frames[0], frame) for frame in tiny_frames[1:])
    assert "Wan 2.2 TI2V-5B" in animator.version and animator.native_fps == 24
    assert animator.size_for(3 / 4) == (56, 74)  # about the tiny folder's 4096 pixels, even sides for yuv420p


def test_the_wan_2_1_layout_reads_the_portrait_with_its_clip_encoder(tmp_path, portraits):
    # Wan 2.1 I2V adds a CLIP vision encoder; its CLIPImageProcessor runs on the PIL
    # backend here (no torchvision). One frame: the load and the image path are the test.
    models = write_tiny_wan_models(tmp_path / "models", variant="i2v-14b")
    assert (models / FOLDER / "image_encoder" / "config.json").is_file()
    animator = WanAnimator(models, device="cpu")
    assert animator.variant.key == "wan2.1-i2v-14b" and animator.native_fps == 16
    [frame] = animator.animate(portraits["ardern"], "a smile", 0.125, FPS, seed=1, size=(32, 48))
    assert frame.shape == (48, 32, 3)


@pytest.mark.parametrize(
    ("seconds", "fps", "size", "code"),
    [
        (0, 8, SIZE, "bad_video_length"),
        (11, 8, SIZE, "bad_video_length"),
        (1, 0, SIZE, "bad_video_fps"),
        (1, 8, (1, 64), "bad_video_size"),
    ],
)
def test_a_bad_request_is_refused_with_its_code_before_any_model_runs(animator, portraits, seconds, fps, size, code):
    with pytest.raises(BadInput) as refused:
        animator.animate(portraits["obama"], "x", seconds, fps, seed=1, size=size)
    assert refused.value.code == code


def test_an_incomplete_or_unsupported_folder_is_refused_by_name(tmp_path, tiny_wan):
    with pytest.raises(ModelError, match="model_index.json"):
        WanAnimator(tmp_path)
    two_experts = tmp_path / "a14b"
    shutil.copytree(tiny_wan, two_experts)
    index_path = two_experts / FOLDER / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(transformer_2=["diffusers", "WanTransformer3DModel"], boundary_ratio=0.9)
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelError, match="two-expert"):
        WanAnimator(two_experts)
    shutil.rmtree(two_experts / FOLDER / "vae")
    with pytest.raises(ModelError, match="vae/"):
        WanAnimator(two_experts)


# -- the MP4 and its poster ------------------------------------------------------------


def test_the_mp4_reads_back_as_h264_with_its_frames_size_and_rate(tiny_frames):
    data = mp4_bytes(tiny_frames, FPS)
    info = probe(data)
    assert (info.codec, info.pixel_format) == ("h264", "yuv420p")
    assert (info.width, info.height, info.fps, info.frames) == (SIZE[0], SIZE[1], FPS, len(tiny_frames))
    assert info.seconds == pytest.approx(SECONDS)
    decoded = read_frames(data)
    assert len(decoded) == len(tiny_frames) and decoded[0].shape == tiny_frames[0].shape
    # faststart: the index comes before the media, so a player starts before the whole file is in
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
    assert mp4_bytes(tiny_frames, FPS) == data  # the same frames, the same bytes


def test_odd_sides_are_made_even_for_yuv420p(portraits):
    odd = [np.asarray(Image.fromarray(portraits["macron"]).resize((75, 51))) for _ in range(3)]
    info = probe(mp4_bytes(odd, 12))
    assert (info.width, info.height, info.frames) == (74, 50, 3)


def test_the_poster_is_a_png_of_the_chosen_frame(tiny_frames):
    poster = poster_png(tiny_frames)
    assert poster.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(poster)) as picture:
        assert picture.format == "PNG"
        assert np.array_equal(np.asarray(picture.convert("RGB")), tiny_frames[0])
    with Image.open(io.BytesIO(poster_png(tiny_frames, index=-1))) as picture:
        assert np.array_equal(np.asarray(picture.convert("RGB")), tiny_frames[-1])
    with pytest.raises(ValueError):
        poster_png(tiny_frames, index=len(tiny_frames))


def test_something_that_is_not_a_video_is_refused_with_its_code():
    with pytest.raises(BadInput) as refused:
        read_frames(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    assert refused.value.code == "not_a_video"


def test_frames_are_sampled_evenly_first_and_last_included():
    assert sample_indices(25, 5) == [0, 6, 12, 18, 24]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(10, 1) == [0]
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(9)]
    assert [int(f[0, 0, 0]) for f in sample_frames(frames, 3)] == [0, 4, 8]


# -- the identity gate on sampled frames -----------------------------------------------


def test_the_gate_passes_a_video_of_the_portrait_itself(portraits, faces):
    reference = _embedding(portraits["obama"], faces)
    # through the MP4 and back: the gate sees what a customer would play
    video = read_frames(mp4_bytes(_slow_zoom(portraits["obama"], 24), 24))
    result = video_identity_gate(video, reference, faces, samples=6)
    assert result.passed, result.reason
    assert result.reason is None
    assert [s.frame for s in result.scores] == [0, 5, 9, 14, 18, 23]
    assert all(s.faces == 1 and s.similarity > result.threshold for s in result.scores)
    assert result.threshold == faces.default_threshold and "sface" in result.encoder.lower()


def test_the_gate_fails_when_a_frame_in_the_middle_is_another_person(portraits, faces):
    reference = _embedding(portraits["obama"], faces)
    video = _slow_zoom(portraits["obama"], 25)
    video[12] = np.asarray(Image.fromarray(portraits["macron"]).resize((256, 288), Image.LANCZOS))
    result = video_identity_gate(video, reference, faces, samples=5)
    assert not result.passed
    failed = [s for s in result.scores if not s.passed]
    assert [s.frame for s in failed] == [12]
    assert failed[0].similarity < result.threshold
    assert result.reason.startswith("1 of 5 sampled frames lost the portrait's likeness: frame 12: identity similarity")
    assert result.to_json()["scores"][2]["passed"] is False


def test_the_gate_fails_on_the_tiny_models_noise(portraits, faces, tiny_frames):
    # the tiny random-weight model's frames are noise (random weights decode to no face):
    # the gate must say so rather than pass them
    result = video_identity_gate(tiny_frames, _embedding(portraits["obama"], faces), faces, samples=4)
    assert not result.passed
    assert all(s.similarity is None and s.reason in ("no face found", "the frame is nearly blank") for s in result.scores)
    assert result.reason.startswith("4 of 4 sampled frames lost the portrait's likeness")
