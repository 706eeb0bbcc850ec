"""How different an order's proofs look from each other.

"Choose your favourite" means something only if the proofs differ in ways a customer
sees at a glance: colour, framing, the size of the strokes. The distance between two
proofs is 1 - SSIM computed on CIELAB at a glance's size (64 px on the long side): SSIM
compares local structure, contrast and brightness, and on L*a*b* it sees a palette change
as well as a new crop. Brush texture, which differs between any two paintings but does
not make them different pictures, is averaged away at that size; at 256 px it was not,
and proofs a customer could not tell apart scored as far apart as two styles.

Measured on the 4 reference faces x 8 styles (BENCHMARKS.md, "Proof variety"): the old
variants (strength ±10 %, zoom ≤ 8 %) scored 0.18–0.35 per order of 4 (median 0.24); the
same take rendered twice with its seed's jitter 0.09–0.24; an order of 4 takes 0.40–0.67
(median 0.53), of 2 takes 0.31–0.58. VARIETY_FLOOR sits above every repeated take and the
old variants' median, below every order of 2 or 4 takes.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from PIL import Image
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

THUMBNAIL_SIDE = 64
VARIETY_FLOOR = 0.30
# the smallest distance between two takes a style offers (generation/takes.py): above the
# pairs that looked like one picture at thumbnail size on the reference faces (the dropped
# "quiet backdrop" take, 0.06-0.21 from the classic one; starry_swirl's fine strokes,
# 0.19), below those that looked like two (fauve's fine strokes, 0.25; a close-up in two
# palettes, 0.27 and up). BENCHMARKS.md, "Proof variety".
MIN_TAKE_DISTANCE = 0.23
# L* spans 0..100 and a*, b* about -128..127: scale each to a comparable range
_LAB_SCALE = np.array([100.0, 128.0, 128.0], dtype=np.float32)


def _thumbnail_lab(rgb: np.ndarray) -> np.ndarray:
    image = Image.fromarray(rgb)
    scale = THUMBNAIL_SIDE / max(image.size)
    image = image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))), Image.LANCZOS)
    return (rgb2lab(np.asarray(image)) / _LAB_SCALE).astype(np.float32)


def proof_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - SSIM of two proofs at thumbnail size in CIELAB: 0 for the same picture."""
    lab_a, lab_b = _thumbnail_lab(a), _thumbnail_lab(b)
    if lab_a.shape != lab_b.shape:
        height, width = min(lab_a.shape[0], lab_b.shape[0]), min(lab_a.shape[1], lab_b.shape[1])
        lab_a, lab_b = lab_a[:height, :width], lab_b[:height, :width]
    similarity = structural_similarity(lab_a, lab_b, channel_axis=2, data_range=2.0, gaussian_weights=True, sigma=1.5)
    return float(1.0 - similarity)


def proof_variety(images: list[np.ndarray]) -> float | None:
    """Mean pairwise distance between proofs; None with fewer than two."""
    if len(images) < 2:
        return None
    thumbnails = [np.asarray(image) for image in images]
    return float(np.mean([proof_distance(a, b) for a, b in combinations(thumbnails, 2)]))
