"""The insightface analyzer on the real insightface code path (FaceAnalysis, its model
router, SCRFD decoding, ArcFace alignment) with the tiny random-weight pack, on the CPU,
offline. The tiny detector's "faces" are the reddest and the bluest cells of a picture
(see devtools/tiny_insightface.py), so the synthetic pictures here put them on purpose."""

from __future__ import annotations

import importlib
import logging
import shutil
import socket

import insightface  # the gpu extra's (in dev): these tests always run
import numpy as np
import pytest
from PIL import Image

from photogen_pipelines.devtools.tiny_insightface import DETECTOR_FILE, RECOGNIZER_FILE, write_tiny_insightface_pack
from photogen_pipelines.engines.base import FaceAnalyzer, cosine
from photogen_pipelines.engines.faces_insightface import CPU, CUDA, InsightFaceAnalyzer, keypoints, select_providers
from photogen_pipelines.errors import ModelError

# insightface 2.1's alignment calls scikit-image's deprecated SimilarityTransform.estimate
# (the engine module filters it too, but pytest resets filters for every test)
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")


class NetworkAttempt(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise NetworkAttempt(f"network access attempted: {args!r}")


@pytest.fixture(scope="module")
def offline():
    """insightface's download functions and every socket connection raise."""
    with pytest.MonkeyPatch.context() as patch:
        # (`insightface.utils.download` is shadowed by a function of that name: import by path)
        for module, name in [
            ("insightface.utils.storage", "download_file"),  # what ensure_available -> download call
            ("insightface.utils.storage", "download"),
            ("insightface.utils.download", "download_file"),
            ("insightface.app.face_analysis", "ensure_available"),  # FaceAnalysis(name=...) when not a dir
            ("insightface.model_zoo.model_zoo", "download_onnx"),
        ]:
            patch.setattr(importlib.import_module(module), name, _refuse)
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket.socket, "connect_ex", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket, "getaddrinfo", _refuse)
        yield


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return write_tiny_insightface_pack(tmp_path_factory.mktemp("insightface") / "tiny_pack")


@pytest.fixture(scope="module")
def faces(pack, offline) -> InsightFaceAnalyzer:
    return InsightFaceAnalyzer(pack, providers="cpu")


def two_faces(size: int = 640) -> np.ndarray:
    """Black, with a red-and-green patch (the tiny detector's large face: score ~0.96,
    288 px wide at 640) and a pure blue one (a 32 px face scoring ~0.997)."""
    image = np.zeros((640, 640, 3), np.uint8)
    image[192:288, 320:416] = (200, 255, 0)
    image[480:512, 96:128] = (0, 0, 255)
    return image if size == 640 else np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def test_the_tiny_pack_is_tiny_and_says_it_is_not_for_customers(pack):
    assert (pack / DETECTOR_FILE).stat().st_size < 20_000
    assert (pack / RECOGNIZER_FILE).stat().st_size < 40_000
    assert "Never use them for customers" in (pack / "README.txt").read_text()


def test_loads_through_insightface_from_the_local_directory_offline(faces, pack):
    for attribute in FaceAnalyzer.__annotations__:
        assert hasattr(faces, attribute), attribute
    assert callable(faces.detect) and callable(faces.embed)
    # insightface's own router took the files for a SCRFD detector and an ArcFace recognizer
    assert type(faces._detector).__name__ == "SCRFD" and faces._detector.use_kps
    assert type(faces._recognizer).__name__ == "ArcFaceONNX" and faces._recognizer.input_size == (112, 112)
    assert faces.providers == [CPU]
    assert faces.files == (DETECTOR_FILE, RECOGNIZER_FILE)
    assert faces.version.startswith("tiny_pack: det_tiny.onnx+rec_tiny.onnx sha256:")
    assert faces.version.endswith(f"(insightface {insightface.__version__})")
    # the same bytes on every build: the version is stable
    assert InsightFaceAnalyzer(pack, providers="cpu").version == faces.version


def test_the_offline_guard_really_catches_insightfaces_download(offline, tmp_path):
    """Control: FaceAnalysis given a name that is not a directory goes to its download
    path, and the guard stops it. So the analyzer's ModelError below is what keeps it offline."""
    from insightface.app import FaceAnalysis

    with pytest.raises(NetworkAttempt):
        FaceAnalysis(name=str(tmp_path / "buffalo_l"), providers=[CPU])


