"""Engine resources. Dagster builds resources anew for every run, so the loaded models
live in a process-wide cache keyed by their configuration: a process that runs many
orders (the CLI, a batch job, tests) loads each model once."""

import functools
from pathlib import Path

import dagster as dg

from photogen_pipelines.engines.base import FaceAnalyzer, Stylizer, Upscaler
from photogen_pipelines.errors import ModelError


@functools.cache
def _face_analyzer(backend: str, model_dir: str | None, providers: str = "auto") -> FaceAnalyzer:
    if backend == "embedded":
        from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer

        return OpenCvFaceAnalyzer(model_dir)
    if backend == "insightface":
        if not model_dir:
            raise ModelError("the insightface face backend needs model_dir: a folder with an insightface pack's *.onnx")
        from photogen_pipelines.engines.faces_insightface import InsightFaceAnalyzer  # the gpu extra

        return InsightFaceAnalyzer(model_dir, providers=providers)
    raise ValueError(f"unknown face backend {backend!r}; known: embedded, insightface")


@functools.cache
def _stylizer(backend: str, model_dir: str | None, threads: int | None, diffusion: tuple) -> Stylizer:
    if backend == "embedded":
        from photogen_pipelines.engines.stylize_magenta import MagentaStylizer

        return MagentaStylizer(model_dir, threads)
    if backend == "diffusers":
        if not model_dir:
            raise ModelError("the diffusers style backend needs model_dir: the models folder (photogen dev make-tiny-models)")
        from photogen_pipelines.engines.models_folder import INSIGHTFACE_DIR, engine_defaults
        from photogen_pipelines.engines.stylize_instantid import InstantIdStylizer  # the gpu extra

        face_model_dir, providers, device, profile, vae, steps, resolution = diffusion
        defaults = {"steps": 30, "resolution": 1024, **engine_defaults(model_dir)}
        return InstantIdStylizer(
            model_dir,
            _face_analyzer("insightface", face_model_dir or str(Path(model_dir) / INSIGHTFACE_DIR), providers),
            device=device,
            profile=profile,
            vae=vae,
            steps=steps or defaults["steps"],
            resolution=resolution or defaults["resolution"],
        )
    raise ValueError(f"unknown style backend {backend!r}; known: embedded, diffusers")


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
    """Checks selfies and validates proofs: face detection and the identity encoder
    (embedded: YuNet + SFace on OpenCV; insightface: SCRFD + ArcFace from model_dir).
    By default it is not the encoder the diffusers engine conditions on, so the identity
    gate does not grade the generator with the generator's own yardstick."""

    backend: str = "embedded"  # embedded | insightface
    model_dir: str | None = None
    providers: str = "auto"  # insightface: auto (CUDA when onnxruntime-gpu has it) | cpu | cuda

    def analyzer(self) -> FaceAnalyzer:
        return _face_analyzer(self.backend, self.model_dir, self.providers)


class StyleEngine(dg.ConfigurableResource):
    """Renders styled candidates (embedded: Magenta style transfer on onnxruntime;
    diffusers: SDXL + InstantID from the models folder, on the GPU)."""

    backend: str = "embedded"  # embedded | diffusers
    model_dir: str | None = None  # diffusers: the models folder (engines/models_folder.py)
    threads: int | None = None
    proof_long_side: int = 1024
    face_model_dir: str | None = None  # diffusers: the insightface pack (default model_dir/insightface)
    face_providers: str = "auto"
    device: str = "auto"  # diffusers: auto | cuda | cuda:1 | cpu
    memory_profile: str = "auto"  # diffusers: auto | low | medium | high | high-bf16 | cpu (memory_profiles.py)
    vae: str = "sdxl"  # diffusers: sdxl | fp16-fix (model_dir/vae-fp16-fix)
    steps: int | None = None  # diffusers: default 30, or the models folder's photogen-engine.yaml
    resolution: int | None = None  # diffusers: long side generated, default 1024 (ditto)

    def stylizer(self) -> Stylizer:
        diffusion = (
            self.face_model_dir,
            self.face_providers,
            self.device,
            self.memory_profile,
            self.vae,
            self.steps,
            self.resolution,
        )
        return _stylizer(self.backend, self.model_dir, self.threads, diffusion)


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
