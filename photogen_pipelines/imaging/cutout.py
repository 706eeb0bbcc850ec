"""A product cut out of its photo: which pixels are the product, found by segmentation.

A merchant's product photo shows a garment or an object on a plain-ish background that
reaches the photo's edges. OpenCV's GrabCut (a colour model per side, refined by a graph
cut) is seeded from that: a band along the border is background for certain, pixels whose
colour is near the border's are probably background, the rest probably product. It runs at
a working size (long side `WORK_SIDE`), whose mask is scaled back up, and is kept whole:
the largest parts only, holes filled (a white logo on a shirt on a white background is the
shirt's). No model is loaded: rembg's U2-Net would download its weights at run time.

The product lock (generation/product_lock.py) and the packshot (imaging/packshot.py) cut
the product out with this one function, so the packshot keeps exactly the pixels the lock
compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from photogen_pipelines.errors import BadInput
from photogen_pipelines.imaging.images import Box

WORK_SIDE = 320  # GrabCut's graph grows with the pixels; at 320 px a cut takes ~0.1 s on one core
BORDER_FRACTION = 0.03  # the band along the edges taken as background for certain
GRABCUT_ITERATIONS = 5
# a pixel within this CIELAB distance of the border's median colour starts as probable
# background: a plain backdrop's own shading stays within it, a product's colour does not
BACKGROUND_LAB_DISTANCE = 12.0
MIN_PRODUCT_FRACTION = 0.01  # less than 1 % of the photo is no product: a speck, not a cut
EDGE_SMOOTHING = 1.0  # px at the working size
KEEP_PART_FRACTION = 0.15  # parts smaller than this share of the largest are background noise


@dataclass(frozen=True)
class Cutout:
    """The product's pixels: `mask` is True on the product, at the photo's own size."""

    mask: np.ndarray
    box: Box  # the mask's bounding box, in the photo's pixels

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())


def rgb_pixels(image: np.ndarray, what: str) -> np.ndarray:
    """The picture as HxWx3 uint8 RGB (an alpha channel dropped); BadInput otherwise."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        shape = getattr(image, "shape", type(image).__name__)
        raise BadInput(f"the {what} must be an HxWx3 uint8 RGB image, got {shape}", code="not_an_rgb_image")
    if min(image.shape[:2]) < 16:
        raise BadInput(f"the {what} is {image.shape[1]}x{image.shape[0]} pixels; at least 16x16", code="image_too_small")
    return np.ascontiguousarray(image[..., :3])


def mask_box(mask: np.ndarray) -> Box:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return Box(float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))


def _seed_mask(small: np.ndarray) -> np.ndarray:
    height, width = small.shape[:2]
    band = max(2, round(BORDER_FRACTION * min(height, width)))
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100 / 255  # OpenCV's 8-bit L* spans 0..255
    lab[..., 1:] -= 128
    border = np.ones((height, width), bool)
    border[band:-band, band:-band] = False
    distance = np.linalg.norm(lab - np.median(lab[border], axis=0), axis=2)
    seeds = np.where(distance < BACKGROUND_LAB_DISTANCE, cv2.GC_PR_BGD, cv2.GC_PR_FGD).astype(np.uint8)
    seeds[border] = cv2.GC_BGD
    return seeds


def _whole(mask: np.ndarray) -> np.ndarray:
    """The largest parts of a mask, each without holes."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    keep = np.flatnonzero(sizes >= KEEP_PART_FRACTION * sizes.max()) + 1
    return ndimage.binary_fill_holes(np.isin(labels, keep))


def cut_out_product(photo: np.ndarray) -> Cutout:
    """The product in its photo, found by GrabCut seeded from the border as background
    (BadInput `no_product_found` when nothing stands out from the background)."""
    rgb = rgb_pixels(photo, "product photo")
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    small = cv2.resize(rgb, (max(16, round(width * scale)), max(16, round(height * scale))), interpolation=cv2.INTER_AREA)
    seeds = _seed_mask(small)
    if (seeds == cv2.GC_PR_FGD).mean() < MIN_PRODUCT_FRACTION:
        raise BadInput("no product stands out from the photo's background", code="no_product_found")
    background_model, product_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's colour models start from k-means: the same photo, the same cut
    cv2.grabCut(small, seeds, None, background_model, product_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    product = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    product = ndimage.binary_opening(product, iterations=1)
    product = _whole(product)
    if product.mean() < MIN_PRODUCT_FRACTION:
        raise BadInput("no product stands out from the photo's background", code="no_product_found")
    # softened before it is scaled up, the working size's staircase becomes a smooth edge
    soft = cv2.GaussianBlur(product.astype(np.float32), (0, 0), EDGE_SMOOTHING)
    full = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    return Cutout(full, mask_box(full))
