"""The production stylizer: SDXL + InstantID (engines/instantid.py) behind `Stylizer`.

How `stages.render_candidate`'s call `stylize(framed_portrait, params, strength)` maps
onto InstantID:

- the picture: the stylizer's own face analyzer (insightface: SCRFD + ArcFace, the
  512-d embedding InstantID was trained on) finds the customer's face in it. Its
  embedding is the identity, its five keypoints pose IdentityNet, so a variant's zoom
  and shift carry over, and the picture itself is where denoising starts (img2img).
- `strength`: how much of the denoising schedule is re-run over the photo (1.0 starts
  from noise). The identity gate's retry multiplies it by `retry_decay`, which keeps
  more of the photo and so more of the face, as it does for the embedded engine.
- `params`: the style's diffusion parameters (`DiffusionStyleParams`: prompt, negative
  prompt, adapter and IdentityNet weights, optional LoRA). Other keys are ignored.
- the seed: `Stylizer.stylize` has no seed argument, so unless `params` carries one it
  is a digest of the picture, the parameters and the strength. A re-run reproduces the
  candidate; variants (framed differently) and retry rounds get seeds of their own.

The picture is generated at `resolution` px on its long side (sides rounded to 64) and
resized back, so the output has the input's size like every stylizer's.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from photogen_pipelines.engines.base import FaceAnalyzer, package_version
from photogen_pipelines.errors import ModelError

FACE_EMBED_DIM = 512
SIDE_MULTIPLE = 64  # SDXL: latents a multiple of 8 after the VAE's 8x
# InstantID read insightface's raw ArcFace output (`face.embedding`, components of std
# about 1, so a norm about sqrt(512)); the analyzers here hand out unit vectors.
RAW_ARCFACE_NORM = math.sqrt(FACE_EMBED_DIM)
DEFAULT_NEGATIVE = "lowres, low quality, worst quality, watermark, text, deformed, disfigured, cross-eyed, extra faces"
_GENERATION_LOCK = threading.Lock()  # one pipeline per process is shared: one generation at a time


class DiffusionStyleParams(BaseModel):
    """A style for the diffusers backend (a `diffusion:` section of a catalog style)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    negative_prompt: str = DEFAULT_NEGATIVE
    ip_adapter_scale: float = Field(0.8, ge=0.0, le=1.5)
    controlnet_conditioning_scale: float = Field(0.8, ge=0.0, le=1.5)
    guidance_scale: float = Field(5.0, ge=1.0, le=20.0)
    lora: str | None = None  # a file name in model_dir/loras/, without .safetensors
    lora_scale: float = Field(0.8, ge=0.0, le=2.0)
    seed: int | None = None


class InstantIdStylizer:
    """Paints the customer's face in a style with SDXL + InstantID (GPU)."""

    name = "instantid-diffusers"

    def __init__(
        self,
        model_dir: str | Path,
        faces: FaceAnalyzer,
        *,
        device: str = "cuda",
        dtype: str = "float16",
        steps: int = 30,
        resolution: int = 1024,
        min_face_score: float = 0.5,
        embedding_norm: float | None = RAW_ARCFACE_NORM,
    ):
        self.model_dir = Path(model_dir).expanduser()
        self.faces = faces
        self.device, self.dtype = device, dtype
        self.steps, self.resolution = steps, resolution
        self.min_face_score = min_face_score
        self.embedding_norm = embedding_norm
        self.version = (
            f"sdxl+instantid {self.model_dir.name} (diffusers {package_version('diffusers')}; "
            f"{steps} steps at {resolution} px; faces: {faces.name} {faces.version})"
        )

    def pipeline(self):
        """The loaded pipeline (the first call loads it; the process keeps it)."""
        from photogen_pipelines.engines.instantid import load_instantid

        return load_instantid(self.model_dir, self.dtype, self.device)

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        """Paint an RGB uint8 portrait in a style; the output has the input's size."""
        import torch

        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be within (0, 1], got {strength}")
        style = diffusion_params(params)
        embedding, kps = self.identity(rgb)
        height, width = rgb.shape[:2]
        work_w, work_h = working_size(width, height, self.resolution)
        photo = Image.fromarray(rgb).resize((work_w, work_h), Image.LANCZOS)
        seed = style.seed if style.seed is not None else content_seed(rgb, params, strength)
        with _GENERATION_LOCK:
            pipe = self.pipeline()
            pipe.use_style_lora(style.lora, style.lora_scale)
            picture = pipe(
                style.prompt,
                embedding,
                kps * [work_w / width, work_h / height],
                negative_prompt=style.negative_prompt,
                height=work_h,
                width=work_w,
                num_inference_steps=max(self.steps, math.ceil(1.0 / strength)),  # at least one step runs
                guidance_scale=style.guidance_scale,
                ip_adapter_scale=style.ip_adapter_scale,
                controlnet_conditioning_scale=style.controlnet_conditioning_scale,
                generator=[torch.Generator().manual_seed(seed)],  # on the CPU: the same noise on any GPU
                image=photo,
                strength=strength,
            ).images[0]
        return np.asarray(picture.convert("RGB").resize((width, height), Image.LANCZOS))

    def identity(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The largest face's ArcFace embedding (at InstantID's scale) and 5 keypoints."""
        found = self.faces.detect(rgb, min_score=self.min_face_score)
        if not found:
            raise ModelError(f"{self.faces.name} found no face in the portrait to condition InstantID on")
        face = max(found, key=lambda f: f.box.w * f.box.h)
        embedding = np.asarray(self.faces.embed(rgb, face), dtype=np.float32).ravel()
        if embedding.size != FACE_EMBED_DIM:
            raise ModelError(
                f"InstantID needs a {FACE_EMBED_DIM}-d ArcFace embedding; {self.faces.name} gives {embedding.size}-d "
                "(configure the diffusers style backend with the insightface face analyzer)"
            )
        if self.embedding_norm:
            embedding *= self.embedding_norm / (np.linalg.norm(embedding) + 1e-12)
        return embedding, np.asarray(face.landmarks, dtype=np.float64).reshape(5, 2)


def diffusion_params(params: dict) -> DiffusionStyleParams:
    if not params.get("prompt"):
        raise ModelError(
            "the style has no diffusion prompt: the diffusers backend needs the style's `diffusion` parameters "
            f"(prompt, ...), got only {sorted(params)}"
        )
    try:
        return DiffusionStyleParams.model_validate({k: v for k, v in params.items() if v is not None})
    except ValidationError as exc:
        raise ModelError(f"invalid diffusion style parameters: {exc}") from exc


def working_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The generation size: `long_side` on the long side, both sides multiples of 64."""
    scale = long_side / max(width, height)
    return tuple(max(SIDE_MULTIPLE, round(side * scale / SIDE_MULTIPLE) * SIDE_MULTIPLE) for side in (width, height))


def content_seed(rgb: np.ndarray, params: dict, strength: float) -> int:
    """A seed that is a function of what is generated: the same call, the same picture."""
    digest = hashlib.sha256(np.ascontiguousarray(rgb).tobytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(f"{strength:.6f}".encode())
    return int.from_bytes(digest.digest()[:4], "big")
