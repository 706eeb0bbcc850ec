"""Catalog previews: every style rendered on the same few real faces, for the storefront.

A preview goes through the functions an order goes through (`prepare_selfie`'s framing,
`render_candidate` at the style's catalogued strength, `score_candidate`'s identity
score), so the catalog page shows what a customer's first proof will look like, and the
scores tell merchandising how hard a style is on faces before a customer finds out.

Store layout: `catalog/previews/<style>/<version>.png` (one contact sheet per catalog
version, never overwritten) and `catalog/previews/<style>/latest.json`, the pointer the
API and the catalog sensor read (`LatestPreview`, typed like an order's documents).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import numpy as np
from PIL import Image

from photogen_pipelines.catalog import Product, Style, StyleCatalog
from photogen_pipelines.engines.base import FaceAnalyzer, Stylizer
from photogen_pipelines.errors import NotFound, PhotoGenError
from photogen_pipelines.generation.safety import UNSAFE_CONTENT, SafetyGate
from photogen_pipelines.generation.stages import prepare_selfie, render_candidate, score_candidate
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.storage.artifacts import LatestPreview, PreviewFace, load_json, save_json
from photogen_pipelines.storage.stores import ArtifactStore

PREFIX = "catalog/previews"
# Part of the version: bump it when the faces, the framing or the layout change, and
# every style's preview is rendered again.
PREVIEW_RECIPE = "contact-sheet-v1"
PREVIEW_SEED = 20_240_601  # fixed, so one catalog version always renders the same sheet
PREVIEW_LONG_SIDE = 512
# A 4:5 head-and-shoulders frame: close to every poster product, and it fits a catalog card
PREVIEW_FRAME = Product(id="catalog_preview", name="Catalog preview", width_in=4.0, height_in=5.0, price_cents=0)
GAP = 12
BACKGROUND = (246, 243, 238)


@dataclass(frozen=True)
class ReferenceFace:
    name: str
    data: bytes  # an encoded image, exactly as a customer would upload one


def reference_faces() -> list[ReferenceFace]:
    """The public-domain portraits shipped in `catalog/reference_faces/`, then scikit-image's astronaut."""
    folder = resources.files("photogen_pipelines.catalog").joinpath("reference_faces")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".jpg")), key=lambda f: f.name)
    faces = [ReferenceFace(f.name.split("_")[0], f.read_bytes()) for f in files]
    from skimage import data  # imported here: only rendering needs it, not the API's preview lookups

    return [*faces, ReferenceFace("astronaut", png_bytes(data.astronaut()))]


def catalog_version(styles_catalog: StyleCatalog, stylizer_version: str, recipe: str = PREVIEW_RECIPE) -> str:
    """A short hash of everything a preview depends on: the parsed style catalog (so a
    comment edit in styles.yaml changes nothing, a strength edit does), the style
    engine's version and the preview recipe."""
    content = {"catalog": styles_catalog.model_dump(mode="json"), "stylizer": stylizer_version, "recipe": recipe}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


@dataclass
class FacePreview:
    name: str
    image: np.ndarray
    similarity: float | None  # None when no face was found in the styled image
    passed: bool  # would this have passed the style's identity gate as an order's proof
    reason: str | None


@dataclass
class StylePreview:
    style_id: str
    threshold: float
    faces: list[FacePreview]
    sheet: Image.Image

    def identity_scores(self) -> dict[str, float | None]:
        return {f.name: f.similarity for f in self.faces}


def render_style_preview(
    style: Style,
    faces: FaceAnalyzer,
    stylizer: Stylizer,
    reference_images: list[ReferenceFace],
    seed: int = PREVIEW_SEED,
    long_side: int = PREVIEW_LONG_SIDE,
    frame: Product = PREVIEW_FRAME,
    safety: SafetyGate | None = None,
) -> StylePreview:
    """The style on each reference face, as variant 0 of an order's first round, scored
    like a proof and laid out side by side on one contact sheet. A tile `safety` flags
    as explicit stops the preview (PhotoGenError `unsafe_content`): the storefront shows
    it to everyone, so nothing of it is stored."""
    rendered = []
    for reference in reference_images:
        selfie = prepare_selfie(reference.data, frame, faces, long_side)
        # variant 0, round 0: the style exactly as catalogued (the retry decay is unused)
        candidate = render_candidate(
            selfie.portrait, style, stylizer, seed, variant=0, round_no=0, retry_decay=1.0, face=selfie.portrait_face.box
        )
        score = score_candidate(candidate, selfie.embedding, style.identity_threshold, faces, safety)
        if safety is not None and score.explicit is not None and score.explicit >= safety.max_explicit:
            raise PhotoGenError(f"style {style.id}'s preview on {reference.name}: {score.reason}", code=UNSAFE_CONTENT)
        rendered.append(FacePreview(reference.name, candidate.image, score.similarity, score.passed, score.reason))
    return StylePreview(style.id, style.identity_threshold, rendered, contact_sheet([f.image for f in rendered]))


def contact_sheet(tiles: list[np.ndarray], gap: int = GAP) -> Image.Image:
    """Tiles side by side on a paper-coloured ground, all at the first tile's size."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    height, width = tiles[0].shape[:2]
    sheet = Image.new("RGB", (len(tiles) * width + (len(tiles) + 1) * gap, height + 2 * gap), BACKGROUND)
    for i, tile in enumerate(tiles):
        image = Image.fromarray(tile)
        if image.size != (width, height):  # framing can round a pixel differently per face
            image = image.resize((width, height), Image.LANCZOS)
        sheet.paste(image, (gap + i * (width + gap), gap))
    return sheet


def preview_key(style_id: str, version: str) -> str:
    return f"{PREFIX}/{style_id}/{version}.png"


def latest_key(style_id: str) -> str:
    return f"{PREFIX}/{style_id}/latest.json"


def store_style_preview(store: ArtifactStore, preview: StylePreview, version: str, rendered_at: datetime) -> LatestPreview:
    """Write the sheet, then point `latest.json` at it: a reader never sees a pointer to a
    file that is not there yet."""
    key = preview_key(preview.style_id, version)
    store.put_bytes(key, png_bytes(preview.sheet))
    record = LatestPreview(
        style_id=preview.style_id,
        version=version,
        key=key,
        rendered_at=rendered_at,
        identity_scores=preview.identity_scores(),
        threshold=preview.threshold,
        faces=[PreviewFace(name=f.name, similarity=f.similarity, passed=f.passed, reason=f.reason) for f in preview.faces],
    )
    save_json(store, latest_key(preview.style_id), record)
    return record


def latest_preview(store: ArtifactStore, style_id: str) -> LatestPreview | None:
    """The newest preview's record, or None if the style has none (yet)."""
    try:
        return load_json(store, latest_key(style_id), LatestPreview)
    except NotFound:
        return None
