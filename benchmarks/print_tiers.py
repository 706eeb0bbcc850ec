"""Premium and standard prints side by side: each tier's print master made as its tier in
products.yaml says (upscale model, self-ensemble) from the same real proofs, with its seconds
and its pattern score (BENCHMARKS.md, "Premium and standard prints").

    .venv/bin/python -m benchmarks.print_tiers [--runs 3] [--product poster_12x18] [--old-premium] [--crops DIR]

--old-premium adds the premium print as it was before (Real-ESRGAN x4plus, no ensemble) on
the first proof only: minutes a run on a CPU. --crops writes an 800 px 100 % crop of each
print of the first proof, side by side, to look at.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.print_detail import CASES, _upload
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
from photogen_pipelines.engines.stylize_magenta import MagentaStylizer
from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan
from photogen_pipelines.generation import stages
from photogen_pipelines.imaging.print_detail import print_pattern_scores

DEFAULT_MODEL = "REALESRGAN_ANIMAVIDEOV3"


def _print_paths(product, old_premium: bool) -> dict[str, Callable[[np.ndarray], Image.Image]]:
    catalog = load_products()
    paths = {}
    for tier_id in ("standard", "premium"):
        tier = catalog.tier(tier_id)
        upscaler = NcnnRealEsrgan(tier.upscale_model or DEFAULT_MODEL)
        paths[f"{tier_id} (ensemble {tier.print_ensemble})"] = lambda p, u=upscaler, n=tier.print_ensemble: (
            stages.make_print_master(p, product, u, ensemble=n)[0]
        )
    if old_premium:
        x4plus = NcnnRealEsrgan("REALESRGAN_X4PLUS")
        paths["premium before (x4plus)"] = lambda p: stages.make_print_master(p, product, x4plus)[0]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", default="poster_12x18")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-premium", action="store_true")
    parser.add_argument("--crops", type=Path, default=None)
    args = parser.parse_args()
    product = load_products().get(args.product)
    styles = {s.id: s for s in load_styles().styles}
    analyzer, stylizer = OpenCvFaceAnalyzer(), MagentaStylizer()
    paths = _print_paths(product, args.old_premium)
    print(f"{'proof':28s} {'print':28s} {'median s':>8s} {'max score':>9s} {'median score':>12s}")
    for case, (face, style_id) in enumerate(CASES):
        selfie = stages.prepare_selfie(_upload(face), product, analyzer, 1024)
        proof = stages.render_candidates(selfie.portrait, styles[style_id], stylizer, 12345, [0], 0, 0.6)[0].image
        crops = []
        for name, make in paths.items():
            if "before" in name and case > 0:
                continue
            seconds, runs = [], 1 if "before" in name else args.runs
            for _ in range(runs):
                start = time.perf_counter()
                master = make(proof)
                seconds.append(time.perf_counter() - start)
            scores = print_pattern_scores(Image.fromarray(proof), master)
            print(
                f"{face + ' ' + style_id:28s} {name:28s} {statistics.median(seconds):8.1f} "
                f"{max(scores):9.3f} {statistics.median(scores):12.3f}",
                flush=True,
            )
            cx, cy = master.width // 2, master.height // 3  # the face of a centred portrait
            crops.append(np.asarray(master.crop((cx - 400, cy - 400, cx + 400, cy + 400))))
        if args.crops and case == 0:
            args.crops.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(crops, axis=1)).save(args.crops / f"{face}_{style_id}_tiers.png")


if __name__ == "__main__":
    main()
