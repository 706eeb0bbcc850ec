"""The imaging stages of one order, free of any orchestration.

Each function is one stage of docs/architecture.md §1; what they conclude comes back as the
documents the stages store (storage/artifacts.py: `ProofScore`, `Validation`, `MasterInfo`),
and proofs.py and the Dagster assets do the bookkeeping (storage, metadata, order state).
Everything here is deterministic for a given order seed, so re-running a stage reproduces
its output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from photogen_pipelines.catalog import Product, Style
from photogen_pipelines.engines.base import Face, FaceAnalyzer, ReferenceStylizer, SeededStylizer, Stylizer, Upscaler, cosine
from photogen_pipelines.errors import BadInput, PhotoGenError
from photogen_pipelines.generation import takes
from photogen_pipelines.generation.safety import SafetyGate
from photogen_pipelines.imaging.images import Box, decode_upload, fit_long_side, portrait_crop
from photogen_pipelines.imaging.print_detail import SOFTEN_SIGMA, add_texture, ensemble_upscale, soften
from photogen_pipelines.storage.artifacts import MasterInfo, ProofScore, Usage, Validation

SELFIE_MIN_FACE_SCORE = 0.75
PROOF_MIN_FACE_SCORE = 0.5  # painted faces score lower than photographed ones
MIN_FACE_PX = 64
# A second face at least this fraction of the largest one's area is a second person;
# smaller ones are posters and passers-by in the background.
SECOND_FACE_AREA_RATIO = 0.2


# -- selfie ---------------------------------------------------------------------------


@dataclass
class Selfie:
    image: np.ndarray  # upright sRGB, metadata stripped
    face: Face
    portrait: np.ndarray  # cropped to the product's aspect at proof resolution
    portrait_face: Face
    embedding: np.ndarray  # of the portrait's face: what proofs are compared with


def detect_faces(image: np.ndarray, faces: FaceAnalyzer, min_score: float) -> list[Face]:
    """The analyzer's faces that are faces: a detection with a box that is not finite, under
    1 px a side, or outside the picture (what a detector reports for a picture a few pixels
    across) is none, whichever backend made it."""
    height, width = image.shape[:2]
    return [face for face in faces.detect(image, min_score=min_score) if _is_a_face(face.box, width, height)]


def _is_a_face(box: Box, width: int, height: int) -> bool:
    x, y, w, h = box.x, box.y, box.w, box.h
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return False
    return w >= 1 and h >= 1 and x < width and y < height and x + w > 0 and y + h > 0


def count_people(faces: list[Face]) -> int:
    """Faces that belong to a person in the picture: a face much smaller than the largest
    is a poster in the background or a detector's stray hit, not a second customer."""
    if not faces:
        return 0
    largest = faces[0].box.w * faces[0].box.h
    return sum(1 for f in faces if f.box.w * f.box.h >= SECOND_FACE_AREA_RATIO * largest)


def single_face(faces: list[Face], what: str) -> Face:
    """The one face of a picture, or a clear reason why there is not exactly one."""
    if not faces:
        raise BadInput(f"no face found in the {what}", code="no_face")
    people = count_people(faces)
    if people > 1:
        raise BadInput(f"{people} faces found in the {what}; it must show exactly one person", code="several_faces")
    return faces[0]


def selfie_face(image: np.ndarray, faces: FaceAnalyzer) -> Face:
    """The selfie's one face, large enough to keep; the check an upload gets on the spot."""
    face = single_face(detect_faces(image, faces, SELFIE_MIN_FACE_SCORE), "selfie")
    if min(face.box.w, face.box.h) < MIN_FACE_PX:
        raise BadInput(
            f"the face is only {face.box.w:.0f}x{face.box.h:.0f} px; at least {MIN_FACE_PX} px are needed",
            code="face_too_small",
        )
    return face


def prepare_selfie(upload: bytes, product: Product, faces: FaceAnalyzer, proof_long_side: int) -> Selfie:
    image = np.asarray(decode_upload(upload))
    face = selfie_face(image, faces)
    width, height = product.pixel_size
    crop = portrait_crop((image.shape[1], image.shape[0]), face.box, width / height)
    crop_size = (crop[2] - crop[0], crop[3] - crop[1])
    portrait = np.asarray(Image.fromarray(image).crop(crop).resize(fit_long_side(crop_size, proof_long_side), Image.LANCZOS))
    portrait_face = single_face(detect_faces(portrait, faces, SELFIE_MIN_FACE_SCORE), "framed portrait")
    return Selfie(image, face, portrait, portrait_face, faces.embed(portrait, portrait_face))


