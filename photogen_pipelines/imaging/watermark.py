"""Watermarked previews: what a customer is shown of a proof before approving it.

A preview is the proof at proof size (its long side at most `PREVIEW_LONG_SIDE`) with a
visible mark over all of it: rows of the word PROOF on a diagonal, white with a dark
outline so they show on light and dark paint alike, and a JPEG at a preview's quality. It
is enough to choose from and too marked to print; the clean proof stays in storage for the
print run.
"""

from __future__ import annotations

import functools
import io
import math

from PIL import Image, ImageDraw, ImageFont

PREVIEW_LONG_SIDE = 1024  # the proof size (generation's proof_long_side): a preview is never larger
MARK = "PROOF"
ANGLE = 30.0  # degrees, counter-clockwise: the rows rise to the right
FILL, OUTLINE = (255, 255, 255, 120), (0, 0, 0, 90)
JPEG_QUALITY = 82


@functools.lru_cache(maxsize=8)
def _mark_layer(width: int, height: int) -> Image.Image:
    """The mark for a picture of this size: transparent but for the rows of text."""
    size = max(10, round(min(width, height) / 9))
    font = ImageFont.load_default(size=size)
    row = "   ".join([MARK] * 12)
    side = math.ceil(math.hypot(width, height))  # a square that still covers the picture once turned
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    stroke = max(1, size // 14)
    step = round(size * 2.3)
    for index, y in enumerate(range(-step, side + step, step)):
        offset = -(index % 2) * size * 2  # alternate rows shifted, so the words do not line up in columns
        draw.text((offset, y), row, font=font, fill=FILL, stroke_width=stroke, stroke_fill=OUTLINE)
    turned = layer.rotate(ANGLE, resample=Image.Resampling.BICUBIC)
    left, top = (side - width) // 2, (side - height) // 2
    return turned.crop((left, top, left + width, top + height))


def preview(proof: bytes, long_side: int = PREVIEW_LONG_SIDE) -> bytes:
    """The watermarked preview of a proof (PNG or JPEG bytes), as JPEG bytes without metadata."""
    with Image.open(io.BytesIO(proof)) as opened:
        picture = opened.convert("RGB")
    if max(picture.size) > long_side:
        picture.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    marked = Image.alpha_composite(picture.convert("RGBA"), _mark_layer(*picture.size)).convert("RGB")
    buffer = io.BytesIO()
    marked.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
