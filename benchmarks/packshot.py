"""Seconds per packshot and per product-lock check on the embedded engine (CPU).

    .venv/bin/python -m benchmarks.packshot [--repeats 5] [--long-side 2048] [--out DIR]

Two products: the tests' printed t-shirt (tests/product_photos.py, 560x600) and
scikit-image's coffee cup (600x400). For each, the median of `--repeats` runs of:
- cutout: GrabCut's segmentation of the product photo (imaging/cutout.py);
- packshot: one packshot from that cut-out at `--long-side` on each backdrop, cycling the
  catalog's aspects (imaging/packshot.py), the cut-out not counted;
- lock_setup: a ProductLock built (the cut-out and the photo's SIFT features), once per product;
- lock_check_scene: one check of the product pasted into a 900x760 scene at 0.7x, re-lit;
- lock_check_packshot: one check of a packshot.
Prints one JSON object; with --out, the packshots are written there as PNGs
(packshot_<product>_<backdrop>_<aspect>.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from photogen_pipelines.generation.product_lock import ProductLock  # noqa: E402
from photogen_pipelines.imaging.cutout import cut_out_product  # noqa: E402
from photogen_pipelines.imaging.packshot import BACKDROPS, CATALOG_ASPECTS, make_packshot  # noqa: E402
from tests.product_photos import garment_photo, paste, relit, scene  # noqa: E402


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, OpenCV threads {cv2.getNumThreads()}, Python {platform.python_version()}"


def _median(run, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds), 3)


def measure(name: str, photo, args: argparse.Namespace) -> dict:
    cutout = cut_out_product(photo)
    lock = ProductLock(photo, cutout=cutout)
    shot = relit(paste(photo, cutout.mask, scene(), scale=0.7, centre=(0.5, 0.55)))
    looks = [(backdrop, CATALOG_ASPECTS[i % len(CATALOG_ASPECTS)]) for i, backdrop in enumerate(BACKDROPS)]
    packshots = {}

    def one_round_of_packshots() -> None:
        for backdrop, aspect in looks:
            packshots[backdrop, aspect] = make_packshot(
                photo, backdrop=backdrop, aspect=aspect, long_side=args.long_side, cutout=cutout
            )

    result = {
        "product": name,
        "photo": f"{photo.shape[1]}x{photo.shape[0]}",
        "cutout_s": _median(lambda: cut_out_product(photo), args.repeats),
        "packshot_s": round(_median(one_round_of_packshots, args.repeats) / len(looks), 3),
        "lock_setup_s": _median(lambda: ProductLock(photo), args.repeats),
        "lock_check_scene_s": _median(lambda: lock.check(shot), args.repeats),
    }
    first = next(iter(packshots.values()))
    result["lock_check_packshot_s"] = _median(lambda: lock.check(first.image), args.repeats)
    verdicts = [lock.check(shot).passed, *(lock.check(p.image).passed for p in packshots.values())]
    result["lock_passes"] = f"{sum(verdicts)}/{len(verdicts)}"
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for (backdrop, aspect), packshot in packshots.items():
            path = args.out / f"packshot_{name}_{backdrop}_{aspect.replace(':', 'x')}.png"
            Image.fromarray(packshot.image).save(path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    products = {"tshirt": garment_photo()[0], "coffee": data.coffee()}
    rows = [measure(name, photo, args) for name, photo in products.items()]
    print(json.dumps({"machine": machine(), "long_side": args.long_side, "repeats": args.repeats, "products": rows}, indent=2))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
