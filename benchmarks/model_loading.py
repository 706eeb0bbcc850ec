"""Model loading vs generation: what one run per order pays again and again.

Dagster starts every run in a new process, so every run loads the style engine anew;
inside a process the engines are cached (photogen_pipelines/factories.py, instantid.load_instantid),
so a run that renders many partitions (the catalog backfill, single-run backfill policy)
loads once. This measures, each in a fresh Python process as a run would:

- load: building the style engine and the validator (for diffusers: SDXL + IdentityNet +
  face adapter from the models folder, insightface, the first pipeline call's set-up);
- generate: one order's first round, `--variants` proofs of the portrait, median of
  `--repeats` after a warm-up.

    python -m benchmarks.model_loading [--engine embedded|diffusers] [--models DIR]

On a CPU with `photogen dev make-tiny-models DIR` this checks the harness and measures
the embedded engine; the diffusers numbers that matter come from a GPU with real weights
(benchmarks/gpu_instantid.py reports load seconds per memory profile as well).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

CHILD = """
import json, sys, time
started = time.perf_counter()
from skimage import data
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.generation.stages import prepare_selfie, render_candidates
from photogen_pipelines.imaging.images import png_bytes
args = json.loads(sys.argv[1])
imported = time.perf_counter()
defs = build_defs(args["home"], **args["settings"])
faces, styles = defs.resources["faces"].analyzer(), defs.resources["styles"]
stylizer = styles.stylizer()
style = load_styles().get(args["style"])
selfie = prepare_selfie(png_bytes(data.astronaut()), load_products().get("poster_12x18"), faces, styles.proof_long_side)
loaded = time.perf_counter()
variants = list(range(args["variants"]))
render_candidates(selfie.portrait, style, stylizer, 1, variants, 0, 0.6)  # the first call also loads the pipeline
first = time.perf_counter()
times = []
for seed in range(args["repeats"]):
    start = time.perf_counter()
    render_candidates(selfie.portrait, style, stylizer, 100 + seed, variants, 0, 0.6)
    times.append(time.perf_counter() - start)
timings = {"import_s": imported - started, "load_s": loaded - imported, "first_round_s": first - loaded}
print(json.dumps({**timings, "rounds_s": times}))
"""


def measure(engine: str, models: str | None, variants: int, repeats: int, style: str) -> dict:
    import tempfile

    settings = {"engine": engine, **({"models_dir": models} if models else {})}
    with tempfile.TemporaryDirectory() as home:
        payload = json.dumps({"home": home, "settings": settings, "variants": variants, "repeats": repeats, "style": style})
        done = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    median = statistics.median(result["rounds_s"])
    # the first round pays the lazy part of loading (the diffusers pipeline loads on first use)
    load = result["load_s"] + max(0.0, result["first_round_s"] - median)
    return {
        "engine": engine,
        "import_s": round(result["import_s"], 2),
        "load_s": round(load, 2),
        "round_median_s": round(median, 2),
        "load_over_round": round(load / median, 2),
        "variants": variants,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["embedded", "diffusers"], default="embedded")
    parser.add_argument("--models", help="the diffusers models folder")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--style", default="starry_swirl")
    args = parser.parse_args()
    started = time.perf_counter()
    result = measure(args.engine, args.models, args.variants, args.repeats, args.style)
    result["machine"] = f"{platform.processor() or platform.machine()}, {platform.node()}"
    print(json.dumps(result, indent=2))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
