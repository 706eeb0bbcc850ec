"""The skin-tone evaluation set: four real people under four lightings (16 uploads).

The people are the only openly licensed portraits the project has (no network here): the
three public-domain photographs in `photogen_pipelines/catalog/reference_faces/` (see its
CREDITS.md) and scikit-image's `astronaut()` (Eileen Collins, NASA, public domain).

Only the "as shot" picture of each person is a real photograph. The other three lightings
are DERIVED from it here, synthetically and deterministically, in linear light:

- dim: underexposed by 1 EV, with the shot and read noise a sensor adds when it gets half
  the light (per channel, so it carries chroma noise too), then JPEG-encoded as a phone would;
- warm_indoor: a tungsten (CIE illuminant A, ~2850 K) cast that auto white balance only
  half corrects, as phones leave it under house lamps;
- side_light: a hard light falloff across the face from one side, the shadow side about
  2.3 EV darker, the edge a narrow ramp centred on the detected face.

They are stand-ins for real photographs under those lights, not real ones: a real dim or
tungsten photo also differs in sensor processing, noise reduction and the light's
direction. Every credit below says which pictures are derived.

`skin_tone` measures the Individual Typology Angle (ITA) of a face's skin.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass
from importlib import resources

import numpy as np
from PIL import Image

from photogen_pipelines.engines.base import Face, FaceAnalyzer
from photogen_pipelines.imaging.images import decode_upload, png_bytes

LIGHTINGS = ("as_shot", "dim", "warm_indoor", "side_light")

# person -> (file in catalog/reference_faces, or None for skimage's astronaut; credit)
PEOPLE: dict[str, tuple[str | None, str]] = {
    "macron": (
        "macron_2025.jpg",
        "Emmanuel Macron (2025), Wikimedia Commons `Emmanuel_Macron_2025_(cropped).jpg`, by Nebojša Tejić; public domain",
    ),
    "ardern": (
        "ardern_2022.jpg",
        "Jacinda Ardern (2022), Wikimedia Commons `Jacinda_Ardern_May_2022.jpg`, "
        "by the Office of the Vice President of the United States; public domain",
    ),
    "obama": (
        "obama_senate.jpg",
        "Barack Obama, Wikimedia Commons `BarackObamaportrait.jpg`, by the United States Senate; public domain",
    ),
    "astronaut": (
        None,
        "Eileen Collins, NASA, via scikit-image `skimage.data.astronaut()`; public domain",
    ),
}

# ITA categories (Chardon, Cretois & Hourseau 1991; Del Bino & Bernerd 2013), in degrees:
#   very light > 55, light 41..55, intermediate 28..41, tan 10..28, brown -30..10, dark < -30.
# With four people we can only afford three groups: "light" = very light + light (> 41),
# "medium" = intermediate + tan (10..41), "dark" = brown + dark (< 10).
LIGHT_ABOVE = 41.0
DARK_BELOW = 10.0

# Linear-light parameters of the derived lightings
DIM_EV = -1.0
DIM_FULL_WELL = 900.0  # photo-electrons at full scale: a small phone sensor at a high ISO
DIM_READ_NOISE = 3.0  # electrons
ILLUMINANT_A_LINEAR_SRGB = np.array([2.233, 1.0, 0.282])  # illuminant A white, G normalised
WARM_WB_LEFT = 0.5  # the fraction of the cast (in log gain) that auto white balance leaves
SIDE_SHADOW_GAIN = 0.2  # the shadow side gets 20% of the light (-2.3 EV)
SIDE_EDGE_WIDTH = 0.08  # the ramp's width, as a fraction of the face's width: a hard light
JPEG_QUALITY = 92


@dataclass(frozen=True)
class EvalPortrait:
    name: str  # "<person>-<lighting>"
    person: str
    lighting: str
    credit: str
    data: bytes  # encoded (JPEG, or the astronaut's PNG as shot), ready to upload
    ita: float  # this picture's own ITA, degrees
    person_ita: float  # the person's ITA, measured on the "as shot" picture
    group: str  # the person's group (light / medium / dark), from person_ita
    derived: bool  # True for every synthetic lighting: not a real photograph


def ita_group(ita: float) -> str:
    if ita > LIGHT_ABOVE:
        return "light"
    if ita >= DARK_BELOW:
        return "medium"
    return "dark"


def skin_region(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """A mask of the face's skin: both cheeks and the lower forehead, placed from the five
    landmarks (eyes, nose tip, mouth corners) so a tilted head still gets skin, and clipped
    to the face box; clear of the eyes, brows, nostrils, lips and (mostly) hair."""
    height, width = shape[:2]
    eye_a, eye_b, nose, mouth_a, mouth_b = (np.asarray(p, dtype=float) for p in face.landmarks)
    eye_mid = (eye_a + eye_b) / 2
    across = eye_b - eye_a
    d = max(float(np.linalg.norm(across)), 1.0)
    up = np.array([across[1], -across[0]]) / d  # perpendicular to the eye line
    if np.dot(up, eye_mid - (mouth_a + mouth_b) / 2) < 0:
        up = -up
    centres = [eye_mid + up * 0.6 * d]  # the lower forehead, above the brows
    for eye, mouth in ((eye_a, mouth_a), (eye_b, mouth_b)):
        cheek = eye + 0.55 * (mouth - eye)
        outward = cheek - nose
        outward /= max(float(np.linalg.norm(outward)), 1e-6)
        centres.append(cheek + outward * 0.12 * d)
    half = 0.16 * d
    ys, xs = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=bool)
    for cx, cy in centres:
        mask |= (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    box = face.box
    inside = (xs >= box.x) & (xs < box.x + box.w) & (ys >= box.y) & (ys < box.y + box.h)
    return mask & inside


def skin_tone(rgb: np.ndarray, face: Face) -> tuple[float, str]:
    """(ITA in degrees, group) of the face's skin: ITA = atan2(L* - 50, b*) * 180 / pi,
    from the median CIELAB L* and b* over the cheeks and forehead (the median ignores
    the odd strand of hair, highlight or shadow that falls in the region)."""
    from skimage.color import rgb2lab

    mask = skin_region(rgb.shape, face)
    if mask.sum() < 20:
        raise ValueError("the face is too small to measure its skin")
    ys, xs = np.nonzero(mask)
    pixels = rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    lab = rgb2lab(pixels)[mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]]
    lightness, b_star = float(np.median(lab[:, 0])), float(np.median(lab[:, 2]))
    ita = math.degrees(math.atan2(lightness - 50.0, b_star))
    return ita, ita_group(ita)


# -- the lightings ----------------------------------------------------------------------


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    x = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
    return (x * 255.0 + 0.5).astype(np.uint8)


def _dim(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    linear = _to_linear(rgb) * 2.0**DIM_EV
    electrons = linear * DIM_FULL_WELL
    noisy = rng.poisson(electrons) + rng.normal(0.0, DIM_READ_NOISE, size=electrons.shape)
    return _to_srgb(noisy / DIM_FULL_WELL)


def _warm(rgb: np.ndarray) -> np.ndarray:
    gains = ILLUMINANT_A_LINEAR_SRGB**WARM_WB_LEFT
    gains = gains / float(gains @ np.array([0.2126, 0.7152, 0.0722]))  # keep the exposure
    return _to_srgb(_to_linear(rgb) * gains)


def _side(rgb: np.ndarray, face: Face) -> np.ndarray:
    width = rgb.shape[1]
    centre = face.box.x + face.box.w / 2
    xs = np.arange(width, dtype=np.float64)
    ramp = 1.0 / (1.0 + np.exp((xs - centre) / (SIDE_EDGE_WIDTH * face.box.w)))  # lit from the left
    gain = SIDE_SHADOW_GAIN + (1.0 - SIDE_SHADOW_GAIN) * ramp
    return _to_srgb(_to_linear(rgb) * gain[None, :, None])


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _as_shot(person: str) -> bytes:
    filename = PEOPLE[person][0]
    if filename is None:
        from skimage import data

        return png_bytes(data.astronaut())
    return resources.files("photogen_pipelines.catalog").joinpath("reference_faces", filename).read_bytes()


def _largest_face(rgb: np.ndarray, analyzer: FaceAnalyzer) -> Face:
    faces = analyzer.detect(rgb, min_score=0.75)
    if not faces:
        raise ValueError("no face in an evaluation portrait")
    return faces[0]


def eval_portraits(analyzer: FaceAnalyzer | None = None) -> list[EvalPortrait]:
    """The 16 uploads, person by person, lightings in LIGHTINGS order. Deterministic."""
    if analyzer is None:
        from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer

        analyzer = OpenCvFaceAnalyzer()
    portraits = []
    for person, (_, credit) in PEOPLE.items():
        shot = _as_shot(person)
        rgb = np.asarray(decode_upload(shot))
        face = _largest_face(rgb, analyzer)
        # The person's group comes from the "as shot" photograph and stays with every
        # lighting of them: a person's skin tone does not change with the lamp, only the
        # measurement does (each picture's own ITA is kept beside it to show by how much).
        person_ita, group = skin_tone(rgb, face)
        rng = np.random.default_rng(zlib.crc32(person.encode()))
        variants = {
            "as_shot": shot,
            "dim": _jpeg(_dim(rgb, rng)),
            "warm_indoor": _jpeg(_warm(rgb)),
            "side_light": _jpeg(_side(rgb, face)),
        }
        for lighting in LIGHTINGS:
            data = variants[lighting]
            derived = lighting != "as_shot"
            if derived:
                image = np.asarray(decode_upload(data))
                ita, _ = skin_tone(image, _largest_face(image, analyzer))
                note = f"; lighting '{lighting}' derived synthetically from that photograph by benchmarks/eval_set.py"
            else:
                ita, note = person_ita, ""
            portraits.append(
                EvalPortrait(
                    name=f"{person}-{lighting}",
                    person=person,
                    lighting=lighting,
                    credit=credit + note,
                    data=data,
                    ita=round(ita, 2),
                    person_ita=round(person_ita, 2),
                    group=group,
                    derived=derived,
                )
            )
    return portraits
