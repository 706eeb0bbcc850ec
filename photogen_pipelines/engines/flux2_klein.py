"""FLUX.2 [klein] 4B on diffusers (`Flux2KleinPipeline`): the default production stylizer's
model family (Apache-2.0; klein 9B and FLUX.2 dev are non-commercial: not loaded here).

Its folder is the model's diffusers folder as published (`transformer/`, `vae/`,
`text_encoder/` Qwen3, `tokenizer/`, `scheduler/`), read with `from_pretrained`; what the
stylizer shares with Qwen-Image-Edit is in engines/stylize_reference.py. klein reads up
to four reference pictures in context and is step-distilled (4 steps, no text guidance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = "flux2-klein"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


class Flux2Klein:
    """FLUX.2 [klein] 4B, a `stylize_reference.ReferenceModel`."""

    family = "flux2-klein"
    folder = FOLDER
    max_references = 4
    default_steps = 4  # klein is distilled to 4 steps
    tier_steps = False  # more steps than it was distilled for only take longer: a tier's are not used
    max_batch = 4
    resident_gib = 20.0  # ~13 GB in bf16, plus a batch of 2 MP latents

    def missing_files(self, model_dir: Path) -> list[str]:
        folder = model_dir / FOLDER
        if not (folder / "model_index.json").is_file():
            return [f"{folder}/model_index.json (FLUX.2 [klein] 4B as a diffusers folder)"]
        return [f"{folder / part}/" for part in COMPONENTS if not (folder / part).is_dir()]

    def from_pretrained(self, folder: Path, dtype):
        from diffusers import Flux2KleinPipeline

        return Flux2KleinPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)

    def call_kwargs(self, pipe, style) -> dict:
        # distilled: no text guidance, so no negative prompt either
        return {"text_encoder_out_layers": text_layers(pipe), "guidance_scale": 1.0}

    def first_sigma(self, pipe, sigmas: np.ndarray, size: tuple[int, int], steps: int) -> float:
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        tokens = (size[0] // 16) * (size[1] // 16)
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(sigmas=list(sigmas), mu=compute_empirical_mu(tokens, steps))
        return float(scheduler.sigmas[0])

    def start_latents(self, pipe, photo: Image.Image | None, size: tuple[int, int], sigma: float, generators: list):
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        width, height = size
        channels = pipe.transformer.config.in_channels  # 2x2 patches of the VAE's latent channels
        shape = (1, channels, height // 16, width // 16)
        device, dtype = pipe._execution_device, pipe.transformer.dtype
        noise = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dtype) for g in generators])
        if photo is None:
            return noise
        pixels = pipe.image_processor.preprocess(photo, height=height, width=width, resize_mode="crop")
        with torch.no_grad():
            clean = pipe._encode_vae_image(pixels.to(device=device, dtype=pipe.vae.dtype), generator=None).to(dtype)
        return (1.0 - sigma) * clean + sigma * noise


def text_layers(pipe) -> tuple[int, int, int]:
    """The text encoder's hidden states klein stacks: at 1/4, 1/2 and 3/4 of its depth
    (Qwen3-4B's 36 layers: 9, 18, 27, the pipeline's default; a tiny encoder's own)."""
    depth = pipe.text_encoder.config.num_hidden_layers
    return tuple(round(depth * k / 4) for k in (1, 2, 3))
