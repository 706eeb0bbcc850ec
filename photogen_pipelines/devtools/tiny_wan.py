"""Tiny random-weight Wan image-to-video models, written as the production folder.

`write_tiny_wan(folder, variant)` saves a `WanImageToVideoPipeline` with `save_pretrained`:
the production loader (engines/video_wan.py) reads it back with `from_pretrained`, the same
class and code path as the real model, only small enough to make a few seconds of video
on a CPU in seconds. Two variants, as Wan-AI publishes them in diffusers' layout:

- `ti2v-5b` (Wan 2.2 TI2V-5B, the default): no image encoder; the portrait's latents
  become the first latent frame (`expand_timesteps`). The VAE is the Wan 2.2 kind
  (`is_residual`, 2x2 pixel patches, 16x spatial and 4x temporal compression) and the
  published `model_index.json` names `WanPipeline` (the text-to-video class, which the
  same folder also serves): the tiny folder says so too, so the loader is tested on it.
- `i2v-14b` (Wan 2.1 I2V 14B 480P/720P): a CLIP vision encoder reads the portrait too
  (`image_encoder/`, `image_processor/`), and the transformer takes the noise, a frame
  mask and the portrait's latents stacked (2 x z + 4 channels); the VAE is the Wan 2.1
  kind (8x spatial). Its `CLIPImageProcessor` runs on the PIL backend here: torchvision is
  not installed.

Both have a one-block `WanTransformer3DModel` of two heads of 12 (the 5B: 30 blocks of
24 heads of 128), a one-layer `UMT5EncoderModel` of width 16 (the real one: umt5-xxl,
24 layers of 4096) and a Unigram `T5Tokenizer` built in memory from printable ASCII,
with nothing fetched from a hub. The same seed writes the same weights.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

VARIANTS = ("ti2v-5b", "i2v-14b")
# a few frames of 64x64 in two steps: seconds of a CPU, not minutes
ENGINE_DEFAULTS = "# tiny models: small pictures, few steps\nsteps: 2\npixels: 4096\n"
TINY_NOTICE = """\
TINY RANDOM-WEIGHT MODELS, FOR TESTS AND TRY-OUTS ONLY: their videos are noise.

Written by `photogen dev make-tiny-models --family wan-i2v` in the production layout (see
photogen_pipelines/engines/video_wan.py): wan-i2v/ is a {variant} WanImageToVideoPipeline
folder, so the living-portrait engine runs its production code path on a CPU in seconds.
For real videos put Wan-AI's diffusers folder (Wan2.2-TI2V-5B-Diffusers) in wan-i2v/.
"""
TEXT_HIDDEN = 16
LATENT_CHANNELS = 4
HEADS, HEAD_DIM = 2, 12  # rotary embedding: 4 time, 4 height, 4 width dimensions
CLIP_HIDDEN = 16
CLIP_IMAGE_SIDE = 32  # the tiny CLIP reads 32x32 crops as 16 patches of 8 px (the real one: 224 px)


def write_tiny_wan_models(directory: str | Path, variant: str = "ti2v-5b", seed: int = 0) -> Path:
    """A models folder for the Wan engine: `wan-i2v/` with the tiny pipeline, the folder's
    engine defaults (few steps, small pictures) and a notice."""
    from photogen_pipelines.engines.instantid import quiet_loading
    from photogen_pipelines.engines.models_folder import ENGINE_DEFAULTS_FILE
    from photogen_pipelines.engines.video_wan import FOLDER

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        write_tiny_wan(directory / FOLDER, variant=variant, seed=seed)
    (directory / ENGINE_DEFAULTS_FILE).write_text(ENGINE_DEFAULTS)
    (directory / "README.txt").write_text(TINY_NOTICE.format(variant=variant))
    return directory


def write_tiny_wan(folder: str | Path, variant: str = "ti2v-5b", seed: int = 0) -> Path:
    """Save a tiny random-weight `WanImageToVideoPipeline` of `variant` into `folder`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Wan variant {variant!r}; known: {', '.join(VARIANTS)}")
    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        pipe = tiny_wan_pipeline(variant)
    pipe.save_pretrained(folder)
    if variant == "ti2v-5b":
        # Wan-AI/Wan2.2-TI2V-5B-Diffusers names the text-to-video class; write what it writes
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = "WanPipeline"
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return folder


def _vae(**variant) -> AutoencoderKLWan:
    """The tiny Wan VAE; `variant`: what the Wan 2.2 VAE sets beyond Wan 2.1's."""
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
        **variant,
    )


def tiny_wan_pipeline(variant: str = "ti2v-5b") -> WanImageToVideoPipeline:
    tokenizer = tiny_umt5_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_HIDDEN,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    # Wan's own scheduler settings (the published scheduler/scheduler_config.json)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0 if variant == "ti2v-5b" else 3.0
    )
    if variant == "ti2v-5b":
        vae = _vae(
            is_residual=True,  # the Wan 2.2 VAE
            in_channels=12,  # RGB in 2x2 patches
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
        )
        transformer = _transformer(in_channels=LATENT_CHANNELS)
        return WanImageToVideoPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            expand_timesteps=True,  # the portrait is the first latent frame, kept clean
        )
    vae = _vae()
    # the noise, the 4-channel frame mask and the portrait's latents, stacked
    transformer = _transformer(in_channels=2 * LATENT_CHANNELS + 4, image_dim=CLIP_HIDDEN)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=CLIP_HIDDEN,
            intermediate_size=32,
            num_hidden_layers=2,  # the pipeline reads the next-to-last hidden state
            num_attention_heads=2,
            image_size=CLIP_IMAGE_SIDE,
            patch_size=8,
            projection_dim=CLIP_HIDDEN,
        )
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": CLIP_IMAGE_SIDE}, crop_size={"height": CLIP_IMAGE_SIDE, "width": CLIP_IMAGE_SIDE}
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        image_encoder=image_encoder,
        image_processor=image_processor,
    )


def _transformer(in_channels: int, image_dim: int | None = None) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_HIDDEN,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
        image_dim=image_dim,
        added_kv_proj_dim=HEADS * HEAD_DIM if image_dim else None,  # Wan 2.1 I2V's image cross-attention
        rope_max_seq_len=64,
    )


def tiny_umt5_tokenizer() -> T5Tokenizer:
    """A Unigram tokenizer as umt5's is (SentencePiece pieces, `▁` marking a word's start),
    over printable ASCII only: every English prompt tokenizes, one character a piece."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for char in string.ascii_letters + string.digits + string.punctuation:
        pieces += [(char, -3.0), (f"▁{char}", -3.5)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)
