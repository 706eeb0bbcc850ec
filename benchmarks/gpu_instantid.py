"""GPU benchmark of the production engine: SDXL + InstantID per memory profile, and the torch
Real-ESRGAN x4plus upscale.

    python -m benchmarks.gpu_instantid [--profiles high,medium,low,high-bf16] [--steps 30]
        [--batch 4] [--size 1024] [--repeats 3] [--out results.json] [--models-dir DIR]
    python -m benchmarks.gpu_instantid --tiny                    # the same code on the CPU, in seconds
    python -m benchmarks.gpu_instantid --check-full-size-on-cpu  # full-size models, one step on the CPU

What is measured, per memory profile (`engines/memory_profiles.py`): the models are loaded
through the production loader (`instantid.load_instantid(dir, device="cuda", profile=name)`),
then one warm-up generation and `--repeats` generations of `--batch` images at `--size`²
with `--steps` Euler steps, split into batches of the profile's `max_batch` as the stylizer
does. Every generation runs what an order runs: both text encoders, the face Resampler,
IdentityNet (the ControlNet) and the UNet with its face-attention at every step, classifier-
free guidance (so each step sees twice the batch), the VAE decode and the conversion to
pictures. Reported: load seconds, median seconds per batch and per image, peak GPU memory
(allocated and reserved) and the process's peak resident memory (offloading profiles keep
the weights there). Then the upscale: a x4plus-size RRDBNet through `TorchRealEsrgan`,
`--upscale-size`² to 4x, per tile size.

Why random weights are fine: the time and memory of a forward pass depend on the shapes of
the tensors, not their values (no data-dependent branches, no sparsity), so SDXL base, CLIP
ViT-L and bigG, the SDXL VAE, IdentityNet, InstantID's face adapter and x4plus are built at
their published sizes with random weights (the real files cannot be downloaded here). The
pictures are noise. The tokenizers are tiny_sdxl's byte-level one: prompts are padded to 77
tokens anyway, so the text encoders do the same work as with CLIP's 49408-token vocabulary
(their embedding tables keep the full size).

The models are written once (~10 GB in float16) to `--models-dir` in the production layout
(`sdxl/`, `controlnet/`, `ip-adapter.bin`) and reused by later runs given the same folder.
`--tiny` runs the same code on the CPU with tiny_sdxl's models and the `cpu` profile, so the
script is checked without a GPU; `--check-full-size-on-cpu` writes the full-size models,
loads them in bfloat16 on the CPU and runs one 256² step, to check the shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import accelerate
import diffusers
import numpy as np
import PIL.Image
import torch
import transformers
from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from benchmarks.demo_order import machine
from photogen_pipelines.devtools.tiny_sdxl import FACE_EMBED_DIM, _tiny_tokenizer, face_adapter_state_dict, write_tiny_instantid
from photogen_pipelines.engines.instantid import (
    IP_ADAPTER_FILE,
    clear_instantid_cache,
    load_instantid,
    missing_instantid_files,
)
from photogen_pipelines.engines.memory_profiles import MemoryProfile
from photogen_pipelines.engines.upscale_torch import RRDBNet, TorchRealEsrgan, tile_windows
from photogen_pipelines.errors import ModelError

GIB = 1024**3
PROMPT = "an oil painting portrait of a person, thick brush strokes, warm palette, museum lighting"
NEGATIVE_PROMPT = "photo, blurry, deformed, extra fingers, text, watermark"
# insightface's five keypoints (eyes, nose tip, mouth corners; image left first) of a
# centred, upright face, as fractions of the picture's side
FACE_LAYOUT = ((0.38, 0.40), (0.62, 0.40), (0.50, 0.53), (0.41, 0.66), (0.59, 0.66))

# stabilityai/stable-diffusion-xl-base-1.0's configs (unet/, vae/, scheduler/,
# text_encoder/, text_encoder_2/); what is left out is diffusers' or transformers' default
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 6 x 256 (sizes, crop) + 1280 (bigG's pooled text)
}
SDXL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
SDXL_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "use_karras_sigmas": False,
}
CLIP_L_TEXT = {  # openai/clip-vit-large-patch14's text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
CLIP_BIGG_TEXT = {  # OpenCLIP ViT-bigG/14's text tower, with its projection
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
SDXL_MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
RESAMPLER_WIDTH, RESAMPLER_HEADS = 1280, 20  # InstantID's Resampler: dim 1280, 20 heads of 64
# saving copies a shard in memory before writing it: small shards keep the writer's peak
# near the size of the model it holds
MAX_SHARD = "2GB"
MARKER = "benchmark-models.json"  # what the folder holds, so a later run can reuse it
X4PLUS = {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}
TINY_RRDBNET = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
UPSCALE_FILES = {"full": "RealESRGAN_x4plus_random.pth", "tiny": "RRDBNet_tiny_random.pth"}
# the check's placement: float16 on the CPU is slow and float32 would need ~20 GB
CPU_BF16 = MemoryProfile("cpu-bf16", "bf16", "none", vae_tiling=False, vae_slicing=False, max_batch=4)


@dataclass
class Settings:
    """One benchmark run: the models, where they run and the work timed."""

    mode: str  # gpu, tiny or check
    device: str
    profiles: list[str]
    size: int
    steps: int
    batch: int
    repeats: int
    warmup_steps: int  # the warm-up generation's steps (0: none); shapes, not steps, warm up kernels
    strength: float  # < 1: img2img from a photo, as orders run; only that share of the steps runs
    output_type: str
    upscale_size: int
    upscale_tiles: list[int]
    upscale_batch: int
    upscale_tile_pad: int


MODE_DEFAULTS = {
    "gpu": {
        "profiles": "high,medium,low,high-bf16",
        "size": 1024,
        "steps": 30,
        "batch": 4,
        "repeats": 3,
        "warmup_steps": 2,
        "upscale_size": 1024,
        "upscale_tiles": "512,256",
        "upscale_batch": 4,
        "upscale_tile_pad": 16,
    },
    "tiny": {
        "profiles": "cpu",
        "size": 64,
        "steps": 2,
        "batch": 2,
        "repeats": 3,
        "warmup_steps": 1,
        "upscale_size": 64,
        "upscale_tiles": "32,16",
        "upscale_batch": 4,
        "upscale_tile_pad": 4,
    },
    "check": {
        "profiles": CPU_BF16.name,
        "size": 256,
        "steps": 1,
        "batch": 1,
        "repeats": 1,
        "warmup_steps": 0,  # a 256² step takes half a minute on two CPU cores: time the only run
        "upscale_size": 128,
        "upscale_tiles": "",
        "upscale_batch": 4,
        "upscale_tile_pad": 16,
    },
}


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--tiny", action="store_true", help="tiny models on the CPU (checks the script)")
    modes.add_argument("--check-full-size-on-cpu", action="store_true", help="full-size models in bf16 on the CPU, one 256² step")
    parser.add_argument("--profiles", help="memory profiles, comma-separated (default high,medium,low,high-bf16)")
    parser.add_argument("--size", type=int, help="picture side in px (default 1024)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 30)")
    parser.add_argument("--batch", type=int, help="pictures per timed round, split by the profile's max_batch (default 4)")
    parser.add_argument("--repeats", type=int, help="timed rounds per profile (default 3)")
    parser.add_argument("--warmup-steps", type=int, help="steps of the untimed warm-up generation, 0 for none (default 2)")
    parser.add_argument("--strength", type=float, default=1.0, help="< 1: img2img from a photo (default 1: from noise)")
    parser.add_argument("--upscale-size", type=int, help="upscale input side in px (default 1024)")
    parser.add_argument("--upscale-tiles", help="tile sizes to time, comma-separated; empty skips (default 512,256)")
    parser.add_argument("--upscale-batch", type=int, help="tiles per forward pass (default 4)")
    parser.add_argument("--upscale-tile-pad", type=int, help="context px around each tile (default 16)")
    parser.add_argument("--models-dir", help="where the models are written, or found from an earlier run (default: a temp dir)")
    parser.add_argument("--out", help="write the results as JSON here (after every profile, so a cut-off run keeps them)")
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "check" if args.check_full_size_on_cpu else "gpu"
    chosen = {key: value if getattr(args, key) is None else getattr(args, key) for key, value in MODE_DEFAULTS[mode].items()}
    settings = Settings(
        mode=mode,
        device="cuda" if mode == "gpu" else "cpu",
        profiles=comma_list(chosen["profiles"]),
        size=chosen["size"],
        steps=chosen["steps"],
        batch=chosen["batch"],
        repeats=chosen["repeats"],
        warmup_steps=chosen["warmup_steps"],
        strength=args.strength,
        # the check looks at the pixels' values; the benchmark makes pictures, as orders do
        output_type="np" if mode == "check" else "pil",
        upscale_size=chosen["upscale_size"],
        upscale_tiles=[int(tile) for tile in comma_list(chosen["upscale_tiles"])],
        upscale_batch=chosen["upscale_batch"],
        upscale_tile_pad=chosen["upscale_tile_pad"],
    )
    return settings, args


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


# -- writing the models ----------------------------------------------------------------


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build modules directly in `dtype`: a float32 SDXL UNet alone would take 10 GB."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model(model, folder: Path) -> int:
    model.save_pretrained(folder, max_shard_size=MAX_SHARD)
    return parameter_count(model)


def text_encoder_config(sizes: dict, tokenizer) -> CLIPTextConfig:
    # the pooled output is read at the end-of-text token: the config must know its id
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    return CLIPTextConfig(**sizes, **ids)


def write_full_size_instantid(model_dir: Path, dtype: torch.dtype = torch.float16, seed: int = 0) -> dict[str, int]:
    """SDXL base + IdentityNet + InstantID's face adapter at their published sizes, random
    weights, written in the production layout. Components are built, saved and dropped one
    after another (the UNet lives until IdentityNet and the adapter, shaped after it, are
    written), so the peak is the UNet and IdentityNet together: ~7.5 GB in float16.
    Returns each component's parameter count."""
    sdxl = model_dir / "sdxl"
    counts = {}
    with torch.random.fork_rng(devices=[]), default_dtype(dtype):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**SDXL_UNET)
        counts["unet"] = save_model(unet, sdxl / "unet")
        adapter = face_adapter_state_dict(unet, torch.Generator().manual_seed(seed), RESAMPLER_WIDTH, heads=RESAMPLER_HEADS)
        counts["face_adapter"] = sum(t.numel() for part in adapter.values() for t in part.values())
        torch.save(adapter, model_dir / IP_ADAPTER_FILE)
        del adapter
        counts["controlnet"] = save_model(ControlNetModel.from_unet(unet), model_dir / "controlnet")  # IdentityNet's shape
        del unet
        gc.collect()
        tokenizer = _tiny_tokenizer()
        counts["text_encoder"] = save_model(CLIPTextModel(text_encoder_config(CLIP_L_TEXT, tokenizer)), sdxl / "text_encoder")
        counts["text_encoder_2"] = save_model(
            CLIPTextModelWithProjection(text_encoder_config(CLIP_BIGG_TEXT, tokenizer)), sdxl / "text_encoder_2"
        )
        counts["vae"] = save_model(AutoencoderKL(**SDXL_VAE), sdxl / "vae")
    for name in ("tokenizer", "tokenizer_2"):
        _tiny_tokenizer().save_pretrained(sdxl / name)
    EulerDiscreteScheduler(**SDXL_SCHEDULER).save_pretrained(sdxl / "scheduler")
    index = {**SDXL_MODEL_INDEX, "_diffusers_version": diffusers.__version__}
    (sdxl / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return counts


def prepare_models(model_dir: Path, kind: str) -> dict:
    """Write the models (`full` or `tiny`) into `model_dir`, unless an earlier run left them."""
    marker = model_dir / MARKER
    if marker.is_file():
        written = json.loads(marker.read_text())
        if written.get("kind") != kind:  # writing over them would leave files of both sizes
            sys.exit(f"{model_dir} holds {written.get('kind')} models, not {kind} ones: give another --models-dir")
        if not missing_instantid_files(model_dir):
            log(f"models: reusing the {kind} models in {model_dir}")
            return {**written, "reused": True}
    log(f"models: writing {kind} random-weight models to {model_dir}")
    start = time.perf_counter()
    counts = write_full_size_instantid(model_dir) if kind == "full" else {}
    if kind == "tiny":
        write_tiny_instantid(model_dir)
    written = {
        "kind": kind,
        "dtype": "fp16" if kind == "full" else "fp32",
        "write_s": round(time.perf_counter() - start, 1),
        "disk_gib": round(sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / GIB, 2),
        "parameters": counts,
    }
    marker.write_text(json.dumps(written, indent=2) + "\n")
    log(f"models: written in {written['write_s']} s, {written['disk_gib']} GiB")
    return {**written, "reused": False}


# -- measuring -------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Return what the previous profile held, and start the peaks afresh."""
    clear_instantid_cache()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):  # "5" resets the kernel's peak-RSS mark (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def host_memory_gib() -> dict[str, float]:
    """This process's resident memory now and at its peak since the last free_memory."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in status}
    return {"rss_gib": round(kib.get("VmRSS", 0) / 2**20, 2), "peak_rss_gib": round(kib.get("VmHWM", 0) / 2**20, 2)}


def gpu_memory_gib(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / GIB, 2),
    }


def component_parameters(pipe) -> dict[str, int]:
    """Parameter counts of the loaded pipeline; the face adapter (Resampler and the face
    attention's to_k_ip/to_v_ip, loaded into the UNet) counted apart from the UNet."""
    unet = pipe.unet
    processors = [p for p in unet.attn_processors.values() if isinstance(p, torch.nn.Module)]
    adapter = parameter_count(unet.encoder_hid_proj) + sum(parameter_count(p) for p in processors)
    counts = {"unet": parameter_count(unet) - adapter, "face_adapter": adapter}
    for name in ("controlnet", "text_encoder", "text_encoder_2", "vae"):
        counts[name] = parameter_count(getattr(pipe, name))
    return counts


def generation_inputs(settings: Settings, seed: int = 0) -> dict:
    """A face (a random 512-d embedding at the scale of insightface's raw ArcFace output,
    norm ~sqrt(512)), its keypoints, and for img2img a starting photo (noise)."""
    rng = np.random.default_rng(seed)
    size = settings.size
    photo = None
    if settings.strength < 1.0:
        photo = PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return {
        "face_embeds": rng.standard_normal(FACE_EMBED_DIM).astype(np.float32),
        "face_kps": np.asarray(FACE_LAYOUT) * size,
        "image": photo,
        "strength": settings.strength,
        "height": size,
        "width": size,
    }


def batches(total: int, max_batch: int) -> list[int]:
    """`total` pictures in batches of at most `max_batch`, as the stylizer splits them."""
    return [min(max_batch, total - start) for start in range(0, total, max_batch)]


def generate(pipe, inputs: dict, sizes: list[int], steps: int, output_type: str, device: torch.device) -> list:
    """One round: every batch through the pipeline, one CPU generator per picture (as the
    stylizer seeds them). Returns the pictures."""
    steps = max(steps, math.ceil(1.0 / inputs["strength"]))  # as the stylizer: img2img runs at least one step
    pictures, seed = [], 0
    for size in sizes:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(size)]
        seed += size
        out = pipe(
            PROMPT,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=steps,
            num_images_per_prompt=size,
            generator=generators,
            output_type=output_type,
            **inputs,
        )
        pictures.extend(out.images)
    sync(device)
    return pictures


