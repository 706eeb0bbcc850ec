"""Faces on the GPU: insightface's `FaceAnalysis` (SCRFD + ArcFace) on onnxruntime.

The production counterpart of `faces_opencv.OpenCvFaceAnalyzer`, with the same
contract: `detect` returns `Face`s (box, 5 keypoints, score) largest first, `embed`
returns a unit-length embedding (512-d ArcFace here). It gives the generation its
conditioning: InstantID's IdentityNet draws the 5 keypoints (`keypoints(face)`) and its
face projection takes the ArcFace embedding un-normalised (`raw_embedding`), as
insightface's `face.embedding` is.

Models come from a LOCAL directory holding a pack's `*.onnx` files (buffalo_l:
`det_10g.onnx` + `w600k_r50.onnx`; antelopev2: `scrfd_10g_bnkps.onnx` + `glintr100.onnx`;
the other files of a pack, landmarks and gender/age, are ignored). Nothing is ever
downloaded: insightface's `FaceAnalysis(name=...)` uses `name` as is only when it is an
existing directory and otherwise calls `utils.storage.ensure_available`, which fetches
a zip from GitHub into `root`. So the directory is checked here, first, and a missing
one is a `ModelError`, never a download.

LICENCE: insightface's code is MIT, but its model packs (buffalo_l, antelopev2, ...)
are licensed for non-commercial research only, and so are the InstantID checkpoints
that expect this embedding. A paying shop needs a commercial licence from insightface
or another encoder; keep the identity backend swappable (docs/architecture.md §8). For the same
reason, and so that the identity gate does not grade its own homework, the validator's
encoder stays the embedded SFace (`faces_opencv`) by default.

Providers: CUDA first when onnxruntime lists it (the `onnxruntime-gpu` build), CPU
otherwise; see `select_providers`.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photogen_pipelines.engines.base import Face
from photogen_pipelines.errors import ModelError
from photogen_pipelines.imaging.images import Box

log = logging.getLogger(__name__)
# insightface 2.1's alignment calls scikit-image's deprecated SimilarityTransform.estimate
warnings.filterwarnings("ignore", message="`estimate` is deprecated", category=FutureWarning, module="insightface")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# As with the OpenCV analyzer, nothing below this is reported, whatever the caller's bar:
# a painted face scores lower than a photographed one, but 16,800 candidate boxes at
# score 0 would only cost SCRFD's pure-Python NMS seconds per picture.
MIN_DETECTOR_SCORE = 0.3
TASKS = ["detection", "recognition"]  # the rest of a pack (landmarks, gender/age) is not loaded
EXPECTED = (
    "a face detection model (SCRFD: an ONNX file with 9 outputs, e.g. det_10g.onnx or scrfd_10g_bnkps.onnx) "
    "and a recognition model (ArcFace: input Nx3x112x112, output Nx512, e.g. w600k_r50.onnx or glintr100.onnx)"
)


def select_providers(requested: str | Sequence[str] = "auto", available: Sequence[str] | None = None) -> list[str]:
    """onnxruntime execution providers, in order of preference.

    "auto": CUDA then CPU when onnxruntime lists CUDA (onnxruntime-gpu), else CPU only.
    (insightface's own default would put CoreML first; a server has none.)
    "cuda": CUDA then CPU, and an error if onnxruntime does not list CUDA.
    "cpu": CPU only. A list of names is used as given, if onnxruntime lists them all.
    `available` defaults to `onnxruntime.get_available_providers()`.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    available = list(available)
    if isinstance(requested, str):
        choice = requested.lower()
        if choice == "auto":
            return [CUDA, CPU] if CUDA in available else [CPU]
        if choice == "cpu":
            return [CPU]
        if choice == "cuda":
            if CUDA not in available:
                raise ModelError(
                    f"providers='cuda' but onnxruntime lists only {available}: install onnxruntime-gpu "
                    "(and not the CPU onnxruntime next to it) on a machine with a CUDA GPU"
                )
            return [CUDA, CPU]
        requested = [requested]
    missing = [p for p in requested if p not in available]
    if missing or not requested:
        raise ModelError(f"execution providers {missing or requested} are not available; onnxruntime lists {available}")
    return list(requested)


class InsightFaceAnalyzer:
    """SCRFD + ArcFace from a local insightface model pack. Cosine of ArcFace embeddings."""

    name = "insightface"
    # A common verification point for ArcFace (w600k_r50) cosine similarity, not measured
    # here: calibrate per (encoder, style) before it gates anything (docs/architecture.md §8).
    default_threshold = 0.32

    def __init__(
        self,
        model_dir: str | Path,
        det_size: tuple[int, int] = (640, 640),
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
    ):
        directory = Path(model_dir).expanduser()
        onnx_files = _check_directory(directory)
        self.model_dir = directory.resolve()
        self.det_size = (int(det_size[0]), int(det_size[1]))
        wanted = select_providers(providers)

        import insightface
        import onnxruntime
        from insightface.app import FaceAnalysis

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            # `name` is an existing directory (checked above), so FaceAnalysis loads its
            # *.onnx files as they are and never reaches its download path.
            app = FaceAnalysis(name=str(self.model_dir), allowed_modules=TASKS, providers=wanted, sess_options=options)
        except (AssertionError, KeyError) as exc:  # `assert "detection" in self.models` (a KeyError under -O)
            raise ModelError(f"no face detection model among {onnx_files} in {self.model_dir}; expected {EXPECTED}") from exc
        except Exception as exc:  # a corrupt or truncated file: onnx/onnxruntime errors
            raise ModelError(f"could not load the insightface models in {self.model_dir} ({onnx_files}): {exc}") from exc
        if "recognition" not in app.models:
            raise ModelError(f"no face recognition model among {onnx_files} in {self.model_dir}; expected {EXPECTED}")
        detector, recognizer = app.models["detection"], app.models["recognition"]
        if not detector.use_kps:
            raise ModelError(f"{detector.model_file} detects faces without keypoints; alignment and InstantID need the 5 points")
        app.prepare(ctx_id=0, det_size=self.det_size)
        self._app, self._detector, self._recognizer = app, detector, recognizer

        self.providers = list(detector.session.get_providers())
        if wanted[0] == CUDA and self.providers[0] != CUDA:
            # onnxruntime-gpu falls back to the CPU quietly when CUDA/cuDNN do not load
            message = f"CUDA was requested but onnxruntime runs the face models on {self.providers}"
            if not (isinstance(providers, str) and providers.lower() == "auto"):
                raise ModelError(message)
            log.warning(message)
        files = [Path(detector.model_file), Path(recognizer.model_file)]
        self.files = tuple(f.name for f in files)
        self.version = (
            f"{self.model_dir.name}: {'+'.join(self.files)} sha256:{_digest(files)} (insightface {insightface.__version__})"
        )

    def detect(self, rgb: np.ndarray, min_score: float = 0.75) -> list[Face]:
        """Faces scoring at least `min_score`, largest first, in the image's own pixels."""
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # insightface, like OpenCV, reads BGR
        # Thresholding before SCRFD's NMS keeps the same faces as after it: a box is only
        # ever suppressed by one that scores higher.
        threshold = max(min_score, MIN_DETECTOR_SCORE)
        boxes, keypoints = self._detector.detect(bgr, max_num=0, det_thresh=threshold)
        faces = []
        for (x1, y1, x2, y2, score), points in zip(boxes, keypoints, strict=True):
            box = Box(float(x1), float(y1), float(x2 - x1), float(y2 - y1))
            # the same row layout as YuNet's: x, y, w, h, 5 (x, y) points, score
            row = np.array([box.x, box.y, box.w, box.h, *points.reshape(-1), score], dtype=np.float32)
            landmarks = tuple((float(x), float(y)) for x, y in points)
            faces.append(Face(box=box, score=float(score), landmarks=landmarks, detector_row=row))
        return sorted(faces, key=lambda f: f.box.w * f.box.h, reverse=True)

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """A unit-length ArcFace embedding of one detected face (aligned on its 5 points)."""
        feature = self.raw_embedding(rgb, face)
        return feature / (np.linalg.norm(feature) + 1e-12)

    def raw_embedding(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """ArcFace's output as it is, not normalised: insightface's `face.embedding`, which
        is what InstantID's face projection was trained on (the conditioning input)."""
        from insightface.app.common import Face as InsightFace

        bgr = np.ascontiguousarray(rgb[..., ::-1])
        box = face.box
        target = InsightFace(
            bbox=np.array([box.x, box.y, box.x + box.w, box.y + box.h], dtype=np.float32),
            kps=keypoints(face),
            det_score=face.score,
        )
        return np.asarray(self._recognizer.get(bgr, target), dtype=np.float32).ravel()


def keypoints(face: Face) -> np.ndarray:
    """A face's 5 landmarks as insightface's `kps`: a 5x2 float32 array, image-left eye first."""
    return np.asarray(face.landmarks, dtype=np.float32).reshape(5, 2)


def _check_directory(directory: Path) -> list[str]:
    """The pack's ONNX file names, or a ModelError that says what is missing where."""
    if not directory.is_dir():
        raise ModelError(f"insightface model directory missing: {directory}; it must hold {EXPECTED}")
    onnx_files = sorted(p.name for p in directory.glob("*.onnx"))
    if not onnx_files:
        nested = sorted(str(p.parent) for p in directory.glob("*/*.onnx"))
        hint = f" (the pack's zip unpacked into a subfolder: use {nested[0]})" if nested else ""
        raise ModelError(f"no *.onnx models in {directory}{hint}; it must hold {EXPECTED}")
    return onnx_files


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]
