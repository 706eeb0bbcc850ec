"""GPU benchmark of the default production engine, FLUX.2 [klein] 4B (`PHOTOGEN_ENGINE=flux2-klein`):
an order's 4 proofs at 1024² and at about 2 MP, peak GPU memory, and orders per hour per GPU
through the warm engine service with the per-order overhead against GPU time.

    python -m benchmarks.gpu_engine --models-dir DIR [--sizes 1024x1024,1184x1776] [--proofs 4]
        [--repeats 5] [--style sepia_oil] [--orders 40] [--concurrency 4] [--service start|none|URL]
        [--out results.json]
    python -m benchmarks.gpu_engine --tiny    # the same code on the CPU with tiny random-weight models

DIR is the production models folder (DIR/flux2-klein/ is FLUX.2 [klein] 4B as a diffusers folder,
DIR/RealESRGAN_x4plus.pth the service's upscaler). What is measured:

1. In the process, through the production factory (`factories.stylizer(StyleEngineSettings(
   backend="flux2-klein", model_dir=DIR))`) and the ReferenceStylizer call a proof stage makes
   (`paint_from_references(references, params, strength, seeds, size)`): load seconds, then per
   size one warm-up order and `--repeats` orders of `--proofs` seeds; median seconds per order
   (CUDA synchronised), peak GPU memory (`torch.cuda.max_memory_allocated`, and reserved).
2. Through the engine service (`photogen engines serve --engine flux2-klein`, started here on a
   free loopback port, or the one at --service URL): `--orders` orders of `--proofs` proofs at
   the first size, `--concurrency` in flight as from that many run workers. Orders per hour per
   GPU (the service's GPUs: one on one box); GPU time per order from the style replicas' own
   busy seconds (GET /v1/status); the per-order overhead is the wall time per order that is not
   GPU time (HTTP, the `.npz` wire, queueing, batching), as a share of the order's wall time.

Medians throughout; one JSON object on stdout, naming the machine (CPU, GPU, library versions)
and, on CUDA, whether each target of BENCHMARKS.md is met (4 proofs at 1024² ≤ 4 s on an
H100, ≥ 800 orders per hour per GPU, overhead ≤ 10 %). `--tiny` writes tiny random-weight
models (`photogen dev make-tiny-models --family flux2-klein`) and runs the same code at tiny
sizes on the CPU: a check that the script works, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines import factories  # noqa: E402
from photogen_pipelines.catalog import load_styles  # noqa: E402
from photogen_pipelines.engines.base import ReferenceStylizer  # noqa: E402
from photogen_pipelines.factories import StyleEngineSettings  # noqa: E402
from tests.servers import free_port  # noqa: E402  (the same loopback port the tests take)

GIB = 1024**3
PHOTOGEN = Path(sys.executable).with_name("photogen")
# the targets BENCHMARKS.md sets for an H100 (checked only where CUDA ran the benchmark)
TARGET_SECONDS_1024 = 4.0
TARGET_ORDERS_PER_HOUR = 800
TARGET_OVERHEAD = 0.10
SERVICE_READY_SECONDS = 900  # klein loads in tens of seconds from a local disk; Ray starts first
TINY_SIZES = "64x64,64x96"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        width, _, height = part.strip().partition("x")
        sizes.append((int(width), int(height)))
    return sizes


def portrait(size: tuple[int, int]) -> np.ndarray:
    """The customer's framed photo at the proof's aspect: scikit-image's astronaut, cropped."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    width, height = size
    side = min(photo.width, round(photo.height * width / height))
    left = (photo.width - side) // 2
    crop = photo.crop((left, 0, left + side, round(side * height / width)))
    return np.asarray(crop.resize(size, Image.LANCZOS))


def gpu_description() -> dict:
    import diffusers
    import torch
    import transformers

    described = {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        described.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / GIB, 1), cuda=torch.version.cuda)
    else:
        described["gpu"] = None
    return described


