"""Product photos and shots for the product lock and the packshot tests, made here from
pictures that ship in scikit-image (no network): a drawn t-shirt with a printed pattern and
scikit-image's logo on its chest, on a plain-ish studio background; and shots that paste a
product into another scene, re-lit, or doctored."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

GARMENT_SIZE = (560, 600)  # width, height of the garment photo
NAVY, RUST = (28, 52, 120), (170, 70, 40)
# a t-shirt's outline on a 100x100 grid: collar, shoulders, sleeves, body
_SHIRT = [(38, 10), (50, 16), (62, 10), (84, 20), (96, 40), (80, 47), (76, 38), (76, 92),
          (24, 92), (24, 38), (20, 47), (4, 40), (16, 20)]  # fmt: skip
LOGO_BOX = (0.38, 0.30, 0.62, 0.54)  # where the logo sits on the photo: left, top, right, bottom


def _studio_background(width: int, height: int, seed: int = 1) -> np.ndarray:
    """A plain-ish backdrop: light grey, a soft vertical falloff, a little sensor noise."""
    falloff = np.linspace(244, 226, height)[:, None, None] * np.ones((1, width, 1))
    noise = np.random.default_rng(seed).normal(0, 1.5, (height, width, 3))
    return np.clip(falloff * np.array([1.0, 1.0, 0.985]) + noise, 0, 255).astype(np.uint8)


def garment_mask(size: tuple[int, int] = GARMENT_SIZE) -> np.ndarray:
    width, height = size
    outline = Image.new("L", size, 0)
    ImageDraw.Draw(outline).polygon([(x * width / 100, y * height / 100) for x, y in _SHIRT], fill=255)
    return np.asarray(outline) > 127


def _print(width: int, height: int, colour: tuple, stripe: tuple, period: int) -> np.ndarray:
    """The fabric's print: diagonal stripes strewn with small cream stars and rings, placed
    at random (a fixed seed), so no two parts of the garment look alike."""
    yy, xx = np.mgrid[0:height, 0:width]
    diagonal = ((xx + yy) // (period // 2)) % 2 == 0
    fabric = Image.fromarray(np.where(diagonal[..., None], np.array(stripe), np.array(colour)).astype(np.uint8))
    draw, rng = ImageDraw.Draw(fabric), np.random.default_rng(7)
    motifs = rng.uniform(0, width, 90), rng.uniform(0, height, 90), rng.uniform(4, 10, 90), rng.integers(0, 3, 90)
    for x, y, r, kind in zip(*motifs, strict=True):
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), outline=(245, 230, 190), width=2)
        elif kind == 1:
            draw.regular_polygon((x, y, r), 5, rotation=float(r * 30), fill=(245, 230, 190))
        else:
            draw.line((x - r, y, x + r, y), fill=(245, 230, 190), width=2)
            draw.line((x, y - r, x, y + r), fill=(245, 230, 190), width=2)
    return np.asarray(fabric)


def garment_photo(
    colour: tuple = NAVY, *, stripe: tuple = (70, 100, 175), period: int = 28, logo: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A t-shirt photographed flat on a studio background, and its true mask."""
    width, height = GARMENT_SIZE
    mask = garment_mask()
    shirt = _print(width, height, colour, stripe, period)
    if logo:
        left, top, right, bottom = (round(v * s) for v, s in zip(LOGO_BOX, (width, height, width, height), strict=True))
        mark = Image.fromarray(data.logo()).resize((right - left, bottom - top), Image.LANCZOS)
        printed = Image.fromarray(shirt)
        printed.paste(Image.new("RGB", mark.size, (250, 250, 245)), (left, top))  # the print's white ground
        printed.paste(mark.convert("RGB"), (left, top), mark.getchannel("A"))
        shirt = np.asarray(printed)
    photo = np.where(mask[..., None], shirt, _studio_background(width, height))
    return photo.astype(np.uint8), mask


def paste(
    product: np.ndarray,
    mask: np.ndarray,
    scene: np.ndarray,
    *,
    scale: float,
    centre: tuple[float, float],
    gain: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """The product (its masked pixels) scaled, turned `angle` degrees and placed with its
    centre at `centre` (fractions of the scene), its light multiplied by `gain`."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = product[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    alpha = Image.fromarray((mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * 255).astype(np.uint8))
    lit = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    piece = Image.fromarray(lit).resize(size, Image.LANCZOS)
    alpha = alpha.resize(size, Image.LANCZOS)
    if angle:
        piece, alpha = piece.rotate(angle, Image.BICUBIC, expand=True), alpha.rotate(angle, Image.BICUBIC, expand=True)
    shot = Image.fromarray(scene).convert("RGB")
    x = round(centre[0] * shot.width - piece.width / 2)
    y = round(centre[1] * shot.height - piece.height / 2)
    shot.paste(piece, (x, y), alpha)
    return np.asarray(shot)


def relit(image: np.ndarray, gain: float = 0.9, warmth: float = 1.03) -> np.ndarray:
    """The whole shot under slightly other light: dimmer, a touch warmer."""
    light = np.array([gain * warmth, gain, gain / warmth], dtype=np.float32)
    return np.clip(image.astype(np.float32) * light, 0, 255).astype(np.uint8)


def scene(width: int = 900, height: int = 760) -> np.ndarray:
    """Another place for the product: scikit-image's astronaut photo, larger, softened."""
    big = Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC)
    return np.asarray(big)
