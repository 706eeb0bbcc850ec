"""Qwen-Image-Edit-Plus on diffusers (`QwenImageEditPlusPipeline`; the 2509 and 2511
weights, Apache-2.0): the second reference-image model family.

Its folder is the model's diffusers folder as published (`transformer/`, `vae/`,
`text_encoder/` Qwen2.5-VL, `tokenizer/`, `processor/`, `scheduler/`), read with
`from_pretrained`. One part is loaded differently: the processor. Qwen2.5-VL's
`Qwen2VLProcessor` also holds a video processor, and transformers' video processors need
torchvision, which we do not depend on (DESIGN §2); the pipeline only ever gives it
pictures, so the loader reads the same `processor/` folder into `ImageOnlyQwenVLProcessor`
(`image_only_processor()`),
the same processor without its video half. What the stylizer shares with klein is in
engines/stylize_reference.py.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = "qwen-image-edit"
COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler")


@functools.cache
def image_only_processor():
    """`ImageOnlyQwenVLProcessor`: `Qwen2VLProcessor` for pictures only, the tokenizer and
    the image processor read from the same saved folder, without the video processor (and
    so without torchvision). Made on first use: transformers' processors import slowly, and
    checking a models folder (`missing_files`) should not wait for them."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenVLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwenVLProcessor


class QwenImageEditPlus:
    """Qwen-Image-Edit-Plus, a `stylize_reference.ReferenceModel`."""

    family = "qwen-edit"
    folder = FOLDER
    max_references = 3  # the 2509/2511 model card: best with 1 to 3 input pictures
    default_steps = 40
    tier_steps = True
    max_batch = 2
    resident_gib = 70.0  # ~58 GB in bf16 (20B transformer, 7B text encoder)

    def missing_files(self, model_dir: Path) -> list[str]:
        folder = model_dir / FOLDER
        if not (folder / "model_index.json").is_file():
            return [f"{folder}/model_index.json (Qwen-Image-Edit-2509 or -2511 as a diffusers folder)"]
        return [f"{folder / part}/" for part in COMPONENTS if not (folder / part).is_dir()]

    def from_pretrained(self, folder: Path, dtype):
        from diffusers import QwenImageEditPlusPipeline

        processor = image_only_processor().from_pretrained(folder / "processor", local_files_only=True)
        return QwenImageEditPlusPipeline.from_pretrained(folder, processor=processor, torch_dtype=dtype, local_files_only=True)

    def call_kwargs(self, pipe, style) -> dict:
        # true classifier-free guidance against the style's negative prompt
        return {"negative_prompt": style.negative_prompt, "true_cfg_scale": style.guidance_scale}

    def first_sigma(self, pipe, sigmas: np.ndarray, size: tuple[int, int], steps: int) -> float:
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_shift

        config = pipe.scheduler.config
        mu = calculate_shift(
            (size[0] // 16) * (size[1] // 16),
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
        scheduler.set_timesteps(sigmas=list(sigmas), mu=mu)
        return float(scheduler.sigmas[0])

    def start_latents(self, pipe, photo: Image.Image | None, size: tuple[int, int], sigma: float, generators: list):
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        width, height = size
        channels = pipe.latent_channels
        rows, cols = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
        device, dtype = pipe._execution_device, pipe.transformer.dtype
        # (1 picture, 1 frame, channels, rows, cols): the noise the pipeline itself would draw
        noise = [randn_tensor((1, 1, channels, rows, cols), generator=g, device=device, dtype=dtype) for g in generators]
        noise = torch.cat([pipe._pack_latents(n, 1, channels, rows, cols) for n in noise])
        if photo is None:
            return noise
        pixels = pipe.image_processor.preprocess(photo, height, width).unsqueeze(2)  # one frame
        with torch.no_grad():
            clean = pipe._encode_vae_image(pixels.to(device=device, dtype=pipe.vae.dtype), generator=None)
        clean = pipe._pack_latents(clean.to(dtype), 1, channels, rows, cols)
        return (1.0 - sigma) * clean + sigma * noise