# -- styled candidates ----------------------------------------------------------------


@dataclass
class Candidate:
    variant: int
    round: int
    seed: int
    strength: float
    zoom: float
    image: np.ndarray = field(repr=False)
    take: str | None = None  # the embedded engine's take (takes.py); None for a seeded engine

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "image" and (k != "take" or v is not None)}


def variant_seed(order_seed: int, variant: int) -> int:
    return (order_seed + 7919 * variant) % 2**32


def render_candidate(
    portrait: np.ndarray,
    style: Style,
    stylizer: Stylizer,
    seed: int,
    variant: int,
    round_no: int,
    retry_decay: float,
    face: Box | None = None,
) -> Candidate:
    """One styled variant. A style-transfer engine paints the variant's take (takes.py:
    stroke size, framing, palette; the takes its style offers), jittered a little by the variant's seed;
    a seeded engine (diffusion) varies by its seed alone. `face` is the portrait's face
    box (default: where `portrait_crop` puts it)."""
    params = style.engine_params(stylizer.params_section)
    if isinstance(stylizer, ReferenceStylizer):
        return _render_from_references([portrait], params, stylizer, [(variant, seed)], round_no, retry_decay)[0]
    if isinstance(stylizer, SeededStylizer):
        return _render_seeded(portrait, params, stylizer, [(variant, seed)], round_no, retry_decay)[0]
    take = takes.take_for(variant, getattr(params, "without_takes", ()))
    rng = np.random.default_rng(seed)
    zoom = take.zoom * (1.0 if variant == 0 else rng.uniform(0.99, 1.02))
    stroke_side = round(take.stroke_side * (1.0 if variant == 0 else rng.uniform(0.96, 1.04)))
    strength = _strength(params.strength, retry_decay, round_no)
    framed, framed_face = takes.frame(portrait, face or _default_face(portrait), zoom)
    engine_params = params.model_dump(exclude_none=True)
    if take.second_palette and params.second_palette is not None:
        engine_params["second_palette_weight"] = take.second_palette
    image = _paint(framed, framed_face, stylizer, engine_params, stroke_side)
    image = takes.keep_face(image, framed, framed_face, strength)
    return Candidate(variant, round_no, seed, round(strength, 4), round(zoom, 4), image, take.name)


def _paint(framed: np.ndarray, face: Box, stylizer: Stylizer, params: dict, stroke_side: int) -> np.ndarray:
    """The whole picture in the style, at the take's stroke size: the face is shown to
    the network lifted to a mid-tone, and the painting is brought back to the face's own
    depth."""
    curve = takes.lift_curve(framed, face)
    shown = takes.apply_curve(framed, curve, face)
    painted = takes.without_checkerboard(stylizer.stylize(takes.at_stroke_size(shown, stroke_side), params, 1.0))
    height, width = framed.shape[:2]
    if painted.shape[:2] != (height, width):
        painted = np.asarray(Image.fromarray(painted).resize((width, height), Image.LANCZOS))
    return takes.restore_tone(painted, framed, face) if curve is not None else painted


def _default_face(portrait: np.ndarray) -> Box:
    height, width = portrait.shape[:2]
    side = 0.38 * min(width, height)
    return Box(width / 2 - side / 2, height * 0.42 - side / 2, side, side)


def render_candidates(
    portrait: np.ndarray,
    style: Style,
    stylizer: Stylizer,
    order_seed: int,
    variants: list[int],
    round_no: int,
    retry_decay: float,
    face: Box | None = None,
    references: Callable[[], Sequence[np.ndarray]] | None = None,
) -> list[Candidate]:
    """The order's `variants` in one round: a seeded engine renders them in one batch. A
    reference-image engine paints from `references()` (every photo of the customer, the
    framed portrait first; default: the portrait alone), called only for such an engine
    since decoding the photos costs."""
    seeds = [(v, variant_seed(order_seed, v)) for v in variants]
    if isinstance(stylizer, ReferenceStylizer):
        params = style.engine_params(stylizer.params_section)
        photos = list(references()) if references is not None else [portrait]
        return _render_from_references(photos, params, stylizer, seeds, round_no, retry_decay)
    if isinstance(stylizer, SeededStylizer):
        params = style.engine_params(stylizer.params_section)
        return _render_seeded(portrait, params, stylizer, seeds, round_no, retry_decay)
    return [render_candidate(portrait, style, stylizer, seed, v, round_no, retry_decay, face) for v, seed in seeds]


