"""Throughput of a running warm engine service: orders' proof requests sent at once.

    .venv/bin/python benchmarks/engine_service_throughput.py --url http://127.0.0.1:8100
        [--orders 24] [--concurrency 4] [--variants 4] [--size 1024] [--style sepia_oil]

Each "order" is what a proof run sends: one framed portrait (the astronaut, scaled so its
long side is `--size`) and the style's parameters, with `--variants` seeds on a diffusion
engine (one request) or `--variants` requests on the embedded engine. `--concurrency` orders
are in flight at a time, as from that many run workers. Reported: seconds per order (median,
p95), orders per hour, and from the service's own counters the busy time of its style
replicas against the wall time, the batch sizes it formed and the model loads (one per
replica is the goal). On a GPU box run it against `photogen engines serve --engine diffusers
--models DIR`; the GPU targets are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines.catalog import load_styles  # noqa: E402
from photogen_pipelines.engines.remote import EngineService, remote_stylizer  # noqa: E402


def portrait(size: int) -> np.ndarray:
    from skimage import data

    image = Image.fromarray(data.astronaut())
    return np.asarray(image.resize((size * 2 // 3, size), Image.LANCZOS))


def style_workers(service: EngineService) -> dict:
    replicas = service.get_json("/v1/status")["replicas"]
    return {key: r for key, r in replicas.items() if r["deployment"] == "StyleWorker"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8100")
    parser.add_argument("--orders", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--style", default="sepia_oil")
    args = parser.parse_args()

    service = EngineService(args.url, wait_seconds=300)
    stylizer = remote_stylizer(service)
    params = load_styles().get(args.style).engine_params(stylizer.params_section).model_dump(exclude_none=True)
    picture = portrait(args.size)
    seeded = hasattr(stylizer, "stylize_variants")

    def one_order(number: int) -> float:
        started = time.perf_counter()
        if seeded:
            stylizer.stylize_variants(picture, params, 0.85, [number * 100 + v for v in range(args.variants)])
        else:
            for variant in range(args.variants):
                stylizer.stylize(picture, params, min(1.0, 0.4 + 0.05 * variant + 0.001 * number))
        return time.perf_counter() - started

    one_order(-1)  # the style becomes resident; the first batch warms up
    before = style_workers(service)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        seconds = list(pool.map(one_order, range(args.orders)))
    wall = time.perf_counter() - started
    after = style_workers(service)

    busy = sum(r["busy_seconds"] for r in after.values()) - sum(r["busy_seconds"] for r in before.values())
    batches: dict[str, int] = {}
    for key, replica in after.items():
        for size, count in replica["batch_sizes"].items():
            batches[size] = batches.get(size, 0) + count - before.get(key, {}).get("batch_sizes", {}).get(size, 0)
    print(f"machine: {machine()}")
    print(f"service: {args.url} ({stylizer.version}); {len(after)} style replica(s)")
    print(f"{args.orders} orders x {args.variants} variants at {args.size} px, {args.concurrency} in flight")
    print("| measure | value |\n|---|---:|")
    print(f"| seconds per order, median | {statistics.median(seconds):.2f} |")
    print(f"| seconds per order, p95 | {statistics.quantiles(seconds, n=20)[-1]:.2f} |")
    print(f"| orders per hour | {args.orders / wall * 3600:.0f} |")
    print(f"| style replicas busy / wall | {busy:.1f} s / {wall:.1f} s ({busy / wall:.0%}) |")
    print(f"| overhead beyond painting per order | {max(0.0, wall - busy) / args.orders:.2f} s |")
    print(f"| batch sizes formed | {', '.join(f'{s}x{c}' for s, c in sorted(batches.items()) if c) or 'none'} |")
    print(f"| model loads per replica | {', '.join(str(r['model_loads']) for r in after.values())} |")


if __name__ == "__main__":
    main()
