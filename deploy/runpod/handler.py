"""PhotoGen's RunPod Serverless worker: our own engines (SDXL + InstantID on diffusers, and
Real-ESRGAN in torch) behind RunPod's queue, for `photogen_pipelines/engines/runpod.py`.

A job's input is one of

    {"task": "stylize", "image": <PNG, base64>, "params": {<the style's diffusion section>},
     "strength": 0.5, "seeds": [1, 2, 3], "steps": 40}
    {"task": "upscale", "image": <PNG, base64>, "scale": 4}

(`steps`, optional: the order's tier's denoising steps, for this job only; without them the
worker's own) and its output

    {"images": [<PNG, base64>, ...], "engine": {"name", "version"}, "seconds": <engine wall seconds>}

or, when the pictures are too large for RunPod's payload limits and an output bucket is
configured, `"image_urls"` (presigned S3 GET links) in place of `"images"`. Bad input and
engine refusals (no face to condition on, an unknown LoRA) return `{"error": "..."}`,
which RunPod turns into a FAILED job carrying that text; anything else raises, and the
RunPod SDK fails the job with the exception and its traceback.

The engines are built once per worker process, from the environment:

    PHOTOGEN_MODELS_DIR              the models folder (engines/models_folder.py), required
    PHOTOGEN_DEVICE                  auto | cuda | cuda:1 | cpu (auto)
    PHOTOGEN_MEMORY_PROFILE          the diffusers memory profile (auto)
    PHOTOGEN_RUNPOD_MAX_OUTPUT_MB    the most base64 a job returns inline (9)
    PHOTOGEN_RUNPOD_OUTPUT_BUCKET    s3://bucket[/prefix] for larger outputs (unset: they fail)
    PHOTOGEN_RUNPOD_OUTPUT_URL_TTL   seconds the presigned links live (7200)

`runpod` (RunPod's SDK) is imported only when this file runs as the worker's command: the
handler itself is plain Python, and the tests run it on the CPU with tiny models
(tests/test_runpod.py) through a fake RunPod endpoint (tests/fake_runpod.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import math
import os
import time
from typing import Any

import numpy as np
from PIL import Image

from photogen_pipelines import factories
from photogen_pipelines.engines.base import SeededStylizer, Stylizer, Upscaler
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.tiers import steps_for_call

TASKS = ("stylize", "upscale")
MAX_INPUT_PIXELS = 40_000_000  # as many as an upload may have (imaging.MAX_UPLOAD_PIXELS)
MAX_SEEDS = 16  # a round's variants; more is a mistake, not an order
MAX_STEPS = 150  # a tier's steps at most (the catalog's Tier.steps bound)
# /run accepts 10 MB and /runsync 20 MB (RunPod's documented payload limits); a job's
# result travels back through the same queue, so inline outputs stay under the smaller one
DEFAULT_MAX_OUTPUT_MB = 9.0
DEFAULT_OUTPUT_URL_TTL = 7200  # longer than RunPod keeps a /run result (30 minutes)
OUTPUT_PREFIX = "runpod-outputs"


class BadJob(ValueError):
    """The job's input cannot be used: the job fails with this message."""


@functools.cache
def engines() -> tuple[Stylizer, Upscaler]:
    """The stylizer and the upscaler of this worker, loaded on first use and kept."""
    models_dir = os.environ.get("PHOTOGEN_MODELS_DIR")
    if not models_dir:
        raise PhotoGenError("the RunPod worker needs PHOTOGEN_MODELS_DIR: the models folder", code="worker_misconfigured")
    device = os.environ.get("PHOTOGEN_DEVICE", "auto")
    styles, upscale = factories.engine_settings("diffusers", models_dir, os.environ.get("PHOTOGEN_MEMORY_PROFILE", "auto"))
    styles = styles.model_copy(update={"device": device})
    upscale = upscale.model_copy(update={"device": device})
    return factories.stylizer(styles), factories.upscaler(upscale)


def handler(job: dict) -> dict:
    """One RunPod job: `job["input"]` as the module's docstring says."""
    try:
        request = job.get("input") if isinstance(job, dict) else None
        if not isinstance(request, dict):
            raise BadJob("the job has no input object")
        task = request.get("task")
        if task not in TASKS:
            raise BadJob(f"task must be one of {list(TASKS)}, got {task!r}")
        image = decode_image(request.get("image"))
        if task == "stylize":
            pictures, engine, seconds = _stylize(image, request)
        else:
            pictures, engine, seconds = _upscale(image, request)
        encoded = [png_bytes(picture) for picture in pictures]
    except BadJob as exc:
        return {"error": f"bad input: {exc}"}
    except PhotoGenError as exc:  # the engine's own refusals (no face, bad style params, a missing model)
        return {"error": f"{exc.code}: {exc}"}
    output: dict[str, Any] = {"engine": {"name": engine.name, "version": engine.version}, "seconds": round(seconds, 3)}
    try:
        output.update(_deliver(encoded, str(job.get("id") or "job")))
    except BadJob as exc:
        return {"error": str(exc)}
    return output


