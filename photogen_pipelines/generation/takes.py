"""The takes of an order on the embedded engine: proofs a customer can tell apart.

A style-transfer network paints the same picture every time, so the variants of an
order are different *takes* on the portrait, each named for what a customer sees:
the style as catalogued, its second palette, a closer crop, the closer crop in the second
palette, the whole picture in the second palette (a little nearer), a face close-up, bolder
strokes, finer strokes. In that order: an order of two gets the first two, which differ
most, an order of four the first four, and an order of six (the premium tier) the first six,
which differ in every style, since they change the palette and the framing, the two axes
every network answers. Every take is still seeded (a little jitter in framing and stroke
size) so a re-run reproduces it.

Each take must read as itself at thumbnail size: any two takes a style offers are at least
variety.MIN_TAKE_DISTANCE apart. Stroke size is the weak one, so the stroke takes come last.
A style whose network paints the same fine texture at every size (sepia_oil, ink_etching) or
on a canvas of at most 384 px whatever the take asks (ember_glow, a style picture) gets a
softer or the same picture from "bold" and "fine"; in most styles "fine" is the classic
picture with a finer grain. A style's catalog entry leaves out the takes that read as
another of its takes or lose the customer's face (styles.yaml, `without_takes`), never one
of the first four; an order's variants go round the takes its style offers (take_for), so an
order of as many proofs as its style offers gets exactly those, and every style offers at
least six. The left-out takes are the last ones but in pastel_cubist, which leaves out the
face close-up and keeps bold and fine strokes: its face close-up of one reference face was
not found as a face at 1.4x and 1.5x (at 1.45x it was: too close to call). The full second
palette is cropped 1.12x nearer: at the classic framing it came within 0.21-0.25 of the
half-weight "palette" take in golden_mosaic, pastel_cubist and sepia_oil. The face close-up
(1.5x) keeps the catalogued palette: a tighter crop (1.7x) was not found as a face in four
styles, and in the second palette it fell below fauve's identity threshold on one reference
face. A "quiet backdrop" take (the backdrop blurred before painting) was dropped from every
style: the networks paint their texture over a blurred, a flat or a darkened backdrop alike,
and it scored 0.06-0.21 from the classic take, a duplicate to the eye (BENCHMARKS.md, "Proof
variety").

Three things every take does, whatever the style:
- The whole picture is painted: clothing and background take the style fully; only the
  face keeps some of the photograph, by the style's `strength`, because that is what
  keeps the customer recognisable.
- Faces in shadow are painted as well as faces in light. Style networks answer a dark,
  low-contrast face with streaks and noise, and darker skin is where that happens first.
  The network is shown the portrait with its face brought to a bright mid-tone, and the
  painting is brought back to the photograph's tone at the scale of the face's planes:
  the customer's skin keeps its own depth, and the strokes keep their painted contrast.
- Strokes have a size chosen by the take, not by the proof's pixel count: the network
  paints at a working resolution and the painting is resized to the proof.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from photogen_pipelines.imaging.images import Box

# Luminance the face is brought to before painting (Rec. 709 luma of the sRGB values,
# 0..1). The networks paint a face in light with clean strokes and one in shadow with
# streaks; lifting every face to a bright mid-tone, then restoring its own depth, closed
# most of the identity gap between dark and light skin (BENCHMARKS.md, "Every skin tone").
FACE_MID_TONE = 0.75
CHECKERBOARD_SIGMA = 0.9  # pixels of the network's painting (without_checkerboard)
MAX_LIFT_GAMMA = 3.0  # never brighten more than this: a dim photo's noise would be painted too


@dataclass(frozen=True)
class Take:
    name: str
    label: str  # what the storefront shows under the proof
    stroke_side: int  # long side the network paints at: fewer pixels, bolder strokes
    zoom: float = 1.0  # > 1 crops closer around the face
    second_palette: float = 0.0  # weight of the style's second palette


# "bold" paints at half the classic side and "fine" at twice it: at 400 and 960 (before)
# they scored 0.08-0.34 and 0.02-0.26 from the classic take on the reference faces, most of
# them duplicates at thumbnail size. The close-up's second palette weighs more than the
# full picture's: the face, which keeps the photograph, fills more of it (at 0.5 sepia_oil's
# and golden_mosaic's two close-ups scored 0.19-0.21 apart). The first four are those of
# every order made before the full palette and face takes (issue 29) and stay in place, so
# those orders' proofs reproduce.
TAKES = (
    Take("classic", "As catalogued", stroke_side=640),
    Take("palette", "Second palette", stroke_side=640, second_palette=0.5),
    Take("close", "Close-up", stroke_side=640, zoom=1.3),
    Take("close_palette", "Close-up, second palette", stroke_side=640, zoom=1.3, second_palette=0.7),
    Take("full_palette", "Full second palette", stroke_side=640, zoom=1.12, second_palette=1.0),
    Take("face", "Face close-up", stroke_side=640, zoom=1.5),
    Take("bold", "Bold strokes", stroke_side=320),
    Take("fine", "Fine strokes", stroke_side=1280),
)
TAKE_NAMES = tuple(take.name for take in TAKES)
# takes no longer offered, still named on the proofs of orders made before
RETIRED_LABELS = {"backdrop": "Quiet backdrop"}


def offered(without: Iterable[str] = ()) -> tuple[Take, ...]:
    """The takes a style offers, in order: all of them but those its catalog entry leaves
    out (`without_takes`). The classic take is always offered: it is the style."""
    left_out = set(without)
    unknown = left_out - set(TAKE_NAMES)
    if unknown:
        raise ValueError(f"unknown takes {sorted(unknown)}; the takes are {', '.join(TAKE_NAMES)}")
    if "classic" in left_out:
        raise ValueError("every style offers its classic take")
    return tuple(take for take in TAKES if take.name not in left_out)


def take_for(variant: int, without: Iterable[str] = ()) -> Take:
    """The take of an order's `variant`: the style's offered takes in turn."""
    takes = offered(without)
    return takes[variant % len(takes)]


def label_of(name: str | None) -> str | None:
    return next((take.label for take in TAKES if take.name == name), RETIRED_LABELS.get(name or ""))


def frame(portrait: np.ndarray, face: Box, zoom: float) -> tuple[np.ndarray, Box]:
    """Crop `zoom` times closer, keeping the face where it sits in the frame; the crop
    is resized back to the portrait's size. Returns the framed picture and its face box."""
    if zoom <= 1.0:
        return portrait, face
    height, width = portrait.shape[:2]
    crop_w, crop_h = width / zoom, height / zoom
    cx, cy = face.center
    left = float(np.clip(cx - crop_w / 2, 0, width - crop_w))
    top = float(np.clip(cy - crop_h * 0.45, 0, height - crop_h))
    box = (round(left), round(top), round(left + crop_w), round(top + crop_h))
    framed = np.asarray(Image.fromarray(portrait).crop(box).resize((width, height), Image.LANCZOS))
    sx, sy = width / (box[2] - box[0]), height / (box[3] - box[1])
    return framed, Box((face.x - box[0]) * sx, (face.y - box[1]) * sy, face.w * sx, face.h * sy)


