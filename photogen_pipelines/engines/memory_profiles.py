"""GPU memory profiles: how the SDXL + InstantID pipeline sits in memory.

The same engine runs on an 8 GB card (every weight in CPU memory, moved to the GPU
layer by layer with diffusers' group offloading: slow but it fits), a 16-24 GB card (whole models moved in and out as
each is needed) and a 40-80 GB card (everything resident, all proof variants in one
batch). The profile is a resource setting (`StyleEngine.memory_profile`); `auto` picks
by the card's memory.

Attention is PyTorch's scaled-dot-product attention (SDPA: flash or memory-efficient
kernels) in every profile: diffusers uses it by default with torch 2, and the face
adapter's processors (`IPAdapterAttnProcessor2_0`) are SDPA too; `attention_backends`
names the kernels the profile allows.

The VAE: SDXL's own overflows in float16, so in fp16 it is kept in float32 (~170 MB
more, decode ~2x slower); the fp16-safe VAE (madebyollin/sdxl-vae-fp16-fix, put in
`vae-fp16-fix/` next to `sdxl/`) stays in fp16. That is `StyleEngine.vae`, a config
choice independent of the profile. bf16 has float32's range and needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from photogen_pipelines.errors import ModelError

GIB = 1024**3


@dataclass(frozen=True)
class MemoryProfile:
    name: str
    dtype: Literal["fp16", "bf16", "fp32"]
    # model: diffusers' enable_model_cpu_offload; group: enable_group_offload, leaf by leaf.
    # (accelerate's sequential offload fails with transformers 5 / torch 2.13: its hook
    # rebuilds the text encoders' weights as Parameter subclasses that no longer accept it)
    offload: Literal["none", "model", "group"]
    vae_tiling: bool  # decode 1024² latents in overlapping tiles (peak memory, not speed)
    vae_slicing: bool  # decode a batch one image at a time
    max_batch: int  # proof variants generated in one denoising batch
    attention_backends: tuple[str, ...] = ("flash", "mem_efficient", "math")
    min_gpu_gib: float = 0.0  # the smallest card `auto` picks this profile for

    def describe(self) -> str:
        parts = [self.dtype, "SDPA", f"offload {self.offload}", f"batch {self.max_batch}"]
        parts += [p for p, on in (("VAE tiling", self.vae_tiling), ("VAE slicing", self.vae_slicing)) if on]
        return f"{self.name} (" + ", ".join(parts) + ")"


PROFILES: dict[str, MemoryProfile] = {
    p.name: p
    for p in (
        # 8-12 GB: only the layer being computed is on the GPU
        MemoryProfile("low", "fp16", "group", vae_tiling=True, vae_slicing=True, max_batch=1, min_gpu_gib=0),
        # 16-24 GB: UNet + IdentityNet (~7.5 GB in fp16) on the GPU, the text encoders and VAE moved in when used
        MemoryProfile("medium", "fp16", "model", vae_tiling=True, vae_slicing=True, max_batch=2, min_gpu_gib=15),
        # 40 GB and more: everything resident, every variant in one batch
        MemoryProfile("high", "fp16", "none", vae_tiling=False, vae_slicing=False, max_batch=4, min_gpu_gib=38),
        # A100/H100-class cards: bf16 needs no float32 VAE
        MemoryProfile("high-bf16", "bf16", "none", vae_tiling=False, vae_slicing=False, max_batch=4, min_gpu_gib=1e9),
        # no GPU: float32 on the CPU (tests, `photogen demo --engine diffusers` on tiny models)
        MemoryProfile("cpu", "fp32", "none", vae_tiling=False, vae_slicing=False, max_batch=4, min_gpu_gib=1e9),
    )
}


def resolve_profile(name: str, device_type: str, gpu_gib: float | None = None, device=None) -> MemoryProfile:
    """The profile called `name`; `auto` picks `cpu` without a GPU, else the largest fp16
    profile whose `min_gpu_gib` the card (`device`) meets; bf16 is chosen by name."""
    if name == "auto":
        if device_type != "cuda":
            return PROFILES["cpu"]
        if gpu_gib is None:
            gpu_gib = cuda_memory_gib(device)
        fitting = [p for p in PROFILES.values() if p.dtype == "fp16" and gpu_gib >= p.min_gpu_gib]
        return max(fitting, key=lambda p: p.min_gpu_gib)
    if name not in PROFILES:
        raise ModelError(f"unknown memory profile {name!r}; known: auto, {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if device_type != "cuda" and (profile.offload != "none" or profile.dtype == "fp16"):
        raise ModelError(f"memory profile {profile.name!r} needs a CUDA GPU; on the CPU use 'cpu'")
    return profile


def cuda_memory_gib(device=None) -> float:
    import torch

    return torch.cuda.get_device_properties(device if device is not None else 0).total_memory / GIB


def apply_profile(pipe, profile: MemoryProfile, device) -> None:
    """Place a loaded diffusers pipeline on `device` as the profile says."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.enable_flash_sdp("flash" in profile.attention_backends)
        torch.backends.cuda.enable_mem_efficient_sdp("mem_efficient" in profile.attention_backends)
        torch.backends.cuda.enable_math_sdp("math" in profile.attention_backends)
    if profile.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif profile.offload == "group":
        # CUDA streams overlap moving the next layer in with computing this one
        pipe.enable_group_offload(
            onload_device=device, offload_type="leaf_level", use_stream=device.type == "cuda", non_blocking=True
        )
    else:
        pipe.to(device)
    pipe.vae.enable_tiling() if profile.vae_tiling else pipe.vae.disable_tiling()
    pipe.vae.enable_slicing() if profile.vae_slicing else pipe.vae.disable_slicing()