def decode_image(value: Any) -> np.ndarray:
    """A base64 PNG → HxWx3 uint8 RGB."""
    if not isinstance(value, str) or not value:
        raise BadJob("image must be a base64-encoded PNG")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadJob("image is not valid base64") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadJob("image must be a PNG")
    try:
        picture = Image.open(io.BytesIO(data))
        width, height = picture.size
        if width * height > MAX_INPUT_PIXELS:
            raise BadJob(f"image has {width}x{height} pixels; the limit is {MAX_INPUT_PIXELS / 1e6:.0f} MP")
        return np.asarray(picture.convert("RGB"))
    except BadJob:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadJob(f"image is not a readable PNG ({exc})") from None


def encode_image(rgb: np.ndarray) -> str:
    return base64.b64encode(png_bytes(rgb)).decode("ascii")


def _stylize(image: np.ndarray, request: dict) -> tuple[list[np.ndarray], Stylizer, float]:
    params, strength, seeds = request.get("params"), request.get("strength"), request.get("seeds")
    if not isinstance(params, dict):
        raise BadJob("params must be an object: the style's diffusion section")
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 < float(strength) <= 1.0:
        raise BadJob(f"strength must be a number in (0, 1], got {strength!r}")
    if (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= MAX_SEEDS
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)
    ):
        raise BadJob(f"seeds must be a list of 1 to {MAX_SEEDS} integers in [0, 2**32), got {seeds!r}")
    steps = request.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
        raise BadJob(f"steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}")
    stylizer = engines()[0]
    if not isinstance(stylizer, SeededStylizer):  # engine_settings("diffusers") always builds InstantID
        raise PhotoGenError(f"{stylizer.name} renders no seeded variants", code="worker_misconfigured")
    started = time.perf_counter()
    try:
        # the worker runs one job at a time (RunPod's default concurrency), so the loaded
        # engine takes this job's steps for the call and its own ones back after
        with steps_for_call(stylizer, steps):
            pictures = stylizer.stylize_variants(image, params, float(strength), list(seeds))
    except ValueError as exc:  # the style's parameters (pydantic) or the strength, as the engine saw them
        raise BadJob(str(exc)) from None
    return pictures, stylizer, time.perf_counter() - started


def scales_of(upscaler: Upscaler) -> tuple[int, ...]:
    """The scales the worker offers: each model scale, and every smaller integer factor,
    which the smallest model scale above it renders and a Lanczos resize brings down (as
    Real-ESRGAN's own `--outscale`: a x4plus model still makes the better x2)."""
    return tuple(range(2, max(upscaler.scales) + 1))


def _upscale(image: np.ndarray, request: dict) -> tuple[list[np.ndarray], Upscaler, float]:
    scale = request.get("scale")
    upscaler = engines()[1]
    offered = scales_of(upscaler)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in offered:
        raise BadJob(f"scale must be one of {list(offered)}, got {scale!r}")
    model_scale = min(s for s in upscaler.scales if s >= scale)
    started = time.perf_counter()
    picture = upscaler.upscale(image, model_scale)
    if model_scale != scale:
        height, width = image.shape[:2]
        picture = np.asarray(Image.fromarray(picture).resize((width * scale, height * scale), Image.LANCZOS))
    return [picture], upscaler, time.perf_counter() - started


def _deliver(encoded: list[bytes], job_id: str) -> dict:
    """The pictures inline (base64), or, past the payload bound, as links to an S3 bucket."""
    inline = sum(4 * math.ceil(len(data) / 3) for data in encoded)  # the base64 length
    bound = float(os.environ.get("PHOTOGEN_RUNPOD_MAX_OUTPUT_MB") or DEFAULT_MAX_OUTPUT_MB) * 1e6
    if inline <= bound:
        return {"images": [base64.b64encode(data).decode("ascii") for data in encoded]}
    bucket = os.environ.get("PHOTOGEN_RUNPOD_OUTPUT_BUCKET")
    if not bucket:
        raise BadJob(
            f"output_too_large: {inline / 1e6:.1f} MB of base64 is past this worker's bound of {bound / 1e6:.1f} MB "
            "(RunPod's payload limits); set PHOTOGEN_RUNPOD_OUTPUT_BUCKET to return links instead"
        )
    store = factories.artifact_store(factories.StoreSettings.at(bucket if bucket.startswith("s3://") else f"s3://{bucket}"))
    ttl = int(os.environ.get("PHOTOGEN_RUNPOD_OUTPUT_URL_TTL") or DEFAULT_OUTPUT_URL_TTL)
    safe_id = "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id) or "job"
    urls = []
    for index, data in enumerate(encoded):
        key = f"{OUTPUT_PREFIX}/{safe_id}/{index}.png"
        store.put_bytes(key, data)
        urls.append(store.presigned_url(key, ttl))
    return {"image_urls": urls}


def warm() -> None:
    """Load the models before taking the first job (RunPod counts it as the cold start)."""
    stylizer, upscaler = engines()
    print(f"photogen worker ready: {stylizer.name} {stylizer.version}; {upscaler.name} {upscaler.version}", flush=True)


if __name__ == "__main__":
    import runpod  # the worker image's own dependency, not PhotoGen's

    warm()
    runpod.serverless.start({"handler": handler})
