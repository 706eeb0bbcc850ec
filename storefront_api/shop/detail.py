"""A proof at the print's own scale: the part around the face, one screen pixel per print
pixel, so the customer sees how the brush strokes will look on paper before choosing.

The proof's region around the face (found by the face engine in the proof; the picture's
upper middle where it finds none) is upscaled by Lanczos to the pixels the order's product
prints it at, and watermarked like every preview. An unpaid preview's detail is cut from its
small preview size: it shows no more than the preview does."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.imaging import watermark
from photogen_pipelines.orders.deliverables import preview_long_side
from photogen_pipelines.orders.states import Order
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore

WINDOW = 720  # print pixels on each side of the detail: about 6 cm of a 300 DPI print


def _face_centre(picture: Image.Image, faces: FaceAnalyzer) -> tuple[float, float]:
    try:
        found = faces.detect(np.asarray(picture))
    except Exception:  # a painted face the detector cannot read is no error: the framing falls back
        found = []
    if not found:
        return picture.width / 2, picture.height * 0.4
    box = max(found, key=lambda face: face.box.w * face.box.h).box
    return box.x + box.w / 2, box.y + box.h / 2


def print_scale(picture: Image.Image, pixel_size: tuple[int, int]) -> float:
    """Print pixels per proof pixel: the proof covers the product's canvas."""
    return max(pixel_size[0] / picture.width, pixel_size[1] / picture.height)


def detail_jpeg(store: ArtifactStore, faces: FaceAnalyzer, products: ProductCatalog, order: Order, variant: int) -> bytes:
    with Image.open(io.BytesIO(store.get_bytes(OrderKeys(order.id).proof(variant)))) as opened:
        picture = opened.convert("RGB")
    long_side = preview_long_side(order, products.previews)
    if max(picture.size) > long_side:
        picture.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    scale = print_scale(picture, products.get(order.product_id).pixel_size)
    side = min(WINDOW / scale, picture.width, picture.height)  # proof pixels that fill the window
    cx, cy = _face_centre(picture, faces)
    left = min(max(cx - side / 2, 0), picture.width - side)
    top = min(max(cy - side / 2, 0), picture.height - side)
    crop = picture.crop((round(left), round(top), round(left + side), round(top + side)))
    shown = max(1, min(WINDOW, round(side * scale)))
    enlarged = crop.resize((shown, shown), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    enlarged.save(buffer, "PNG")
    return watermark.preview(buffer.getvalue(), long_side=WINDOW)
