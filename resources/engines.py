"""Engine resources. Dagster builds resources anew for every run, so the loaded models
live in a process-wide cache keyed by their configuration: a process that runs many
orders (the CLI, a batch job, tests) loads each model once."""

import functools

import dagster as dg

from photogen_pipelines.engines.base import FaceAnalyzer, Stylizer, Upscaler
from photogen_pipelines.errors import ModelError


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
def _upscaler(backend: str, model: str, model_dir: str | None, tile: int, threads: int | None, torch_options: tuple) -> Upscaler:
    if backend == "embedded":
        from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan

        return NcnnRealEsrgan(model=model, model_dir=model_dir, tile=tile, threads=threads)
    if backend == "torch":
        model_path, device, dtype, tile_pad, batch = torch_options
        if not model_path:
            raise ModelError("UpscaleEngine(backend='torch') needs model_path: the RealESRGAN_x4plus.pth file")
        from photogen_pipelines.engines.upscale_torch import TorchRealEsrgan  # torch is in the gpu extra only

        return TorchRealEsrgan(model_path, device=device, dtype=dtype, tile=tile, tile_pad=tile_pad, batch=batch)
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
    """Upscales the approved proof to print size (embedded: Real-ESRGAN on ncnn, tiled;
    torch: Real-ESRGAN x4plus in our RRDBNet, tiled, fp16 on a GPU)."""

    backend: str = "embedded"  # embedded | torch
    model: str = "REALESRGAN_ANIMAVIDEOV3"
    model_dir: str | None = None
    tile: int = 256
    threads: int | None = None
    target_dpi: float = 200.0
    max_passes: int = 2
    model_path: str | None = None  # torch: RealESRGAN_x4plus.pth
    device: str = "auto"  # torch: auto | cuda | cpu
    dtype: str = "auto"  # torch: auto (fp16 on cuda, fp32 on cpu) | fp16 | bf16 | fp32
    tile_pad: int = 16
    batch: int = 4  # torch: tiles per forward pass

    def upscaler(self) -> Upscaler:
        torch_options = (self.model_path, self.device, self.dtype, self.tile_pad, self.batch)
        return _upscaler(self.backend, self.model, self.model_dir, self.tile, self.threads, torch_options)