def ellipse_mask(shape: tuple[int, int], face: Box, grow: float = 1.35, feather: float = 0.25) -> np.ndarray:
    """1 over the face (forehead to chin, a little hair), falling smoothly to 0 outside."""
    height, width = shape
    cx, cy = face.center
    rx, ry = face.w * grow / 2, face.h * grow / 2 * 1.15
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy + 0.08 * face.h) / ry) ** 2)
    return np.clip((1.0 + feather - distance) / feather, 0.0, 1.0)


def bust_mask(shape: tuple[int, int], face: Box) -> np.ndarray:
    """The sitter (head and shoulders) as a soft mask: what a quiet backdrop leaves alone."""
    height, width = shape
    head = ellipse_mask(shape, face, grow=1.9, feather=0.35)
    cx, _ = face.center
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    below = y - (face.y + face.h * 0.9)
    half_width = face.w * 0.8 + np.clip(below, 0, None) * 1.1
    shoulders = np.clip((half_width - np.abs(x - cx)) / (face.w * 0.4), 0.0, 1.0) * (below > 0)
    return np.maximum(head, shoulders)


def luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float32) / 255.0) @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def face_tone(rgb: np.ndarray, face: Box) -> float:
    """The median luminance of the face (0..1)."""
    mask = ellipse_mask(rgb.shape[:2], face, grow=0.8, feather=0.01) > 0.5
    return float(np.median(luma(rgb)[mask])) if mask.any() else FACE_MID_TONE