def all_finite(pictures: list) -> bool | None:
    """Whether the random weights kept every pixel finite (float16 can overflow); None for
    PIL pictures, where NaNs are already cast away."""
    if not pictures or not isinstance(pictures[0], np.ndarray):
        return None
    return bool(all(np.isfinite(p).all() for p in pictures))


def resolve(name: str) -> str | MemoryProfile:
    return CPU_BF16 if name == CPU_BF16.name else name


def benchmark_profile(model_dir: Path, name: str, settings: Settings, device: torch.device) -> dict:
    """Load the pipeline with one memory profile, warm it up, time the rounds."""
    free_memory(device)
    result: dict = {"profile": name}
    pipe = None
    try:
        log(f"{name}: loading")
        start = time.perf_counter()
        pipe = load_instantid(model_dir, device=settings.device, profile=resolve(name))
        sync(device)
        result["load_s"] = round(time.perf_counter() - start, 2)
        profile: MemoryProfile = pipe.memory_profile
        result["setup"] = profile.describe()
        result["parameters"] = component_parameters(pipe)
        result["after_load"] = {**host_memory_gib(), **gpu_memory_gib(device)}
        if device.type == "cuda":
            result["after_load"]["allocated_gib"] = round(torch.cuda.memory_allocated(device) / GIB, 2)
        sizes = batches(settings.batch, profile.max_batch)
        result["batches"] = sizes
        inputs = generation_inputs(settings)
        if settings.warmup_steps:
            log(f"{name}: warm-up, {settings.warmup_steps} steps, batches {sizes}")
            start = time.perf_counter()
            pictures = generate(pipe, inputs, sizes, settings.warmup_steps, "np", device)
            result["warmup_s"] = round(time.perf_counter() - start, 2)
            result["warmup_finite"] = all_finite(pictures)
        samples = []
        for repeat in range(settings.repeats):
            log(f"{name}: round {repeat + 1}/{settings.repeats}, {settings.batch} pictures, {settings.steps} steps")
            start = time.perf_counter()
            pictures = generate(pipe, inputs, sizes, settings.steps, settings.output_type, device)
            samples.append(time.perf_counter() - start)
        assert len(pictures) == settings.batch, f"{len(pictures)} pictures for a batch of {settings.batch}"
        median = statistics.median(samples)
        result |= {
            "samples_s": [round(s, 3) for s in samples],
            "median_s": round(median, 3),
            "per_image_s": round(median / settings.batch, 3),
            "finite": all_finite(pictures),
            "peak": {**host_memory_gib(), **gpu_memory_gib(device)},
        }
        log(f"{name}: median {median:.2f} s per {settings.batch} pictures")
    except (torch.OutOfMemoryError, ModelError, RuntimeError, ValueError) as exc:
        # one profile that does not fit must not cost the others' numbers
        result["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        result["peak"] = {**host_memory_gib(), **gpu_memory_gib(device)}
        log(f"{name}: FAILED {result['error']}")
    finally:
        del pipe
        free_memory(device)
    return result


def write_rrdbnet(path: Path, sizes: dict) -> None:
    """An RRDBNet with random weights in the official `{"params_ema": ...}` layout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save({"params_ema": RRDBNet(**sizes).state_dict()}, path)


def benchmark_upscale(model_dir: Path, settings: Settings, device: torch.device) -> list[dict]:
    """x4 upscale of one `upscale_size`² picture through TorchRealEsrgan (fp16 on the GPU,
    fp32 on the CPU), per tile size: warm-up, then `repeats` timed runs."""
    kind = "tiny" if settings.mode == "tiny" else "full"
    path = model_dir / UPSCALE_FILES[kind]
    if not path.is_file():
        write_rrdbnet(path, TINY_RRDBNET if kind == "tiny" else X4PLUS)
    size, pad = settings.upscale_size, settings.upscale_tile_pad
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    results = []
    for tile in settings.upscale_tiles:
        free_memory(device)
        log(f"upscale: tile {tile}, batch {settings.upscale_batch}")
        engine = TorchRealEsrgan(path, settings.device, "auto", tile=tile, tile_pad=pad, batch=settings.upscale_batch)
        engine.upscale(image, 4)  # warm-up: cuDNN picks its convolution algorithms on the first shapes
        free_memory(device)
        samples = []
        for _ in range(settings.repeats):
            start = time.perf_counter()
            out = engine.upscale(image, 4)
            sync(device)
            samples.append(time.perf_counter() - start)
        assert out.shape == (4 * size, 4 * size, 3), out.shape
        windows = tile_windows(size, tile, pad)
        tiles = len(windows) ** 2
        median = statistics.median(samples)
        results.append(
            {
                "model": engine.version,
                "input": size,
                "output": 4 * size,
                "tile": tile,
                "tile_pad": pad,
                "window": windows[0][3] - windows[0][2],
                "tiles": tiles,
                "batch": settings.upscale_batch,
                "passes": -(-tiles // settings.upscale_batch),
                "samples_s": [round(s, 3) for s in samples],
                "median_s": round(median, 3),
                "input_mp_per_s": round(size * size / 1e6 / median, 3),
                "peak": {**host_memory_gib(), **gpu_memory_gib(device)},
            }
        )
        log(f"upscale: tile {tile}: median {median:.3f} s")
    return results


# -- reporting -------------------------------------------------------------------------


def nvidia_driver() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def machine_info(device: torch.device) -> dict:
    info = {
        "host": machine(),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / GIB, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "driver": nvidia_driver(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


def markdown_table(headers: list[str], rows: list[list], text_columns: int = 1) -> str:
    """A markdown table: the first `text_columns` columns left-aligned, numbers right."""
    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(headers))) + "|"
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join("–" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


PROFILE_COLUMNS = ["profile", "setup", "load s", "median s / round", "s / picture", "min–max s", "batches"]
MEMORY_COLUMNS = ["peak GPU alloc GiB", "peak GPU reserved GiB", "peak host RSS GiB"]


def memory_cells(peak: dict) -> list:
    return [peak.get("peak_allocated_gib"), peak.get("peak_reserved_gib"), peak.get("peak_rss_gib")]


def profile_table(profiles: list[dict]) -> str:
    rows = []
    for r in profiles:
        if "error" in r:
            rows.append([r["profile"], r.get("setup"), r.get("load_s"), f"failed: {r['error'][:80]}", None, None, None])
        else:
            low, high = min(r["samples_s"]), max(r["samples_s"])
            timing = [f"{r['median_s']:.2f}", f"{r['per_image_s']:.2f}", f"{low:.2f}–{high:.2f}"]
            rows.append([r["profile"], r["setup"], r["load_s"], *timing, "+".join(map(str, r["batches"]))])
        rows[-1] += memory_cells(r.get("peak", {}))
    return markdown_table(PROFILE_COLUMNS + MEMORY_COLUMNS, rows, text_columns=2)


def upscale_table(upscales: list[dict]) -> str:
    headers = ["upscale", "tile (pad)", "windows × batch", "passes", "median s", "min–max s", "input MP/s"]
    rows = []
    for u in upscales:
        low, high = min(u["samples_s"]), max(u["samples_s"])
        rows.append(
            [
                f"{u['input']}² → {u['output']}²",
                f"{u['tile']} ({u['tile_pad']})",
                f"{u['tiles']} of {u['window']}² × {u['batch']}",
                u["passes"],
                f"{u['median_s']:.3f}",
                f"{low:.3f}–{high:.3f}",
                u["input_mp_per_s"],
                *memory_cells(u["peak"]),
            ]
        )
    return markdown_table(headers + MEMORY_COLUMNS, rows, text_columns=3)


def report(results: dict, settings: Settings) -> str:
    m = results["machine"]
    where = f"{m['gpu']} ({m['gpu_memory_gib']} GiB), driver {m['driver']}, CUDA {m['cuda']}" if "gpu" in m else "no GPU"
    lines = [
        f"machine: {where}; {m['host']}; {m['ram_gib']} GiB RAM; torch {m['torch']}, diffusers {m['diffusers']}",
        f"work: {settings.size}² px, {settings.steps} steps, strength {settings.strength}, a round of {settings.batch}"
        f" pictures, median of {settings.repeats} rounds after a {settings.warmup_steps}-step warm-up; guidance on",
        "",
        profile_table(results["profiles"]),
    ]
    counted = next((r["parameters"] for r in results["profiles"] if "parameters" in r), None)
    if counted:
        lines += ["", "parameters (loaded): " + ", ".join(f"{name} {n:,}" for name, n in counted.items())]
    if results["upscale"]:
        lines += ["", upscale_table(results["upscale"])]
    return "\n".join(lines)


def save(results: dict, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n")


@contextlib.contextmanager
def models_folder(path: str | None):
    if path:
        folder = Path(path).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="photogen-gpu-bench-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"torch {torch.__version__} sees no CUDA GPU: run with --tiny or --check-full-size-on-cpu here")
    results = {"machine": machine_info(device), "settings": asdict(settings), "models": {}, "profiles": [], "upscale": []}
    with models_folder(args.models_dir) as model_dir:
        results["models"] = prepare_models(model_dir, "tiny" if settings.mode == "tiny" else "full")
        save(results, args.out)
        for name in settings.profiles:
            results["profiles"].append(benchmark_profile(model_dir, name, settings, device))
            save(results, args.out)
        if settings.upscale_tiles:
            results["upscale"] = benchmark_upscale(model_dir, settings, device)
            save(results, args.out)
    print(report(results, settings))
    if settings.mode == "check":
        print("\nparameters (written): " + ", ".join(f"{k} {v:,}" for k, v in results["models"]["parameters"].items()))
    return 1 if any("error" in r for r in results["profiles"]) else 0


if __name__ == "__main__":
    sys.exit(main())
