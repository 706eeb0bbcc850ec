"""Print detail at 100 %: the pattern score and the time of each print-master option for a
few style x face proofs on the 12x18 in poster (BENCHMARKS.md, "Print detail at 100 %").

    .venv/bin/python -m benchmarks.print_detail [--runs 3] [--crops DIR]

Options: the print path before (Real-ESRGAN animevideov3 x4 over the proof, then Lanczos),
Lanczos alone, and the print path now (the model over the proof softened by
SOFTEN_SIGMA, the proof's texture added back by Lanczos). With --crops, 800 px 100 % crops
of the face and of the background are written as PNGs, each option side by side.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer
from photogen_pipelines.engines.stylize_magenta import MagentaStylizer
from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan
from photogen_pipelines.generation import stages
from photogen_pipelines.imaging.print_detail import SOFTEN_SIGMA, print_pattern_scores

FACES = Path(__file__).resolve().parent.parent / "photogen_pipelines" / "catalog" / "reference_faces"
CASES = [("astronaut", "starry_swirl"), ("ardern_2022", "sepia_oil"), ("obama_senate", "ink_etching")]


def _upload(face: str) -> bytes:
    if face == "astronaut":
        buffer = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buffer, "PNG")
        return buffer.getvalue()
    return (FACES / f"{face}.jpg").read_bytes()


def _crop(image: np.ndarray, cx: float, cy: float, side: int = 800) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0 = int(np.clip(cx - side / 2, 0, w - side)), int(np.clip(cy - side / 2, 0, h - side))
    return image[y0 : y0 + side, x0 : x0 + side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", default="poster_12x18")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crops", type=Path, default=None)
    args = parser.parse_args()
    product = load_products().get(args.product)
    styles = {s.id: s for s in load_styles().styles}
    analyzer, stylizer, upscaler = OpenCvFaceAnalyzer(), MagentaStylizer(), NcnnRealEsrgan()
    options = {
        "before: x4 model": lambda p: stages.make_print_master(p, product, upscaler, soften_sigma=0.0)[0],
        "lanczos only": lambda p: Image.fromarray(p).resize(product.pixel_size, Image.LANCZOS),
        f"now: softened {SOFTEN_SIGMA} + texture": lambda p: stages.make_print_master(p, product, upscaler)[0],
    }
    print(f"{'proof':28s} {'option':28s} {'median s':>8s} {'max score':>9s} {'median score':>12s}")
    for face, style_id in CASES:
        selfie = stages.prepare_selfie(_upload(face), product, analyzer, 1024)
        proof = stages.render_candidates(selfie.portrait, styles[style_id], stylizer, 12345, [0], 0, 0.6)[0].image
        box = selfie.portrait_face.box
        scale = product.pixel_size[0] / proof.shape[1]
        spots = {
            "face": ((box.x + box.w / 2) * scale, (box.y + box.h / 2) * scale),
            "bg": (0.85 * product.pixel_size[0], 0.1 * product.pixel_size[1]),
        }
        crops: dict[str, list[np.ndarray]] = {spot: [] for spot in spots}
        for name, make in options.items():
            seconds = []
            for _ in range(args.runs):
                start = time.perf_counter()
                master = make(proof)
                seconds.append(time.perf_counter() - start)
            scores = print_pattern_scores(Image.fromarray(proof), master)
            print(
                f"{face + ' ' + style_id:28s} {name:28s} {statistics.median(seconds):8.2f} "
                f"{max(scores):9.2f} {statistics.median(scores):12.2f}",
                flush=True,
            )
            pixels = np.asarray(master)
            for spot, (cx, cy) in spots.items():
                crops[spot].append(_crop(pixels, cx, cy))
        if args.crops:
            args.crops.mkdir(parents=True, exist_ok=True)
            for spot, row in crops.items():
                Image.fromarray(np.concatenate(row, axis=1)).save(args.crops / f"{face}_{style_id}_{spot}.png")


if __name__ == "__main__":
    main()
