"""Engine resources. Dagster builds resources anew for every run, so the loaded models
live in a process-wide cache keyed by their configuration: a process that runs many
orders (the CLI, a batch job, tests) loads each model once."""

import functools

import dagster as dg

from photogen_pipelines.engines.base import FaceAnalyzer, Stylizer, Upscaler


@functools.cache
def _face_analyzer(backend: str, model_dir: str | None) -> FaceAnalyzer:
    if backend == "embedded":
        from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer

        return OpenCvFaceAnalyzer(model_dir)
    raise ValueError(f"unknown face backend {backend!r}")


@functools.cache
def _stylizer(backend: str, model_dir: str | None, threads: int | None) -> Stylizer:
    if backend == "embedded":
        from photogen_pipelines.engines.stylize_magenta import MagentaStylizer

        return MagentaStylizer(model_dir, threads)
    raise ValueError(f"unknown style backend {backend!r}")


@functools.cache
def _upscaler(backend: str, model: str, model_dir: str | None, tile: int, threads: int | None) -> Upscaler:
    if backend == "embedded":
        from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan

        return NcnnRealEsrgan(model=model, model_dir=model_dir, tile=tile, threads=threads)
    raise ValueError(f"unknown upscale backend {backend!r}")


class FaceEngine(dg.ConfigurableResource):
    """Face detection and identity embeddings (embedded: YuNet + SFace on OpenCV)."""

    backend: str = "embedded"
    model_dir: str | None = None

    def analyzer(self) -> FaceAnalyzer:
        return _face_analyzer(self.backend, self.model_dir)


class StyleEngine(dg.ConfigurableResource):
    """Renders styled candidates (embedded: Magenta style transfer on onnxruntime)."""

    backend: str = "embedded"
    model_dir: str | None = None
    threads: int | None = None
    proof_long_side: int = 1024

    def stylizer(self) -> Stylizer:
        return _stylizer(self.backend, self.model_dir, self.threads)


class UpscaleEngine(dg.ConfigurableResource):
    """Upscales the approved proof to print size (embedded: Real-ESRGAN on ncnn, tiled)."""

    backend: str = "embedded"
    model: str = "REALESRGAN_ANIMAVIDEOV3"
    model_dir: str | None = None
    tile: int = 256
    threads: int | None = None
    target_dpi: float = 200.0
    max_passes: int = 2

    def upscaler(self) -> Upscaler:
        return _upscaler(self.backend, self.model, self.model_dir, self.tile, self.threads)
