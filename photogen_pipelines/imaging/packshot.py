"""The embedded engine's product packshot: the product cut out of its photo and set,
centred, on a studio backdrop with a soft contact shadow, at a catalog's aspect ratio.

The cut-out is imaging/cutout.py's, the one the product lock compares with, and the
product's pixels are only scaled (Lanczos), never retouched: only its outermost pixels
are blended with the backdrop (the mask's anti-aliased edge), so the lock holds on the
packshot against the product photo. The shadow is the product's own mask, shifted down
and softened, darkening the backdrop under it: what a product standing on a paper sweep
casts under soft top light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from photogen_pipelines.errors import BadInput
from photogen_pipelines.imaging.cutout import Cutout, cut_out_product, rgb_pixels
from photogen_pipelines.imaging.images import Box


@dataclass(frozen=True)
class Backdrop:
    """A studio backdrop: a vertical gradient from the top of the sweep to its floor."""

    name: str
    top: tuple[int, int, int]
    floor: tuple[int, int, int]


BACKDROPS = {
    backdrop.name: backdrop
    for backdrop in (
        Backdrop("white_seamless", (255, 255, 255), (240, 240, 240)),
        Backdrop("light_grey_gradient", (236, 236, 236), (190, 190, 192)),
        Backdrop("warm_beige", (242, 230, 212), (219, 201, 176)),
    )
}
CATALOG_ASPECTS = ("1:1", "4:5", "2:3", "3:4", "16:9")  # width:height, as the shops' catalogs ask
FILL = 0.8  # the product's box fills this share of the canvas's width or height, whichever binds
SHADOW_OPACITY = 0.35  # the backdrop under the product keeps 65 % of its light at most
SHADOW_DROP = 0.03  # the shadow sits this share of the product's height below it...
SHADOW_SOFTNESS = 0.025  # ...blurred by this share of the product's long side (Gaussian sigma)
LONG_SIDES = (64, 8192)  # a packshot's long side, in pixels: a thumbnail to a print


@dataclass(frozen=True)
class Packshot:
    image: np.ndarray  # HxWx3 uint8 RGB
    backdrop: str
    aspect: str
    product_box: Box  # where the product's box (its cut-out's) lies in the packshot
    scale: float  # product pixels per photo pixel


def canvas_size(aspect: str, long_side: int) -> tuple[int, int]:
    """(width, height) of a canvas of `aspect` ("W:H") whose longer side is `long_side`."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*:\s*(\d{1,3})\s*", aspect)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise BadInput(
            f"an aspect ratio is width:height, like {', '.join(CATALOG_ASPECTS)}; got {aspect!r}", code="bad_aspect_ratio"
        )
    if not LONG_SIDES[0] <= long_side <= LONG_SIDES[1]:
        raise BadInput(f"a packshot's long side is {LONG_SIDES[0]}-{LONG_SIDES[1]} px, not {long_side}", code="bad_long_side")
    width, height = int(match[1]), int(match[2])
    if width >= height:
        return long_side, max(1, round(long_side * height / width))
    return max(1, round(long_side * width / height)), long_side


def backdrop_image(name: str, size: tuple[int, int]) -> np.ndarray:
    """The backdrop `name` at `size` (width, height); dithered, so a long gradient shows no bands."""
    if name not in BACKDROPS:
        raise BadInput(f"no backdrop {name!r}; the backdrops are {', '.join(BACKDROPS)}", code="unknown_backdrop")
    backdrop, (width, height) = BACKDROPS[name], size
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = np.array(backdrop.top, np.float32) * (1 - ramp) + np.array(backdrop.floor, np.float32) * ramp
    dither = np.random.default_rng(0).uniform(-0.5, 0.5, (height, width, 1)).astype(np.float32)
    return np.clip(np.round(column + dither), 0, 255).astype(np.uint8)


def _scaled(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size, Image.LANCZOS))


def _softened(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of `mask`; a wide one taken at a fraction of the size, where it
    costs a fraction of the time and loses nothing a blur that wide keeps."""
    step = max(1, int(sigma // 4))
    if step == 1:
        return cv2.GaussianBlur(mask, (0, 0), sigma)
    height, width = mask.shape
    small = cv2.resize(mask, (max(1, width // step), max(1, height // step)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / step), (width, height), interpolation=cv2.INTER_LINEAR)


def make_packshot(
    photo: np.ndarray,
    *,
    backdrop: str = "white_seamless",
    aspect: str = "1:1",
    long_side: int = 2048,
    cutout: Cutout | None = None,
) -> Packshot:
    """The product of `photo` centred on `backdrop` at `aspect`, `long_side` px on its
    longer side (BadInput for an unknown backdrop, a malformed aspect, no product)."""
    rgb = rgb_pixels(photo, "product photo")
    width, height = canvas_size(aspect, long_side)
    canvas = backdrop_image(backdrop, (width, height)).astype(np.float32)
    cutout = cutout if cutout is not None else cut_out_product(rgb)
    box = cutout.box
    x, y, w, h = (int(v) for v in (box.x, box.y, box.w, box.h))
    scale = min(FILL * width / w, FILL * height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    product = _scaled(rgb[y : y + h, x : x + w], size).astype(np.float32)
    # the mask scaled as grey levels: 1 inside, a fraction on the edge's pixels only
    # the photo's outermost product pixels are part background (a light halo when scaled
    # up): the mask gives them up before it is scaled
    inner = cv2.erode(cutout.mask[y : y + h, x : x + w].astype(np.uint8), np.ones((3, 3), np.uint8))
    alpha = _scaled(inner * 255, size).astype(np.float32) / 255
    alpha = np.clip((alpha - 0.5) * 2 + 0.5, 0, 1)  # Lanczos' soft shoulder made an edge one pixel wide

    shadow = np.zeros((height, width), np.float32)
    drop = round(SHADOW_DROP * size[1])
    bottom, right = min(height, top + drop + size[1]), min(width, left + size[0])
    shadow[top + drop : bottom, left:right] = alpha[: bottom - top - drop, : right - left]
    canvas *= 1 - SHADOW_OPACITY * _softened(shadow, max(1.0, SHADOW_SOFTNESS * max(size)))[..., None]

    region = canvas[top : top + size[1], left : left + size[0]]
    region[:] = region * (1 - alpha[..., None]) + product * alpha[..., None]
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return Packshot(image, backdrop, aspect, Box(float(left), float(top), float(size[0]), float(size[1])), scale)
