"""What the hosted reference models share (a FLUX.2 model on Replicate, Qwen-Image-Edit on
RunPod's public endpoint): the customer's photos checked and named for the prediction
journal, the product's size turned into the nearest size or aspect ratio the model offers,
and each picture that comes back fitted to the size asked for (cropped to its aspect, then
resized), as every stylizer returns it."""

from __future__ import annotations

import base64
import hashlib
import math

import numpy as np
from PIL import Image

from photogen_pipelines.imaging.images import png_bytes


def check_references(references: list[np.ndarray], size: tuple[int, int], engine: str) -> None:
    """ValueError unless `references` are HxWx3 uint8 pictures and `size` is (width, height)."""
    if not isinstance(references, list | tuple) or not references:
        raise ValueError(f"{engine} needs at least one reference photo")
    for picture in references:
        if not (isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3):
            got = f"{picture.dtype} {picture.shape}" if isinstance(picture, np.ndarray) else type(picture).__name__
            raise ValueError(f"{engine} needs HxWx3 uint8 RGB reference photos, got {got}")
        if 0 in picture.shape:
            raise ValueError(f"{engine} got an empty reference photo")
    if not (isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int | np.integer) and v > 0 for v in size)):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}")


KEEP_FACE = "Keep the person's face, features and expression exactly as in the photos; change only the style."


def keep_more(prompt: str, strength: float, style_strength: object) -> str:
    """The style's prompt at the identity gate's `strength`: a reference model has no
    denoising strength, so a retry below the style's own asks outright to keep the face."""
    if isinstance(style_strength, int | float) and strength < style_strength:
        return f"{prompt.rstrip().rstrip('.')}. {KEEP_FACE}"
    return prompt


def references_digest(references: list[np.ndarray]) -> list[str]:
    """The photos after the first, named for a journal key (`request_key` takes the first
    as its picture): the same photos in the same order give the same names."""
    names = []
    for picture in references:
        digest = hashlib.sha256(f"{picture.shape}".encode())
        digest.update(np.ascontiguousarray(picture).tobytes())
        names.append(digest.hexdigest())
    return names


def png_data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def nearest_ratio(size: tuple[int, int], ratios: list[str]) -> str:
    """The "W:H" of `ratios` nearest to `size`'s aspect (on a log scale: 2:3 is as far
    from 1:1 as 3:2 is)."""
    width, height = size
    return min(ratios, key=lambda ratio: _distance(width / height, _ratio(ratio)))


def nearest_size(size: tuple[int, int], sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The (width, height) of `sizes` nearest to `size`'s aspect; of equally near ones the
    largest (more pixels to fit down from)."""
    width, height = size
    return min(sizes, key=lambda option: (round(_distance(width / height, option[0] / option[1]), 9), -option[0] * option[1]))


def size_at(aspect: float, pixels: int, multiple: int = 16) -> tuple[int, int]:
    """(width, height) of about `pixels` pixels at `aspect` (width / height), in multiples of `multiple`."""
    width = math.sqrt(pixels * aspect)
    return max(multiple, round(width / multiple) * multiple), max(multiple, round(width / aspect / multiple) * multiple)


def fit_picture(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The picture at `size` (width, height): cropped to its aspect about the centre, resized."""
    width, height = size
    if image.size != (width, height):
        target, actual = width / height, image.width / image.height
        if abs(actual - target) / target > 0.01:
            if actual > target:  # too wide: crop the sides
                keep = round(image.height * target)
                left = (image.width - keep) // 2
                image = image.crop((left, 0, left + keep, image.height))
            else:
                keep = round(image.width / target)
                top = (image.height - keep) // 2
                image = image.crop((0, top, image.width, top + keep))
        image = image.resize((width, height), Image.LANCZOS)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _ratio(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


def _distance(a: float, b: float) -> float:
    return abs(math.log(a / b))
