"""The print detail pattern score on real pictures: a proof painted by the embedded style
network, upscaled x4 by the embedded Real-ESRGAN as the print path once did (the maze), by
Lanczos, and by the print path's softened model pass with the texture carried by Lanczos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_quality
from photogen_pipelines.imaging.print_detail import add_texture, crop_boxes, pattern_score, print_pattern_scores, soften

STARRY_SWIRL = {"builtin": {19: 1.0}}  # the style whose brush texture made the worst maze


@pytest.fixture(scope="module")
def proof_crop(stylizer) -> np.ndarray:
    """160 px of a proof around the face, at proof resolution (the astronaut is 512 px,
    the proof 1024: twice as large)."""
    portrait = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024), Image.LANCZOS))
    return stylizer.stylize(np.ascontiguousarray(portrait[150:310, 370:530]), STARRY_SWIRL, 0.5)


def _lanczos(image: np.ndarray, scale: int = 4) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.LANCZOS))


def test_the_maze_scores_above_the_threshold_and_the_print_path_below(proof_crop, upscaler):
    threshold = load_quality().print_detail_clean.max_pattern_score
    reference = _lanczos(proof_crop)

    maze = upscaler.upscale(proof_crop, 4)
    softened = soften(proof_crop)
    textured = np.asarray(add_texture(Image.fromarray(upscaler.upscale(softened, 4)), proof_crop, softened))

    assert pattern_score(reference, reference) == pytest.approx(1.0)
    assert pattern_score(maze, reference) > threshold * 1.3
    assert pattern_score(textured, reference) < threshold


def test_a_flat_area_does_not_divide_by_almost_nothing():
    flat = np.full((256, 256, 3), 128, np.uint8)
    faint = flat + np.random.default_rng(0).integers(0, 2, flat.shape, dtype=np.uint8)
    assert pattern_score(faint, flat) < 1.0


def test_scores_cover_the_master_with_crops_against_the_same_region_of_the_proof(proof_crop):
    proof = Image.fromarray(proof_crop)
    master = proof.resize((640, 640), Image.LANCZOS)
    boxes = crop_boxes(master.size, crop=200, grid=3)
    assert len(boxes) == 9 and all(r - left == 200 and b - t == 200 for left, t, r, b in boxes)
    assert all(0 <= left and r <= 640 and 0 <= t and b <= 640 for left, t, r, b in boxes)
    # a master that is the proof by Lanczos scores 1 everywhere: each crop's reference is
    # the same region of the proof, scaled the same way
    assert print_pattern_scores(proof, master, crop=200) == pytest.approx([1.0] * 9, abs=0.02)


def test_soften_zero_leaves_the_proof_to_the_model(proof_crop):
    assert soften(proof_crop, 0.0) is proof_crop
    master = Image.fromarray(_lanczos(proof_crop))
    assert add_texture(master, proof_crop, proof_crop) is master
