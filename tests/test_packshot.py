"""The embedded engine's packshot: the product cut out, centred on a studio backdrop with
a soft shadow, at the asked aspect and size, its pixels only scaled, so the product lock
holds on it against the product photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

from photogen_pipelines.errors import BadInput
from photogen_pipelines.generation.product_lock import PASSED, ProductLock
from photogen_pipelines.imaging.packshot import BACKDROPS, CATALOG_ASPECTS, canvas_size, make_packshot
from tests.product_photos import garment_photo


@pytest.fixture(scope="module")
def garment_lock() -> ProductLock:
    return ProductLock(garment_photo()[0])


@pytest.fixture(scope="module")
def coffee_lock() -> ProductLock:
    return ProductLock(data.coffee())


@pytest.mark.parametrize(
    "aspect, long_side, size",
    [("1:1", 1024, (1024, 1024)), ("4:5", 1000, (800, 1000)), ("2:3", 1200, (800, 1200)), ("16:9", 1600, (1600, 900))],
)
def test_a_canvas_has_the_asked_aspect_at_the_asked_long_side(aspect, long_side, size):
    assert canvas_size(aspect, long_side) == size


@pytest.mark.parametrize(
    "product, backdrop, aspect",
    [
        ("garment", "white_seamless", "1:1"),
        ("garment", "light_grey_gradient", "4:5"),
        ("coffee", "warm_beige", "2:3"),
        ("coffee", "light_grey_gradient", "16:9"),
    ],
)
def test_the_packshot_has_the_asked_aspect_and_backdrop_and_the_lock_holds_on_it(request, product, backdrop, aspect):
    lock: ProductLock = request.getfixturevalue(f"{product}_lock")
    shot = make_packshot(lock.photo, backdrop=backdrop, aspect=aspect, long_side=900, cutout=lock.cutout)
    height, width = shot.image.shape[:2]
    assert (width, height) == canvas_size(aspect, 900) and max(width, height) == 900
    a, b = (int(v) for v in aspect.split(":"))
    assert abs(width / height - a / b) < 0.01
    # the backdrop: its own colours at the top and the floor, away from the product and its shadow
    expected = BACKDROPS[backdrop]
    assert np.abs(shot.image[:3, :3].reshape(-1, 3).astype(int) - expected.top).max() <= 2
    assert np.abs(shot.image[-3:, :3].reshape(-1, 3).astype(int) - expected.floor).max() <= 2
    # centred
    box = shot.product_box
    assert abs(box.x + box.w / 2 - width / 2) <= 1 and abs(box.y + box.h / 2 - height / 2) <= 1
    result = lock.check(shot.image)
    assert (result.passed, result.reason) == (True, PASSED), result
    assert result.ssim > 0.95
    found = result.region
    assert abs(found.x - box.x) < 3 and abs(found.y - box.y) < 3 and abs(found.w - box.w) < 4


def test_the_product_pixels_are_only_scaled(garment_lock):
    shot = make_packshot(garment_lock.photo, aspect="4:5", long_side=1000, cutout=garment_lock.cutout)
    cut = garment_lock.cutout
    x, y, w, h = (int(v) for v in (cut.box.x, cut.box.y, cut.box.w, cut.box.h))
    box = shot.product_box
    size = (int(box.w), int(box.h))
    scaled = np.asarray(Image.fromarray(garment_lock.photo[y : y + h, x : x + w]).resize(size, Image.LANCZOS))
    mask = np.asarray(Image.fromarray(cut.mask[y : y + h, x : x + w]).resize(size, Image.NEAREST))
    # the edge, a photo pixel and a few of the packshot's, is blended with the backdrop
    interior = ndimage.binary_erosion(mask, iterations=3 + int(np.ceil(shot.scale)))
    placed = shot.image[int(box.y) : int(box.y) + size[1], int(box.x) : int(box.x) + size[0]]
    assert interior.sum() > 0.4 * interior.size
    assert np.array_equal(placed[interior], scaled[interior])


def test_the_product_casts_a_soft_shadow_below_it(garment_lock):
    shot = make_packshot(garment_lock.photo, backdrop="white_seamless", long_side=800, cutout=garment_lock.cutout)
    box = shot.product_box
    below = int(box.y + box.h) + 6  # just under the hem, in the middle
    centre = int(box.x + box.w / 2)
    under, aside = shot.image[below, centre].astype(int), shot.image[below, 5].astype(int)
    assert (aside - under).min() >= 25  # darker under the garment than at the same height beside it
    far_below = min(shot.image.shape[0] - 1, int(box.y + box.h) + 60)
    assert (aside - shot.image[far_below, centre].astype(int)).max() <= 4  # and soft: it fades out


def test_every_backdrop_and_catalog_aspect_renders(coffee_lock):
    for backdrop in BACKDROPS:
        for aspect in CATALOG_ASPECTS:
            image = make_packshot(
                coffee_lock.photo, backdrop=backdrop, aspect=aspect, long_side=96, cutout=coffee_lock.cutout
            ).image
            assert image.dtype == np.uint8 and max(image.shape[:2]) == 96


@pytest.mark.parametrize(
    "options, code",
    [
        ({"backdrop": "studio_black"}, "unknown_backdrop"),
        ({"aspect": "square"}, "bad_aspect_ratio"),
        ({"aspect": "4:0"}, "bad_aspect_ratio"),
        ({"long_side": 20_000}, "bad_long_side"),
    ],
)
def test_bad_packshot_options_are_bad_input_with_a_code(coffee_lock, options, code):
    with pytest.raises(BadInput) as raised:
        make_packshot(coffee_lock.photo, cutout=coffee_lock.cutout, **options)
    assert raised.value.code == code
