"""Qwen-Image-Edit-2511 on RunPod's public endpoint (`PHOTOGEN_ENGINE=runpod-qwen-edit`): a
hosted model, no GPU or worker of our own, paid per picture.

The endpoint is documented at https://docs.runpod.io/public-endpoints/models/qwen-image-edit-2511
(endpoint id `qwen-image-edit-2511`, $0.02 per image): input `prompt`, `images` (1-3 image
URLs), `size` (one of `1024*1024`, `1024*1280`, `1280*1024`, `1280*1280`, `1280*1536`,
`1536*1080`), `seed`, `output_format` (jpeg, png, webp); a finished job's output is
`{"image_url", "cost"}` (https://docs.runpod.io/public-endpoints/requests). The queue, the
polling, the prediction journal and the metering are RunPodClient's (engines/runpod.py):
a retried step whose job succeeded reads it back instead of paying again.

How a call maps onto it (`paint_from_references(references, params, strength, seeds, size)`):

- the photos go as `images`, the primary first, at most 3, each a PNG `data:` URL. The
  docs say "image URLs" without naming the schemes they take; a data URL (RFC 2397)
  keeps the customer's photo out of any public bucket. An endpoint that refuses it answers
  a failed job, reported as `runpod_job_failed` with its words.
- `size` (width, height) becomes the documented size nearest its aspect, and each picture
  is fitted back to `size` (cropped to its aspect, resized), as every stylizer returns it;
  `size_for(aspect)` offers the stages that size's pixel count at the product's aspect.
- one job per seed (the endpoint makes one picture a request), submitted side by side.
- the prompt is the style's `diffusion` prompt as an edit instruction. Qwen-Image-Edit has
  no denoising strength: when the identity gate retries at a lower `strength` than the
  style's own, the instruction asks outright to keep the face as it is in the photos.
- the cost is the `cost` the job's output states, else `price_per_image`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from photogen_pipelines.engines.base import Usage
from photogen_pipelines.engines.reference_inputs import (
    check_references,
    fit_picture,
    keep_more,
    nearest_size,
    png_data_uri,
    references_digest,
    size_at,
)
from photogen_pipelines.engines.runpod import RunPodClient
from photogen_pipelines.engines.stylize_instantid import content_seed
from photogen_pipelines.errors import ModelError

ENDPOINT_ID = "qwen-image-edit-2511"  # RunPod's documented id of the public endpoint
PRICE_PER_IMAGE = 0.02  # USD, the documented price
MAX_IMAGES = 3
SIZES = [(1024, 1024), (1024, 1280), (1280, 1024), (1280, 1280), (1280, 1536), (1536, 1080)]


class RunPodQwenEditStylizer:
    """A Stylizer, SeededStylizer, MeteredStylizer and ReferenceStylizer on RunPod's hosted
    Qwen-Image-Edit-2511; reads the style's `diffusion` section."""

    name = "runpod-qwen-edit"
    params_section = "diffusion"
    max_references = MAX_IMAGES

    def __init__(self, api_key: str, endpoint_id: str = ENDPOINT_ID, *, price_per_image: float = PRICE_PER_IMAGE, **options):
        options.pop("sync", None)  # jobs are polled: the journal must name a job before it is waited on
        self.client = RunPodClient(api_key, endpoint_id, price_per_image=price_per_image, **options)
        self.version = f"runpod public endpoint {endpoint_id} (Qwen-Image-Edit-2511)"

    def size_for(self, aspect: float) -> tuple[int, int]:
        """The size to ask for at the product's `aspect`: the pixels of the documented size
        nearest that aspect (the model's native resolution), at the aspect itself."""
        width, height = nearest_size((round(aspect * 10_000), 10_000), SIZES)
        return size_at(aspect, width * height)

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        return self.stylize_variants(rgb, params, strength, [content_seed(rgb, params, strength)])[0]

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        """The portrait as the one reference, each picture at its size."""
        return self.paint_from_references([rgb], params, strength, seeds, (int(rgb.shape[1]), int(rgb.shape[0])))

    def paint_from_references(
        self, references: list[np.ndarray], params: dict, strength: float, seeds: list[int], size: tuple[int, int]
    ) -> list[np.ndarray]:
        check_references(references, size, "the RunPod Qwen-Image-Edit stylizer")
        if not seeds or not all(isinstance(seed, int | np.integer) and not isinstance(seed, bool) for seed in seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
        if not (isinstance(strength, int | float | np.floating) and 0.0 < strength <= 1.0):
            raise ValueError(f"strength must be within (0, 1], got {strength!r}")
        photos = [np.ascontiguousarray(photo, dtype=np.uint8) for photo in references[:MAX_IMAGES]]
        width, height = nearest_size(size, SIZES)
        fields = {"prompt": _instruction(params, float(strength)), "size": f"{width}*{height}", "output_format": "png"}
        others = {"references": references_digest(photos[1:])} if len(photos) > 1 else {}

        def one(seed: int) -> np.ndarray:
            job = {**fields, "seed": int(seed)}
            result = self.client.run_job(
                photos[0], {**job, **others}, lambda: {**job, "images": [png_data_uri(photo) for photo in photos]}
            )
            if len(result.images) != 1:
                raise ModelError(
                    f"runpod: job {result.job_id} returned {len(result.images)} pictures for one seed", code="runpod_bad_answer"
                )
            return fit_picture(Image.fromarray(result.images[0]), (int(size[0]), int(size[1])))

        with ThreadPoolExecutor(max_workers=min(len(seeds), 4), thread_name_prefix="runpod-qwen") as pool:
            return list(pool.map(one, seeds))

    def take_usage(self) -> Usage:
        return self.client.take_usage()


def _instruction(params: dict, strength: float) -> str:
    prompt = params.get("prompt") if isinstance(params, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise ModelError("the style has no diffusion prompt for Qwen-Image-Edit", code="runpod_bad_config")
    return keep_more(f"Repaint the person in the first photo as {prompt.strip()}.", strength, params.get("strength"))
