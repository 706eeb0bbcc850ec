"""The print-side quality rules: is the print master faithful to the approved proof, and
does the print file meet the product's spec. Asset checks report what these find; the
thresholds come from quality.yaml."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from photogen_pipelines.catalog import Product
from photogen_pipelines.imaging.images import SRGB_ICC
from photogen_pipelines.storage.artifacts import Manifest


def upscale_ssim(proof: Image.Image, master: Image.Image) -> float:
    """SSIM of the master scaled back to the proof's size against the proof, in grey:
    1.0 means the upscaler invented nothing."""
    proof, master = proof.convert("L"), master.convert("L")
    scaled = master.resize(proof.size, Image.LANCZOS)
    from skimage.metrics import structural_similarity  # scipy: ~0.3 s, for print runs only

    return float(structural_similarity(np.asarray(proof), np.asarray(scaled), data_range=255))


@dataclass(frozen=True)
class PrintSpecReport:
    pixel_size: tuple[int, int]  # as read back from the file
    problems: list[str]  # empty: the spec is met


def print_spec_report(print_file: bytes, manifest: Manifest, product: Product, max_megabytes: float) -> PrintSpecReport:
    """What keeps the file from the provider, read back from the file itself: its pixels,
    DPI tags, sRGB profile, effective resolution and size."""
    with Image.open(io.BytesIO(print_file)) as image:
        size, dpi, icc = image.size, image.info.get("dpi", (0, 0)), image.info.get("icc_profile")
    problems = []
    if size != product.pixel_size:
        problems.append(f"pixel size {size} is not {product.pixel_size}")
    if round(float(dpi[0])) != product.dpi or round(float(dpi[1])) != product.dpi:
        problems.append(f"DPI tags {dpi} are not {product.dpi}")
    if icc != SRGB_ICC:
        problems.append("the sRGB profile is missing")
    if manifest.effective_dpi < product.min_dpi:
        problems.append(f"effective DPI {manifest.effective_dpi} is below {product.min_dpi}")
    megabytes = manifest.bytes / 2**20
    if megabytes > max_megabytes:
        problems.append(f"the file is {megabytes:.0f} MB; providers take up to {max_megabytes:.0f} MB")
    return PrintSpecReport(size, problems)
