"""Print detail at 100 %: how the print master splits the work between the upscaler and
Lanczos, and the pattern score that tells a maze from clean detail.

Real-ESRGAN reads the style network's fine brush texture (near the proof's own pixel
pitch) as edges and redraws it as hard-edged lines: a maze or circuit-board pattern over
the whole print, face included (BENCHMARKS.md, "Print detail at 100 %"). The proof holds no
detail finer than its pixels, so that texture is carried by Lanczos instead, and the model
only sees the proof softened below its texture scale, where what it sharpens is contours.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

# Gaussian sigma, in proof pixels, that hides the brush texture from the upscaler. 0.8
# still let squiggles through on starry_swirl; 1.6 scored no better than 1.2 and softens
# contours more (benchmarks/print_detail.py).
SOFTEN_SIGMA = 1.2

# Pattern score: band-pass sigma in master pixels (the maze's line width is 2-4 px), the
# share of the reference's broadest gradients left out (contours a model may fairly
# sharpen), and a floor in grey levels so flat areas do not divide by almost nothing.
BAND_SIGMA = 2.0
CONTOUR_SIGMA = 4.0
CONTOUR_PERCENTILE = 80.0
FLOOR = 1.0
CROP = 512


def soften(proof: np.ndarray, sigma: float = SOFTEN_SIGMA) -> np.ndarray:
    if sigma <= 0:
        return proof
    blurred = ndimage.gaussian_filter(proof.astype(np.float32), (sigma, sigma, 0))
    return np.clip(blurred + 0.5, 0, 255).astype(np.uint8)


# The eight ways to lay a picture on the model's grid (the dihedral group: identity,
# mirrors, rotations), each as (forward, back); `back` undoes `forward` on the upscaled
# picture. The first two, four and eight make the 2-, 4- and 8-fold self-ensembles.
_FLIPS: list[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = [
    (lambda a: a, lambda a: a),
    (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    (lambda a: a[::-1], lambda a: a[::-1]),
    (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
    (lambda a: a.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)),
    (lambda a: a[:, ::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[:, ::-1]),
    (lambda a: a[::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[::-1]),
    (lambda a: a[::-1, ::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[::-1, ::-1]),
]
ENSEMBLES = (1, 2, 4, 8)


def ensemble_upscale(
    upscale: Callable[[np.ndarray, int], np.ndarray], image: np.ndarray, scale: int, ensemble: int = 1
) -> np.ndarray:
    """`upscale(image, scale)` averaged over `ensemble` mirrored and rotated copies of the
    picture (a geometric self-ensemble). What the model invents (its own fine grid and
    squiggles) depends on how the picture lies on its grid and averages out; the contours
    every copy agrees on stay. Costs `ensemble` model passes."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble}")
    if ensemble == 1:
        return upscale(image, scale)
    total: np.ndarray | None = None
    for forward, back in _FLIPS[:ensemble]:
        out = back(upscale(np.ascontiguousarray(forward(image)), scale)).astype(np.float32)
        total = out if total is None else total + out
    return np.clip(total / ensemble + 0.5, 0, 255).astype(np.uint8)


def add_texture(master: Image.Image, proof: np.ndarray, softened: np.ndarray) -> Image.Image:
    """The model's picture plus what softening took out of the proof, both at the master's
    size: the proof's own texture, scaled by Lanczos, on the model's contours."""
    if softened is proof:
        return master
    # Lanczos is linear, so the difference is scaled once, as 8 bits around 128: a quarter of
    # the time of float planes at print size (2.0 s -> 0.5 s). At sigma 1.2 the proofs
    # measured differ by at most 77 levels; the clip is for safety.
    texture = np.clip(proof.astype(np.int16) - softened + 128, 0, 255).astype(np.uint8)
    texture = np.asarray(Image.fromarray(texture).resize(master.size, Image.LANCZOS), dtype=np.int16)
    texture += np.asarray(master, dtype=np.int16)
    texture -= 128
    return Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def pattern_score(crop: np.ndarray, reference: np.ndarray) -> float:
    """Band-pass energy of a 100 % crop of the master over that of the same crop of the
    proof upscaled by Lanczos, away from the reference's main contours. About 1 means no
    pattern Lanczos would not have made; the maze measured 2.7-2.9 (starry_swirl) and
    1.2-1.5 (sepia_oil), the textured split 1.0-1.2."""
    grey, ref = _grey(crop), _grey(reference)
    contours = ndimage.gaussian_gradient_magnitude(ref, CONTOUR_SIGMA)
    away = contours <= np.percentile(contours, CONTOUR_PERCENTILE)  # <=: a flat reference keeps every pixel
    band = (grey - ndimage.gaussian_filter(grey, BAND_SIGMA))[away].std()
    ref_band = (ref - ndimage.gaussian_filter(ref, BAND_SIGMA))[away].std()
    return float(band / max(ref_band, FLOOR))


def crop_boxes(size: tuple[int, int], crop: int = CROP, grid: int = 3) -> list[tuple[int, int, int, int]]:
    """A grid x grid spread of crop-sized boxes over the picture (the middle one on the
    face of a centred portrait), as (left, top, right, bottom)."""
    width, height = size
    crop = min(crop, width, height)
    xs = np.linspace(0, width - crop, grid + 2)[1:-1].round().astype(int)
    ys = np.linspace(0, height - crop, grid + 2)[1:-1].round().astype(int)
    return [(int(x), int(y), int(x) + crop, int(y) + crop) for y in ys for x in xs]


def print_pattern_scores(proof: Image.Image, master: Image.Image, crop: int = CROP, grid: int = 3) -> list[float]:
    """pattern_score on 100 % crops spread over the master, each against the same region of
    the proof upscaled by Lanczos to the master's size (only that region is scaled)."""
    proof_rgb, master_rgb = proof.convert("RGB"), master.convert("RGB")
    sx, sy = proof_rgb.width / master_rgb.width, proof_rgb.height / master_rgb.height
    scores = []
    for box in crop_boxes(master_rgb.size, crop, grid):
        left, top, right, bottom = box
        region = (left * sx, top * sy, right * sx, bottom * sy)
        reference = proof_rgb.resize((right - left, bottom - top), Image.LANCZOS, box=region)
        scores.append(pattern_score(np.asarray(master_rgb.crop(box)), np.asarray(reference)))
    return scores
