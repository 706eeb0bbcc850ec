"""A stateful fake of Replicate's predictions API: a real HTTP server on loopback
(ThreadingHTTPServer on port 0, in a thread), started and stopped by the test that uses it.

A fake because api.replicate.com cannot be reached from this machine (no outbound
network, and a real run costs money). It implements the documented shapes the stylizer
relies on (https://replicate.com/docs/topics/predictions and .../lifecycle, .../rate-limits,
.../input-files, the files API of https://sdks.replicate.com/resources/files): Bearer (or the
older Token) authentication, `POST /v1/predictions {"version", "input"}` checked against the
model versions it knows, `POST /v1/models/{owner}/{name}/predictions {"input"}` for the
official models it knows (run by name, without a version:
https://replicate.com/docs/reference/http#models.predictions.create), a model's list input
of pictures (FLUX.2 [klein]'s `images`, at most `max_images`) and enumerated inputs
(`choices`, e.g. its `aspect_ratio`), predictions that go starting -> processing -> succeeded over a
couple of polls (`GET /v1/predictions/{id}`) with `metrics.predict_time`, `POST
/v1/predictions/{id}/cancel`, `POST /v1/files` (multipart `content`) whose `urls.get` is
accepted as an input, and errors as problem-details bodies (`title`, `detail`, `status`).
Wording of error texts the docs do not spell out is the fake's own.

The outputs are real pictures, served as URLs by the same server (without the token, as
replicate.delivery serves them): by default the input picture with a warm tint that varies
with the seed, so an identity check on them still passes; a test can pass `render`.

Switches: `fail_next(error)` (the next prediction fails with that error text, e.g. an NSFW
refusal), `stall_next()` (the next prediction never finishes), `rate_limit(times,
retry_after)` (the next API calls are answered 429), `answer_next(status)` (the next API
call is answered that status), `remove_data(id)` (a prediction's outputs are deleted, as
Replicate does an hour after a run). Counters: `created`, `cancels`, `requests`.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from tests.data_urls import data_url_bytes, picture_of
from tests.fake_print_providers import LoopbackServer

TOKEN = "r8_fake_token"
OFFICIAL_VERSION = "hidden"  # an official model's predictions name no version of ours to pin
VERSION = "2e4785a4d80dadf580077b2244c8d7c05d8e3faac04a04c02d8e099dd2876789"

# (input picture, the prediction's input, output index) -> an RGB uint8 picture
Render = Callable[[np.ndarray, dict, int], np.ndarray]


@dataclass(frozen=True)
class FakeModel:
    name: str  # owner/name
    version: str | None  # 64 hex digits; None: an official model, run by name
    inputs: frozenset[str] | None = None  # the input names it accepts; None: any
    image_input: str = "image"  # a list of pictures when max_images > 1
    max_images: int = 1
    choices: tuple[tuple[str, frozenset], ...] = ()  # (input, the values it accepts)


DEFAULT_MODEL = FakeModel(
    "zsxkib/instant-id",
    VERSION,
    frozenset(
        {
            "image",
            "prompt",
            "negative_prompt",
            "ip_adapter_scale",
            "controlnet_conditioning_scale",
            "guidance_scale",
            "num_inference_steps",
            "seed",
            "num_outputs",
            "output_format",
            "enable_pose_controlnet",
        }
    ),
)

# FLUX.2 [klein] 4B as https://replicate.com/black-forest-labs/flux-2-klein-4b/api lists its
# inputs (the aspect ratios are the catalog's list: the page names 1:1 and match_input_image)
KLEIN = FakeModel(
    "black-forest-labs/flux-2-klein-4b",
    None,
    frozenset(
        {
            "prompt",
            "images",
            "aspect_ratio",
            "output_megapixels",
            "seed",
            "go_fast",
            "output_format",
            "output_quality",
            "disable_safety_checker",
        }
    ),
    image_input="images",
    max_images=5,
    choices=(
        (
            "aspect_ratio",
            frozenset({"1:1", "16:9", "9:16", "3:2", "2:3", "4:3", "3:4", "5:4", "4:5", "21:9", "9:21", "match_input_image"}),
        ),
        ("output_format", frozenset({"webp", "jpg", "png"})),
    ),
)

TINT = np.array([255.0, 160.0, 40.0])


def tinted(picture: np.ndarray, input: dict, index: int) -> np.ndarray:
    """The input picture under a warm tint, 12-20% depending on the seed and the index:
    visibly changed, the face still the customer's."""
    amount = 0.12 + 0.04 * ((int(input.get("seed") or 0) + index) % 3)
    return np.clip(picture * (1.0 - amount) + TINT * amount, 0, 255).astype(np.uint8)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Prediction:
    id: str
    model: FakeModel
    input: dict
    picture: np.ndarray  # the first picture
    pictures: list[np.ndarray] = field(default_factory=list)  # all of them, as sent
    status: str = "starting"
    polls: int = 0
    stall: bool = False
    fail_with: str | None = None
    output: list[str] | None = None
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    data_removed: bool = False
    created_at: str = field(default_factory=lambda: _now())
    started_at: str | None = None
    completed_at: str | None = None