def _render_seeded(portrait, params, stylizer, seeds: list[tuple[int, int]], round_no: int, retry_decay: float):
    strength = _strength(params.strength, retry_decay, round_no)
    images = stylizer.stylize_variants(portrait, params.model_dump(exclude_none=True), strength, [s for _, s in seeds])
    return [Candidate(v, round_no, seed, round(strength, 4), 1.0, image) for (v, seed), image in zip(seeds, images, strict=True)]


def _render_from_references(photos: list[np.ndarray], params, stylizer, seeds, round_no: int, retry_decay: float):
    """The round from the customer's photos (the framed portrait first, at most the
    engine's `max_references`), generated at the product's aspect: the portrait's, which
    is framed for the product. The engine picks the size when it has a preference
    (`size_for`: its best pixel count); otherwise the portrait's size."""
    strength = _strength(params.strength, retry_decay, round_no)
    height, width = photos[0].shape[:2]
    size_for = getattr(stylizer, "size_for", None)
    size = size_for(width / height) if size_for is not None else (width, height)
    images = stylizer.paint_from_references(
        photos[: stylizer.max_references], params.model_dump(exclude_none=True), strength, [s for _, s in seeds], size
    )
    return [Candidate(v, round_no, seed, round(strength, 4), 1.0, image) for (v, seed), image in zip(seeds, images, strict=True)]


def _strength(base: float, retry_decay: float, round_no: int) -> float:
    return float(np.clip(base * retry_decay**round_no, 0.05, 1.0))


# -- validation: the identity gate ----------------------------------------------------


def score_candidate(
    candidate: Candidate, reference: np.ndarray, threshold: float, faces: FaceAnalyzer, safety: SafetyGate | None = None
) -> ProofScore:
    """The candidate's attempt, scored as `Validation` stores it: its similarity to the
    selfie's embedding (None when no face was found), its explicit score when `safety`
    checks it (quality.yaml content_safe.output), and why it fails, if it does: a picture
    flagged as explicit fails first, whatever its likeness."""
    found = detect_faces(candidate.image, faces, PROOF_MIN_FACE_SCORE)
    similarity, reason, explicit = None, None, None
    if found:
        similarity = round(cosine(reference, faces.embed(candidate.image, found[0])), 4)
    if safety is not None:
        verdict = safety.verdict(candidate.image, "the proof")
        explicit, reason = verdict.score.explicit, verdict.reason
    try:
        single_face(found, "proof")
    except BadInput as exc:
        reason = reason or str(exc)
    if reason is None and float(np.std(candidate.image)) < 8.0:
        reason = "the proof is nearly blank"
    if reason is None and similarity < threshold:
        reason = f"identity similarity {similarity:.2f} is below the style's threshold {threshold:.2f}"
    return ProofScore(
        variant=candidate.variant,
        round=candidate.round,
        strength=candidate.strength,
        similarity=similarity,
        faces=len(found),
        passed=reason is None,
        reason=reason,
        explicit=explicit,
    )


@dataclass
class GateResult:
    """What the identity gate concluded, with the passing candidates' pictures;
    `validation()` is the document it leaves."""

    proofs: dict[int, Candidate]  # variant -> the candidate that passed
    scores: list[ProofScore]  # every attempt, in order
    rounds: int

    @property
    def rejected(self) -> bool:
        return not self.proofs

    def best_variant(self) -> int | None:
        final = {s.variant: s for s in self.scores if s.passed}
        return max(final, key=lambda v: final[v].similarity) if final else None

    def rejection_reason(self) -> str:
        last = [s for s in self.scores if s.round == self.rounds - 1]
        reasons = sorted({s.reason for s in last if s.reason})
        return f"no proof kept the customer's likeness after {self.rounds} rounds: " + "; ".join(reasons)

    def validation(self, threshold: float, encoder: str, proof_key: Callable[[int], str], usage: Usage | None) -> Validation:
        """The verdict as `validated_proofs` stores it: `proof_key` names where each passing
        variant's proof is stored, `usage` is what the regeneration rounds used."""
        return Validation(
            threshold=threshold,
            encoder=encoder,
            rounds=self.rounds,
            proofs={v: proof_key(v) for v in sorted(self.proofs)},
            best_variant=self.best_variant(),
            scores=self.scores,
            rejected=self.rejected,
            usage=usage,
        )


