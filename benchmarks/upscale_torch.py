"""Speed of the torch Real-ESRGAN engine (the production GPU upscaler) on this machine.

    .venv/bin/python benchmarks/upscale_torch.py [--size 1024] [--runs 3] [--tile 256]
        [--tile-pad 16] [--batch 4] [--device auto] [--dtype auto] [--warmup 1]

Builds a full-size x4plus RRDBNet (23 blocks, 64 features) with random weights, since the
real file cannot be downloaded here (the work per pixel is the same as with the real
weights), saves it in the official `{"params_ema": ...}` layout and loads it through
`TorchRealEsrgan`, then times `upscale` of a size x size photo to 4x: `--size 1024` is the
1024 -> 4096 proof-to-master pass. Prints the median, min and max seconds over `--runs`, the
tiling, the dtype and, on CUDA, the peak GPU memory. Record the numbers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines.engines.upscale_torch import RRDBNet, TorchRealEsrgan, tile_windows  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="input side in px (output is 4x)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (CUDA/cuDNN start-up)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--tile-pad", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    image = np.asarray(Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.LANCZOS))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "RealESRGAN_x4plus_random.pth"
        torch.manual_seed(0)
        torch.save({"params_ema": RRDBNet().state_dict()}, path)
        start = time.perf_counter()
        engine = TorchRealEsrgan(path, args.device, args.dtype, args.tile, args.tile_pad, args.batch)
        sync(engine.device)
        load_s = time.perf_counter() - start

    for _ in range(args.warmup):
        engine.upscale(image, 4)
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        out = engine.upscale(image, 4)
        sync(engine.device)
        samples.append(time.perf_counter() - start)
    assert out.shape == (args.size * 4, args.size * 4, 3)

    rows, cols = tile_windows(args.size, args.tile, args.tile_pad), tile_windows(args.size, args.tile, args.tile_pad)
    window = (rows[0][3] - rows[0][2], cols[0][3] - cols[0][2])
    tiles = len(rows) * len(cols)
    if engine.device.type == "cuda":
        where = f"{torch.cuda.get_device_name(engine.device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    else:
        where = f"{machine()}, torch {torch.__version__} CPU, {torch.get_num_threads()} threads"
    median = statistics.median(samples)
    print(f"device: {where}")
    print(
        f"model: x4plus-size RRDBNet, random weights; {engine.version}; load {load_s:.2f} s\n"
        f"tiling: tile {args.tile}, tile_pad {args.tile_pad}, {tiles} tiles of {window[1]}x{window[0]} px,"
        f" batch {args.batch} ({-(-tiles // args.batch)} forward passes)"
    )
    print(
        f"{args.size}x{args.size} -> {args.size * 4}x{args.size * 4}: median {median:.3f} s, min {min(samples):.3f} s,"
        f" max {max(samples):.3f} s over {args.runs} runs ({args.warmup} warm-up);"
        f" {args.size**2 / 1e6 / median:.3f} input MP/s"
    )
    if engine.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(engine.device) / 2**30:.2f} GiB allocated")


if __name__ == "__main__":
    main()
