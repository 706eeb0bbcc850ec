"""Engine resources: each carries the core's engine settings as its `settings` config and
builds through photogen_pipelines.factories, which caches the loaded models process-wide
(Dagster builds resources anew for every run). The settings' fields, types and defaults
are declared once, in photogen_pipelines/factories.py; the config classes here only make
them Dagster config (a field typed as a dg.Config subclass is nested config), so they show
and can be set in the UI, and a string field such as an api key can be a dg.EnvVar."""

import dagster as dg

from photogen_pipelines import factories, tiers
from photogen_pipelines.catalog import QualityGates
from photogen_pipelines.engines.base import Animator, FaceAnalyzer, SafetyDetector, Stylizer, Upscaler
from photogen_pipelines.factories import FaceEngineSettings, SafetyEngineSettings, StyleEngineSettings, UpscaleEngineSettings
from photogen_pipelines.generation.safety import SafetyGate, safety_gate


class FaceEngineConfig(dg.Config, FaceEngineSettings):
    """FaceEngineSettings as Dagster config."""


class StyleEngineConfig(dg.Config, StyleEngineSettings):
    """StyleEngineSettings as Dagster config (replicate, runpod: the api key is an
    environment variable, dg.EnvVar, never config in the UI)."""


class UpscaleEngineConfig(dg.Config, UpscaleEngineSettings):
    """UpscaleEngineSettings as Dagster config (runpod: the api key as a dg.EnvVar)."""


class SafetyEngineConfig(dg.Config, SafetyEngineSettings):
    """SafetyEngineSettings as Dagster config (openai-moderation: the api key as a dg.EnvVar)."""


class FaceEngine(dg.ConfigurableResource):
    """Checks selfies and validates proofs: face detection and the identity encoder
    (embedded: YuNet + SFace on OpenCV; insightface: SCRFD + ArcFace from model_dir).
    By default it is not the encoder the diffusers engine conditions on, so the identity
    gate does not grade the generator with the generator's own yardstick."""

    settings: FaceEngineConfig = FaceEngineConfig()

    @property
    def backend(self) -> str:
        return self.settings.backend

    def engine_settings(self) -> FaceEngineSettings:
        # the core's own class: equal to the deployment's settings, so the same cached engine
        return FaceEngineSettings(**self.settings.model_dump())

    def analyzer(self) -> FaceAnalyzer:
        return factories.face_analyzer(self.engine_settings())


class _MeteredEngine(dg.ConfigurableResource):
    """What the style and upscale resources share: the backend and the price of a second of
    the engine their settings describe, which the assets meter and the ledger records."""

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def price_per_second(self) -> float:
        return self.settings.price_per_second


class StyleEngine(_MeteredEngine):
    """Renders styled candidates (embedded: Magenta style transfer on onnxruntime;
    diffusers: SDXL + InstantID from the models folder, on the GPU; service: the warm
    engine service at service_url)."""

    settings: StyleEngineConfig = StyleEngineConfig()
    # how large the assets make the proofs, not part of the engine: it is no cache key
    proof_long_side: int = 1024

    def engine_settings(self) -> StyleEngineSettings:
        return StyleEngineSettings(**self.settings.model_dump())

    def stylizer(self) -> Stylizer:
        return factories.stylizer(self.engine_settings())

    def stylizer_for(self, engine: str = "default", steps: int | None = None) -> Stylizer:
        """The stylizer a quality tier asks for (photogen_pipelines/tiers.py)."""
        return factories.stylizer(tiers.style_engine(self.engine_settings(), engine, steps))


class UpscaleEngine(_MeteredEngine):
    """Upscales the approved proof to print size (embedded: Real-ESRGAN on ncnn, tiled;
    torch: Real-ESRGAN x4plus in our RRDBNet, tiled, fp16 on a GPU; service: the warm
    engine service at service_url)."""

    settings: UpscaleEngineConfig = UpscaleEngineConfig()
    target_dpi: float = 200.0  # target_dpi and max_passes: how the print assets upscale, not the engine
    max_passes: int = 2

    def engine_settings(self) -> UpscaleEngineSettings:
        return UpscaleEngineSettings(**self.settings.model_dump())

    def upscaler(self) -> Upscaler:
        return factories.upscaler(self.engine_settings())

    def upscaler_for(self, model: str | None = None) -> Upscaler:
        """The upscaler a quality tier asks for (photogen_pipelines/tiers.py)."""
        return factories.upscaler(tiers.upscale_engine(self.engine_settings(), model))


class SafetyEngine(dg.ConfigurableResource):
    """Scores every generated picture for explicit content (embedded: open_nsfw on
    onnxruntime, CPU; openai-moderation: OpenAI's hosted moderation endpoint); the
    thresholds are quality.yaml's content_safe."""

    settings: SafetyEngineConfig = SafetyEngineConfig()

    @property
    def backend(self) -> str:
        return self.settings.backend

    def engine_settings(self) -> SafetyEngineSettings:
        return SafetyEngineSettings(**self.settings.model_dump())

    def detector(self) -> SafetyDetector:
        return factories.safety_detector(self.engine_settings())

    def gate(self, quality: QualityGates) -> SafetyGate:
        """The detector at the threshold for generated pictures."""
        return safety_gate(self.detector(), quality, "output")


class VideoEngine(dg.ConfigurableResource):
    """The living portrait's image-to-video engine (wan-i2v: Wan 2.x on diffusers, GPU; tiny
    random-weight models on a CPU in tests), from its models folder; none without one, and a
    living portrait is then refused when it is placed (kind_needs_engine)."""

    models_dir: str | None = None
    device: str = "auto"
    memory_profile: str = "auto"

    def animator(self) -> Animator | None:
        if not self.models_dir:
            return None
        return factories.animator(self.models_dir, self.device, self.memory_profile)
