"""One shot of a job, made and judged: painted with the attempt's seed, put through the
kind's gates in order (identity, product lock, content safety; the frames' identity for a
video), and painted again with a new seed while a gate fails, up to the kind's retries.
The outcome carries every attempt's seed and scores, and the picture (or video) that passed.

What paints depends on the engine (catalog/kinds.yaml says which engines make which kind):
- a reference-image engine (FLUX.2 klein, Qwen-Image-Edit) paints the person from their
  photos in the pose's words, with the garment's photo as one more reference;
- the embedded CPU engine makes a smaller, honest version: a pose pack is its style-transfer
  takes of the person's photo (framing, stroke size, palette; not new poses), a fashion shoot
  is product packshots on studio backdrops (no model in them, so no face to gate);
- an image-to-video engine (Wan) animates the approved portrait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from photogen_pipelines.catalog import Style
from photogen_pipelines.catalog.kinds import Kind
from photogen_pipelines.engines.base import Animator, FaceAnalyzer, ReferenceStylizer, Stylizer, cosine
from photogen_pipelines.generation.product_lock import ProductLock
from photogen_pipelines.generation.safety import SafetyGate
from photogen_pipelines.generation.stages import PROOF_MIN_FACE_SCORE, count_people, detect_faces, render_candidate
from photogen_pipelines.generation.video_gate import video_identity_gate
from photogen_pipelines.imaging.cutout import Cutout
from photogen_pipelines.imaging.images import fit_long_side, portrait_crop
from photogen_pipelines.imaging.packshot import BACKDROPS, CATALOG_ASPECTS, make_packshot
from photogen_pipelines.imaging.video import mp4_bytes, sample_frames
from photogen_pipelines.jobs.export import AttemptRecord, ShotRecord
from photogen_pipelines.jobs.plan import PlannedShot

SHOT_LONG_SIDE = 1024  # px: the embedded engine's takes, as its proofs
PACKSHOT_LONG_SIDE = 2048  # px: a catalog's zoom view
SHOT_ASPECT = 4 / 5  # the catalogs' portrait frame
VIDEO_FPS = 16
SAFETY_FRAMES = 4  # a video's frames the content-safety check sees, besides its poster
FASHION_PROMPT = "a fashion catalog photograph on a plain studio backdrop, wearing the garment of the last picture"
POSE_PACK_PROMPT = "a portrait photograph"


@dataclass
class ShotInputs:
    """What a shot is made from, decoded once per run."""

    person: list[np.ndarray] = field(default_factory=list)  # photos of the person, the primary first
    identity: np.ndarray | None = None  # what the identity gate compares with
    product: np.ndarray | None = None  # the product's or garment's photo
    portrait: np.ndarray | None = None  # a living portrait's approved proof
    style: Style | None = None
    seconds: float = 3.0


@dataclass
class ShotEngines:
    stylizer: Stylizer | None
    faces: FaceAnalyzer
    safety: SafetyGate | None
    animator: Animator | None = None
    retry_decay: float = 0.6


@dataclass
class ShotOutcome:
    record: ShotRecord
    picture: np.ndarray | None = None  # a passing picture shot
    video: bytes | None = None  # a passing video shot (MP4), with its poster as `picture`
    seconds: float = 0.0
    made: str = ""  # what the engine made, in words (the embedded engine says it plainly)
    last_picture: np.ndarray | None = None  # a rejected shot's last attempt (never delivered), for the operator
    last_video: bytes | None = None

    @property
    def passed(self) -> bool:
        return self.record.outcome == "passed"


@dataclass
class _Painted:
    picture: np.ndarray
    frames: list[np.ndarray] | None = None
    has_person: bool = True


def make_shot(kind: Kind, shot: PlannedShot, inputs: ShotInputs, engines: ShotEngines, embedded: bool) -> ShotOutcome:
    """The shot, painted and gated until it passes or its tries are spent."""
    lock = ProductLock(inputs.product, threshold=kind.product_lock.min_ssim) if "product_lock" in kind.gates else None
    # a packshot places the very cut-out the lock compares with: GrabCut runs once
    paint = _painter(kind, shot, inputs, engines, embedded, lock.cutout if lock is not None else None)
    attempts: list[AttemptRecord] = []
    started = time.perf_counter()
    passed: _Painted | None = None
    painted: _Painted | None = None
    for attempt in range(kind.max_retries + 1):
        seed = shot.seed_of(attempt)
        painted = paint(seed, attempt)
        scores, reason = _judge(kind, painted, inputs, engines, lock)
        attempts.append(AttemptRecord(attempt=attempt, seed=seed, scores=scores, passed=reason is None, reason=reason))
        if reason is None:
            passed = painted
            break
    last = attempts[-1]
    record = ShotRecord(
        name=shot.name,
        position=shot.position,
        outcome="passed" if passed is not None else "rejected",
        seed=last.seed,
        retries=len(attempts) - 1,
        attempts=attempts,
        reason=None if passed is not None else last.reason,
    )
    outcome = ShotOutcome(record, seconds=time.perf_counter() - started, made=_made(kind, shot, embedded))
    if passed is not None:
        outcome.picture = passed.picture
        if passed.frames is not None:
            outcome.video = mp4_bytes(passed.frames, VIDEO_FPS)
    elif painted is not None:
        outcome.last_picture = painted.picture
        if painted.frames is not None:
            outcome.last_video = mp4_bytes(painted.frames, VIDEO_FPS)
    return outcome


def _made(kind: Kind, shot: PlannedShot, embedded: bool) -> str:
    if embedded and kind.id == "fashion_shoot":
        backdrop, aspect = packshot_setup(shot.position)
        where = backdrop.replace("_", " ")
        return f"a packshot of the product on the {where} backdrop, {aspect} (no model: the embedded engine poses none)"
    if embedded:
        return f"the embedded engine's style-transfer take {shot.position} of the photo (not a new pose)"
    return f"{shot.name}: {shot.pose_words or kind.name}"


def packshot_setup(position: int) -> tuple[str, str]:
    """The backdrop and aspect of a fashion shoot's packshot at `position`: every backdrop
    and every catalog aspect appears within the nine shots."""
    names = list(BACKDROPS)
    return names[position % len(names)], CATALOG_ASPECTS[position % len(CATALOG_ASPECTS)]


def _painter(
    kind: Kind, shot: PlannedShot, inputs: ShotInputs, engines: ShotEngines, embedded: bool, cutout: Cutout | None
) -> Callable:
    if kind.id == "living_portrait":
        return lambda seed, attempt: _animate(inputs, engines, seed)
    if embedded and kind.id == "fashion_shoot":
        backdrop, aspect = packshot_setup(shot.position)
        packshot = make_packshot(inputs.product, backdrop=backdrop, aspect=aspect, long_side=PACKSHOT_LONG_SIDE, cutout=cutout)
        return lambda seed, attempt: _Painted(packshot.image, has_person=False)
    if embedded:
        portrait, face = frame_person(inputs.person[0], engines.faces)
        return lambda seed, attempt: _Painted(
            render_candidate(
                portrait, inputs.style, engines.stylizer, seed, shot.position, attempt, engines.retry_decay, face
            ).image
        )
    return lambda seed, attempt: _Painted(_from_references(kind, shot, inputs, engines, seed, attempt))


def frame_person(photo: np.ndarray, faces: FaceAnalyzer) -> tuple[np.ndarray, object]:
    """The person's photo framed as the catalogs' 4:5 portrait, and its face's box there."""
    found = detect_faces(photo, faces, PROOF_MIN_FACE_SCORE)
    if not found:
        raise ValueError("the person's photo has no face: its upload was checked, so this is a bug")
    crop = portrait_crop((photo.shape[1], photo.shape[0]), found[0].box, SHOT_ASPECT)
    size = fit_long_side((crop[2] - crop[0], crop[3] - crop[1]), SHOT_LONG_SIDE)
    portrait = np.asarray(Image.fromarray(photo).crop(crop).resize(size, Image.LANCZOS))
    framed = detect_faces(portrait, faces, PROOF_MIN_FACE_SCORE)
    return portrait, framed[0].box if framed else None