def lift_curve(rgb: np.ndarray, face: Box) -> np.ndarray | None:
    """A tone curve (a 256-entry table) that brings the face to FACE_MID_TONE, or None for
    a face already there."""
    median = face_tone(rgb, face)
    if median >= FACE_MID_TONE or median <= 0.01:
        return None
    # a gamma rather than an exposure gain: a gain in linear light, tried too, left the
    # dark-skin gap where it was (BENCHMARKS.md)
    gamma = max(np.log(FACE_MID_TONE) / np.log(median), 1.0 / MAX_LIFT_GAMMA)
    return (np.linspace(0.0, 1.0, 256) ** gamma * 255.0 + 0.5).astype(np.uint8)


def lift_mask(shape: tuple[int, int], face: Box) -> np.ndarray:
    """Where the face is lifted and restored: fading out inside the face, since a lift
    reaching the backdrop is painted as a pale halo around the head."""
    return ellipse_mask(shape, face, grow=0.85, feather=0.5)


def apply_curve(rgb: np.ndarray, curve: np.ndarray | None, face: Box) -> np.ndarray:
    """The tone curve over the face only: the backdrop is painted from its own tones."""
    if curve is None:
        return rgb
    where = lift_mask(rgb.shape[:2], face)[..., None]
    return (where * curve[rgb] + (1.0 - where) * rgb + 0.5).astype(np.uint8)


def without_checkerboard(painting: np.ndarray) -> np.ndarray:
    """The painting without the style network's 2-pixel checkerboard (its upsampling
    layers leave one): resized to the proof and then ×4 to the print, it showed as a square
    grid over the whole poster at 100 %. Under this blur strokes 8 px and wider keep ~80 %
    of their contrast, the 2-px checkerboard under 2 % and its 4-px echo under 40 %: at
    0.6 px the grid still showed in the print."""
    return np.asarray(Image.fromarray(painting).filter(ImageFilter.GaussianBlur(CHECKERBOARD_SIGMA)))


def at_stroke_size(rgb: np.ndarray, stroke_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = stroke_side / max(height, width)
    if abs(scale - 1.0) < 0.02:
        return rgb
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


def keep_face(painting: np.ndarray, photo: np.ndarray, face: Box, strength: float) -> np.ndarray:
    """The painting everywhere, with the photograph showing through the face by 1 - strength."""
    # the mask fades out inside the face's box: a wider one would carry the photo's
    # backdrop around the head into the painting as a pale halo
    photo_weight = (ellipse_mask(photo.shape[:2], face, grow=1.0, feather=0.35) * (1.0 - strength))[..., None]
    return (photo_weight * photo + (1.0 - photo_weight) * painting + 0.5).astype(np.uint8)


def restore_tone(painting: np.ndarray, photo: np.ndarray, face: Box) -> np.ndarray:
    """Bring the painted face back to the photograph's own depth at the scale of the face's
    planes (cheek, brow, jaw), keeping the painting's strokes at their painted contrast:
    a plain inverse tone curve crushes the strokes on dark skin into black streaks."""
    radius = max(2.0, face.w / 12)
    photo_tone = np.asarray(Image.fromarray((luma(photo) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)))
    paint_tone = np.asarray(Image.fromarray((luma(painting) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)))
    ratio = (photo_tone.astype(np.float32) + 4.0) / (paint_tone.astype(np.float32) + 4.0)
    where = lift_mask(photo.shape[:2], face)
    gain = (1.0 + where * (np.minimum(ratio, 1.0) - 1.0))[..., None]  # only darkens back: never lightens skin
    return np.clip(painting.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
