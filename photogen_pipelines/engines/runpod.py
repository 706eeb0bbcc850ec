"""Our own engines on RunPod Serverless: a RunPod endpoint runs deploy/runpod/handler.py
(SDXL + InstantID and Real-ESRGAN, the code `PHOTOGEN_ENGINE=diffusers` runs locally) and
these engines send it jobs over RunPod's queue API. No `runpod` package: plain HTTP through
the outbound layer (photogen_pipelines/http.py), as RunPod documents it
(https://docs.runpod.io/serverless/endpoints/send-requests, …/operation-reference, …/job-states):

    POST {api_base}/{endpoint}/run        {"input": {...}}  → {"id", "status": "IN_QUEUE"}
    POST {api_base}/{endpoint}/runsync    the same, answered when done (or still running)
    GET  {api_base}/{endpoint}/status/ID  → IN_QUEUE → IN_PROGRESS → COMPLETED {output,
                                            executionTime, delayTime (ms)} | FAILED {error}
                                            | CANCELLED | TIMED_OUT
    POST {api_base}/{endpoint}/cancel/ID

with `Authorization: Bearer <key>` (what RunPod's own Python SDK sends; its docs show the
bare key too). The pictures travel as base64 PNG inside the JSON, within RunPod's payload
limits (10 MB on /run, 20 MB on /runsync: a larger request fails here before it is sent;
the worker returns larger outputs as S3 links when it has a bucket, see deploy/runpod/).

A retried step never pays twice for the same job: each request is named by
`request_key("runpod", endpoint_id, picture, fields)` in the prediction journal
(engines/predictions.py), saved when the job is submitted and when it ends. A job the
journal says succeeded is read back with /status, not run again (RunPod keeps a /run
result 30 minutes, a /runsync one 1 minute: past that it is submitted again, and paid);
one still queued or running, from a step that died, is waited on again. RunPod has no
idempotency key of its own, so a /run whose answer is lost (the job created, its id never
seen) is the one case that can run twice.

Errors: a refused key (401/403) is ModelError `runpod_auth_failed`, an unknown endpoint
(404) `runpod_endpoint_not_found`, a job the worker failed `runpod_job_failed` (with the
worker's message); retryable, as EngineUnavailable: 429 after `max_rate_limit_waits`
waits (`runpod_rate_limited`), 5xx and lost connections, a job RunPod timed out or one
that outlived `timeout_seconds` (cancelled first; `runpod_timeout`).

Metering (`take_usage`): every job that ran for this engine counts in `predictions`
(failed ones too: RunPod bills them), with its `executionTime` as `seconds` and
`predict_seconds` and `seconds * price_per_second` as its cost; a job resumed after its
step died counts here (the dead step never reported it); one read back from the journal
counts in `reused`, at no cost; one we cancelled counts the time it was seen running.
RunPod bills a worker from its start to its stop (cold start, execution, idle timeout),
but only the execution belongs to one job: a cold start is paid once for many jobs, and a
job's `delayTime` mixes that start with time in the queue, which is not billed. So an
order's cost here is its own GPU time; cold starts and idle time are the endpoint's
overhead, in RunPod's invoice rather than in any one order (a lower bound, on purpose).

RunPod's public endpoints (hosted models, engines/runpod_qwen_edit.py) speak the same
queue API and differ only in their input and output: `run_job` takes the request's key
and input as given, an output may be `{"image_url", "cost"}`
(https://docs.runpod.io/public-endpoints/requests, "Response format"), and a job is then
metered at the `cost` it states, else at `price_per_image` per picture it made.

The journal keeps RunPod's states in its own words: IN_QUEUE → starting, IN_PROGRESS →
processing, COMPLETED → succeeded, FAILED and TIMED_OUT → failed, CANCELLED → canceled.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from photogen_pipelines.engines.base import Usage, check_upscale_input
from photogen_pipelines.engines.predictions import PredictionJournal, PredictionRecord, request_key
from photogen_pipelines.engines.remote import EngineUnavailable
from photogen_pipelines.engines.stylize_instantid import content_seed
from photogen_pipelines.errors import ModelError
from photogen_pipelines.http import HttpClient, NoAnswer, RetryPolicy, Timeout
from photogen_pipelines.imaging.images import png_bytes

if TYPE_CHECKING:
    import requests

PROVIDER = "runpod"
DEFAULT_API_BASE = "https://api.runpod.ai/v2"
# RunPod's documented request payload limits (operation reference)
RUN_PAYLOAD_LIMIT = 10_000_000
RUNSYNC_PAYLOAD_LIMIT = 20_000_000
RUNSYNC_MAX_WAIT_MS = 300_000  # ?wait= takes 1000-300000 ms
# the job states RunPod reports, and the journal's words for them
WAITING = {"IN_QUEUE": "starting", "IN_PROGRESS": "processing", "RUNNING": "processing"}
ENDED = {"COMPLETED": "succeeded", "FAILED": "failed", "CANCELLED": "canceled", "TIMED_OUT": "failed"}
REQUEST_TIMEOUT = Timeout(10.0, 60.0)  # (connect, read) seconds of one API call
CANCEL_TIMEOUT = Timeout(5.0, 10.0)
MAX_RETRY_AFTER = 60.0  # seconds: the longest wait after a 429, Retry-After or backoff
MAX_ERROR_TEXT = 300


class _Gone(Exception):
    """RunPod no longer knows the job (its result expired, or the id is not its)."""


@dataclass(frozen=True)
class JobResult:
    """A finished job's pictures and what the worker said of them."""

    job_id: str
    images: list[np.ndarray]
    engine: dict  # the worker's engine: name, version
    engine_seconds: float | None  # the worker's own clock around the engine


