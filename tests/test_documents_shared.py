"""The stages hand back the documents they store: one class each for a score, a print
master's record and an engine's usage, one best similarity, and the catalog's preview
pointer typed like an order's documents. Fast: fake engines, no models."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from photogen_pipelines.catalog import Product
from photogen_pipelines.engines import base
from photogen_pipelines.engines.base import Face
from photogen_pipelines.generation import stages
from photogen_pipelines.generation.previews import (
    FacePreview,
    StylePreview,
    latest_key,
    latest_preview,
    store_style_preview,
)
from photogen_pipelines.generation.proofs import StoredSelfie, ValidatedProofs, stored_first_round, validate_proofs
from photogen_pipelines.generation.stages import Candidate, GateResult, make_print_master
from photogen_pipelines.imaging.images import Box, png_bytes
from photogen_pipelines.storage.artifacts import (
    NO_FACE,
    CandidateParams,
    CandidatesInfo,
    LatestPreview,
    MasterInfo,
    OrderKeys,
    ProofScore,
    Usage,
    Validation,
)
from photogen_pipelines.storage.stores import LocalArtifactStore, put_json


def _score(variant: int, similarity: float | None, passed: bool = False, round_no: int = 0) -> ProofScore:
    reason = None if passed else "no face found in the proof" if similarity is None else "below the threshold"
    faces = 0 if similarity is None else 1
    return ProofScore(
        variant=variant, round=round_no, strength=0.5, similarity=similarity, faces=faces, passed=passed, reason=reason
    )


def _validation(scores: list[ProofScore], rounds: int = 1) -> Validation:
    passed = sorted({s.variant for s in scores if s.passed})
    return Validation(
        threshold=0.0,
        encoder="fake",
        rounds=rounds,
        proofs={v: OrderKeys("ord_x").proof(v) for v in passed},
        best_variant=passed[0] if passed else None,
        scores=scores,
        rejected=not passed,
    )


# -- one best similarity ----------------------------------------------------------------


def test_a_face_that_scored_zero_is_a_best_similarity_of_zero_not_no_face():
    validation = _validation([_score(0, None), _score(1, 0.0)])
    assert validation.best_similarity() == 0.0
    assert _validation([_score(0, None), _score(1, None)]).best_similarity() == NO_FACE == -1.0
    assert _validation([_score(0, -0.2), _score(1, None)]).best_similarity() == -0.2


def test_validated_proofs_reports_the_documents_best_similarity():
    """The asset's metadata used to take `similarity or -1`: a face scored 0.0 showed as no face."""
    from assets.proofs import _validation_metadata

    validation = _validation([_score(0, None), _score(1, 0.0)])
    metadata = _validation_metadata(ValidatedProofs(validation, GateResult({}, validation.scores, 1)))
    assert metadata["best_similarity"].value == 0.0 == validation.best_similarity()
    assert metadata["similarity_variant_0"].value == NO_FACE and metadata["similarity_variant_1"].value == 0.0
    assert metadata["proof_variety"].value == -1.0 and metadata["rejected"].value is True
    # every attempt counts, as the identity check reads it: a better first round is the best
    retried = _validation([_score(0, 0.3), _score(0, 0.1, round_no=1)], rounds=2)
    metadata = _validation_metadata(ValidatedProofs(retried, GateResult({}, retried.scores, 2)))
    assert metadata["best_similarity"].value == 0.3 and metadata["similarity_variant_0"].value == 0.1


# -- the identity gate returns the stored documents -------------------------------------


def _picture(code: float, size: int = 24) -> np.ndarray:
    """A noisy picture (not blank) whose top-left pixel carries the angle its face embeds at."""
    rng = np.random.default_rng(int(code * 1000))
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    image[0, 0] = (round(code * 100), 0, 0)
    return image


class AngleFaces:
    """One face a picture, embedded at the angle the picture's top-left pixel says: the
    similarity to the reference [1, 0] is the cosine of that angle."""

    name = "angle-faces"
    version = "angle-faces v1"
    default_threshold = 0.5

    def detect(self, rgb: np.ndarray, min_score: float = 0.5) -> list[Face]:
        h, w = rgb.shape[:2]
        return [Face(Box(0, 0, w, h), 0.99, (), np.zeros(1))]

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        angle = rgb[0, 0, 0] / 100
        return np.array([math.cos(angle), math.sin(angle)])


def _candidate(variant: int, round_no: int, angle: float) -> Candidate:
    return Candidate(variant, round_no, 100 + variant, 0.5 * 0.6**round_no, 1.0, _picture(angle))


def test_score_candidate_gives_the_documents_score():
    score = stages.score_candidate(_candidate(0, 0, 0.5), np.array([1.0, 0.0]), 0.9, AngleFaces())
    assert type(score) is ProofScore and not hasattr(stages, "Score")
    assert score.similarity == round(math.cos(0.5), 4) and not score.passed and "below" in score.reason