def identity_gate(
    first_round: list[Candidate],
    regenerate: Callable[[list[int], int], list[Candidate]],
    score: Callable[[Candidate], ProofScore],
    max_rounds: int,
) -> GateResult:
    """Score every candidate; regenerate the failed variants together (the caller lowers
    the strength) until each variant passes or `max_rounds` rounds are spent."""
    proofs: dict[int, Candidate] = {}
    scores: list[ProofScore] = []
    pending = first_round
    round_no = 0
    while True:
        for candidate in pending:
            result = score(candidate)
            scores.append(result)
            if result.passed:
                proofs[candidate.variant] = candidate
        failed = [c.variant for c in pending if c.variant not in proofs]
        round_no += 1
        if not failed or round_no >= max_rounds:
            return GateResult(proofs, scores, round_no)
        pending = regenerate(failed, round_no)


# -- print master ---------------------------------------------------------------------


def native_dpi(size: tuple[int, int], product: Product) -> float:
    width_in, height_in = product.canvas_inches
    return min(size[0] / width_in, size[1] / height_in)


def plan_passes(
    size: tuple[int, int], product: Product, scales: tuple[int, ...], target_dpi: float, max_passes: int
) -> list[int]:
    """Model passes that bring the proof to `target_dpi`, each as small as will do.
    Lanczos covers the rest of the way to the product's exact pixels."""
    passes: list[int] = []
    dpi = native_dpi(size, product)
    while dpi < target_dpi and len(passes) < max_passes:
        needed = target_dpi / dpi
        scale = min((s for s in scales if s >= needed), default=max(scales))
        passes.append(scale)
        dpi *= scale
    return passes


def _shrink_for_pass(image: np.ndarray, product: Product, scale: int, target_dpi: float) -> np.ndarray:
    """A pass that would overshoot the target more than twice over starts from a smaller
    picture instead: with only a x4 model, a canvas that needs x1.7 more would otherwise
    go through the model at 16 times the pixels and be thrown away by the final resize."""
    height, width = image.shape[:2]
    needed = target_dpi / native_dpi((width, height), product)
    if needed * 2 > scale:
        return image
    factor = needed / scale
    size = (max(1, math.ceil(width * factor)), max(1, math.ceil(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def make_print_master(
    proof: np.ndarray,
    product: Product,
    upscaler: Upscaler,
    target_dpi: float = 200.0,
    max_passes: int = 2,
    soften_sigma: float = SOFTEN_SIGMA,
    variant: int = 0,
    ensemble: int = 1,
) -> tuple[Image.Image, MasterInfo]:
    """The proof at the product's pixels: the upscaler draws the contours from a softened
    proof and Lanczos carries the proof's own brush texture (print_detail.py says why;
    soften_sigma=0 gives the model the whole proof, as before). With `ensemble` > 1 each
    model pass is averaged over that many mirrored and rotated copies, which cleans away
    the model's own fine pattern (a premium tier's print). The document says how, for the
    proof `variant` (the order's approved one); the caller adds what the upscaler used."""
    softened = soften(proof, soften_sigma)
    image = softened
    passes = plan_passes((proof.shape[1], proof.shape[0]), product, upscaler.scales, target_dpi, max_passes)
    for scale in passes:
        image = ensemble_upscale(upscaler.upscale, _shrink_for_pass(image, product, scale, target_dpi), scale, ensemble)
    native = (image.shape[1], image.shape[0])
    dpi = native_dpi(native, product)
    if dpi < product.min_dpi:
        raise PhotoGenError(
            f"only {dpi:.0f} DPI reached for {product.name}; the provider needs {product.min_dpi}", code="dpi_below_minimum"
        )
    master = add_texture(Image.fromarray(image).resize(product.pixel_size, Image.LANCZOS), proof, softened)
    source = round(native_dpi((proof.shape[1], proof.shape[0]), product), 1)
    info = MasterInfo(
        passes=passes,
        native_size=native,
        pixel_size=product.pixel_size,
        effective_dpi=round(dpi, 1),
        proof=variant,
        upscaler=upscaler.version,
        source_dpi=source,
        soften_sigma=soften_sigma,
        ensemble=ensemble,
    )
    return master, info
