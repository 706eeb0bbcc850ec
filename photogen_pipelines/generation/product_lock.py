"""The product-accuracy lock: does a generated shot show the merchant's product as it is?

The product is cut out of its photo by segmentation (imaging/cutout.py: GrabCut seeded
from the border), never a fixed box. It is found in the shot by SIFT features matched from
the product's pixels to the shot's and a homography fitted to the matches with RANSAC (the
shot may show it anywhere, larger or smaller, turned or in perspective), corrected to a
fraction of a pixel by ECC. The shot is warped back into the product photo's frame, at the
smaller of the two scales (the finer one holds detail the other cannot be asked for), and
compared over the product's mask only, eroded by the SSIM window so no background enters.

Three measures decide, each with its threshold:
- SSIM over the whole product, per RGB channel, the lowest channel counting: a changed
  print lowers every channel, a changed colour at least one;
- the chroma difference (CIELAB a*, b*, median over the product): a garment dyed another
  colour of about the same lightness keeps SSIM's structure and moves this;
- SSIM of the product's weakest part, one cell of a 4x4 grid over it: a logo removed
  lowers one part, a small share of the whole.

Why SIFT, measured on the printed t-shirt of the tests and scikit-image's coffee cup, each
pasted into another photo at 0.5-1.3x and turned 0-25 degrees: a template searched over 24
scales cannot follow a turn (SSIM of the unaltered shot 0.24-0.53 at 10-25 degrees) and
took 6-8x SIFT's time. ORB's raw fits scored 0.73-0.96 where SIFT's scored 0.84-0.97; with
the ECC correction below ORB comes close (unaltered shots 0.887-0.986, weakest part 0.820,
against SIFT's 0.906 and 0.852) at about a quarter of the time (0.1 s against 0.4 s). The
lock runs once per generated shot, beside seconds of rendering, so SIFT's margin was worth
more than ORB's speed. SIFT is in OpenCV's main module since 4.4 (its patent expired).
A product with too few features of its own (a plain, unprinted garment) is not found:
the lock cannot tell it from another plain garment, and says so (NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, field

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from photogen_pipelines.imaging.cutout import Cutout, cut_out_product, rgb_pixels
from photogen_pipelines.imaging.images import Box

# The thresholds (quality.yaml will hold them). Measured on the t-shirt and the coffee cup,
# each pasted into another photo at 7 placings (0.5-1.3x, turned up to 25 degrees) under
# light 10-20 % dimmer or brighter, warmer or cooler: unaltered, SSIM 0.906-0.988, weakest
# part 0.852-0.985, chroma difference 2.6-11.8; re-printed (the stripes' period halved),
# SSIM 0.25-0.28; re-dyed (navy to rust or green, the cup's hue turned 30 or 120 degrees),
# chroma difference 27.6-84.1 (SSIM 0.26-0.85); the logo taken off, weakest part
# 0.47-0.51; another product, not found. A generated shot differs from its product photo
# more than a pasted one: measure again on the real engine's shots before tightening.
DEFAULT_THRESHOLD = 0.80  # SSIM over the whole product, its lowest RGB channel
DEFAULT_PART_THRESHOLD = 0.70  # SSIM of the product's weakest grid cell
DEFAULT_COLOUR_TOLERANCE = 20.0  # median chroma difference, CIELAB a*b* units

COMPARE_SIDE = 384  # the product's long side where it is compared, at most: finer adds time, not judgement
SOFTEN_SIGMA = 1.0  # px in the compare frame, both pictures: see _compared
GRID = 4  # the product's box is cut into GRID x GRID cells for the weakest part
MIN_CELL_COVER = 0.5  # a cell counts when the eroded mask covers at least half of it
MATCH_RATIO = 0.75  # Lowe's ratio test: a match must be clearly better than the runner-up
MIN_INLIERS = 12  # fewer matches agreeing on one homography is chance, not the product
RANSAC_PX = 4.0
SCALE_RANGE = (0.05, 20.0)  # the product at 5 % to 20x its photo's size; beyond, the fit is degenerate
DETECT_SIDE = 1024  # px: the long side a shot is searched at, at most
SSIM_SIGMA = 1.5  # Wang et al.'s Gaussian window
ECC_ITERATIONS = 30
MAX_TRIES = 3

# the reasons, stable wording (the ledger and the API report them as they are)
PASSED = "the product matches its photo"
NOT_FOUND = "the product is not in the shot"
DIFFERS = "the product differs from its photo"
COLOUR_DIFFERS = "the product's colour differs from its photo"
PART_DIFFERS = "part of the product differs from its photo"


@dataclass(frozen=True)
class LockResult:
    """The lock's verdict on one shot. The scores are None when the product was not found."""

    ssim: float | None  # over the whole product, its lowest RGB channel
    threshold: float
    passed: bool
    reason: str  # one of PASSED, NOT_FOUND, DIFFERS, COLOUR_DIFFERS, PART_DIFFERS
    region: Box | None = None  # where the product is in the shot: the bounding box of `outline`
    outline: tuple[tuple[float, float], ...] = ()  # the product's box in its photo, its 4 corners in the shot
    weakest_part: float | None = None  # the lowest SSIM of a grid cell of the product
    part_threshold: float | None = None
    colour_difference: float | None = None  # median chroma difference over the product
    colour_tolerance: float | None = None
    matches: int = 0  # feature matches that agree with the fitted homography

    def to_json(self) -> dict:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "ssim": rounded(self.ssim),
            "threshold": self.threshold,
            "passed": self.passed,
            "reason": self.reason,
            "region": None if self.region is None else [round(v, 1) for v in astuple(self.region)],
            "weakest_part": rounded(self.weakest_part),
            "part_threshold": self.part_threshold,
            "colour_difference": rounded(self.colour_difference),
            "colour_tolerance": self.colour_tolerance,
            "matches": self.matches,
        }


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class ProductLock:
    """The lock for one product photo: its cut-out and features are computed once, and
    every shot (every pose, every retry) is checked against them."""

    def __init__(
        self,
        product_photo: np.ndarray,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        part_threshold: float = DEFAULT_PART_THRESHOLD,
        colour_tolerance: float = DEFAULT_COLOUR_TOLERANCE,
        cutout: Cutout | None = None,
    ):
        self.photo = rgb_pixels(product_photo, "product photo")
        self.cutout = cutout if cutout is not None else cut_out_product(self.photo)
        self.threshold, self.part_threshold, self.colour_tolerance = threshold, part_threshold, colour_tolerance
        self._sift = cv2.SIFT_create()
        # a little past the mask, so the features on the product's own edge are kept
        near = cv2.dilate(self.cutout.mask.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
        self._keypoints, self._descriptors = self._sift.detectAndCompute(_gray(self.photo), near)

    def check(self, shot: np.ndarray) -> LockResult:
        """The lock's verdict on one shot (HxWx3 uint8 RGB)."""
        shot = rgb_pixels(shot, "shot")
        homography, matches = self._homography(shot)
        outline = None if homography is None else self._outline(homography)
        if outline is None:
            return self._verdict(NOT_FOUND, matches=matches)
        photo, seen, mask = self._compared(shot, homography, outline)
        radius = int(np.ceil(3 * SSIM_SIGMA))  # the SSIM window reaches this far: erode the mask by it
        inside = cv2.erode(mask, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)) > 0
        if inside.sum() < 64:
            return self._verdict(NOT_FOUND, matches=matches)
        _, ssim_map = structural_similarity(
            photo, seen, channel_axis=2, data_range=255, gaussian_weights=True, sigma=SSIM_SIGMA, full=True
        )
        whole = _lowest_channel(ssim_map, inside)
        weakest = _weakest_cell(ssim_map, inside)
        colour = _colour_difference(photo, seen, inside)
        if whole < self.threshold:
            reason = DIFFERS
        elif colour > self.colour_tolerance:
            reason = COLOUR_DIFFERS
        elif weakest < self.part_threshold:
            reason = PART_DIFFERS
        else:
            reason = PASSED
        xs, ys = outline[:, 0], outline[:, 1]
        region = Box(float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min()))
        corners = tuple((round(float(x), 1), round(float(y), 1)) for x, y in outline)
        scores = {"ssim": whole, "weakest_part": weakest, "colour_difference": colour}
        return self._verdict(reason, **scores, region=region, outline=corners, matches=matches)

    def _verdict(self, reason: str, **found) -> LockResult:
        return LockResult(
            found.pop("ssim", None),
            self.threshold,
            reason == PASSED,
            reason,
            part_threshold=self.part_threshold,
            colour_tolerance=self.colour_tolerance,
            **found,
        )

    def _homography(self, shot: np.ndarray) -> tuple[np.ndarray | None, int]:
        """The product photo's pixels -> the shot's, or None when the product is not there."""
        if self._descriptors is None or len(self._keypoints) < MIN_INLIERS:
            return None, 0
        # a large shot is searched at DETECT_SIDE: SIFT's cost grows with the pixels, and a
        # product filling a fraction of a 2048 px packshot still has hundreds of pixels there
        scale = min(1.0, DETECT_SIDE / max(shot.shape[:2]))
        searched = (
            _gray(shot) if scale == 1.0 else cv2.resize(_gray(shot), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        keypoints, descriptors = self._sift.detectAndCompute(searched, None)
        if descriptors is None or len(keypoints) < 2:
            return None, 0
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(self._descriptors, descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < MATCH_RATIO * p[1].distance]
        if len(good) < MIN_INLIERS:
            return None, len(good)
        source = np.float32([self._keypoints[m.queryIdx].pt for m in good])
        target = np.float32([keypoints[m.trainIdx].pt for m in good]) / scale
        homography, inliers = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PX)
        count = 0 if inliers is None else int(inliers.sum())
        if homography is None or count < MIN_INLIERS:
            return None, count
        return homography, count

    def _outline(self, homography: np.ndarray) -> np.ndarray | None:
        """The product's box as 4 points in the shot; None when the fit folds or collapses it."""
        box = self.cutout.box
        corners = np.float32([[box.x, box.y], [box.x + box.w, box.y], [box.x + box.w, box.y + box.h], [box.x, box.y + box.h]])
        mapped = cv2.perspectiveTransform(corners[None], homography)[0]
        scale = np.sqrt(abs(cv2.contourArea(mapped)) / (box.w * box.h))
        if not cv2.isContourConvex(mapped) or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            return None
        return mapped

    def _compared(
        self, shot: np.ndarray, homography: np.ndarray, outline: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The product photo and the shot warped onto it, both in the compare frame (the
        product's box at the smaller of its two scales), and the product's mask there."""
        box = self.cutout.box
        in_shot = np.sqrt(abs(cv2.contourArea(outline)) / (box.w * box.h))  # the product's scale in the shot
        factor = min(1.0, in_shot, COMPARE_SIDE / max(box.w, box.h))
        size = (max(8, round(box.w * factor)), max(8, round(box.h * factor)))
        # a larger product in the shot is first shrunk by area resampling, so the warp
        # itself stays near 1:1 and aliases nothing
        shrunk = shot
        if factor / in_shot < 0.95:
            width, height = round(shot.shape[1] * factor / in_shot), round(shot.shape[0] * factor / in_shot)
            shrunk = cv2.resize(shot, (width, height), interpolation=cv2.INTER_AREA)
        to_shrunk = np.diag([shrunk.shape[1] / shot.shape[1], shrunk.shape[0] / shot.shape[0], 1.0])
        sx, sy = size[0] / box.w, size[1] / box.h
        to_frame = np.array([[sx, 0, -box.x * sx], [0, sy, -box.y * sy], [0, 0, 1]])
        frame_to_shot = to_shrunk @ homography @ np.linalg.inv(to_frame)
        x, y, w, h = (int(v) for v in (box.x, box.y, box.w, box.h))
        photo = cv2.resize(self.photo[y : y + h, x : x + w], size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(self.cutout.mask[y : y + h, x : x + w].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        seen = cv2.warpPerspective(shrunk, frame_to_shot, size, flags=flags)
        correction = _sub_pixel_correction(photo, seen, mask)
        if correction is not None:
            seen = cv2.warpPerspective(shrunk, frame_to_shot @ correction, size, flags=flags)
        # two pictures resampled along different paths ring differently for a pixel on sharp
        # edges: both are softened alike, below the scale of any print or logo
        photo, seen = (cv2.GaussianBlur(image, (0, 0), SOFTEN_SIGMA) for image in (photo, seen))
        return photo, seen, mask


def _sub_pixel_correction(photo: np.ndarray, seen: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """An affine correction of the features' fit by ECC on the grey pictures (a fit from
    keypoints is off by a fraction of a pixel, which SSIM on a fine print notices); None
    when ECC does not converge or does not improve the match."""
    template, moved, where = _gray(photo), _gray(seen), mask * 255
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4)
    try:
        before = cv2.computeECC(template, moved, where)
        start = np.eye(2, 3, dtype=np.float32)
        after, warp = cv2.findTransformECC(template, moved, start, cv2.MOTION_AFFINE, criteria, where, 5)
    except cv2.error:
        return None
    return np.vstack([warp, [0, 0, 1]]).astype(np.float64) if after > before else None


def _lowest_channel(ssim_map: np.ndarray, where: np.ndarray) -> float:
    """SSIM per RGB channel over `where`, the lowest: a colour change that keeps the print
    shows in one or two channels, and their mean with the third would dilute it."""
    return min(float(ssim_map[..., channel][where].mean()) for channel in range(3))


def _weakest_cell(ssim_map: np.ndarray, inside: np.ndarray) -> float:
    height, width = inside.shape
    rows, cols = np.linspace(0, height, GRID + 1).astype(int), np.linspace(0, width, GRID + 1).astype(int)
    scores = [_lowest_channel(ssim_map, inside)]
    for top, bottom in zip(rows[:-1], rows[1:], strict=True):
        for left, right in zip(cols[:-1], cols[1:], strict=True):
            cell = inside[top:bottom, left:right]
            if cell.size and cell.mean() >= MIN_CELL_COVER:
                scores.append(_lowest_channel(ssim_map[top:bottom, left:right], cell))
    return min(scores)


def _colour_difference(photo: np.ndarray, seen: np.ndarray, inside: np.ndarray) -> float:
    """The median difference of chroma (CIELAB a*, b*) over the product: a garment dyed
    another colour moves every pixel's; light a little warmer or dimmer barely does."""
    lab = [cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[inside] for image in (photo, seen)]
    return float(np.median(np.linalg.norm(lab[0][:, 1:] - lab[1][:, 1:], axis=1)))


@dataclass(frozen=True)
class Attempt:
    seed: int
    result: LockResult


@dataclass(frozen=True)
class LockedShot:
    """A shot rendered until the lock held: the passing picture and its seed, or none and
    the last attempt's reason; every attempt's scores either way."""

    passed: bool
    reason: str
    seed: int | None
    image: np.ndarray | None = field(repr=False)
    attempts: tuple[Attempt, ...]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "seed": self.seed,
            "tries": len(self.attempts),
            "attempts": [{"seed": a.seed, **a.result.to_json()} for a in self.attempts],
        }


def lock_with_retries(
    lock: ProductLock, render: Callable[[int], np.ndarray], seeds: Iterable[int], max_tries: int = MAX_TRIES
) -> LockedShot:
    """Render with each seed in turn until the lock passes, at most `max_tries` renders;
    then the shot is rejected with the last attempt's reason."""
    if max_tries < 1:
        raise ValueError("max_tries is at least 1")
    attempts: list[Attempt] = []
    for seed in seeds:
        image = render(seed)
        result = lock.check(image)
        attempts.append(Attempt(seed, result))
        if result.passed:
            return LockedShot(True, result.reason, seed, image, tuple(attempts))
        if len(attempts) == max_tries:
            break
    if not attempts:
        raise ValueError("no seed to render with")
    return LockedShot(False, attempts[-1].result.reason, None, None, tuple(attempts))
