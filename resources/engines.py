"""Engine resources: each converts its config to the core's settings model and builds
through photogen_pipelines.factories, which caches the loaded models process-wide (Dagster
builds resources anew for every run)."""

import dagster as dg

from photogen_pipelines import factories
from photogen_pipelines.engines.base import FaceAnalyzer, Stylizer, Upscaler
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import (
    FaceBackend,
    FaceEngineSettings,
    StyleBackend,
    StyleEngineSettings,
    UpscaleBackend,
    UpscaleEngineSettings,
)


class FaceEngine(dg.ConfigurableResource):
    """Checks selfies and validates proofs: face detection and the identity encoder
    (embedded: YuNet + SFace on OpenCV; insightface: SCRFD + ArcFace from model_dir).
    By default it is not the encoder the diffusers engine conditions on, so the identity
    gate does not grade the generator with the generator's own yardstick."""

    backend: FaceBackend = "embedded"
    model_dir: str | None = None
    providers: str = "auto"  # insightface: auto (CUDA when onnxruntime-gpu has it) | cpu | cuda

    def engine_settings(self) -> FaceEngineSettings:
        return FaceEngineSettings.model_validate(self, from_attributes=True)

    def analyzer(self) -> FaceAnalyzer:
        return factories.face_analyzer(self.engine_settings())


class StyleEngine(dg.ConfigurableResource):
    """Renders styled candidates (embedded: Magenta style transfer on onnxruntime;
    diffusers: SDXL + InstantID from the models folder, on the GPU; service: the warm
    engine service at service_url)."""

    backend: StyleBackend = "embedded"
    model_dir: str | None = None  # diffusers: the models folder (engines/models_folder.py)
    threads: int | None = None
    # how large the assets make the proofs, not part of the engine: it is no cache key
    proof_long_side: int = 1024
    face_model_dir: str | None = None  # diffusers: the insightface pack (default model_dir/insightface)
    face_providers: str = "auto"
    device: str = "auto"  # diffusers: auto | cuda | cuda:1 | cpu
    memory_profile: str = "auto"  # diffusers: auto | low | medium | high | high-bf16 | cpu (memory_profiles.py)
    vae: str = "sdxl"  # diffusers: sdxl | fp16-fix (model_dir/vae-fp16-fix)
    steps: int | None = None  # diffusers: default 30, or the models folder's photogen-engine.yaml
    resolution: int | None = None  # diffusers: long side generated, default 1024 (ditto)
    service_url: str | None = None  # service: the warm engine service's URL (PHOTOGEN_ENGINE_URL)
    service_wait_seconds: float = 120.0  # service: how long a call waits for it to come up
    # replicate, runpod: the key is an environment variable (dg.EnvVar), never config in the UI
    api_key: str | None = None
    api_base: str | None = None
    endpoint_id: str | None = None  # runpod
    sync: bool = False  # runpod: /runsync
    journal_url: str | None = None  # replicate, runpod: the orders database, for the prediction journal
    price_per_second: float = 0.0  # the ledger's cost of a second of this engine
    price_per_prediction: float = 0.0  # replicate: a model priced per prediction

    def engine_settings(self) -> StyleEngineSettings:
        return StyleEngineSettings.model_validate(self, from_attributes=True)

    def stylizer(self) -> Stylizer:
        return factories.stylizer(self.engine_settings())

    def stylizer_for(self, engine: str = "default", steps: int | None = None) -> Stylizer:
        """The stylizer a quality tier asks for: this resource's engine ("default"), or the
        embedded one (which needs nothing configured), with the tier's steps."""
        settings = self.engine_settings()
        if engine not in ("default", settings.backend):
            if engine != "embedded":
                raise ModelError(f"the tier asks for the {engine} engine; this deployment runs {settings.backend}")
            settings = StyleEngineSettings(threads=settings.threads, price_per_second=settings.price_per_second)
        if steps is not None and settings.backend in ("diffusers", "replicate"):
            settings = settings.model_copy(update={"steps": steps})
        return factories.stylizer(settings)


class UpscaleEngine(dg.ConfigurableResource):
    """Upscales the approved proof to print size (embedded: Real-ESRGAN on ncnn, tiled;
    torch: Real-ESRGAN x4plus in our RRDBNet, tiled, fp16 on a GPU; service: the warm
    engine service at service_url)."""

    backend: UpscaleBackend = "embedded"
    model: str = "REALESRGAN_ANIMAVIDEOV3"
    model_dir: str | None = None
    tile: int = 256
    threads: int | None = None
    target_dpi: float = 200.0  # target_dpi and max_passes: how the print assets upscale, not the engine
    max_passes: int = 2
    model_path: str | None = None  # torch: RealESRGAN_x4plus.pth
    device: str = "auto"  # torch: auto | cuda | cpu
    dtype: str = "auto"  # torch: auto (fp16 on cuda, fp32 on cpu) | fp16 | bf16 | fp32
    tile_pad: int = 16
    batch: int = 4  # torch: tiles per forward pass
    service_url: str | None = None  # service: the warm engine service's URL (PHOTOGEN_ENGINE_URL)
    service_wait_seconds: float = 120.0
    api_key: str | None = None  # runpod: an environment variable (dg.EnvVar)
    api_base: str | None = None
    endpoint_id: str | None = None
    sync: bool = False
    journal_url: str | None = None
    price_per_second: float = 0.0

    def engine_settings(self) -> UpscaleEngineSettings:
        return UpscaleEngineSettings.model_validate(self, from_attributes=True)

    def upscaler(self) -> Upscaler:
        return factories.upscaler(self.engine_settings())

    def upscaler_for(self, model: str | None = None) -> Upscaler:
        """The upscaler a quality tier asks for: another of the embedded engine's models;
        the other backends have one model each and keep it."""
        settings = self.engine_settings()
        if model and settings.backend == "embedded":
            settings = settings.model_copy(update={"model": model})
        return factories.upscaler(settings)
