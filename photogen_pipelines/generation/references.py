"""Several photos of one customer: are they one person, and the identity the proofs are
compared with when there are several (the normalised mean of their faces' embeddings).

The comparison uses the validator encoder, the `FaceAnalyzer` the identity gate scores
proofs with, so the set is judged with the same yardstick its proofs will be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from photogen_pipelines.engines.base import FaceAnalyzer, cosine
from photogen_pipelines.generation.stages import selfie_face

# The photos of a set must show one person: every pair's cosine similarity at least the
# encoder's own verification threshold (`FaceAnalyzer.default_threshold`: SFace 0.363, as
# OpenCV publishes it; insightface's ArcFace 0.32). Measured with the embedded SFace on the
# test faces (tests/data/faces and scikit-image's astronaut, four people), each as 15
# photos of one sitting made different (mirrored, reframed, 30 % size, turned ±12°, darker,
# brighter, low contrast, grey, blurred, JPEG q20, side-lit, colour cast): 420 same-person
# pairs scored 0.711–1.0 (5th percentile 0.828), 1,350 pairs of different people
# -0.085–0.181 (95th percentile 0.149); the same person photographed years apart scores
# 0.60–0.81 (tests/data/faces/CREDITS.md). 0.363 sits in that gap, nearer the strangers'
# side, because real photos of one person differ more than these (age, pose, light): a
# customer's own photos are not refused, and a stranger scores half the threshold.


def face_embedding(image: np.ndarray, faces: FaceAnalyzer) -> np.ndarray:
    """The identity of the one face in a customer's photo (BadInput as an upload's check)."""
    return faces.embed(image, selfie_face(image, faces))


def mean_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """What the proofs are compared with: one photo's embedding as it is (an order from one
    photo is gated exactly as before), several photos' the mean of their unit vectors,
    normalised, so each photo counts the same whatever its vector's length."""
    if not embeddings:
        raise ValueError("a photo set has at least one photo")
    if len(embeddings) == 1:
        return embeddings[0]
    units = [np.asarray(e, dtype=np.float64) / (np.linalg.norm(e) + 1e-12) for e in embeddings]
    mean = np.mean(units, axis=0)
    return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Stranger:
    """The photo of a set that does not show the same person as the others."""

    index: int  # its position in the set (0: the primary)
    similarity: float  # its lowest similarity to another photo of the set


def stranger_in(embeddings: Sequence[np.ndarray], threshold: float) -> Stranger | None:
    """None when every pair of photos scores at least `threshold`; else the photo that
    differs: the one with the most pairs below it, then the lowest mean similarity to the
    others, then the later one (with two photos, the second differs from the primary)."""
    count = len(embeddings)
    similarity = np.ones((count, count))
    for i in range(count):
        for j in range(i + 1, count):
            similarity[i, j] = similarity[j, i] = cosine(embeddings[i], embeddings[j])
    if count < 2 or similarity.min() >= threshold:
        return None

    def oddness(i: int) -> tuple[int, float, int]:
        others = [similarity[i, j] for j in range(count) if j != i]
        return sum(s < threshold for s in others), -float(np.mean(others)), i

    index = max(range(count), key=oddness)
    return Stranger(index, round(float(min(similarity[index, j] for j in range(count) if j != index)), 4))
