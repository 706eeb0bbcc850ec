"""Which models a configuration loads, and under which licence each may be used.

The licences are data (`catalog/models.yaml`); which models load is decided here from the
same things that build the engines: `factories.deployment(settings)` for the shop's
engines, `tiers.tier_engines` for what each quality tier of the product catalog runs (the
fast tier paints on the CPU engine whatever the shop runs), and the style catalog for the
Replicate models its styles name. `photogen licences` prints the answer; with
PHOTOGEN_COMMERCIAL_ONLY=1 `photogen serve`, `photogen demo` and `photogen engines serve`
refuse to start on a model a paying shop may not use (`refusal`).

With the warm engine service (PHOTOGEN_ENGINE_URL) the run loads only the identity gate's
faces, the content-safety detector and what the embedded tiers paint with: the service
decides its own engine and checks its own models when it starts, so they are not listed here.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from photogen_pipelines.catalog import StyleCatalog, load_products, load_styles
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import (
    Deployment,
    FaceEngineSettings,
    SafetyEngineSettings,
    StyleEngineSettings,
    UpscaleEngineSettings,
    deployment,
)
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.tiers import tier_engines

MODELS_FILE = "models.yaml"


class ModelLicence(BaseModel):
    """One entry of catalog/models.yaml."""

    # a misspelt key would silently lose a licence fact: refuse it
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    licence: str = Field(min_length=1)
    commercial: bool
    source: str = Field(pattern=r"^https://")
    note: str = ""


class LicenceBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    models: dict[str, ModelLicence]


@functools.cache
def load_licences(path: str | None = None) -> LicenceBook:
    """The licence entries shipped with the package (catalog/models.yaml), or those at `path`."""
    text = Path(path).read_text() if path else resources.files("photogen_pipelines.catalog").joinpath(MODELS_FILE).read_text()
    return LicenceBook.model_validate(yaml.safe_load(text))


@dataclass(frozen=True)
class UsedModel:
    """A model a configuration loads, what for, and its licence entry (None: it has none)."""

    key: str
    used_for: str
    entry: ModelLicence | None

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else self.key

    @property
    def licence(self) -> str:
        return self.entry.licence if self.entry else f"unknown: no entry in catalog/{MODELS_FILE}"

    @property
    def commercial(self) -> bool:
        # no entry, no proof that a paying shop may use it: the safe answer is no
        return bool(self.entry and self.entry.commercial)

    def as_json(self) -> dict:
        return {
            "id": self.key,
            "model": self.name,
            "licence": self.licence,
            "commercial": self.commercial,
            "source": self.entry.source if self.entry else None,
            "used_for": self.used_for,
            "note": self.entry.note if self.entry else "",
        }


# the embedded upscaler's ncnn models (upscale_ncnn.MODEL_SCALES) by their licence entries
NCNN_MODELS = {
    "REALESRGAN_ANIMAVIDEOV3": "realesrgan-animevideov3-ncnn",
    "REALESRGAN_X4PLUS": "realesrgan-x4plus-ncnn",
    "REALESRGAN_X4PLUSANIME": "realesrgan-x4plus-anime-ncnn",
}
# what an SDXL + InstantID engine loads, ours on a GPU or our worker on RunPod
INSTANTID_MODELS = [
    ("sdxl-base-1.0", "proofs (SDXL)"),
    ("instantid", "proofs (InstantID: identity conditioning)"),
    ("insightface-antelopev2", "proofs (InstantID's face encoder)"),
]


def face_models(faces: FaceEngineSettings) -> list[tuple[str, str]]:
    """(licence key, used for) of the face analyzer: the identity gate's detector and encoder."""
    if faces.backend == "embedded":
        return [("yunet", "face detection (the identity gate)"), ("sface", "identity embedding (the identity gate)")]
    return [("insightface-pack", "face detection and identity embedding (the identity gate)")]