def _from_references(
    kind: Kind, shot: PlannedShot, inputs: ShotInputs, engines: ShotEngines, seed: int, attempt: int
) -> np.ndarray:
    stylizer = engines.stylizer
    if not isinstance(stylizer, ReferenceStylizer):
        raise ValueError(f"the {kind.id} kind needs a reference-image engine, not {stylizer.name}")
    if inputs.style is not None:
        params = inputs.style.engine_params(stylizer.params_section).model_dump(exclude_none=True)
    else:
        params = {"prompt": FASHION_PROMPT if inputs.product is not None else POSE_PACK_PROMPT}
    if shot.pose_words:
        params["prompt"] = f"{params['prompt']}; pose: {shot.pose_words}"
    references = list(inputs.person[: stylizer.max_references - (inputs.product is not None)])
    if inputs.product is not None:
        references.append(inputs.product)
    strength = (
        float(np.clip(params.get("strength", 1.0) * engines.retry_decay**attempt, 0.05, 1.0)) if kind.id == "pose_pack" else 1.0
    )
    # the engine's own size at the catalogs' 4:5 (`size_for`: its best pixel count, as the proofs use)
    size_for = getattr(stylizer, "size_for", None)
    size = size_for(SHOT_ASPECT) if size_for is not None else (round(SHOT_LONG_SIDE * SHOT_ASPECT), SHOT_LONG_SIDE)
    return stylizer.paint_from_references(references, params, strength, [seed], size)[0]


