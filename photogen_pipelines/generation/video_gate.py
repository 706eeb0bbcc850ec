"""The identity gate of a living portrait: does the person stay themselves on video.

Image-to-video models start from the approved portrait and let it move; somewhere in the
seconds after, a face can drift into someone else's, melt, or leave the picture. The gate
samples frames evenly (the first and the last included), finds the face in each as the
proofs' gate does (`stages.detect_faces`, the same face-score floor for generated pictures)
and compares its embedding with the approved portrait's: the video passes only when every
sampled frame shows one person whose likeness is over the threshold. The encoder is the
identity gate's own (SFace by default), not the video model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from photogen_pipelines.engines.base import FaceAnalyzer, cosine
from photogen_pipelines.generation.stages import PROOF_MIN_FACE_SCORE, count_people, detect_faces
from photogen_pipelines.imaging.video import sample_indices

DEFAULT_SAMPLES = 8
BLANK_STD = 8.0  # a frame this flat is no picture of anyone (as the proofs' gate)


@dataclass(frozen=True)
class FrameScore:
    """One sampled frame: its index in the video, the likeness of its face (None: no
    single face to compare), how many faces it shows and why it fails, if it does."""

    frame: int
    similarity: float | None
    faces: int
    reason: str | None

    @property
    def passed(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict:
        return {
            "frame": self.frame,
            "similarity": self.similarity,
            "faces": self.faces,
            "passed": self.passed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class VideoGateResult:
    """The gate's verdict on a video: every sampled frame's score, and why it failed."""

    threshold: float
    encoder: str
    frames: int  # in the whole video
    scores: list[FrameScore]

    @property
    def passed(self) -> bool:
        return bool(self.scores) and all(score.passed for score in self.scores)

    @property
    def reason(self) -> str | None:
        """None when it passed; else how many sampled frames failed and each one's reason."""
        if not self.scores:
            return "the video has no frames"
        failed = [score for score in self.scores if not score.passed]
        if not failed:
            return None
        details = "; ".join(f"frame {score.frame}: {score.reason}" for score in failed)
        return f"{len(failed)} of {len(self.scores)} sampled frames lost the portrait's likeness: {details}"

    @property
    def lowest_similarity(self) -> float | None:
        found = [score.similarity for score in self.scores if score.similarity is not None]
        return min(found) if found else None

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "threshold": self.threshold,
            "encoder": self.encoder,
            "frames": self.frames,
            "scores": [score.to_json() for score in self.scores],
        }


def video_identity_gate(
    frames: list[np.ndarray],
    reference: np.ndarray,
    faces: FaceAnalyzer,
    *,
    threshold: float | None = None,
    samples: int = DEFAULT_SAMPLES,
) -> VideoGateResult:
    """Score `samples` evenly spaced frames of `frames` against `reference`, the approved
    portrait's face embedding by `faces`; the threshold is the analyzer's own by default."""
    if samples < 1:
        raise ValueError(f"the video gate samples at least one frame, not {samples}")
    threshold = faces.default_threshold if threshold is None else threshold
    scores = [score_frame(index, frames[index], reference, faces, threshold) for index in sample_indices(len(frames), samples)]
    return VideoGateResult(threshold=threshold, encoder=f"{faces.name} {faces.version}", frames=len(frames), scores=scores)


def score_frame(index: int, frame: np.ndarray, reference: np.ndarray, faces: FaceAnalyzer, threshold: float) -> FrameScore:
    found = detect_faces(frame, faces, PROOF_MIN_FACE_SCORE)
    people = count_people(found)
    similarity = round(cosine(reference, faces.embed(frame, found[0])), 4) if found else None
    if float(np.std(frame)) < BLANK_STD:
        reason = "the frame is nearly blank"
    elif not found:
        reason = "no face found"
    elif people > 1:
        reason = f"{people} faces found; a living portrait shows one person"
    elif similarity < threshold:
        reason = f"identity similarity {similarity:.2f} is below the threshold {threshold:.2f}"
    else:
        reason = None
    return FrameScore(frame=index, similarity=similarity, faces=len(found), reason=reason)
