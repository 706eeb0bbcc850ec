"""Tiny random-weight SDXL + InstantID models, written in the production layout.

The GPU engine is tested on CPU through its real code path (the same pipeline class,
the same loader): only the models are smaller. `write_tiny_instantid(model_dir)` writes

    model_dir/sdxl/            a diffusers SDXL folder (UNet, two CLIP text encoders and
                               their tokenizers, VAE, Euler scheduler)
    model_dir/controlnet/      an IdentityNet-shaped ControlNet (diffusers format)
    model_dir/ip-adapter.bin   InstantID's face adapter in InstantID's key layout:
                               {"image_proj": Resampler, "ip_adapter": to_k_ip/to_v_ip}

Every weight is random but seeded, so the same seed writes the same models; the files
total about 3 MB. The tokenizers are built from an in-memory byte-level vocabulary, so
nothing is fetched from anywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

FACE_EMBED_DIM = 512  # insightface ArcFace (antelopev2), what InstantID was trained on
FACE_TOKENS = 16  # InstantID's Resampler num_queries
TEXT_HIDDEN = 32  # each text encoder's width; the UNet's cross-attention dim is their sum
TIME_EMBED_DIM = 8  # SDXL's addition_time_embed_dim (256 in the real model)
RESAMPLER_DEPTH = 4  # as InstantID (diffusers' converter expects 4 blocks)
RESAMPLER_DIM_HEAD = 64  # as InstantID (diffusers' converter infers heads = rows / 64)
RESAMPLER_FF_MULT = 4


def write_tiny_instantid(model_dir: str | Path, seed: int = 0) -> Path:
    """Write tiny random-weight SDXL + IdentityNet + face adapter into `model_dir`."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        pipe = _tiny_sdxl()
        controlnet = _tiny_controlnet(pipe.unet)
        adapter = face_adapter_state_dict(pipe.unet, torch.Generator().manual_seed(seed))
    pipe.save_pretrained(model_dir / "sdxl")
    controlnet.save_pretrained(model_dir / "controlnet")
    torch.save(adapter, model_dir / "ip-adapter.bin")
    return model_dir


def _tiny_sdxl() -> StableDiffusionXLPipeline:
    cross_attention_dim = 2 * TEXT_HIDDEN
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=cross_attention_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        # six micro-conditioning numbers (sizes, crop) plus text_encoder_2's pooled projection
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT_HIDDEN,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),  # four blocks: 8x downsampling, like SDXL's VAE
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.13025,  # SDXL's
        force_upcast=True,
    )
    scheduler = EulerDiscreteScheduler(  # SDXL base's scheduler settings
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    tokenizer = _tiny_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,  # SDXL reads the penultimate layer
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=TEXT_HIDDEN,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=_tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def _tiny_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """IdentityNet's shape: a ControlNet copied from the UNet. An untrained ControlNet
    outputs nothing (its "zero convolutions") and PyTorch's default init fades the
    keypoint picture away over the eight convolutions that read it, so both get random
    weights that carry a signal: the tests can then see the keypoints move the picture."""
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 16))
    condition = controlnet.controlnet_cond_embedding
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    with torch.no_grad():
        for conv in [condition.conv_in, *condition.blocks, condition.conv_out]:
            conv.weight.normal_(0.0, (2.0 / conv.weight[0].numel()) ** 0.5)  # He init: SiLU keeps the scale
        for conv in zero_convs:
            conv.weight.normal_(0.0, conv.weight[0].numel() ** -0.5)
    return controlnet


def _tiny_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE with single-byte tokens only: every prompt tokenizes."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    symbols = list(bytes_to_unicode().values())
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def face_adapter_state_dict(
    unet: UNet2DConditionModel, generator: torch.Generator, hidden_dim: int = 32, *, heads: int = 1
) -> dict:
    """Random weights in InstantID's `ip-adapter.bin` layout, sized for `unet`.

    `image_proj` holds InstantID's Resampler (ip_adapter/resampler.py): learned query
    `latents`, `proj_in`, `proj_out`, `norm_out`, and per layer a PerceiverAttention
    (`norm1`, `norm2`, `to_q`, `to_kv`, `to_out`) and a FeedForward (`1.0` LayerNorm,
    `1.1` and `1.3` Linear). `ip_adapter` holds `to_k_ip`/`to_v_ip` of every cross-
    attention processor, numbered by the processor's index in `unet.attn_processors`
    (InstantID loads them into a ModuleList of all processors, so they are odd numbers).
    `hidden_dim` and `heads` size the Resampler: InstantID's is 1280 wide with 20 heads.
    """

    def linear(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=generator) * cols**-0.5

    def layer_norm(prefix: str, dim: int) -> dict:
        return {f"{prefix}.weight": torch.ones(dim), f"{prefix}.bias": torch.zeros(dim)}

    out_dim = unet.config.cross_attention_dim
    inner = heads * RESAMPLER_DIM_HEAD  # InstantID: 20 heads of 64 over dim 1280
    proj = {
        "latents": torch.randn(1, FACE_TOKENS, hidden_dim, generator=generator) / hidden_dim**0.5,
        "proj_in.weight": linear(hidden_dim, FACE_EMBED_DIM),
        "proj_in.bias": torch.zeros(hidden_dim),
        "proj_out.weight": linear(out_dim, hidden_dim),
        "proj_out.bias": torch.zeros(out_dim),
        **layer_norm("norm_out", out_dim),
    }
    for i in range(RESAMPLER_DEPTH):
        proj |= layer_norm(f"layers.{i}.0.norm1", hidden_dim) | layer_norm(f"layers.{i}.0.norm2", hidden_dim)
        proj[f"layers.{i}.0.to_q.weight"] = linear(inner, hidden_dim)
        proj[f"layers.{i}.0.to_kv.weight"] = linear(2 * inner, hidden_dim)
        proj[f"layers.{i}.0.to_out.weight"] = linear(hidden_dim, inner)
        proj |= layer_norm(f"layers.{i}.1.0", hidden_dim)
        proj[f"layers.{i}.1.1.weight"] = linear(RESAMPLER_FF_MULT * hidden_dim, hidden_dim)
        proj[f"layers.{i}.1.3.weight"] = linear(hidden_dim, RESAMPLER_FF_MULT * hidden_dim)

    ip_layers = {}
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            hidden_size = _block_channels(unet, name)
            ip_layers[f"{index}.to_k_ip.weight"] = linear(hidden_size, out_dim)
            ip_layers[f"{index}.to_v_ip.weight"] = linear(hidden_size, out_dim)
    return {"image_proj": proj, "ip_adapter": ip_layers}


def _block_channels(unet: UNet2DConditionModel, processor_name: str) -> int:
    channels = list(unet.config.block_out_channels)
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block = int(processor_name.split(".")[1])
    return channels[::-1][block] if processor_name.startswith("up_blocks") else channels[block]