def style_models(styles: StyleEngineSettings, catalog: StyleCatalog) -> list[tuple[str, str]]:
    """(licence key, used for) of what the stylizer loads. The `service` backend loads nothing
    here: the engine service checks its own models at its start."""
    backend = styles.backend
    if backend == "embedded":
        return [("magenta-multistyle", "proofs (CPU style transfer)"), ("magenta-arbitrary", "proofs (CPU style transfer)")]
    if backend == "service":
        return []
    # a style LoRA is a model of its own, with the licence its author gave it
    loras = sorted({s.diffusion.lora for s in catalog.styles if s.diffusion and s.diffusion.lora})
    style_loras = [(f"lora:{name}", "proofs (a style LoRA)") for name in loras]
    if backend in ("diffusers", "runpod"):
        where = "" if backend == "diffusers" else ", on our RunPod worker"
        models = [(key, f"{what[:-1]}{where})") for key, what in INSTANTID_MODELS]
        if backend == "diffusers" and styles.vae == "fp16-fix":
            models.append(("sdxl-vae-fp16-fix", "proofs (SDXL's VAE in fp16)"))
        return models + style_loras
    if backend == "replicate":
        names = sorted({s.replicate.model for s in catalog.styles if s.replicate is not None})
        return [(name, "proofs (on Replicate)") for name in names]
    if backend == "flux2-klein":
        return [("flux2-klein-4b", "proofs (from the customer's photos)"), *style_loras]
    if backend == "qwen-edit":
        return [("qwen-image-edit-2511", "proofs (from the customer's photos)"), *style_loras]
    if backend == "runpod-qwen-edit":
        return [("qwen-image-edit-2511", "proofs (RunPod's hosted endpoint)")]
    # a backend this module does not know yet: its model has no entry, so it counts as
    # non-commercial at start and tests/test_licences.py fails until it is added
    return [(f"style-backend:{backend}", "proofs")]


def upscale_models(upscale: UpscaleEngineSettings) -> list[tuple[str, str]]:
    """(licence key, used for) of what the print upscaler loads (none for the service)."""
    if upscale.backend == "embedded":
        return [(NCNN_MODELS.get(upscale.model, f"ncnn:{upscale.model}"), "print upscale (CPU)")]
    if upscale.backend == "torch":
        return [("realesrgan-x4plus", "print upscale (GPU)")]
    if upscale.backend == "runpod":
        return [("realesrgan-x4plus", "print upscale (on our RunPod worker)")]
    if upscale.backend == "service":
        return []
    return [(f"upscale-backend:{upscale.backend}", "print upscale")]


def safety_models(safety: SafetyEngineSettings) -> list[tuple[str, str]]:
    """(licence key, used for) of the content-safety detector, which checks every upload and
    every generated picture on every engine. NudeNet was not chosen for it: AGPL-3.0."""
    if safety.backend == "embedded":
        return [("open-nsfw", "content safety (uploads and proofs, CPU)")]
    if safety.backend == "openai-moderation":
        return [("openai-omni-moderation", "content safety (uploads and proofs, OpenAI's hosted API)")]
    return [(f"safety-backend:{safety.backend}", "content safety")]


def video_models() -> list[tuple[str, str]]:
    """(licence key, used for) of the living portrait's image-to-video engine
    (engines/video_wan.py), one per Wan release its folder may hold. No PHOTOGEN_ENGINE
    loads it yet: the living_portrait job will."""
    from photogen_pipelines.engines.video_wan import VARIANTS

    return [(key, "living portraits (image-to-video, GPU)") for key in VARIANTS]


def _used(pairs: list[tuple[str, str]], book: LicenceBook) -> list[UsedModel]:
    """One UsedModel a key, in first-seen order, with every distinct use joined."""
    uses: dict[str, list[str]] = {}
    for key, what in pairs:
        if what not in uses.setdefault(key, []):
            uses[key].append(what)
    return [UsedModel(key, "; ".join(what), book.models.get(key)) for key, what in uses.items()]


