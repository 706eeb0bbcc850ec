"""The production stylizer: SDXL + InstantID (engines/instantid.py) behind `Stylizer`.

How `stages.render_candidates` maps onto InstantID (`stylize_variants(portrait, params,
strength, seeds)`; `stylize` is the one-seed case):

- the picture: the stylizer's own face analyzer (insightface: SCRFD + ArcFace, the
  512-d embedding InstantID was trained on) finds the customer's face in it. Its
  embedding is the identity, its five keypoints pose IdentityNet, and the picture
  itself is where denoising starts (img2img).
- `strength`: how much of the denoising schedule is re-run over the photo (1.0 starts
  from noise). The identity gate's retry multiplies it by `retry_decay`, which keeps
  more of the photo and so more of the face, as it does for the embedded engine.
- `params`: the style's `diffusion` section (`catalog.DiffusionStyleParams`: prompt,
  negative prompt, adapter and IdentityNet weights, optional LoRA).
- the seeds: one picture per seed. Variants of an order differ by their seed only (not
  by framing, as the embedded engine's do), so a round's variants share the picture,
  the face and the strength and go through the pipeline as one batch (as large as the
  memory profile allows). Each image has its own generator: its pixels do not depend
  on the batch it was in. `stylize` (no seed argument) seeds with a digest of its inputs.

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
from pydantic import ValidationError

from photogen_pipelines.catalog import DiffusionStyleParams
from photogen_pipelines.engines.base import FaceAnalyzer, package_version
from photogen_pipelines.errors import ModelError

FACE_EMBED_DIM = 512
SIDE_MULTIPLE = 64  # SDXL: latents a multiple of 8 after the VAE's 8x
# InstantID read insightface's raw ArcFace output (`face.embedding`, components of std
# about 1, so a norm about sqrt(512)); the analyzers here hand out unit vectors.
RAW_ARCFACE_NORM = math.sqrt(FACE_EMBED_DIM)
_GENERATION_LOCK = threading.Lock()  # one pipeline per process is shared: one generation at a time


class InstantIdStylizer:
    """Paints the customer's face in a style with SDXL + InstantID (GPU)."""

    name = "instantid-diffusers"
    params_section = "diffusion"

    def __init__(
        self,
        model_dir: str | Path,
        faces: FaceAnalyzer,
        *,
        device: str = "auto",
        profile: str = "auto",
        dtype: str | None = None,
        vae: str = "sdxl",
        steps: int = 30,
        resolution: int = 1024,
        min_face_score: float = 0.5,
        embedding_norm: float | None = RAW_ARCFACE_NORM,
    ):
        """`profile`: a memory profile (memory_profiles.PROFILES, or auto); `dtype`
        instead puts the whole pipeline on `device` in that precision (tests)."""
        self.model_dir = Path(model_dir).expanduser()
        self.faces = faces
        self.device, self.profile, self.dtype, self.vae = device, profile, dtype, vae
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

        if self.dtype is not None:
            return load_instantid(self.model_dir, self.dtype, self.device, vae=self.vae)
        return load_instantid(self.model_dir, device=self.device, profile=self.profile, vae=self.vae)

    def load(self) -> None:
        """Load the pipeline now rather than at the first order (the warm service's readiness)."""
        with _GENERATION_LOCK:
            self.pipeline()

    def load_style(self, params: dict) -> None:
        """Load the style's LoRA, if it has one, so its orders find it resident."""
        if lora := diffusion_params(params).lora:
            with _GENERATION_LOCK:
                self.pipeline().load_style_lora(lora)

    def unload_style(self, params: dict) -> None:
        if lora := diffusion_params(params).lora:
            with _GENERATION_LOCK:
                self.pipeline().unload_style_lora(lora)

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        """Paint an RGB uint8 portrait in a style; the output has the input's size."""
        return self.stylize_variants(rgb, params, strength, [content_seed(rgb, params, strength)])[0]

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        """One picture per seed of the same portrait, in batches as large as the memory
        profile allows; each picture depends on its seed only, not on its batch."""
        import torch

        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be within (0, 1], got {strength}")
        style = diffusion_params(params)
        embedding, kps = self.identity(rgb)
        height, width = rgb.shape[:2]
        work_w, work_h = working_size(width, height, self.resolution)
        photo = Image.fromarray(rgb).resize((work_w, work_h), Image.LANCZOS)
        pictures = []
        with _GENERATION_LOCK:
            pipe = self.pipeline()
            pipe.use_style_lora(style.lora, style.lora_scale)
            batch = pipe.memory_profile.max_batch
            for start in range(0, len(seeds), batch):
                chunk = seeds[start : start + batch]
                pictures += pipe(
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
                    num_images_per_prompt=len(chunk),
                    # on the CPU: the same noise on any GPU, and per image, so batching changes nothing
                    generator=[torch.Generator().manual_seed(seed) for seed in chunk],
                    image=photo,
                    strength=strength,
                ).images
        return [np.asarray(p.convert("RGB").resize((width, height), Image.LANCZOS)) for p in pictures]

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
    """The style's `diffusion` section, checked (the engine reads only that section)."""
    if not params.get("prompt"):
        raise ModelError(
            "the style has no diffusion prompt: the diffusers backend needs the style's `diffusion` parameters "
            f"(prompt, ...), got only {sorted(params)}"
        )
    try:
        fields = DiffusionStyleParams.model_fields
        return DiffusionStyleParams.model_validate({k: v for k, v in params.items() if v is not None and k in fields})
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
