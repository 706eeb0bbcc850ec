"""The proof stages' work on an order's stored artifacts, free of Dagster: what `selfie`
stored that the proofs are made from (with several photos of the customer, their
set's identity), the candidates `styled_candidates` stored, and
`validated_proofs`' identity gate over them, which leaves the proofs and the `Validation`
document (docs/architecture.md §5). The assets add the order's lifecycle moves and their
metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.generation.references import face_embedding, mean_embedding
from photogen_pipelines.generation.safety import SafetyGate
from photogen_pipelines.generation.stages import Candidate, GateResult, identity_gate, score_candidate
from photogen_pipelines.imaging.content_credentials import ContentCredentials, Model
from photogen_pipelines.imaging.images import Box, decode_upload, open_png, png_bytes
from photogen_pipelines.imaging.variety import proof_variety
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys, SelfieInfo, Usage, Validation
from photogen_pipelines.storage.stores import ArtifactStore

# what a stored CandidateParams gives back to its Candidate: everything but the picture
# (the inverse of `Candidate.params()`)
_CANDIDATE_PARAMS = frozenset(f.name for f in fields(Candidate)) - {"image"}

# one round of the order's variants (their numbers, the round), and what painting them used
Render = Callable[[list[int], int], tuple[list[Candidate], Usage]]


@dataclass(frozen=True)
class StoredSelfie:
    """What `selfie` stored that the proofs are made from."""

    portrait: np.ndarray  # framed for the product, from the primary photo
    face: Box  # the portrait's face
    # what every proof is compared with: the portrait's face's identity, or with several
    # photos of the customer the normalised mean of their faces' (references.mean_embedding)
    embedding: np.ndarray
    # the keys of the customer's photos in the store, the primary first, when the order has
    # several (none: one photo, the portrait's). A reference-image engine (FLUX.2 klein,
    # Qwen-Image-Edit: `ReferenceStylizer`) paints from all of them (`engine_references`);
    # the embedded Magenta engine (style transfer, one content image) and InstantID (one
    # face image) paint the primary's portrait. Loaded on demand: a stage that does not
    # need their pixels does not decode them.
    references: tuple[str, ...] = ()
    store: ArtifactStore | None = field(default=None, compare=False, repr=False)  # where `references` live

    def engine_references(self) -> list[np.ndarray]:
        """What a reference-image engine paints from: the portrait (the primary photo framed
        for the product, so the picture starts from the product's framing), then the
        customer's other photos as uploaded (clean, upright)."""
        if not self.references or self.store is None:
            return [self.portrait]
        return [self.portrait, *(np.asarray(open_png(self.store.get_bytes(key))) for key in self.references[1:])]


def stored_selfie(store: ArtifactStore, keys: OrderKeys) -> StoredSelfie:
    info = keys.load(store, SelfieInfo)
    x, y, w, h = info.portrait_face.box
    portrait = np.asarray(open_png(store.get_bytes(keys.portrait)))
    embedding = info.mean_embedding if info.mean_embedding is not None else info.embedding
    return StoredSelfie(portrait, Box(x, y, w, h), np.asarray(embedding, dtype=np.float32), tuple(info.photos or ()), store)


def reference_pictures(store: ArtifactStore, selfie: StoredSelfie) -> list[np.ndarray]:
    """The customer's photos as an engine taking several references would read them (the
    clean stored uploads, the primary first); one photo: the portrait alone."""
    if not selfie.references:
        return [selfie.portrait]
    return [np.asarray(open_png(store.get_bytes(key))) for key in selfie.references]


def set_identity(primary: np.ndarray, others: list[bytes], analyzer: FaceAnalyzer) -> np.ndarray:
    """The identity of an order's set of photos: the normalised mean of the primary
    portrait's embedding and each further photo's face's (references.mean_embedding)."""
    return mean_embedding([primary, *(face_embedding(np.asarray(decode_upload(photo)), analyzer) for photo in others)])


def store_candidate(store: ArtifactStore, keys: OrderKeys, candidate: Candidate) -> None:
    store.put_bytes(keys.candidate(candidate.round, candidate.variant), png_bytes(candidate.image))


def stored_first_round(store: ArtifactStore, keys: OrderKeys) -> list[Candidate]:
    """The candidates `styled_candidates` stored: the identity gate's first round."""
    return [
        Candidate(
            image=np.asarray(open_png(store.get_bytes(keys.candidate(0, p.variant)))),
            **{name: getattr(p, name) for name in _CANDIDATE_PARAMS},
        )
        for p in keys.load(store, CandidatesInfo).candidates
    ]


def proof_models(candidates: CandidatesInfo, encoder: str, upscaler: str | None = None) -> list[Model]:
    """The models a proof's Content Credentials name, as their stages recorded them: the style
    engine that painted it and the face encoder that let it through; a print file's add the
    upscaler that made its pixels."""
    models = [Model("style", candidates.engine), Model("identity check", encoder)]
    return [*models, Model("upscale", upscaler)] if upscaler else models


@dataclass
class ValidatedProofs:
    """What `validated_proofs` stored: the `Validation` document, and the gate's result
    with the passing candidates' pictures."""

    validation: Validation
    gate: GateResult

    def variety(self) -> float | None:
        """How far apart the stored proofs look (variety.py); None with fewer than two."""
        return proof_variety([c.image for c in self.gate.proofs.values()])


def validate_proofs(
    store: ArtifactStore,
    keys: OrderKeys,
    selfie: StoredSelfie,
    threshold: float,
    analyzer: FaceAnalyzer,
    max_rounds: int,
    render: Render,
    safety: SafetyGate | None = None,
    credentials: ContentCredentials | None = None,
) -> ValidatedProofs:
    """The identity gate over the stored first round, at the style's `threshold`: `render`
    regenerates the failed variants (at the round's lower strength), whose candidates are
    stored beside the first round's. The passing proofs replace any earlier run's, and the
    `Validation` is saved."""
    regenerated: list[Usage] = []

    def regenerate(variants: list[int], round_no: int) -> list[Candidate]:
        candidates, usage = render(variants, round_no)
        regenerated.append(usage)
        for candidate in candidates:
            store_candidate(store, keys, candidate)
        return candidates

    gate = identity_gate(
        stored_first_round(store, keys),
        regenerate,
        # `safety` (quality.yaml content_safe.output): an explicit candidate fails and is regenerated
        lambda c: score_candidate(c, selfie.embedding, threshold, analyzer, safety),
        max_rounds,
    )
    for old in store.list(f"{keys.prefix}/proofs/"):
        store.delete(old)  # a re-run must not leave an earlier run's proofs behind
    models = proof_models(keys.load(store, CandidatesInfo), analyzer.version)
    for variant, candidate in gate.proofs.items():
        proof = png_bytes(candidate.image)
        if credentials is not None:  # C2PA: the proof says it is AI-generated, by which models, for whom
            proof = credentials.sign(proof, models, title=f"proof {variant}")
        store.put_bytes(keys.proof(variant), proof)
    validation = gate.validation(threshold, analyzer.version, keys.proof, Usage.total(*regenerated))
    keys.save(store, validation)
    return ValidatedProofs(validation, gate)
