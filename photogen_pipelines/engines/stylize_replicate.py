"""A stylizer that runs on Replicate (serverless GPUs, billed per second), over its HTTP API.

How one call goes (`stylize_variants(portrait, params, strength, seeds)`):

- `params` is the style's `ReplicateStyleParams`: the diffusion parameters and, under
  `replicate`, the pinned model version and how its inputs are filled from our fields
  (`catalog.ReplicateModel`: `inputs` our field -> its input name, `fixed` inputs sent as
  they are). Only mapped fields are sent. `strength` is the call's argument (after the
  identity gate's decay), `steps` the stylizer's own setting (not sent when unset).
- The picture goes as a PNG data URI, as Replicate's "Input files" guide allows
  (https://replicate.com/docs/topics/predictions/input-files); that guide recommends data
  URIs only below about 1 MB, so a larger PNG is uploaded first with the files API
  (`POST /v1/files`, multipart `content`) and its `urls.get` is sent instead.
- With `num_outputs` mapped, the variants are one prediction (`seed` = the first seed,
  `num_outputs` = how many); otherwise one prediction per seed, all created before any is
  waited on, so they run side by side.
- A prediction is created with `POST /v1/predictions {"version", "input"}` and polled with
  `GET /v1/predictions/{id}` through starting, processing to succeeded, failed, canceled
  (or aborted, a deadline reached before it started); past `timeout_seconds` it is
  canceled (`POST /v1/predictions/{id}/cancel`) and the call fails with a retryable error.
  Shapes from https://replicate.com/docs/topics/predictions (the prediction object,
  `metrics.predict_time`), .../predictions/lifecycle (statuses), .../rate-limits (429),
  and the Bearer scheme from https://replicate.com/changelog/2024-04-03-bearer-tokens
  (`Token` still works; `Bearer` is what the docs use now).
- Outputs are URLs (replicate.delivery) fetched without our token (it only goes to
  `api_base`), decoded with Pillow and fitted to the portrait's size, like every stylizer's.

Reference models (`paint_from_references`, a ReferenceStylizer): a style whose model maps
`images` gets every photo of the customer (the primary first, at most the model's
`max_images`) as a list of data URIs, and the size asked for as the nearest of the model's
`aspect_ratios`; one prediction per seed. The catalog's default is FLUX.2 [klein] 4B
(Apache-2.0), an official model: official models are run by name, without a version
(`POST /v1/models/{owner}/{name}/predictions {"input"}`,
https://replicate.com/docs/reference/http#models.predictions.create; its inputs prompt,
images (at most 5), aspect_ratio, seed, output_format from
https://replicate.com/black-forest-labs/flux-2-klein-4b/api). A portrait given to
`stylize_variants` is such a model's one reference, at the portrait's aspect. Replicate
prices these models per image: the model's `price_per_image` (else the stylizer's) is
charged per picture a prediction that succeeded gave (and its seconds are not). Such a
model has no denoising strength: when the identity gate retries below the style's own
strength, the prompt asks outright to keep the face (`reference_inputs.keep_more`).

A retried step never pays twice: each prediction is named by `request_key` (the model
version, the picture, the inputs) in the prediction journal. One that succeeded is read
back and its outputs fetched again (counted as reused); one still starting or processing
(the worker died while it ran) is polled again; only a failed, canceled or unknown one is
created anew. The record is saved when the prediction is created and when it ends. What is
left: a worker that dies between Replicate's answer to the create and the journal's save
leaves a prediction nobody waits for (Replicate has no idempotency key to close that gap),
and a create whose answer is lost (5xx, a dropped connection) may have created one too.

Polling only, no webhooks. Replicate does sign webhooks (headers webhook-id,
webhook-timestamp, webhook-signature over "id.timestamp.body", with the account's key from
`GET /v1/webhooks/default/secret`; https://replicate.com/docs/topics/webhooks/verify-webhook),
but a webhook needs a public HTTPS endpoint reachable from Replicate, which our run workers
do not have, and the step has to block until the pictures exist anyway. The journal
already makes a restarted step pick up where the last one stopped, which is what a webhook
would otherwise buy us. Nor is `Prefer: wait` used: the record must be saved before the
wait, not after it.

Usage (`take_usage`) is metered when a prediction's end is seen, so a prediction is paid
for once across retries: `predictions` are those that ended in this call (created here, or
resumed after a crash), `reused` the succeeded ones fetched again for free.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from photogen_pipelines.catalog import ReplicateModel
from photogen_pipelines.engines.base import Usage
from photogen_pipelines.engines.predictions import PredictionJournal, PredictionRecord, request_key
from photogen_pipelines.engines.reference_inputs import (
    check_references,
    fit_picture,
    keep_more,
    nearest_ratio,
    references_digest,
)
from photogen_pipelines.engines.remote import EngineUnavailable
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.http import HttpClient, NoAnswer, RetryPolicy, Timeout

if TYPE_CHECKING:
    import requests

PROVIDER = "replicate"
DATA_URI_MAX_BYTES = 1_000_000  # Replicate's guide: data URIs for files below about 1 MB
REQUEST_TIMEOUT = Timeout(10.0, 60.0)  # (connect, read) seconds for one HTTP call
MAX_RATE_LIMIT_WAIT = 60.0  # seconds: a longer Retry-After is cut to this
FIRST_BACKOFF_SECONDS = 1.0  # a 429 without Retry-After waits 1, 2, 4... seconds
PICTURES = frozenset({"image", "images"})  # our picture fields, filled when a prediction is created
RUNNING = frozenset({"starting", "processing"})
ENDED = frozenset({"succeeded", "failed", "canceled", "aborted"})
REFUSED = re.compile(r"nsfw|safety|unsafe|sensitive|content policy|moderat|flagged", re.IGNORECASE)
MAX_PROVIDER_TEXT = 300

_sleep = time.sleep  # the tests count the waits


class ReplicateRetryable(EngineUnavailable):
    """A Replicate failure worth trying again later (timed out, rate limited, a failed run):
    an EngineUnavailable, so the assets' retries treat it like the engine service's."""

    code = "replicate_unavailable"


@dataclass
class _Job:
    """One prediction this call needs: its journal key, its input, how many pictures it
    gives, and what Replicate last said about it."""

    key: str
    input: dict[str, Any]
    expect: int
    price_per_image: float = 0.0
    price_per_second: float = 0.0
    prediction: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    metered: bool = False

    @property
    def id(self) -> str:
        return self.prediction["id"]

    @property
    def status(self) -> str:
        return self.prediction.get("status", "")


class ReplicateStylizer:
    """Paints portraits with a model on Replicate; a SeededStylizer, a MeteredStylizer and,
    with a reference model, a ReferenceStylizer."""

    name = "replicate"
    version = "replicate-http-v1"
    params_section = "replicate"
    max_references = 5  # FLUX.2 [klein]'s `images` takes at most 5; a model's `max_images` may say fewer

    def __init__(
        self,
        api_token: str,
        *,
        api_base: str = "https://api.replicate.com/v1",
        journal: PredictionJournal,
        price_per_second: float = 0.0,
        price_per_prediction: float = 0.0,
        price_per_image: float = 0.0,
        steps: int | None = None,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        max_rate_limit_waits: int = 5,
        session: requests.Session | None = None,
    ):
        self._token = api_token  # checked on the first call: a resource can be built without one
        self.api_base = api_base.rstrip("/")
        self.journal = journal
        self.price_per_second, self.price_per_prediction = price_per_second, price_per_prediction
        self.price_per_image = price_per_image  # a model's own price_per_image wins
        self.steps = steps
        self.poll_seconds, self.timeout_seconds = poll_seconds, timeout_seconds
        self.max_rate_limit_waits = max_rate_limit_waits
        # Replicate's rate limiter refuses before doing anything, so a 429 is waited out
        # whatever the call (a create too), at most `max_rate_limit_waits` times; without
        # jitter: its waits have always been exactly 1, 2, 4... s. An API that cannot be
        # reached is tried once more, then left to the step's retry. The waits go through
        # `_sleep`, looked up at each wait (the tests count them).
        retry = RetryPolicy(
            attempts=max_rate_limit_waits + 1,
            no_answer_attempts=2,
            any_method=frozenset({429}),
            backoff=FIRST_BACKOFF_SECONDS,
            max_backoff=MAX_RATE_LIMIT_WAIT,
            jitter=0.0,
            max_retry_after=MAX_RATE_LIMIT_WAIT,
        )
        self.session = HttpClient(
            self.api_base, timeout=REQUEST_TIMEOUT, retry=retry, session=session, sleep=lambda seconds: _sleep(seconds)
        )
        self.data_uri_max_bytes = DATA_URI_MAX_BYTES
        self._usage = Usage(backend=PROVIDER)
        self._usage_lock = threading.Lock()

    # -- the stylizer -------------------------------------------------------------------

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        """One picture, seeded by a digest of the request: the same call, the same seed."""
        return self.stylize_variants(rgb, params, strength, [_content_seed(rgb, params, strength)])[0]

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        """One picture per seed of `rgb` (HxWx3 uint8), each of the portrait's size."""
        _check_picture(rgb)
        model = _check_call(params, strength, seeds)
        if "images" in model.inputs:  # a reference model: the portrait is its one photo
            return self.paint_from_references([rgb], params, strength, seeds, (rgb.shape[1], rgb.shape[0]))
        jobs = self._plan(model, rgb, params, float(strength), [int(seed) for seed in seeds])
        picture = _Picture(self, rgb)
        return self._run(jobs, model, lambda: {model.inputs["image"]: picture.reference()}, (rgb.shape[1], rgb.shape[0]))

    def paint_from_references(
        self, references: list[np.ndarray], params: dict, strength: float, seeds: list[int], size: tuple[int, int]
    ) -> list[np.ndarray]:
        """One picture per seed, painted from every photo (the primary first), at `size`
        (width, height). A style whose model takes one picture (InstantID) gets the primary
        photo alone, its pictures fitted to `size`."""
        check_references(references, size, "the Replicate stylizer")
        model = _check_call(params, strength, seeds)
        if "images" not in model.inputs:
            pictures = self.stylize_variants(np.ascontiguousarray(references[0]), params, strength, seeds)
            return [fit_picture(Image.fromarray(picture), (int(size[0]), int(size[1]))) for picture in pictures]
        if isinstance(params.get("prompt"), str):  # no denoising strength: a lower one asks to keep the face
            params = {**params, "prompt": keep_more(params["prompt"], float(strength), params.get("strength"))}
        kept = list(references[: min(self.max_references, model.max_images)])
        extra = {"aspect_ratio": nearest_ratio(size, model.aspect_ratios)} if "aspect_ratio" in model.inputs else {}
        key_extra = {"references": references_digest(kept[1:])} if len(kept) > 1 else {}
        jobs = self._plan(model, kept[0], params, float(strength), [int(seed) for seed in seeds], extra, key_extra)
        photos = [_Picture(self, np.ascontiguousarray(photo)) for photo in kept]
        return self._run(jobs, model, lambda: {model.inputs["images"]: [photo.reference() for photo in photos]}, size)

    def take_usage(self) -> Usage:
        with self._usage_lock:
            usage, self._usage = self._usage, Usage(backend=PROVIDER)
        return usage

    def _run(
        self, jobs: list[_Job], model: ReplicateModel, pictures: Callable[[], dict[str, Any]], size: tuple[int, int]
    ) -> list[np.ndarray]:
        """Find or create every job's prediction, then wait for each: its pictures at `size`
        (width, height). `pictures` gives the picture inputs, encoded only when a
        prediction has to be created."""
        for job in jobs:
            self._find_or_create(job, model, pictures)
        deadline = time.monotonic() + self.timeout_seconds
        outputs: list[np.ndarray] = []
        try:
            for job in jobs:
                self._wait(job, deadline)
                outputs += self._outputs(job, size)
        except (BadInput, _TimedOut):
            self._cancel_running(jobs)
            raise
        return outputs

    # -- plan: which predictions, with which inputs --------------------------------------

    def _plan(
        self,
        model: ReplicateModel,
        rgb: np.ndarray,
        params: dict,
        strength: float,
        seeds: list[int],
        extra: dict | None = None,
        key_extra: dict | None = None,
    ) -> list[_Job]:
        ours = {name: params[name] for name in model.inputs if name in params}
        ours["strength"] = strength
        if self.steps is not None:
            ours["steps"] = self.steps
        if "num_outputs" in model.inputs:
            batches = [(seeds[0], len(seeds))]
        else:
            batches = [(seed, 1) for seed in seeds]
        jobs = []
        for seed, count in batches:
            values = {**ours, "seed": seed, "num_outputs": count, **(extra or {})}
            fields = {model.inputs[name]: values[name] for name in model.inputs if name not in PICTURES and name in values}
            missing = set(model.inputs) - set(values) - PICTURES - {"steps"}
            if missing:
                raise ModelError(
                    f"the style maps {sorted(missing)} to Replicate inputs but has no value for them",
                    code="replicate_bad_config",
                )
            fields.update(model.fixed)
            key = request_key(PROVIDER, f"{model.model}:{model.version or 'official'}", rgb, {**fields, **(key_extra or {})})
            if model.price_per_image is None:  # billed by the second (and the shop's price of a picture)
                prices = {"price_per_image": self.price_per_image, "price_per_second": self.price_per_second}
            else:  # a model Replicate prices per picture: its time is not billed
                prices = {"price_per_image": model.price_per_image, "price_per_second": 0.0}
            jobs.append(_Job(key=key, input=fields, expect=count, **prices))
        return jobs

    # -- find or create ------------------------------------------------------------------

    def _find_or_create(self, job: _Job, model: ReplicateModel, pictures: Callable[[], dict[str, Any]]) -> None:
        record = self.journal.find(job.key)
        if record is not None and record.status == "succeeded":
            prediction = self._get_or_none(record.prediction_id)
            if prediction is not None and _usable(prediction):
                job.prediction, job.reused, job.metered = prediction, True, True
                return
        elif record is not None and record.status in RUNNING:
            prediction = self._get_or_none(record.prediction_id)
            if prediction is not None:
                # created by an attempt that did not see its end: wait for it, unless it
                # ended badly meanwhile (paid for all the same: saved and metered)
                job.prediction = prediction
                if job.status not in ENDED or job.status == "succeeded":
                    return
                self._end(job)
        body: dict[str, Any] = {"input": {**pictures(), **job.input}}
        if model.version:
            path = "/predictions"
            body["version"] = model.version
        else:  # an official model: run by name, on the version Replicate serves now
            path = f"/models/{model.model}/predictions"
        job.prediction = self._prediction("POST", path, "creating a prediction", json=body)
        job.metered = False
        self._save(job)

    def _get_or_none(self, prediction_id: str) -> dict | None:
        try:
            return self._prediction("GET", f"/predictions/{prediction_id}", "reading a prediction")
        except ModelError as exc:
            if exc.code == "replicate_not_found":
                return None  # another account's, or gone: ask again
            raise

    # -- wait ----------------------------------------------------------------------------

    def _wait(self, job: _Job, deadline: float) -> None:
        """Poll until the prediction ends; its end is saved and metered, then judged."""
        unreachable: EngineUnavailable | None = None
        while job.status not in ENDED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f" (the API last answered: {unreachable})" if unreachable else ""
                raise _TimedOut(
                    f"Replicate prediction {job.id} did not finish within {self.timeout_seconds:g} s{why}; canceling it",
                    code="replicate_timeout",
                )
            _sleep(min(self.poll_seconds, remaining))
            try:
                job.prediction = self._prediction("GET", f"/predictions/{job.id}", "polling a prediction")
                unreachable = None
            except EngineUnavailable as exc:  # a blip while it runs: keep polling until the deadline
                unreachable = exc
        self._end(job)
        _judge(job.prediction)

    def _end(self, job: _Job) -> None:
        """Save a prediction's end in the journal and meter it, once."""
        if job.metered:
            return
        job.metered = True
        seconds = _predict_seconds(job.prediction)
        images = job.expect if job.status == "succeeded" else 0  # per-image prices bill pictures made
        cost = seconds * job.price_per_second + self.price_per_prediction + images * job.price_per_image
        self._save(job, predict_seconds=seconds, cost=cost)
        with self._usage_lock:
            self._usage = self._usage + Usage(
                backend=PROVIDER, seconds=seconds, predict_seconds=seconds, predictions=1, cost_usd=cost
            )

    def _cancel_running(self, jobs: list[_Job]) -> None:
        """Cancel what this call no longer waits for; a cancel that fails leaves the
        prediction in the journal as running, for the next attempt to pick up."""
        for job in jobs:
            if not job.prediction or job.status in ENDED:
                continue
            try:
                job.prediction = self._prediction("POST", f"/predictions/{job.id}/cancel", "canceling a prediction")
            except ModelError:
                continue
            if job.status in ENDED:
                self._end(job)

    # -- outputs -------------------------------------------------------------------------

    def _outputs(self, job: _Job, size: tuple[int, int]) -> list[np.ndarray]:
        """The prediction's pictures at `size` (width, height)."""
        urls = _output_urls(job.prediction)
        if len(urls) < job.expect:
            self._discard(job)
            raise ReplicateRetryable(
                f"Replicate prediction {job.id} gave {len(urls)} pictures where {job.expect} were asked for",
                code="replicate_bad_output",
            )
        pictures = [fit_picture(self._download(job, url), size) for url in urls[: job.expect]]
        if job.reused:
            with self._usage_lock:
                self._usage = self._usage + Usage(backend=PROVIDER, reused=1)
        return pictures

    def _download(self, job: _Job, url: str) -> Image.Image:
        if url.startswith("data:"):
            data = _data_uri_bytes(url)
        else:
            try:
                response = self.session.get(url, follow_redirects=True)  # without our token
            except NoAnswer as failure:
                raise ReplicateRetryable(f"could not download a Replicate output ({type(failure.error).__name__})") from None
            if response.status_code in (404, 410):
                self._discard(job)  # the outputs are gone (deleted an hour after the run): run it again
                raise ReplicateRetryable(
                    f"the outputs of Replicate prediction {job.id} are gone (HTTP {response.status_code})",
                    code="replicate_bad_output",
                )
            if response.status_code != 200:
                raise ReplicateRetryable(f"downloading a Replicate output failed with HTTP {response.status_code}")
            data = response.content
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
            self._discard(job)
            raise ReplicateRetryable(
                f"an output of Replicate prediction {job.id} is not a picture Pillow can read", code="replicate_bad_output"
            ) from None
        return image.convert("RGB")

    def _discard(self, job: _Job) -> None:
        """A succeeded prediction whose outputs cannot be used is not reused by a retry
        (its record keeps what it cost)."""
        record = self.journal.find(job.key) or PredictionRecord(job.key, PROVIDER, job.id, "failed")
        self.journal.save(replace(record, status="failed"))

    # -- the journal and the HTTP API ----------------------------------------------------

    def _save(self, job: _Job, *, predict_seconds: float | None = None, cost: float | None = None) -> None:
        status = "canceled" if job.status == "aborted" else job.status
        self.journal.save(
            PredictionRecord(
                key=job.key,
                provider=PROVIDER,
                prediction_id=job.id,
                status=status,
                predict_seconds=predict_seconds,
                cost_usd=cost,
            )
        )

    def _prediction(self, method: str, path: str, action: str, **kwargs: Any) -> dict:
        """A predictions endpoint's answer: the prediction object."""
        response = self._call(method, path, action, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("id"):
            raise ReplicateRetryable(f"Replicate: {action} got an answer that is not a prediction")
        return body

    def upload(self, png: bytes) -> str:
        """Upload a picture with the files API; its URL, to send as a model input."""
        files = {"content": ("portrait.png", png, "image/png")}
        response = self._call("POST", "/files", "uploading the picture", files=files)
        try:
            return response.json()["urls"]["get"]
        except (ValueError, KeyError, TypeError):
            raise ReplicateRetryable("Replicate: the file upload answered without the file's URL") from None

    def _call(self, method: str, path: str, action: str, **kwargs: Any) -> requests.Response:
        """One API call with our token, through the outbound layer: rate limits waited out
        (Retry-After, else 1, 2, 4... s, at most `max_rate_limit_waits` times), a read
        answered 502/503/504 tried again; any other failure becomes our error."""
        if not self._token:
            raise ModelError("no Replicate API token is configured", code="replicate_auth_failed")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            response = self.session.request(method, path, headers=headers, **kwargs)
        except NoAnswer as failure:
            raise ReplicateRetryable(
                f"Replicate: {action} failed: could not reach the API ({type(failure.error).__name__})"
            ) from None
        if response.status_code == 429:
            raise ReplicateRetryable(
                f"Replicate: {action} is still rate limited after {self.max_rate_limit_waits} waits: {_problem(response)}",
                code="replicate_rate_limited",
            )
        _raise_for_status(response, action)
        return response


class _TimedOut(ReplicateRetryable):
    """The wait ran out: the call cancels what still runs, then fails (retryable)."""

    code = "replicate_timeout"


class _Picture:
    """The portrait as Replicate takes it, encoded (and uploaded) once, only when needed."""

    def __init__(self, stylizer: ReplicateStylizer, rgb: np.ndarray):
        self.stylizer, self.rgb = stylizer, rgb
        self._reference: str | None = None

    def reference(self) -> str:
        if self._reference is None:
            buffer = io.BytesIO()
            Image.fromarray(self.rgb).save(buffer, format="PNG")
            png = buffer.getvalue()
            if len(png) <= self.stylizer.data_uri_max_bytes:
                self._reference = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            else:
                self._reference = self.stylizer.upload(png)
        return self._reference


# -- helpers -----------------------------------------------------------------------------


def _check_picture(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"the Replicate stylizer needs an HxWx3 uint8 RGB array, got {got}")


def _check_call(params: dict, strength: float, seeds: list[int]) -> ReplicateModel:
    """The arguments checked; the style's Replicate model, validated."""
    if not (isinstance(strength, int | float | np.floating) and 0.0 < strength <= 1.0):
        raise ValueError(f"strength must be within (0, 1], got {strength!r}")
    if not seeds or not all(isinstance(seed, int | np.integer) and not isinstance(seed, bool) for seed in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    section = params.get("replicate") if isinstance(params, dict) else None
    if section is None:
        raise ModelError(
            "the style has no `replicate` section: the Replicate backend needs the style's model and input mapping",
            code="replicate_bad_config",
        )
    try:
        return section if isinstance(section, ReplicateModel) else ReplicateModel.model_validate(section)
    except ValidationError as exc:
        raise ModelError(f"invalid Replicate model for the style: {exc}", code="replicate_bad_config") from None


def _judge(prediction: dict) -> None:
    """Raise for a prediction that ended without pictures."""
    status = prediction.get("status")
    if status == "succeeded":
        return
    text = _trim(str(prediction.get("error") or "no error text"))
    if status == "failed" and REFUSED.search(text):
        raise BadInput(
            f"the picture or the style's prompt was refused by the model's safety filter: {text}", code="content_refused"
        )
    what = f"failed: {text}" if status == "failed" else f"was {status} before it finished"
    raise ReplicateRetryable(f"Replicate prediction {prediction.get('id')} {what}", code="replicate_prediction_failed")


def _usable(prediction: dict) -> bool:
    """A succeeded prediction whose outputs can still be fetched."""
    return prediction.get("status") == "succeeded" and not prediction.get("data_removed") and bool(_output_urls(prediction))


def _output_urls(prediction: dict) -> list[str]:
    output = prediction.get("output")
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [item for item in output if isinstance(item, str)]
    return []


def _predict_seconds(prediction: dict) -> float:
    metrics = prediction.get("metrics") or {}
    try:
        seconds = float(metrics.get("predict_time") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _raise_for_status(response: requests.Response, action: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _problem(response)
    message = f"Replicate: {action} was answered HTTP {status}: {detail}"
    if status in (401, 403):
        raise ModelError(message + " (check the Replicate API token)", code="replicate_auth_failed")
    if status == 402:
        raise ModelError(message + " (the Replicate account needs credit)", code="replicate_billing")
    if status in (400, 422):
        raise ModelError(message + " (check the style's Replicate input mapping)", code="replicate_invalid_input")
    if status == 404:
        raise ModelError(message, code="replicate_not_found")
    if status == 408 or status >= 500:
        raise ReplicateRetryable(message)
    raise ModelError(message, code="replicate_error")


def _problem(response: requests.Response) -> str:
    """The API's error text (a problem-details body: title, detail), trimmed."""
    try:
        body = response.json()
    except ValueError:
        return _trim(response.text or response.reason or "")
    if isinstance(body, dict):
        parts = [str(body[name]) for name in ("title", "detail") if body.get(name)]
        if parts:
            return _trim(": ".join(parts))
    return _trim(json.dumps(body))


def _data_uri_bytes(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    try:
        return base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
    except ValueError:
        return b""


def _content_seed(rgb: np.ndarray, params: dict, strength: float) -> int:
    digest = hashlib.sha256(np.ascontiguousarray(rgb).tobytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(f"{strength:.6f}".encode())
    return int.from_bytes(digest.digest()[:4], "big")


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PROVIDER_TEXT else text[: MAX_PROVIDER_TEXT - 1] + "…"
