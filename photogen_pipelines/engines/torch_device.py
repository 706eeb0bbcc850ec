"""Where a torch engine runs and in which precision: one rule for every GPU engine."""

from __future__ import annotations

import torch

from photogen_pipelines.errors import ModelError

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def select_device_dtype(
    device: str = "auto", dtype: str = "auto", *, cuda_available: bool | None = None
) -> tuple[torch.device, torch.dtype]:
    """device auto: cuda when there is one, else cpu. dtype auto: fp16 on cuda (the tensor
    cores' type), fp32 elsewhere; fp32, fp16 or bf16 can be set instead."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    try:
        dev = torch.device(("cuda" if cuda_available else "cpu") if device == "auto" else device)
    except RuntimeError as exc:
        raise ValueError(f"unknown torch device {device!r}") from exc
    if dev.type == "cuda" and not cuda_available:
        raise ModelError(f"device {device!r} configured, but torch {torch.__version__} sees no CUDA GPU")
    if dtype == "auto":
        return dev, torch.float16 if dev.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown torch dtype {dtype!r}; known: auto, {', '.join(DTYPES)}")
    return dev, DTYPES[dtype]
