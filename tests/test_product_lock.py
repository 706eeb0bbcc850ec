"""The product-accuracy lock on real pixels: a drawn, printed t-shirt and scikit-image's
coffee cup, pasted into another photo (scikit-image's astronaut) at another size and
place, re-lit; and the same shots doctored: re-dyed, re-printed, the logo taken off, the
product swapped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation import product_lock
from photogen_pipelines.generation.product_lock import ProductLock, lock_with_retries
from photogen_pipelines.imaging.cutout import cut_out_product
from tests.product_photos import RUST, garment_photo, paste, relit, scene


@pytest.fixture(scope="module")
def garment():
    photo, mask = garment_photo()
    return photo, mask, ProductLock(photo)


@pytest.fixture(scope="module")
def coffee():
    photo = data.coffee()
    lock = ProductLock(photo)
    return photo, lock.cutout.mask, lock


def _shot(product: np.ndarray, mask: np.ndarray, **placing) -> np.ndarray:
    """The product in another scene, placed as asked, under slightly dimmer, warmer light."""
    return relit(paste(product, mask, scene(), **placing), gain=0.9, warmth=1.03)


def _iou(a, b) -> float:
    left, top = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    return inter / (a.w * a.h + b.w * b.h - inter)


def test_the_garment_is_segmented_from_its_background_not_boxed():
    photo, true_mask = garment_photo()
    cutout = cut_out_product(photo)
    overlap = (cutout.mask & true_mask).sum() / (cutout.mask | true_mask).sum()
    assert overlap > 0.97
    # the armpits and the space beside the body are background, which a box would keep
    box = cutout.box
    inside_box = np.zeros_like(true_mask)
    inside_box[int(box.y) : int(box.y + box.h), int(box.x) : int(box.x + box.w)] = True
    assert cutout.mask.sum() < 0.75 * inside_box.sum()


def test_an_unaltered_garment_elsewhere_in_another_scene_passes_and_is_found_where_it_is(garment):
    photo, mask, lock = garment
    shot = _shot(photo, mask, scale=0.6, centre=(0.62, 0.58))
    result = lock.check(shot)
    assert result.passed, result
    assert result.reason == product_lock.PASSED
    assert result.ssim >= result.threshold == product_lock.DEFAULT_THRESHOLD
    # where it was pasted: the mask's box at 0.6x, centred at (62 %, 58 %) of the 900x760 scene
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    w, h = round((cols[-1] - cols[0] + 1) * 0.6), round((rows[-1] - rows[0] + 1) * 0.6)
    expected = type(result.region)(0.62 * 900 - w / 2, 0.58 * 760 - h / 2, w, h)
    assert _iou(result.region, expected) > 0.9
    assert json.loads(json.dumps(result.to_json()))["reason"] == product_lock.PASSED


def test_an_unaltered_cup_larger_and_turned_passes(coffee):
    photo, mask, lock = coffee
    result = lock.check(_shot(photo, mask, scale=1.3, centre=(0.5, 0.5), angle=10))
    assert result.passed, result
    assert result.colour_difference < result.colour_tolerance


def test_a_re_dyed_garment_is_rejected_for_its_colour(garment):
    photo, mask, lock = garment
    rust, _ = garment_photo(RUST, stripe=(215, 120, 80))
    result = lock.check(_shot(rust, mask, scale=0.8, centre=(0.45, 0.55)))
    assert not result.passed
    assert result.reason in (product_lock.DIFFERS, product_lock.COLOUR_DIFFERS)
    assert result.colour_difference > result.colour_tolerance  # found, and its colour is what differs


def test_a_garment_dyed_a_colour_of_the_same_lightness_is_rejected_by_the_colour_check(garment):
    photo, mask, lock = garment
    green, _ = garment_photo((28, 90, 60), stripe=(70, 150, 100))
    result = lock.check(relit(paste(green, mask, scene(), scale=1.0, centre=(0.5, 0.55)), gain=1.1, warmth=0.97))
    assert not result.passed
    assert result.colour_difference > result.colour_tolerance


def test_a_re_printed_garment_is_rejected_as_different(garment):
    photo, mask, lock = garment
    finer, _ = garment_photo(period=16)  # the stripes at about half their width
    result = lock.check(_shot(finer, mask, scale=0.7, centre=(0.5, 0.5), angle=-8))
    assert (result.passed, result.reason) == (False, product_lock.DIFFERS)
    assert result.ssim < result.threshold


def test_a_garment_without_its_logo_is_rejected_for_the_part_that_differs(garment):
    photo, mask, lock = garment
    plain, _ = garment_photo(logo=False)
    result = lock.check(_shot(plain, mask, scale=0.9, centre=(0.5, 0.5)))
    assert (result.passed, result.reason) == (False, product_lock.PART_DIFFERS)
    # over the whole garment the logo is a small share: the whole passes, one part does not
    assert result.ssim >= result.threshold
    assert result.weakest_part < result.part_threshold


@pytest.mark.parametrize("swapped_in", ["chelsea", "coffee"])
def test_another_product_in_its_place_is_not_found(garment, swapped_in):
    photo, mask, lock = garment
    other = getattr(data, swapped_in)()
    other_mask = np.ones(other.shape[:2], bool) if swapped_in == "chelsea" else cut_out_product(other).mask
    result = lock.check(_shot(other, other_mask, scale=0.9, centre=(0.5, 0.5)))
    assert (result.passed, result.reason) == (False, product_lock.NOT_FOUND)
    assert result.ssim is None and result.region is None


def test_the_cup_lock_does_not_find_the_cup_in_a_garment_shot(garment, coffee):
    g_photo, g_mask, _ = garment
    _, _, lock = coffee
    result = lock.check(_shot(g_photo, g_mask, scale=0.7, centre=(0.5, 0.5)))
    assert result.reason == product_lock.NOT_FOUND


def test_retries_stop_at_the_first_seed_that_passes(garment):
    photo, mask, lock = garment
    plain, _ = garment_photo(logo=False)
    rendered = []

    def render(seed: int) -> np.ndarray:  # seeds 1 and 2 lose the logo, seed 3 keeps it
        rendered.append(seed)
        return _shot(photo if seed == 3 else plain, mask, scale=0.5 + 0.1 * seed, centre=(0.5, 0.5))

    outcome = lock_with_retries(lock, render, [1, 2, 3, 4, 5])
    assert rendered == [1, 2, 3]
    assert (outcome.passed, outcome.seed, outcome.reason) == (True, 3, product_lock.PASSED)
    assert [a.seed for a in outcome.attempts] == [1, 2, 3]
    assert [a.result.passed for a in outcome.attempts] == [False, False, True]
    assert outcome.image is not None and outcome.image.shape == (760, 900, 3)
    summary = json.loads(json.dumps(outcome.to_json()))
    assert summary["tries"] == 3 and all(a["ssim"] is not None for a in summary["attempts"])


def test_retries_give_up_after_three_with_the_reason(garment):
    photo, mask, lock = garment
    finer, _ = garment_photo(period=16)
    rendered = []

    def render(seed: int) -> np.ndarray:  # every seed re-prints the garment
        rendered.append(seed)
        return _shot(finer, mask, scale=0.6 + 0.1 * seed, centre=(0.5, 0.5))

    outcome = lock_with_retries(lock, render, range(10, 20))
    assert rendered == [10, 11, 12]
    assert (outcome.passed, outcome.seed, outcome.image) == (False, None, None)
    assert outcome.reason == product_lock.DIFFERS
    assert [a.result.reason for a in outcome.attempts] == [product_lock.DIFFERS] * 3
    assert all(a.result.ssim < product_lock.DEFAULT_THRESHOLD for a in outcome.attempts)


def test_the_threshold_is_the_callers(garment):
    photo, mask, _ = garment
    strict = ProductLock(photo, threshold=0.999)
    result = strict.check(_shot(photo, mask, scale=0.6, centre=(0.5, 0.5)))
    assert (result.passed, result.reason, result.threshold) == (False, product_lock.DIFFERS, 0.999)


def test_a_photo_with_nothing_on_its_background_is_bad_input():
    backdrop = np.full((300, 400, 3), 235, np.uint8)
    with pytest.raises(BadInput) as raised:
        ProductLock(backdrop)
    assert raised.value.code == "no_product_found"


def test_a_shot_that_is_not_an_rgb_picture_is_bad_input(garment):
    *_, lock = garment
    with pytest.raises(BadInput) as raised:
        lock.check(np.zeros((200, 200), np.uint8))
    assert raised.value.code == "not_an_rgb_image"
