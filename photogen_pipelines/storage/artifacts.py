"""An order's artifacts: where each lives in the store (`OrderKeys`), the stages that write
them (`Stage`), and the JSON documents among them as typed models.

The documents are a contract between the stage that writes one and everyone who reads it
(the next stage, the checks, the API, the ledger, the CLI), so they are read and written
only through these models: `keys.save(store, doc)` and `keys.load(store, Validation)`.
Documents already in a shop's storage keep loading: fields added later get defaults, and
keys a newer writer adds are kept (`extra="allow"`). The catalog's preview pointers
(`LatestPreview`) are typed the same way and go through the same `save_json`/`load_json`.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from photogen_pipelines.storage.stores import ArtifactStore


class Stage(enum.StrEnum):
    """The order's stages, in the order they run: the asset names, and the keys of an
    order's `stage_seconds`."""

    SELFIE = "selfie"
    STYLED_CANDIDATES = "styled_candidates"
    VALIDATED_PROOFS = "validated_proofs"
    PRINT_MASTER = "print_master"
    PRINT_FILE = "print_file"


PROOF_STAGES = (Stage.SELFIE, Stage.STYLED_CANDIDATES, Stage.VALIDATED_PROOFS)
PRINT_STAGES = (Stage.PRINT_MASTER, Stage.PRINT_FILE)


class Document(BaseModel):
    """A stored JSON document; `key_name` names the `OrderKeys` property it lives at."""

    model_config = ConfigDict(extra="allow")
    key_name: ClassVar[str]


class FaceRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    box: list[float]  # x, y, w, h
    score: float
    landmarks: list[list[float]] = Field(default_factory=list)


def _absent_if_none(value: object) -> bool:
    return value is None


# fields added after documents were first stored: left out while unset, so a document
# written before them reads back and saves as it was
ADDED_LATER = {"default": None, "exclude_if": _absent_if_none}


class SelfieInfo(Document):
    """What `selfie` found: the face, the portrait's face and its identity embedding. An
    order from several photos of the customer also has their keys (the primary first) and
    the normalised mean of their faces' embeddings, which the identity gate compares
    proofs with; an order from one photo has neither (None), and is gated as before."""

    key_name: ClassVar[str] = "selfie_info"
    face: FaceRecord
    portrait_face: FaceRecord
    embedding: list[float]
    encoder: str
    photos: list[str] | None = Field(**ADDED_LATER)
    mean_embedding: list[float] | None = Field(**ADDED_LATER)


class CandidateParams(BaseModel):
    """How one styled variant was made (its image is stored beside it)."""

    model_config = ConfigDict(extra="allow")
    variant: int
    round: int
    seed: int
    strength: float
    zoom: float = 1.0
    take: str | None = Field(**ADDED_LATER)  # the embedded engine's take (takes.py): what sets it apart


