"""Tiny random-weight Qwen-Image-Edit-Plus models, written as the production folder.

`write_tiny_qwen_edit(folder)` saves a `QwenImageEditPlusPipeline` with `save_pretrained`:
the production loader (engines/qwen_edit.py) reads it back with `from_pretrained`, the same
class and code path as Qwen-Image-Edit-2509/2511, only small:

- transformer: `QwenImageTransformer2DModel`, one block of two heads of 16 (the real one:
  60 blocks of 24 heads of 128);
- text encoder: `Qwen2_5_VLForConditionalGeneration` (text: 2 layers of 16; vision: one
  block of 16 that reads 14-px patches), which sees every reference photo as the real
  Qwen2.5-VL 7B does, through a `Qwen2VLProcessor`;
- the processor's image processor is capped at 56x56 px, so each reference costs the
  tiny vision encoder four tokens; its tokenizer is the byte-level one of tiny_flux2.py
  with Qwen-VL's vision markers;
- VAE: `AutoencoderKLQwenImage` with the real one's 8x downsampling (sides in multiples
  of 16), four latent channels.

The same seed writes the same weights; nothing is fetched from a hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
)
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

from photogen_pipelines.devtools.tiny_flux2 import byte_level_qwen_tokenizer
from photogen_pipelines.engines.qwen_edit import image_only_processor

TEXT_HIDDEN = 16
LATENT_CHANNELS = 4
VISION_MARKERS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")


def write_tiny_qwen_edit(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-weight `QwenImageEditPlusPipeline` into `folder` (a diffusers folder)."""
    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = tiny_qwen_edit_pipeline()
    pipe.save_pretrained(folder)
    # the published folders name transformers' Qwen2VLProcessor; the loader reads its
    # folder into the image-only one (engines/qwen_edit.py), so write what they write
    index = json.loads((folder / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return folder


def tiny_qwen_edit_pipeline() -> QwenImageEditPlusPipeline:
    tokenizer = byte_level_qwen_tokenizer(VISION_MARKERS)
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "fullatt_block_indexes": [0],
            "window_size": 56,
        },
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    processor = image_only_processor()(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_HIDDEN,
        axes_dims_rope=(4, 6, 6),  # (frame, height, width): sums to the head dim
    )
    vae = AutoencoderKLQwenImage(
        base_dim=2,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],  # three downsamplings: 8x, as the real VAE
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(  # Qwen-Image's scheduler settings
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        time_shift_type="exponential",
        use_dynamic_shifting=True,
    )
    return QwenImageEditPlusPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