class FakeReplicate:
    def __init__(
        self,
        *,
        token: str = TOKEN,
        models: list[FakeModel] | None = None,
        render: Render = tinted,
        polls_to_finish: int = 2,
        predict_time: float = 2.5,
        cancel_predict_time: float = 1.0,
    ):
        self.token = token
        models = models or [DEFAULT_MODEL, KLEIN]  # InstantID (pinned) and the catalog's default
        self.models = {model.version: model for model in models if model.version}
        self.official = {model.name: model for model in models if not model.version}
        self.render = render
        self.polls_to_finish = polls_to_finish
        self.predict_time, self.cancel_predict_time = predict_time, cancel_predict_time
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, bytes] = {}  # uploaded with the files API
        self.outputs: dict[str, bytes] = {}  # path -> PNG, served without auth
        self.requests: list[Seen] = []
        self.cancels: list[str] = []
        self._fail: list[str] = []
        self._stall = 0
        self._rate_limits: list[str] = []
        self._answers: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server = LoopbackServer(self._respond)

    # -- the test's side ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base, as the stylizer's `api_base`."""
        return self._server.url + "/v1"

    @property
    def created(self) -> int:
        return len(self.predictions)

    def __enter__(self) -> FakeReplicate:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def fail_next(self, error: str = "CUDA out of memory", times: int = 1) -> None:
        self._fail += [error] * times

    def stall_next(self, times: int = 1) -> None:
        self._stall += times

    def rate_limit(self, times: int, retry_after: str | None = "1") -> None:
        self._rate_limits += [retry_after] * times

    def answer_next(self, status: int, times: int = 1) -> None:
        self._answers += [status] * times

    def remove_data(self, prediction_id: str) -> None:
        with self._lock:
            prediction = self.predictions[prediction_id]
            prediction.data_removed, prediction.output = True, None
            for path in [p for p in self.outputs if p.startswith(f"/outputs/{prediction_id}/")]:
                del self.outputs[path]

    def creates(self) -> list[Seen]:
        """The create requests, on /v1/predictions or an official model's endpoint."""
        return [s for s in self.requests if s.method == "POST" and s.path.endswith("/predictions")]

    # -- the API ------------------------------------------------------------------------

    def _respond(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        path = urlsplit(target).path
        headers = {name.lower(): value for name, value in headers.items()}
        if method == "GET" and path.startswith("/outputs/"):
            with self._lock:
                data = self.outputs.get(path)
            return (200, data, {"Content-Type": "image/png"}) if data else (404, b"not found", {"Content-Type": "text/plain"})
        body: Any = raw
        if raw and headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        seen = Seen(method, path, headers, body)
        self.requests.append(seen)
        status, answer, extra = self._api(seen, raw)
        seen.status = status
        return status, json.dumps(answer).encode(), {"Content-Type": "application/json", **extra}

    def _api(self, seen: Seen, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            if self._rate_limits:
                retry_after = self._rate_limits.pop(0)
                extra = {"Retry-After": retry_after} if retry_after is not None else {}
                return 429, _problem(429, "Request was throttled. Expected available in 1 second."), extra
            if self._answers:
                status = self._answers.pop(0)
                return status, _problem(status, "the fake was told to answer this"), {}
            if seen.headers.get("authorization") not in (f"Bearer {self.token}", f"Token {self.token}"):
                return 401, _problem(401, "You did not pass a valid authentication token", "Unauthenticated"), {}
            parts = seen.path.strip("/").split("/")
            if seen.method == "POST" and parts == ["v1", "predictions"]:
                return self._create(seen.body)
            if seen.method == "POST" and len(parts) == 5 and parts[:2] == ["v1", "models"] and parts[4] == "predictions":
                name = f"{parts[2]}/{parts[3]}"
                if name not in self.official:
                    return 404, _problem(404, f"official model {name} not found"), {}
                return self._create(seen.body, self.official[name])
            if seen.method == "POST" and parts == ["v1", "files"]:
                return self._upload(seen.headers.get("content-type", ""), raw)
            if len(parts) >= 3 and parts[:2] == ["v1", "predictions"] and parts[2] in self.predictions:
                prediction = self.predictions[parts[2]]
                if seen.method == "GET" and len(parts) == 3:
                    self._advance(prediction)
                    return 200, self._json(prediction), {}
                if seen.method == "POST" and parts[3:] == ["cancel"]:
                    self._cancel(prediction)
                    return 200, self._json(prediction), {}
            return 404, _problem(404, "Not found"), {}

    def _create(self, body: Any, official: FakeModel | None = None) -> tuple[int, Any, dict[str, str]]:
        if official is None:
            if not isinstance(body, dict) or not isinstance(body.get("version"), str) or not isinstance(body.get("input"), dict):
                return 422, _problem(422, "the body needs `version` (a string) and `input` (an object)"), {}
            model = self.models.get(body["version"])
            if model is None:
                return 422, _problem(422, "Invalid version or not permitted", "Invalid version"), {}
        elif not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return 422, _problem(422, "the body needs `input` (an object)"), {}
        else:
            model = official
        given = body["input"]
        if model.inputs is not None and (unknown := sorted(set(given) - model.inputs)):
            return 422, _problem(422, f"input: Additional property {unknown[0]} is not allowed"), {}
        for name, allowed in model.choices:
            if name in given and given[name] not in allowed:
                return 422, _problem(422, f"input.{name}: {given[name]!r} is not one of {sorted(allowed)}"), {}
        value = given.get(model.image_input)
        if model.max_images > 1:
            if not isinstance(value, list) or not 1 <= len(value) <= model.max_images:
                return 422, _problem(422, f"input.{model.image_input}: 1 to {model.max_images} images"), {}
            pictures = [self._picture(item) for item in value]
        else:
            pictures = [self._picture(value)]
        if any(picture is None for picture in pictures):
            return 422, _problem(422, f"input.{model.image_input}: Does not match format 'uri'"), {}
        prediction = Prediction(id=f"fake{next(self._ids):04d}", model=model, input=given, picture=pictures[0], pictures=pictures)
        if self._fail:
            prediction.fail_with = self._fail.pop(0)
        if self._stall:
            self._stall -= 1
            prediction.stall = True
        self.predictions[prediction.id] = prediction
        return 201, self._json(prediction), {}

    def _upload(self, content_type: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        for part in message.iter_parts() if message.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == "content":
                file_id = f"file{next(self._ids):04d}"
                self.files[file_id] = part.get_payload(decode=True)
                url = f"{self.url}/files/{file_id}"
                return 201, {"id": file_id, "size": len(self.files[file_id]), "urls": {"get": url}}, {}
        return 422, _problem(422, "the upload needs a `content` part"), {}

    def _picture(self, value: Any) -> np.ndarray | None:
        """The input picture: a data URI, or a URL of a file uploaded here."""
        if not isinstance(value, str):
            return None
        if value.startswith("data:"):
            data = data_url_bytes(value)
        elif value.startswith(f"{self.url}/files/"):
            data = self.files.get(value.rsplit("/", 1)[-1])
        else:
            return None
        return picture_of(data) if data is not None else None

    def _advance(self, prediction: Prediction) -> None:
        """One poll further along: starting, processing, then the end."""
        if prediction.status not in ("starting", "processing"):
            return
        prediction.polls += 1
        if prediction.status == "starting":
            prediction.status, prediction.started_at = "processing", _now()
        if prediction.stall or prediction.polls < self.polls_to_finish:
            return
        prediction.completed_at = _now()
        prediction.metrics = {"predict_time": self.predict_time, "total_time": self.predict_time + 0.4}
        if prediction.fail_with:
            prediction.status, prediction.error = "failed", prediction.fail_with
            return
        prediction.output = []
        for index in range(int(prediction.input.get("num_outputs") or 1)):
            picture = np.asarray(self.render(prediction.picture, prediction.input, index), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, format="PNG")
            path = f"/outputs/{prediction.id}/out-{index}.png"
            self.outputs[path] = buffer.getvalue()
            prediction.output.append(self._server.url + path)
        prediction.status = "succeeded"

    def _cancel(self, prediction: Prediction) -> None:
        self.cancels.append(prediction.id)
        if prediction.status in ("starting", "processing"):
            if prediction.status == "processing":
                prediction.metrics = {"predict_time": self.cancel_predict_time}
            prediction.status, prediction.completed_at = "canceled", _now()

    def _json(self, prediction: Prediction) -> dict:
        base = f"{self.url}/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model.name,
            "version": prediction.model.version or OFFICIAL_VERSION,
            "input": prediction.input,
            "logs": "",
            "output": prediction.output,
            "data_removed": prediction.data_removed,
            "error": prediction.error,
            "status": prediction.status,
            "created_at": prediction.created_at,
            "started_at": prediction.started_at,
            "completed_at": prediction.completed_at,
            "metrics": prediction.metrics,
            "urls": {"get": base, "cancel": base + "/cancel"},
        }


TITLES = {
    401: "Unauthenticated",
    402: "Payment Required",
    404: "Not found",
    422: "Input validation failed",
    429: "Too Many Requests",
}


def _problem(status: int, detail: str, title: str | None = None) -> dict:
    return {"title": title or TITLES.get(status, "Error"), "detail": detail, "status": status}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