def engine_models(
    styles: StyleEngineSettings,
    upscale: UpscaleEngineSettings,
    faces: FaceEngineSettings | None = None,
    catalog: StyleCatalog | None = None,
    book: LicenceBook | None = None,
) -> list[UsedModel]:
    """The models of one set of engines: a run's, or an engine service replica's (no faces)."""
    catalog = catalog or load_styles()
    pairs = face_models(faces) if faces is not None else []
    return _used(pairs + style_models(styles, catalog) + upscale_models(upscale), book or load_licences())


def deployment_models(
    running: Deployment, catalog: StyleCatalog, tiers: list, book: LicenceBook | None = None
) -> list[UsedModel]:
    """The models a deployment loads for the quality tiers it sells: each tier runs the
    shop's engine or the embedded one, with its own upscaler model (tiers.py)."""
    pairs = face_models(running.faces) + safety_models(running.safety)
    for tier in tiers:
        try:
            styles, upscale = tier_engines(running, tier)
        except ModelError:
            continue  # a tier this deployment cannot run is refused at ordering; it loads nothing
        pairs += style_models(styles, catalog) + upscale_models(upscale)
    return _used(pairs, book or load_licences())


def configuration_models(settings: PhotoGenSettings) -> list[UsedModel]:
    """The models the configuration `settings` loads, each with its licence entry.
    ModelError: the settings do not make a deployment (e.g. an engine without its models folder)."""
    running = deployment(settings)
    return deployment_models(running, load_styles(settings.styles_path), load_products(settings.products_path).tiers)


ENGINES: tuple[str, ...] = typing.get_args(PhotoGenSettings.model_fields["engine"].annotation)


def engines_using() -> dict[str, list[str]]:
    """Licence key → the PHOTOGEN_ENGINE values whose configuration loads it, with the
    shipped catalogs: for the README's table. Credentials and folders are placeholders;
    nothing is read or loaded."""
    using: dict[str, list[str]] = {}
    for engine in ENGINES:
        settings = PhotoGenSettings(
            engine=engine,
            home="/nonexistent/photogen-home",
            models_dir="/models",
            replicate_api_token="placeholder",
            runpod_api_key="placeholder",
            runpod_endpoint_id="placeholder",
            # the environment must not change the README's table: no service, the shipped catalogs
            engine_url=None,
            styles_path=None,
            products_path=None,
            safety_backend="embedded",
        )
        for model in configuration_models(settings):
            using.setdefault(model.key, []).append(engine)
    return using


def non_commercial(models: list[UsedModel]) -> list[UsedModel]:
    return [model for model in models if not model.commercial]


def refusal(models: list[UsedModel]) -> str | None:
    """The one line that refuses a start under PHOTOGEN_COMMERCIAL_ONLY, naming every model a
    paying shop may not use and its licence; None when all of them are commercial."""
    bad = non_commercial(models)
    if not bad:
        return None
    named = "; ".join(f"{model.name}: {model.licence}" for model in bad)
    return f"PHOTOGEN_COMMERCIAL_ONLY is on and this configuration loads non-commercial models: {named}"


def markdown_table(book: LicenceBook | None = None) -> str:
    """Every licence entry as the README's Markdown table, with the engines that load it."""
    book = book or load_licences()
    using = engines_using()
    lines = [
        "| model | licence | a paying shop may use it | loaded by PHOTOGEN_ENGINE | source | note |",
        "|---|---|---|---|---|---|",
    ]
    for key, entry in book.models.items():
        engines = ", ".join(f"`{engine}`" for engine in using.get(key, [])) or "none by default (see the note)"
        verdict = "yes" if entry.commercial else "**no**"
        lines.append(f"| {entry.name} | {entry.licence} | {verdict} | {engines} | {entry.source} | {entry.note} |")
    return "\n".join(lines)