def test_detect_returns_faces_largest_first_with_five_landmarks(faces):
    found = faces.detect(two_faces(), min_score=0.5)
    assert len(found) == 2
    large, small = found
    # sorted by area, not by score: the small face scores higher
    assert large.box.w * large.box.h > small.box.w * small.box.h
    assert small.score > large.score > 0.9
    assert large.box.w == pytest.approx(287.6, abs=1) and small.box.w == pytest.approx(32, abs=0.5)
    assert 320 < large.box.center[0] < 416 and 192 < large.box.center[1] < 288  # on the red patch
    assert 96 < small.box.center[0] < 128 and 480 < small.box.center[1] < 512  # on the blue one
    for face in found:
        assert len(face.landmarks) == 5
        (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = face.landmarks
        assert ry < ny < mry and ly < ny < mly and rx < lx and mrx < mlx
        assert face.box.x < nx < face.box.x + face.box.w and face.box.y < ny < face.box.y + face.box.h
        assert face.detector_row.shape == (15,) and face.detector_row[14] == pytest.approx(face.score)
        assert face.to_json()["landmarks"][2] == [round(nx, 1), round(ny, 1)]


def test_detect_respects_min_score(faces):
    scores = [f.score for f in faces.detect(two_faces(), min_score=0.0)]  # 0.3 at least, as YuNet's
    assert min(scores) < 0.98 < max(scores)
    only_blue = faces.detect(two_faces(), min_score=0.98)
    assert [round(f.box.w) for f in only_blue] == [32]
    assert faces.detect(two_faces(), min_score=0.999) == []
    assert faces.detect(np.zeros((480, 640, 3), np.uint8), min_score=0.0) == []  # black (0.05): no face
    assert len(faces.detect(two_faces())) == 2  # the default bar, 0.75, as the OpenCV analyzer's


def test_detections_are_in_the_images_own_pixels(faces):
    """insightface letterboxes to det_size and scales back: a 2x image gives 2x boxes."""
    small, big = faces.detect(two_faces(640)), faces.detect(two_faces(1280))
    assert len(small) == len(big) == 2
    for a, b in zip(small, big, strict=True):
        assert b.box.x == pytest.approx(2 * a.box.x, abs=2) and b.box.w == pytest.approx(2 * a.box.w, abs=2)
        assert np.allclose(np.array(b.landmarks), 2 * np.array(a.landmarks), atol=2)


def test_embed_is_a_512_d_unit_vector_that_depends_on_the_face(faces, face_images):
    embeddings = {}
    for name, image in face_images.items():
        found = faces.detect(image)
        assert found, name
        embedding = faces.embed(image, found[0])
        assert embedding.shape == (512,) and embedding.dtype == np.float32
        assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
        # the same image (a copy, detected again) gives the same embedding
        again = image.copy()
        assert np.array_equal(faces.embed(again, faces.detect(again)[0]), embedding)
        embeddings[name] = embedding
    names = list(embeddings)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert cosine(embeddings[a], embeddings[b]) < 0.95, (a, b)
    # InstantID's conditioning input: the same direction, not normalised
    image = face_images["obama"]
    face = faces.detect(image)[0]
    raw = faces.raw_embedding(image, face)
    assert raw.shape == (512,) and abs(np.linalg.norm(raw) - 1) > 0.1
    assert np.allclose(raw / np.linalg.norm(raw), faces.embed(image, face), atol=1e-6)
    assert np.array_equal(keypoints(face), np.array(face.landmarks, dtype=np.float32))
    # two faces of one picture differ too
    large, small = faces.detect(two_faces(), min_score=0.5)
    assert cosine(faces.embed(two_faces(), large), faces.embed(two_faces(), small)) < 0.95


def test_the_selfie_stage_runs_on_it(faces, astronaut_png):
    from photogen_pipelines.catalog import load_products
    from photogen_pipelines.generation.stages import prepare_selfie

    selfie = prepare_selfie(astronaut_png, load_products().get("poster_12x18"), faces, 512)
    assert selfie.embedding.shape == (512,)
    assert max(selfie.portrait.shape[:2]) == 512


# -- missing models: clear errors, never a download ---------------------------------


def test_a_missing_directory_is_a_model_error_naming_it(offline, tmp_path):
    missing = tmp_path / "buffalo_l"
    with pytest.raises(ModelError) as error:
        InsightFaceAnalyzer(missing, providers="cpu")
    message = str(error.value)
    assert str(missing) in message and "det_10g.onnx" in message and "w600k_r50.onnx" in message
    assert not missing.exists()


def test_an_empty_directory_is_a_model_error(offline, tmp_path):
    with pytest.raises(ModelError, match=r"no \*\.onnx models in .*det_10g\.onnx"):
        InsightFaceAnalyzer(tmp_path, providers="cpu")


def test_a_pack_unzipped_one_level_too_deep_gets_a_hint(offline, pack, tmp_path):
    shutil.copytree(pack, tmp_path / "antelopev2" / "antelopev2")
    with pytest.raises(ModelError, match="unpacked into a subfolder: use .*antelopev2/antelopev2"):
        InsightFaceAnalyzer(tmp_path / "antelopev2", providers="cpu")


def test_a_directory_without_a_detector_is_a_model_error(offline, tmp_path):
    write_tiny_insightface_pack(tmp_path, detector=False)
    with pytest.raises(ModelError) as error:
        InsightFaceAnalyzer(tmp_path, providers="cpu")
    message = str(error.value)
    assert "no face detection model" in message and RECOGNIZER_FILE in message and str(tmp_path) in message
    assert "det_10g.onnx" in message


def test_a_directory_without_a_recognizer_is_a_model_error(offline, tmp_path):
    write_tiny_insightface_pack(tmp_path, recognizer=False)
    with pytest.raises(ModelError) as error:
        InsightFaceAnalyzer(tmp_path, providers="cpu")
    message = str(error.value)
    assert "no face recognition model" in message and DETECTOR_FILE in message and "w600k_r50.onnx" in message


def test_a_corrupt_model_file_is_a_model_error(offline, pack, tmp_path):
    shutil.copy(pack / RECOGNIZER_FILE, tmp_path)
    (tmp_path / DETECTOR_FILE).write_bytes((pack / DETECTOR_FILE).read_bytes()[:500])
    with pytest.raises(ModelError, match="could not load the insightface models"):
        InsightFaceAnalyzer(tmp_path, providers="cpu")


# -- execution providers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ([CUDA, CPU], [CUDA, CPU]),
        (["TensorrtExecutionProvider", CUDA, CPU], [CUDA, CPU]),
        (["CoreMLExecutionProvider", CPU], [CPU]),  # insightface's own default would take CoreML
        (["AzureExecutionProvider", CPU], [CPU]),
        ([CPU], [CPU]),
    ],
)
def test_auto_picks_cuda_only_when_onnxruntime_lists_it(available, expected):
    assert select_providers("auto", available) == expected