class RunPodClient:
    """One RunPod endpoint's jobs: submit, wait, read back, cancel; journaled and metered.
    Thread-safe: engines are shared process-wide (factories.py)."""

    def __init__(
        self,
        api_key: str,
        endpoint_id: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        journal: PredictionJournal,
        price_per_second: float = 0.0,
        price_per_image: float = 0.0,
        sync: bool = False,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        max_rate_limit_waits: int = 5,
        session: requests.Session | None = None,
    ):
        if not api_key:
            raise ModelError("the RunPod engine needs an API key (PHOTOGEN_RUNPOD_API_KEY)", code="runpod_auth_failed")
        if not endpoint_id or "/" in endpoint_id:
            raise ModelError(
                f"the RunPod engine needs an endpoint id (PHOTOGEN_RUNPOD_ENDPOINT_ID), got {endpoint_id!r}",
                code="runpod_endpoint_not_found",
            )
        self.endpoint_id = endpoint_id
        self.base = f"{api_base.rstrip('/')}/{endpoint_id}"
        self.journal = journal
        self.price_per_second = price_per_second
        self.price_per_image = price_per_image  # a public endpoint's price, when its answer states none
        self.sync = sync
        self.poll_seconds = max(poll_seconds, 0.001)
        self.timeout_seconds = timeout_seconds
        self.max_rate_limit_waits = max_rate_limit_waits
        # A 429 is waited out whatever the call (RunPod refuses it before queueing anything):
        # Retry-After, else a backoff from poll_seconds, at most `max_rate_limit_waits` times.
        # Other answers are not tried again here, and a call that got no answer only once:
        # a lost /status answer fails the call, and the step's retry resumes the job from
        # the journal.
        retry = RetryPolicy(
            attempts=max_rate_limit_waits + 1,
            no_answer_attempts=2,
            statuses=frozenset({429}),
            any_method=frozenset({429}),
            backoff=self.poll_seconds,
            max_backoff=MAX_RETRY_AFTER,
            max_retry_after=MAX_RETRY_AFTER,
        )
        self.session = HttpClient(self.base, timeout=REQUEST_TIMEOUT, retry=retry, session=session)
        self._auth = {"Authorization": f"Bearer {api_key}"}  # per request: never sent to the S3 links
        self._lock = threading.Lock()
        self._usage = Usage(backend=PROVIDER)

    # --- metering

    def take_usage(self) -> Usage:
        with self._lock:
            usage, self._usage = self._usage, Usage(backend=PROVIDER)
        return usage

    def _meter(self, execution: float | None, reused: bool = False, cost: float | None = None) -> None:
        """One job: run here (paid, whatever its outcome; `execution` seconds of it, at
        `cost` or the price of a second) or read back from an earlier step (`reused`, paid then)."""
        if reused:
            used = Usage(backend=PROVIDER, reused=1)
        else:
            seconds = execution or 0.0
            used = Usage(
                backend=PROVIDER,
                seconds=seconds,
                predict_seconds=seconds,
                predictions=1,
                cost_usd=seconds * self.price_per_second if cost is None else cost,
            )
        with self._lock:
            self._usage = self._usage + used

    # --- jobs

    def run(self, image: np.ndarray, fields: dict) -> JobResult:
        """The job `{"image": <image as PNG>, **fields}` (our worker's): read back, resumed or submitted."""
        return self.run_job(image, fields, lambda: {"image": base64.b64encode(png_bytes(image)).decode("ascii"), **fields})

    def run_job(self, image: np.ndarray, key_fields: dict, job_input: Callable[[], dict]) -> JobResult:
        """A job named in the journal by `image` and `key_fields`: read back, resumed, or
        submitted with the input `job_input()` (built only then)."""
        key = request_key(PROVIDER, self.endpoint_id, image, key_fields)
        record = self.journal.find(key)
        result = None
        if record is not None and record.provider == PROVIDER:
            result = self._from_journal(key, record)
        if result is None:
            result = self._submit(key, job_input())
        return result

    def _from_journal(self, key: str, record: PredictionRecord) -> JobResult | None:
        """The recorded job's result, or None when it has to be submitted (again)."""
        if record.status == "succeeded":
            try:
                job = self._status(record.prediction_id)
            except _Gone:
                return None  # RunPod has forgotten its result: the job runs again, and is paid again
            if job.get("status") != "COMPLETED":
                return None
            try:
                result = self._result(job)
            except ModelError:
                return None  # its pictures are gone (an expired link): render them again
            self._meter(None, reused=True)
            return result
        if record.status in ("starting", "processing"):  # a step that died while its job ran
            try:
                job = self._status(record.prediction_id)
            except _Gone:
                return None
            return self._finish(key, self._wait(key, job, time.monotonic()))
        return None  # failed or cancelled: try again

    def _submit(self, key: str, job_input: dict) -> JobResult:
        started = time.monotonic()
        body = json.dumps({"input": job_input}, separators=(",", ":")).encode()
        if self.sync:
            wait_ms = int(min(max(self.timeout_seconds, 1.0) * 1000, RUNSYNC_MAX_WAIT_MS))
            path, limit, timeout = f"/runsync?wait={wait_ms}", RUNSYNC_PAYLOAD_LIMIT, Timeout(10.0, wait_ms / 1000 + 30.0)
        else:
            path, limit, timeout = "/run", RUN_PAYLOAD_LIMIT, REQUEST_TIMEOUT
        if len(body) > limit:
            raise ModelError(
                f"runpod: the job is {len(body) / 1e6:.1f} MB, past RunPod's {limit / 1e6:.0f} MB limit of {path.split('?')[0]}",
                code="runpod_payload_too_large",
            )
        try:
            job = self._call("POST", path, body=body, timeout=timeout)
        except _Gone:
            raise ModelError(
                f"runpod: no endpoint {self.endpoint_id!r} (HTTP 404); check PHOTOGEN_RUNPOD_ENDPOINT_ID",
                code="runpod_endpoint_not_found",
            ) from None
        job_id = job.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise ModelError(f"runpod: {path.split('?')[0]} answered without a job id: {_trim(job)}", code="runpod_bad_answer")
        self._save(key, job_id, job.get("status"))
        return self._finish(key, self._wait(key, {**job, "id": job_id}, started))

    def _wait(self, key: str, job: dict, started: float) -> dict:
        """Poll until the job ends; `timeout_seconds` after `started`, cancel it."""
        job_id = job["id"]
        deadline = started + self.timeout_seconds
        interval = self.poll_seconds
        longest = max(self.poll_seconds, min(5.0, self.poll_seconds * 8))
        running_since = None
        while True:
            status = job.get("status")
            if status in ENDED:
                return job
            if status not in WAITING:
                raise ModelError(f"runpod: job {job_id} has an unknown status {status!r}", code="runpod_bad_answer")
            if running_since is None and WAITING[status] == "processing":
                running_since = time.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._cancel(job_id)
                # RunPod reports no executionTime for a job it did not finish: the time it
                # was seen running is what it is billed, near enough
                ran = time.monotonic() - running_since if running_since is not None else 0.0
                self._save(key, job_id, "CANCELLED", ran)
                self._meter(ran)
                raise EngineUnavailable(
                    f"runpod: job {job_id} was still {status} after {self.timeout_seconds:.0f} s; cancelled",
                    code="runpod_timeout",
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, longest)
            try:
                job = self._status(job_id)
            except _Gone:
                self._save(key, job_id, "FAILED")
                raise EngineUnavailable(f"runpod: job {job_id} vanished while {status}", code="runpod_job_lost") from None

    def _finish(self, key: str, job: dict) -> JobResult:
        job_id, status = job.get("id"), job.get("status")
        execution = _seconds(job.get("executionTime"))
        cost = self._cost(job, execution)
        self._meter(execution, cost=cost)
        if status == "COMPLETED":
            try:
                result = self._result(job)
            except ModelError:
                self._save(key, job_id, "FAILED", execution, cost)  # unusable: a retry renders it again
                raise
            self._save(key, job_id, status, execution, cost)
            return result
        self._save(key, job_id, status, execution, cost)
        if status == "TIMED_OUT":
            raise EngineUnavailable(f"runpod: RunPod timed job {job_id} out", code="runpod_timeout")
        if status == "CANCELLED":
            raise ModelError(f"runpod: job {job_id} was cancelled on RunPod", code="runpod_job_cancelled")
        raise ModelError(f"runpod: the worker failed job {job_id}: {_worker_error(job.get('error'))}", code="runpod_job_failed")

    def _result(self, job: dict) -> JobResult:
        output = job.get("output")
        if not isinstance(output, dict):
            raise ModelError(f"runpod: job {job.get('id')} has no output object: {_trim(output)}", code="runpod_bad_answer")
        if isinstance(output.get("images"), list):
            images = [_decode_png(item) for item in output["images"]]
        elif isinstance(output.get("image_urls"), list):
            images = [self._download(url) for url in output["image_urls"]]
        elif isinstance(output.get("image_url"), str):  # a public endpoint's one picture
            images = [self._download(output["image_url"])]
        else:
            raise ModelError(f"runpod: job {job.get('id')} output has no images: {_trim(output)}", code="runpod_bad_answer")
        engine = output.get("engine") if isinstance(output.get("engine"), dict) else {}
        return JobResult(str(job.get("id")), images, engine, _seconds(output.get("seconds")))

    def _cost(self, job: dict, execution: float | None) -> float:
        """What a job that ended cost: the `cost` its output states (a public endpoint's),
        else its seconds at the price of a second plus its pictures at the price of one."""
        output = job.get("output") if isinstance(job.get("output"), dict) else {}
        stated = output.get("cost")
        if isinstance(stated, int | float) and not isinstance(stated, bool) and math.isfinite(stated) and stated >= 0:
            return float(stated)
        made = 0
        if job.get("status") == "COMPLETED":
            listed = output.get("images", output.get("image_urls"))
            made = len(listed) if isinstance(listed, list) else int(isinstance(output.get("image_url"), str))
        return (execution or 0.0) * self.price_per_second + made * self.price_per_image

    def _save(
        self, key: str, job_id: str | None, status: str | None, execution: float | None = None, cost: float | None = None
    ) -> None:
        words = WAITING.get(status or "") or ENDED.get(status or "") or "failed"
        if cost is None and execution is not None:
            cost = execution * self.price_per_second
        self.journal.save(
            PredictionRecord(
                key=key, provider=PROVIDER, prediction_id=str(job_id), status=words, predict_seconds=execution, cost_usd=cost
            )
        )

    # --- HTTP

    def _status(self, job_id: str) -> dict:
        job = self._call("GET", f"/status/{job_id}")
        if "status" not in job:
            raise _Gone(job_id)  # an answer about no job (RunPod words its errors as {"error": ...})
        return {"id": job_id, **job}

    def _cancel(self, job_id: str) -> None:
        try:
            self._call("POST", f"/cancel/{job_id}", timeout=CANCEL_TIMEOUT)
        except (ModelError, _Gone):
            pass  # best effort: RunPod's own execution timeout ends it anyway

    def _call(self, method: str, path: str, body: bytes | None = None, timeout: Timeout = REQUEST_TIMEOUT) -> dict:
        headers = {**self._auth, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        route = path.split("?", 1)[0]
        try:
            response = self.session.request(method, path, data=body, headers=headers, timeout=timeout)
        except NoAnswer as failure:
            if failure.timed_out:
                raise EngineUnavailable(f"runpod: {method} {route} timed out", code="runpod_unavailable") from None
            raise EngineUnavailable(
                f"runpod: {method} {route} failed to connect ({type(failure.error).__name__})", code="runpod_unavailable"
            ) from None
        code = response.status_code
        if code == 429:
            raise EngineUnavailable(
                f"runpod: {method} {route} still rate limited (HTTP 429) after {self.max_rate_limit_waits} waits",
                code="runpod_rate_limited",
            )
        if code in (401, 403):
            raise ModelError(
                f"runpod: {method} {route} was refused with HTTP {code}: the API key is not accepted (PHOTOGEN_RUNPOD_API_KEY)",
                code="runpod_auth_failed",
            )
        if code == 404:
            raise _Gone(route)
        if code >= 500:
            raise EngineUnavailable(
                f"runpod: {method} {route} failed on RunPod's side (HTTP {code}): {_trim(response.text)}",
                code="runpod_unavailable",
            )
        if code >= 300:
            raise ModelError(f"runpod: {method} {route} answered HTTP {code}: {_trim(response.text)}", code="runpod_refused")
        try:
            answer = response.json()
        except ValueError:
            raise ModelError(f"runpod: {method} {route} answered no JSON", code="runpod_bad_answer") from None
        if not isinstance(answer, dict):
            raise ModelError(f"runpod: {method} {route} answered {_trim(answer)}", code="runpod_bad_answer")
        return answer

    def _download(self, url: str) -> np.ndarray:
        """A picture the worker left in its bucket (a presigned link: no RunPod key sent)."""
        try:
            response = self.session.get(url, follow_redirects=True)
        except NoAnswer as failure:
            raise EngineUnavailable(f"runpod: could not fetch an output picture ({type(failure.error).__name__})") from None
        if response.status_code != 200:
            raise EngineUnavailable(f"runpod: an output picture's link answered HTTP {response.status_code}")
        return _open_png(response.content)


class RunPodStylizer:
    """A SeededStylizer and MeteredStylizer: the endpoint's InstantID paints a round's
    variants in one job, one seed each (the style's `diffusion` section as params)."""

    name = "runpod"
    params_section = "diffusion"

    def __init__(self, api_key: str, endpoint_id: str, *, steps: int | None = None, **options):
        self.client = RunPodClient(api_key, endpoint_id, **options)
        self.steps = steps  # the order's tier's denoising steps, in each job's input; None: the worker's own
        self.version = f"runpod endpoint {endpoint_id} (deploy/runpod/handler.py)" + (f", {steps} steps" if steps else "")
        self.worker_engine: dict = {}  # the worker's own engine name and version, once a job has answered

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        return self.stylize_variants(rgb, params, strength, [content_seed(rgb, params, strength)])[0]

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        seeds = [int(seed) for seed in seeds]
        fields = {"task": "stylize", "params": params, "strength": float(strength), "seeds": seeds}
        if self.steps is not None:
            fields["steps"] = int(self.steps)
        result = self.client.run(np.ascontiguousarray(rgb, dtype=np.uint8), fields)
        self.worker_engine = result.engine or self.worker_engine
        if len(result.images) != len(seeds) or any(image.shape != rgb.shape for image in result.images):
            got = [image.shape for image in result.images]
            raise ModelError(
                f"runpod: job {result.job_id} returned {got} for {len(seeds)} seeds of a {rgb.shape} picture",
                code="runpod_bad_answer",
            )
        return result.images

    def take_usage(self) -> Usage:
        return self.client.take_usage()


class RunPodUpscaler:
    """An Upscaler on the endpoint's Real-ESRGAN; `scales` are what the worker offers
    (its x4 model renders x2 too), metered like the stylizer."""

    name = "runpod"

    def __init__(self, api_key: str, endpoint_id: str, *, scales: tuple[int, ...] = (2, 4), **options):
        self.client = RunPodClient(api_key, endpoint_id, **options)
        self.scales = tuple(sorted(int(scale) for scale in scales))
        self.version = f"runpod endpoint {endpoint_id} (deploy/runpod/handler.py)"
        self.worker_engine: dict = {}

    def upscale(self, rgb: np.ndarray, scale: int) -> np.ndarray:
        check_upscale_input(rgb, scale, self.scales, f"the RunPod endpoint {self.client.endpoint_id}")
        result = self.client.run(np.ascontiguousarray(rgb), {"task": "upscale", "scale": int(scale)})
        self.worker_engine = result.engine or self.worker_engine
        height, width = rgb.shape[:2]
        if len(result.images) != 1 or result.images[0].shape != (height * scale, width * scale, 3):
            got = [image.shape for image in result.images]
            raise ModelError(f"runpod: job {result.job_id} returned {got} for x{scale} of {rgb.shape}", code="runpod_bad_answer")
        return result.images[0]

    def take_usage(self) -> Usage:
        return self.client.take_usage()


def _decode_png(value: object) -> np.ndarray:
    if not isinstance(value, str):
        raise ModelError("runpod: an output picture is not a base64 string", code="runpod_bad_answer")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ModelError("runpod: an output picture is not valid base64", code="runpod_bad_answer") from None
    return _open_png(data)


def _open_png(data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as picture:
            return np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise ModelError("runpod: an output picture is not an image", code="runpod_bad_answer") from None


def _seconds(milliseconds: object) -> float | None:
    if isinstance(milliseconds, int | float) and not isinstance(milliseconds, bool) and milliseconds >= 0:
        return milliseconds / 1000.0
    return None


def _worker_error(error: object) -> str:
    """The worker's message: RunPod's SDK sends a handler's exception as a JSON document
    (error_type, error_message, error_traceback); a returned {"error"} as its text."""
    text = error if isinstance(error, str) else json.dumps(error, default=str)
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error_message"):
        kind = str(parsed.get("error_type", "")).removeprefix("<class '").removesuffix("'>")
        text = f"{kind}: {parsed['error_message']}" if kind else str(parsed["error_message"])
    return _trim(text or "no error given")


def _trim(value: object) -> str:
    text = " ".join((value if isinstance(value, str) else json.dumps(value, default=str)).split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"
