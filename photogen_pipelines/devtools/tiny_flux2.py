"""Tiny random-weight FLUX.2 [klein] models, written as the production folder.

`write_tiny_flux2(folder)` saves a `Flux2KleinPipeline` with `save_pretrained`: the
production loader (engines/flux2_klein.py) reads it back with `from_pretrained`, the same
class and code path as the real 4B model, only small enough to render a picture from
several references on a CPU in well under a second:

- transformer: `Flux2Transformer2DModel`, one double- and one single-stream block, two
  heads of 16 (klein 4B: 5 + 20 blocks, 24 heads of 128), no guidance embedding (klein is
  step-distilled);
- text encoder: a 2-layer `Qwen3ForCausalLM` of hidden size 16 (klein: Qwen3-4B); the
  pipeline stacks three of its hidden states, so the transformer's text width is 3 x 16;
- VAE: `AutoencoderKLFlux2` with four blocks, so pictures are sized in multiples of 16
  exactly as with the real VAE;
- tokenizer: a byte-level BPE `Qwen2TokenizerFast` built in memory (every byte one token)
  with Qwen's chat markers and a chat template, since the pipeline formats its prompt as
  a chat; nothing is fetched from a hub.

The same seed writes the same weights.

`write_tiny_flux2_lora(pipeline_folder, path)` writes a style LoRA for that transformer
in the file format `Flux2KleinPipeline.load_lora_weights` reads (what the pipeline's own
`save_lora_weights` writes), for the engine's `loras/flux2-klein/<name>.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

TEXT_HIDDEN = 16
TEXT_LAYERS = 2
HEAD_DIM = 16
HEADS = 2
VAE_LATENT_CHANNELS = 4  # the transformer reads 2x2 patches of them: 16 channels
# Qwen's chat format, as the pipelines render a prompt (Qwen3's template, without tools)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def write_tiny_flux2(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-weight `Flux2KleinPipeline` into `folder` (a diffusers folder)."""
    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
        torch.manual_seed(seed)
        pipe = tiny_flux2_pipeline()
    pipe.save_pretrained(folder)
    return folder


def tiny_flux2_pipeline() -> Flux2KleinPipeline:
    tokenizer = byte_level_qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_HIDDEN,
            intermediate_size=32,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4 * VAE_LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=3 * TEXT_HIDDEN,  # three stacked hidden states of the text encoder
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),  # (time, height, width, sequence): sums to the head dim
        guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8),  # four blocks: 8x downsampling, like the real VAE
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=VAE_LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)  # klein's scheduler settings
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def byte_level_qwen_tokenizer(extra_special: tuple[str, ...] = ()) -> Qwen2TokenizerFast:
    """Qwen's byte-level BPE with single-byte tokens only (every text tokenizes), its chat
    markers (and `extra_special`, e.g. the vision markers) as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[*QWEN_SPECIAL_TOKENS[1:], *extra_special],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the double-stream blocks' image attention
LORA_RANK = 4


def write_tiny_flux2_lora(pipeline_folder: str | Path, path: str | Path, seed: int = 1) -> Path:
    """Save a random LoRA for the tiny transformer in `pipeline_folder` (a folder that
    `write_tiny_flux2` wrote) as the safetensors file `path`. Needs `peft`."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    transformer = Flux2Transformer2DModel.from_pretrained(Path(pipeline_folder) / "transformer")
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=list(LORA_TARGETS), init_lora_weights=True)
    transformer.add_adapter(config)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name, parameter in transformer.named_parameters():
            # peft starts B at zero (a LoRA that changes nothing until trained): a trained
            # one has non-zero B, and a zero one could not show that the LoRA is applied
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    Flux2KleinPipeline.save_lora_weights(
        path.parent,
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        weight_name=path.name,
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    return path