def test_explicit_provider_choices():
    assert select_providers("cpu", [CUDA, CPU]) == [CPU]
    assert select_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    assert select_providers([CPU], [CUDA, CPU]) == [CPU]
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        select_providers("cuda", [CPU])
    with pytest.raises(ModelError, match="not available"):
        select_providers(["TensorrtExecutionProvider"], [CUDA, CPU])


def test_the_real_runtime_is_asked_when_no_list_is_given():
    import onnxruntime

    assert select_providers() == ([CUDA, CPU] if CUDA in onnxruntime.get_available_providers() else [CPU])


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_a_listed_cuda_that_does_not_load_falls_back_to_cpu_loudly(offline, pack, monkeypatch, caplog):
    """onnxruntime-gpu lists CUDA even when CUDA/cuDNN fail to load and then runs on the
    CPU: "auto" says so in the log, an explicit "cuda" refuses."""
    import onnxruntime

    real = onnxruntime.get_available_providers()
    if CUDA in real:
        pytest.skip("this machine really has CUDA")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, *real])
    with caplog.at_level(logging.WARNING, logger="photogen_pipelines.engines.faces_insightface"):
        analyzer = InsightFaceAnalyzer(pack)
    assert analyzer.providers == [CPU]
    assert "CUDA was requested" in caplog.text
    with pytest.raises(ModelError, match="CUDA was requested"):
        InsightFaceAnalyzer(pack, providers="cuda")
