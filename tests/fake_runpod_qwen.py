"""RunPod's public Qwen-Image-Edit-2511 endpoint, faked: the queue API is tests/fake_runpod.py's
(the same /run, /status, /cancel a public endpoint answers), and the worker behind it is
this handler, which checks the input as https://docs.runpod.io/public-endpoints/models/qwen-image-edit-2511
documents it and answers as that page and https://docs.runpod.io/public-endpoints/requests
show: `{"image_url", "cost"}`.

A fake because api.runpod.ai cannot be reached from here and a real edit costs money.
Documented: `prompt` (a string, required), `images` (1-3 image URLs, required), `size`
(one of six `W*H`), `seed` (an integer, -1 random), `output_format` (jpeg, png, webp); the
output's URL is served without the key. The fake's own choices, which the docs do not
spell out: which URL schemes it takes (http(s) it can fetch from itself, and `data:` URLs),
the wording of its errors (a handler's `{"error"}` fails the job, as RunPod's SDK does), and
what it paints: the first image under a warm tint that varies with the seed, at the size
asked, so a face survives for the identity gate.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from tests.data_urls import data_url_bytes, picture_of
from tests.fake_runpod import FakeRunPod

SIZES = {"1024*1024", "1024*1280", "1280*1024", "1280*1280", "1280*1536", "1536*1080"}
FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
PRICE = 0.02
TINT = np.array([255.0, 160.0, 40.0])
SCALE = 8  # by default pictures are painted at 1/8 of the size asked (the same aspect), to keep tests fast


class QwenEditWorker:
    """The handler behind the fake public endpoint; `seen` keeps every input it was given."""

    def __init__(self, cost: float | None = PRICE, scale: int = SCALE):
        self.cost = cost  # None: the answer states no cost
        self.scale = scale
        self.seen: list[dict] = []
        self.endpoint: FakeRunPod | None = None

    def attach(self, endpoint: FakeRunPod) -> FakeRunPod:
        self.endpoint = endpoint
        return endpoint

    def __call__(self, job: dict) -> dict:
        given = job["input"]
        self.seen.append(given)
        problem = _problem(given)
        if problem:
            return {"error": problem}
        pictures = [_open(url) for url in given["images"]]
        if any(picture is None for picture in pictures):
            return {"error": "images: every item must be an image URL that can be fetched"}
        width, height = (int(v) for v in given["size"].split("*"))
        seed = int(given.get("seed", -1))
        amount = 0.12 + 0.04 * (seed % 3 if seed >= 0 else 0)
        first = Image.fromarray(pictures[0]).resize((width // self.scale, height // self.scale), Image.LANCZOS)
        painted = np.clip(np.asarray(first) * (1.0 - amount) + TINT * amount, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        kind = given.get("output_format", "jpeg")
        Image.fromarray(painted).save(buffer, format=FORMATS[kind])
        output: dict[str, Any] = {"image_url": self.endpoint.publish(buffer.getvalue(), kind)}
        if self.cost is not None:
            output["cost"] = self.cost
        return output


def _problem(given: dict) -> str | None:
    if not isinstance(given.get("prompt"), str) or not given["prompt"].strip():
        return "prompt: a non-empty string is required"
    images = given.get("images")
    if not isinstance(images, list) or not 1 <= len(images) <= 3 or not all(isinstance(url, str) for url in images):
        return "images: an array of 1-3 image URLs is required"
    if given.get("size", "1024*1024") not in SIZES:
        return f"size: must be one of {sorted(SIZES)}"
    if "seed" in given and (not isinstance(given["seed"], int) or isinstance(given["seed"], bool)):
        return "seed: must be an integer"
    if given.get("output_format", "jpeg") not in FORMATS:
        return f"output_format: must be one of {sorted(FORMATS)}"
    unknown = set(given) - {"prompt", "images", "size", "seed", "output_format"}
    return f"unknown input {sorted(unknown)[0]}" if unknown else None


def _open(url: str) -> np.ndarray | None:
    if url.startswith("data:"):
        data = data_url_bytes(url)
    else:
        import requests

        try:
            response = requests.get(url, timeout=10)
        except requests.RequestException:
            return None
        data = response.content if response.status_code == 200 else None
    return picture_of(data) if data is not None else None


def qwen_endpoint(worker: QwenEditWorker | None = None, **options) -> FakeRunPod:
    """A fake public endpoint (id qwen-image-edit-2511) whose handler is `worker`."""
    worker = worker or QwenEditWorker()
    return worker.attach(FakeRunPod(worker, endpoint_id="qwen-image-edit-2511", **options))