def _animate(inputs: ShotInputs, engines: ShotEngines, seed: int) -> _Painted:
    animator = engines.animator
    if animator is None:
        raise ValueError("a living portrait needs the image-to-video engine")
    portrait = inputs.portrait
    height, width = portrait.shape[:2]
    size = animator.size_for(width / height) if hasattr(animator, "size_for") else (width, height)
    prompt = "the person breathes and blinks, a gentle natural movement, the camera still"
    frames = animator.animate(portrait, prompt, inputs.seconds, VIDEO_FPS, seed, size)
    return _Painted(frames[0], frames=frames)


def _judge(kind: Kind, painted: _Painted, inputs: ShotInputs, engines: ShotEngines, lock: ProductLock | None):
    """The attempt's scores, gate by gate, and the first gate's reason to refuse it (None: it passes)."""
    scores: dict[str, float | None] = {}
    reasons: list[str] = []
    for gate in kind.gates:
        if gate == "identity" and painted.has_person and inputs.identity is not None:
            similarity, reason = _identity(painted.picture, inputs.identity, engines.faces, _threshold(inputs, engines))
            scores["identity"] = similarity
            reasons += [reason] if reason else []
        elif gate == "product_lock" and lock is not None:
            result = lock.check(painted.picture)
            scores["product_ssim"] = None if result.ssim is None else round(float(result.ssim), 4)
            reasons += [] if result.passed else [result.reason]
        elif gate == "content_safe" and engines.safety is not None:
            # a video is judged on its poster and frames sampled through it, a picture as it is
            pictures = [painted.picture] + (sample_frames(painted.frames, SAFETY_FRAMES) if painted.frames else [])
            verdicts = [engines.safety.verdict(picture, "the shot") for picture in pictures]
            worst = max(verdicts, key=lambda v: (v.reason is not None, v.score.explicit))
            scores["explicit"] = round(float(worst.score.explicit), 4)
            reasons += [worst.reason] if worst.reason else []
        elif gate == "frames_identity" and painted.frames is not None:
            result = video_identity_gate(painted.frames, inputs.identity, engines.faces)
            scores["lowest_frame_identity"] = result.lowest_similarity
            reasons += [] if result.passed else [result.reason]
    return scores, (reasons[0] if reasons else None)


def _threshold(inputs: ShotInputs, engines: ShotEngines) -> float:
    return inputs.style.identity_threshold if inputs.style is not None else engines.faces.default_threshold


def _identity(
    picture: np.ndarray, identity: np.ndarray, faces: FaceAnalyzer, threshold: float
) -> tuple[float | None, str | None]:
    found = detect_faces(picture, faces, PROOF_MIN_FACE_SCORE)
    if not found:
        return None, "no face found in the shot"
    if count_people(found) > 1:
        return None, f"{count_people(found)} faces found in the shot; it must show the one person"
    similarity = round(cosine(identity, faces.embed(picture, found[0])), 4)
    if similarity < threshold:
        return similarity, f"identity similarity {similarity:.2f} is below the threshold {threshold:.2f}"
    return similarity, None