class Usage(BaseModel):
    """What a generation used, for the order's cost: compute seconds billed (a remote
    provider's GPU seconds, or the seconds a local engine ran), the provider's own
    predict/execution time where it reports one, the remote jobs paid for, those found
    already done on a retried step (not paid again), and the cost at the configured price.

    The engines report it (`engines.base.MeteredStylizer.take_usage`, `analytics.costs.metered`),
    the stages store it `rounded()` beside their documents, and the ledger adds it up."""

    model_config = ConfigDict(extra="allow", frozen=True)
    backend: str
    seconds: float = 0.0
    predict_seconds: float | None = None
    predictions: int = 0
    reused: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        predict = None
        if self.predict_seconds is not None or other.predict_seconds is not None:
            predict = (self.predict_seconds or 0.0) + (other.predict_seconds or 0.0)
        return Usage(
            backend=self.backend if self.backend == other.backend else f"{self.backend}+{other.backend}",
            seconds=self.seconds + other.seconds,
            predict_seconds=predict,
            predictions=self.predictions + other.predictions,
            reused=self.reused + other.reused,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    @staticmethod
    def total(*usages: Usage | None) -> Usage | None:
        """The sum of the usages present, rounded as a document stores it (None when none is)."""
        present = [u for u in usages if u is not None]
        return sum(present[1:], present[0]).rounded() if present else None

    def rounded(self) -> Usage:
        """As a document stores it: seconds to the millisecond, dollars to the millionth."""
        return self.model_copy(
            update={
                "seconds": round(self.seconds, 3),
                "predict_seconds": None if self.predict_seconds is None else round(self.predict_seconds, 3),
                "cost_usd": round(self.cost_usd, 6),
            }
        )


class CandidatesInfo(Document):
    key_name: ClassVar[str] = "candidates_info"
    style: str
    engine: str
    candidates: list[CandidateParams]
    tier: str | None = Field(**ADDED_LATER)  # the quality tier that chose the engine (None: before tiers)
    usage: Usage | None = Field(**ADDED_LATER)  # the first round's generation


# the similarity reported (in metadata, never stored) where no face was found to compare
NO_FACE = -1.0


class ProofScore(BaseModel):
    """One attempt at one variant, scored by the identity gate (`stages.score_candidate`)."""

    model_config = ConfigDict(extra="allow")
    variant: int
    round: int
    strength: float
    similarity: float | None  # None: no face to compare
    faces: int
    passed: bool
    reason: str | None = None
    # the content-safety detector's explicit score, 0-1 (generation/safety.py); None: not
    # scored (a document from before the check)
    explicit: float | None = Field(**ADDED_LATER)


class Validation(Document):
    """The identity gate's verdict on an order's proofs."""

    key_name: ClassVar[str] = "validation"
    threshold: float
    encoder: str
    rounds: int
    proofs: dict[int, str]  # variant → the stored proof's key (JSON keeps it as a string)
    best_variant: int | None
    scores: list[ProofScore]  # every attempt, in order
    rejected: bool
    usage: Usage | None = Field(**ADDED_LATER)  # the regeneration rounds' (None: none ran, or before metering)

    def final_scores(self) -> dict[int, ProofScore]:
        """The last attempt of each variant: what the customer is shown."""
        return {score.variant: score for score in self.scores}

    def passing_similarities(self) -> list[float]:
        return [s.similarity for s in self.scores if s.passed and s.similarity is not None]

    def best_similarity(self) -> float:
        """The best similarity of any attempt, NO_FACE (-1) when no attempt found a face; a
        face scored 0.0 is 0.0. What the asset's metadata and the identity check report."""
        return max((s.similarity if s.similarity is not None else NO_FACE for s in self.scores), default=NO_FACE)

    def approved_score(self, variant: int) -> ProofScore:
        """The passing attempt behind the proof the customer approved."""
        return [s for s in self.scores if s.variant == variant and s.passed][-1]


class MasterInfo(Document):
    """How `print_master` reached the product's pixels (`stages.make_print_master`)."""

    key_name: ClassVar[str] = "master_info"
    passes: list[int]  # the model scale of each upscaling pass
    native_size: tuple[int, int]  # pixels the models produced, before the final resize
    pixel_size: tuple[int, int]
    effective_dpi: float  # model pixels per inch of the canvas (bleed included), not the file's DPI tag
    proof: int  # the approved proof it was made from
    upscaler: str  # the upscaler's version
    # the approved proof's pixels per inch of the canvas: all the picture the customer saw
    source_dpi: float | None = Field(**ADDED_LATER)
    # proof px of blur before the model; the texture came by Lanczos (print_detail.py)
    soften_sigma: float | None = Field(**ADDED_LATER)
    ensemble: int | None = Field(**ADDED_LATER)  # mirrored/rotated copies averaged in each model pass (print_detail.py)
    usage: Usage | None = Field(**ADDED_LATER)  # the upscaler's (its clock, or a serverless worker's bill)


class EngineVersions(BaseModel):
    model_config = ConfigDict(extra="allow")
    faces: str
    style: str
    upscale: str
    upscale_passes: list[int]


class Manifest(Document):
    """What the print provider receives with the file, and what the API's print-file link reports."""

    key_name: ClassVar[str] = "manifest"
    order_id: str
    style_id: str
    product_id: str
    file: str  # the print file's key in the store
    format: str
    bytes: int
    pixel_size: tuple[int, int]
    dpi: int  # the file's DPI tag: the product's pixels per inch
    effective_dpi: float  # of those, the pixels the upscaler drew per inch; Lanczos made the rest
    bleed_px: int
    trim_inches: tuple[float, float]
    color_profile: str
    approved_proof: int
    identity_score: float | None
    identity_threshold: float
    seeds: list[int]
    engines: EngineVersions
    source_dpi: float | None = Field(**ADDED_LATER)  # the approved proof's pixels per inch: the picture's own detail


class PreviewFace(BaseModel):
    """One reference face in a style's preview, scored like an order's proof."""

    model_config = ConfigDict(extra="allow")
    name: str
    similarity: float | None  # None: no face found in the styled picture
    passed: bool  # would it have passed the style's identity gate as a proof
    reason: str | None


class LatestPreview(BaseModel):
    """A style's `catalog/previews/<style>/latest.json`: the newest contact sheet of the
    style on the reference faces (generation/previews.py), which the API links and the
    catalog sensor compares versions with. Not an order's: it lives at `previews.latest_key`."""

    model_config = ConfigDict(extra="allow")
    style_id: str
    version: str  # the catalog version it was rendered at (previews.catalog_version)
    key: str  # the contact sheet's key in the store
    rendered_at: datetime
    identity_scores: dict[str, float | None]  # reference face -> its similarity
    threshold: float
    faces: list[PreviewFace]

    @field_serializer("rendered_at", when_used="json")
    def _isoformat(self, rendered_at: datetime) -> str:
        return rendered_at.isoformat()  # "+00:00", as the records were always written


M = TypeVar("M", bound=BaseModel)
D = TypeVar("D", bound=Document)


def save_json(store: ArtifactStore, key: str, document: BaseModel) -> str:
    """Store a typed JSON document at `key` (an order's: `OrderKeys.save`)."""
    store.put_bytes(key, json.dumps(document.model_dump(mode="json"), indent=2).encode())
    return key


def load_json(store: ArtifactStore, key: str, kind: type[M]) -> M:
    """The typed JSON document at `key` (NotFound if there is none)."""
    return kind.model_validate_json(store.get_bytes(key))


class OrderKeys:
    """Where each artifact of one order lives in the store, and the typed way to its JSON."""

    def __init__(self, order_id: str):
        self.prefix = f"orders/{order_id}"

    upload = property(lambda self: f"{self.prefix}/upload")
    selfie = property(lambda self: f"{self.prefix}/selfie/selfie.png")
    portrait = property(lambda self: f"{self.prefix}/selfie/portrait.png")
    selfie_info = property(lambda self: f"{self.prefix}/selfie/face.json")
    candidates_info = property(lambda self: f"{self.prefix}/candidates/candidates.json")
    validation = property(lambda self: f"{self.prefix}/proofs/validation.json")
    print_master = property(lambda self: f"{self.prefix}/print/master.png")
    master_info = property(lambda self: f"{self.prefix}/print/master.json")
    manifest = property(lambda self: f"{self.prefix}/print/manifest.json")

    def candidate(self, round_no: int, variant: int) -> str:
        return f"{self.prefix}/candidates/round_{round_no}/variant_{variant}.png"

    def proof(self, variant: int) -> str:
        return f"{self.prefix}/proofs/proof_{variant}.png"

    def print_file(self, extension: str) -> str:
        return f"{self.prefix}/print/print_file.{extension}"

    def key_of(self, kind: type[Document]) -> str:
        return getattr(self, kind.key_name)

    def save(self, store: ArtifactStore, document: Document) -> str:
        return save_json(store, self.key_of(type(document)), document)

    def load(self, store: ArtifactStore, kind: type[D]) -> D:
        """The stored document (NotFound if the stage has not written it)."""
        return load_json(store, self.key_of(kind), kind)

    def load_if_present(self, store: ArtifactStore, kind: type[D]) -> D | None:
        key = self.key_of(kind)
        return load_json(store, key, kind) if store.exists(key) else None