def test_validate_proofs_stores_the_proofs_and_the_validation_it_returns(tmp_path):
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_gate")
    # round 0: variant 0 keeps the likeness (cos 0.3 ≈ 0.96), variant 1 does not (cos 1.4 ≈ 0.17)
    first = [_candidate(0, 0, 0.3), _candidate(1, 0, 1.4)]
    for c in first:
        store.put_bytes(keys.candidate(0, c.variant), png_bytes(c.image))
    params = [CandidateParams(variant=c.variant, round=0, seed=c.seed, strength=c.strength) for c in first]
    keys.save(store, CandidatesInfo(style="s", engine="e", candidates=params))
    store.put_bytes(keys.proof(7), b"an earlier run's proof")
    rendered = []

    def render(variants: list[int], round_no: int):
        rendered.append((variants, round_no))
        return [_candidate(v, round_no, 0.2) for v in variants], Usage(backend="fake", seconds=1.23456, cost_usd=0.1234567)

    selfie = StoredSelfie(first[0].image, Box(0, 0, 24, 24), np.array([1.0, 0.0]))
    validated = validate_proofs(store, keys, selfie, 0.8, AngleFaces(), 3, render)

    assert [c.variant for c in stored_first_round(store, keys)] == [0, 1]
    assert rendered == [([1], 1)] and store.exists(keys.candidate(1, 1))
    validation = validated.validation
    assert keys.load(store, Validation) == validation
    assert validation.proofs == {0: keys.proof(0), 1: keys.proof(1)} and not store.exists(keys.proof(7))
    assert validation.best_variant == 1 and validation.rounds == 2 and not validation.rejected
    assert [(s.variant, s.round, s.passed) for s in validation.scores] == [(0, 0, True), (1, 0, False), (1, 1, True)]
    assert validation.scores == validated.gate.scores and validation.encoder == "angle-faces v1"
    assert validation.usage == Usage(backend="fake", seconds=1.235, cost_usd=0.123457)
    assert validated.variety() is not None


# -- one class each for the print master's record and an engine's usage -----------------


class RepeatUpscaler:
    name = "repeat"
    version = "repeat-x4 v1"
    scales = (4,)

    def upscale(self, rgb: np.ndarray, scale: int) -> np.ndarray:
        return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def test_make_print_master_returns_the_stored_document(tmp_path):
    assert stages.MasterInfo is MasterInfo
    product = Product(id="mini", name="Mini", width_in=1, height_in=1.5, dpi=100, min_dpi=50, price_cents=100)
    proof = _picture(0.1, size=40)
    master, info = make_print_master(proof, product, RepeatUpscaler(), target_dpi=100, max_passes=1, variant=2)
    assert master.size == product.pixel_size and info.pixel_size == product.pixel_size
    assert (info.proof, info.upscaler, info.passes, info.usage) == (2, "repeat-x4 v1", [4], None)
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_m")
    keys.save(store, info.model_copy(update={"usage": Usage(backend="embedded", seconds=2.0)}))
    assert keys.load(store, MasterInfo).usage.seconds == 2.0


def test_an_engines_usage_is_the_documents_usage():
    assert base.Usage is Usage
    replicate = Usage(backend="replicate", seconds=1.0004, predict_seconds=0.5, predictions=1, cost_usd=0.0000004)
    assert replicate == Usage(backend="replicate", seconds=1.0004, predict_seconds=0.5, predictions=1, cost_usd=0.0000004)
    both = replicate + Usage(backend="runpod", seconds=2.0, reused=1)
    assert (both.backend, both.seconds, both.predict_seconds, both.predictions, both.reused) == (
        "replicate+runpod",
        3.0004,
        0.5,
        1,
        1,
    )
    assert replicate.rounded() == Usage(backend="replicate", seconds=1.0, predict_seconds=0.5, predictions=1, cost_usd=0.0)
    assert Usage.total(None, replicate, None, replicate) == (replicate + replicate).rounded()
    assert Usage.total(None, None) is None
    with pytest.raises(Exception, match="frozen"):
        replicate.seconds = 0.0


# -- the catalog's preview pointer ------------------------------------------------------


def _preview() -> StylePreview:
    faces = [
        FacePreview("ardern", np.zeros((4, 4, 3), np.uint8), 0.6123, True, None),
        FacePreview("astronaut", np.zeros((4, 4, 3), np.uint8), None, False, "no face found in the proof"),
    ]
    return StylePreview("sepia_oil", 0.4, faces, Image.new("RGB", (8, 4)))


def _written_before_typing(preview: StylePreview, version: str, rendered_at: datetime) -> dict:
    """latest.json as store_style_preview wrote it by hand, before LatestPreview."""
    return {
        "style_id": preview.style_id,
        "version": version,
        "key": f"catalog/previews/{preview.style_id}/{version}.png",
        "rendered_at": rendered_at.isoformat(),
        "identity_scores": preview.identity_scores(),
        "threshold": preview.threshold,
        "faces": [{"name": f.name, "similarity": f.similarity, "passed": f.passed, "reason": f.reason} for f in preview.faces],
    }


def test_the_preview_pointer_is_written_byte_for_byte_as_before(tmp_path):
    store, preview, at = LocalArtifactStore(tmp_path), _preview(), datetime(2026, 3, 2, 3, 0, 12, 345678, tzinfo=UTC)
    record = store_style_preview(store, preview, "abc123", at)
    assert isinstance(record, LatestPreview) and store.exists(record.key)
    old = _written_before_typing(preview, "abc123", at)
    assert store.get_bytes(latest_key("sepia_oil")) == json.dumps(old, indent=2, default=str).encode()
    assert latest_preview(store, "sepia_oil").model_dump(mode="json") == old


def test_a_preview_pointer_stored_before_typing_still_loads(tmp_path):
    store, preview, at = LocalArtifactStore(tmp_path), _preview(), datetime(2025, 11, 3, 3, 0, tzinfo=UTC)
    put_json(store, latest_key("sepia_oil"), _written_before_typing(preview, "old0version", at))
    record = latest_preview(store, "sepia_oil")
    assert (record.version, record.rendered_at, record.threshold) == ("old0version", at, 0.4)
    assert record.identity_scores == {"ardern": 0.6123, "astronaut": None}
    assert [(f.name, f.passed) for f in record.faces] == [("ardern", True), ("astronaut", False)]
    assert latest_preview(store, "fauve") is None
