"""Image handling that does not need a model: safe decoding, framing, print files.

Customer uploads are untrusted: the format is sniffed from the bytes (never the file
name), the pixel count is checked before decoding (pixel bombs), truncated files are
refused, EXIF orientation is applied, colours are converted to sRGB and all metadata
is dropped before anything is stored.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from photogen_pipelines.errors import BadInput

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "MPO"}
MAX_UPLOAD_PIXELS = 40_000_000  # a 40 MP phone photo; more is a bomb, not a selfie
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
# A selfie's shortest side holds at least the smallest face kept (generation/stages.py's
# MIN_FACE_PX), and its long side at most MAX_ASPECT_RATIO times that: a 4000x1 strip is no
# photo of a person, and scaled for the face detector a side of it would round to 0 px.
MIN_UPLOAD_SIDE = 64
MAX_ASPECT_RATIO = 4

SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# LittleCMS stamps the creation time into the header (bytes 24-35); zeroed, every process
# embeds the same bytes, so a print file is reproducible and checkable from another process
SRGB_ICC = SRGB_PROFILE.tobytes()[:24] + bytes(12) + SRGB_PROFILE.tobytes()[36:]


def decode_upload(data: bytes, *, max_pixels: int = MAX_UPLOAD_PIXELS, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Bytes from a customer → an upright sRGB RGB image with no metadata."""
    if not data:
        raise BadInput("the file is empty", code="empty_file")
    if len(data) > max_bytes:
        raise BadInput(
            f"the file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB", code="file_too_large"
        )
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for headers far past ours
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "too many pixels"
        raise BadInput(f"the image has {size}; the limit is {max_pixels / 1e6:.0f} MP", code="image_too_large") from None
    except (UnidentifiedImageError, OSError):
        raise BadInput("the file is not an image (accepted: JPEG, PNG, WebP, TIFF, BMP)", code="not_an_image") from None
    if image.format not in ACCEPTED_FORMATS:
        raise BadInput(
            f"{image.format} images are not accepted (accepted: JPEG, PNG, WebP, TIFF, BMP)", code="unsupported_format"
        )
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); the limit is {max_pixels / 1e6:.0f} MP",
            code="image_too_large",
        )
    _check_shape(width, height)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"the image is damaged or truncated ({exc})", code="truncated_image") from None
    return _normalise(image)


def _check_shape(width: int, height: int) -> None:
    """Before anything decodes or detects: a side too short for a face, or a strip."""
    short, long = sorted((width, height))
    if short < MIN_UPLOAD_SIDE:
        raise BadInput(
            f"the image is {width}x{height} pixels; each side must be at least {MIN_UPLOAD_SIDE} px", code="image_too_small"
        )
    if long > MAX_ASPECT_RATIO * short:
        raise BadInput(
            f"the image is {width}x{height} pixels; its long side may be at most {MAX_ASPECT_RATIO} times its short side",
            code="image_too_narrow",
        )


def _normalise(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if image.mode.startswith("I"):  # 16/32-bit greyscale: scale to 8 bits, convert() would clip
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((wide * (255.0 / max(float(wide.max()), 255.0))).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, SRGB_PROFILE, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken embedded profile: treat the pixels as sRGB, as browsers do
    image = image.convert("RGB")
    # a fresh image from the pixels alone: EXIF (GPS!), XMP, comments and profiles are gone
    return Image.fromarray(np.asarray(image))


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


def portrait_crop(
    image_size: tuple[int, int], face: Box, aspect: float, face_fraction: float = 0.38
) -> tuple[int, int, int, int]:
    """A crop box of the given aspect (width / height) that frames the face as a portrait.

    The face takes `face_fraction` of the crop's width and sits a little above the
    centre, as a photographer frames a head-and-shoulders shot. The crop shrinks to fit
    inside the image rather than inventing pixels.
    """
    img_w, img_h = image_size
    crop_w = face.w / face_fraction
    crop_h = crop_w / aspect
    scale = min(1.0, img_w / crop_w, img_h / crop_h)
    crop_w, crop_h = crop_w * scale, crop_h * scale
    cx, cy = face.center
    left = cx - crop_w / 2
    top = cy - crop_h * 0.42
    left = min(max(left, 0.0), img_w - crop_w)
    top = min(max(top, 0.0), img_h - crop_h)
    return round(left), round(top), round(left + crop_w), round(top + crop_h)


def fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    w, h = size
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def png_bytes(image: Image.Image | np.ndarray, compress_level: int = 1) -> bytes:
    # zlib level 1: a 1024-px proof encodes ~3x faster than at Pillow's default 6 for ~12 %
    # more bytes, and an order encodes a dozen of them (BENCHMARKS.md, "Demo order")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", icc_profile=SRGB_ICC, compress_level=compress_level)
    return buffer.getvalue()


def open_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def encode_print_file(image: Image.Image, fmt: str, dpi: int) -> bytes:
    """The provider's file: sRGB profile embedded, DPI tags set, JPEG q95 / TIFF / PNG."""
    buffer = io.BytesIO()
    options = {"dpi": (dpi, dpi), "icc_profile": SRGB_ICC}
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=95, subsampling=0, optimize=True, **options)
    elif fmt == "tiff":
        image.save(buffer, format="TIFF", compression="tiff_lzw", **options)
    elif fmt == "png":
        image.save(buffer, format="PNG", **options)
    else:
        raise ValueError(f"unknown print format {fmt!r}")
    return buffer.getvalue()


EXTENSIONS = {"jpeg": "jpg", "tiff": "tif", "png": "png"}