def make_tiny_models(folder: Path) -> None:
    """The flux2-klein models folder with tiny random weights, as the CLI writes it."""
    command = [str(PHOTOGEN), "dev", "make-tiny-models", "--family", "flux2-klein", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")


def build_stylizer(models_dir: Path, device: str) -> ReferenceStylizer:
    settings = StyleEngineSettings(backend="flux2-klein", model_dir=str(models_dir), device=device)
    stylizer = factories.stylizer(settings)
    if not isinstance(stylizer, ReferenceStylizer):
        raise SystemExit(f"factories.stylizer({settings!r}) built {type(stylizer).__name__}, not a ReferenceStylizer")
    return stylizer


def time_orders(stylizer, params: dict, strength: float, size: tuple[int, int], proofs: int, repeats: int) -> dict:
    """One warm-up and `repeats` orders of `proofs` seeds at `size`, in this process."""
    import torch

    cuda = torch.cuda.is_available()
    references = [portrait(size)]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def one(number: int) -> float:
        started = time.perf_counter()
        pictures = stylizer.paint_from_references(references, params, strength, [number * 100 + s for s in range(proofs)], size)
        if cuda:
            torch.cuda.synchronize()
        assert len(pictures) == proofs and pictures[0].shape[:2] == (size[1], size[0]), "the engine's pictures"
        return time.perf_counter() - started

    warm_up = one(-1)
    seconds = [one(number) for number in range(repeats)]
    measured = {
        "size": f"{size[0]}x{size[1]}",
        "megapixels": round(size[0] * size[1] / 1e6, 3),
        "proofs": proofs,
        "warm_up_seconds": round(warm_up, 3),
        "seconds_median": round(statistics.median(seconds), 3),
        "seconds_min": round(min(seconds), 3),
        "seconds_max": round(max(seconds), 3),
        "seconds_per_proof": round(statistics.median(seconds) / proofs, 3),
        "repeats": repeats,
    }
    if cuda:
        measured["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        measured["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
    return measured


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_service(models_dir: Path, gpus: float | None, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [str(PHOTOGEN), "engines", "serve", "--engine", "flux2-klein", "--models", str(models_dir), "--port", str(port)]
    if gpus is not None:
        command += ["--gpus-per-replica", str(gpus)]
    # its own session: stopped as one group (Ray's workers included) by this process, which started it
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVICE_READY_SECONDS
    while not _answers(f"{url}/v1/engines"):
        if process.poll() is not None:
            raise SystemExit(f"the engine service exited ({process.returncode}): {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            stop_service(process)
            raise SystemExit(f"the engine service did not answer in {SERVICE_READY_SECONDS} s: {log.read_text()[-2000:]}")
        time.sleep(1)
    return process, url


def stop_service(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def style_busy(service) -> tuple[float, int]:
    """(busy seconds, replicas) of the service's style replicas, from its own counters."""
    replicas = [r for r in service.get_json("/v1/status")["replicas"].values() if r["deployment"] == "StyleWorker"]
    return sum(r["busy_seconds"] for r in replicas), len(replicas)


def service_throughput(url: str, params: dict, strength: float, size: tuple[int, int], args, gpus: int) -> dict:
    from photogen_pipelines.engines.remote import EngineService, remote_stylizer

    service = EngineService(url, wait_seconds=60)
    stylizer = remote_stylizer(service)
    references = [portrait(size)]

    def one_order(number: int) -> float:
        started = time.perf_counter()
        stylizer.paint_from_references(references, params, strength, [number * 100 + s for s in range(args.proofs)], size)
        return time.perf_counter() - started

    one_order(-1)  # the style becomes resident and the first batch warms up
    busy_before, replicas = style_busy(service)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        seconds = list(pool.map(one_order, range(args.orders)))
    wall = time.perf_counter() - started
    busy_after, replicas = style_busy(service)
    gpu_per_order = (busy_after - busy_before) / args.orders
    # each style replica paints one batch at a time: its share of the wall time per order is
    # what an order costs it, and what of that is not painting is the overhead
    replica_per_order = wall * replicas / args.orders
    overhead = max(0.0, replica_per_order - gpu_per_order)
    return {
        "url": url,
        "engine": stylizer.version,
        "style_replicas": replicas,
        "orders": args.orders,
        "concurrency": args.concurrency,
        "size": f"{size[0]}x{size[1]}",
        "order_seconds_median": round(statistics.median(seconds), 3),
        "orders_per_hour": round(args.orders / wall * 3600, 1),
        "gpus": gpus,
        "orders_per_hour_per_gpu": round(args.orders / wall * 3600 / gpus, 1),
        "gpu_seconds_per_order": round(gpu_per_order, 3),
        "overhead_seconds_per_order": round(overhead, 3),
        "overhead_share": round(overhead / replica_per_order, 3) if replica_per_order else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, help="the models folder (DIR/flux2-klein/); --tiny writes one")
    parser.add_argument("--tiny", action="store_true", help="tiny random-weight models on the CPU at tiny sizes")
    parser.add_argument("--sizes", help="WxH,… (default 1024x1024 and about 2 MP at 2:3, 1184x1776)")
    parser.add_argument("--proofs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--style", default="sepia_oil")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--service", default="start", help="start (a local engine service), none, or a running service's URL")
    parser.add_argument("--gpus-per-replica", type=float, help="the started service's style replica GPUs [its default]")
    parser.add_argument("--gpus", type=int, help="GPUs the service holds, for orders per hour per GPU [this box's]")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory(prefix="photogen-gpu-engine-") as scratch:
        models_dir = args.models_dir
        if args.tiny:
            models_dir = Path(scratch) / "models"
            make_tiny_models(models_dir)
            args.repeats, args.orders, args.concurrency = min(args.repeats, 2), min(args.orders, 4), min(args.concurrency, 2)
            if args.gpus_per_replica is None:
                args.gpus_per_replica = 0.0
        if models_dir is None:
            parser.error("--models-dir DIR (the production models folder) or --tiny")
        sizes = parse_sizes(args.sizes or (TINY_SIZES if args.tiny else "1024x1024,1184x1776"))

        params = load_styles().get(args.style).engine_params("diffusion").model_dump(exclude_none=True)
        strength = float(params.get("strength", 0.9))  # the style's own, as the proof stage starts it

        report: dict = {"benchmark": "gpu_engine", "machine": machine(), **gpu_description(), "tiny": args.tiny}
        started = time.perf_counter()
        stylizer = build_stylizer(models_dir, args.device)
        if hasattr(stylizer, "load"):
            stylizer.load()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        report["engine"] = {
            "name": stylizer.name,
            "version": stylizer.version,
            "load_seconds": round(time.perf_counter() - started, 2),
        }
        report["in_process"] = [time_orders(stylizer, params, strength, size, args.proofs, args.repeats) for size in sizes]

        if args.service != "none":
            # the in-process engine's memory goes before a service on the same GPU loads its own
            del stylizer
            factories.stylizer.cache_clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            process = None
            try:
                if args.service == "start":
                    process, url = start_service(models_dir, args.gpus_per_replica, Path(scratch) / "service.log")
                else:
                    url = args.service
                # the service's GPUs: this box's (a CPU smoke run counts as one device)
                gpus = args.gpus or max(1, torch.cuda.device_count())
                report["service"] = service_throughput(url, params, strength, sizes[0], args, gpus)
            finally:
                if process is not None:
                    stop_service(process)

    if torch.cuda.is_available() and not args.tiny:
        first = report["in_process"][0]
        checks = {"4_proofs_at_1024_seconds": first["seconds_median"] <= TARGET_SECONDS_1024}
        if "service" in report:
            checks["orders_per_hour_per_gpu"] = report["service"]["orders_per_hour_per_gpu"] >= TARGET_ORDERS_PER_HOUR
            checks["overhead_share"] = (report["service"]["overhead_share"] or 0.0) <= TARGET_OVERHEAD
        report["targets"] = {
            "seconds_4_proofs_1024": TARGET_SECONDS_1024,
            "orders_per_hour_per_gpu": TARGET_ORDERS_PER_HOUR,
            "overhead_share": TARGET_OVERHEAD,
            "met": checks,
            "note": "the targets are for an H100; compare other cards with care",
        }
    report["python"] = platform.python_version()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
