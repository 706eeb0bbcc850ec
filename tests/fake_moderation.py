"""A fake of OpenAI's moderation endpoint: a real HTTP server on loopback (ThreadingHTTPServer
on port 0, in a thread; tests/fake_print_providers.LoopbackServer), started and stopped by the
test that uses it.

A fake because api.openai.com cannot be reached from this machine (no outbound network,
and a key costs money). It speaks the documented protocol
(https://platform.openai.com/docs/api-reference/moderations, the multi-modal input of
https://platform.openai.com/docs/guides/moderation): `POST /v1/moderations` with a Bearer
key, a JSON body `{"model", "input"}` whose input is a list of `{"type": "image_url",
"image_url": {"url": ...}}` parts (a data URL of the picture is checked: it must decode to
an image), answered `{"id", "model", "results": [{"flagged", "categories",
"category_scores", "category_applied_input_types"}]}`, and errors as `{"error": {"message",
"type", "code"}}` with 401 (wrong key), 400 (a malformed body), 429 (rate limit, with
Retry-After). Wording of error texts is the fake's own.

What it scores: `sexual` is `explicit_for(picture)` (default: a small safe number; a test
passes a function that labels its own generated pictures), and `sexual/minors` is flagged
for pictures `minors_for(picture)` says. Switches: `rate_limit(times, retry_after)`.
Counters: `requests` (the parsed bodies it was sent).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import numpy as np

from tests.data_urls import data_url_bytes, picture_of
from tests.fake_print_providers import LoopbackServer

API_KEY = "sk-fake-moderation"
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# the categories omni-moderation scores images in (the others are text only)
IMAGE_CATEGORIES = {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
FLAG_AT = 0.5  # where the fake flags a category (its own choice; OpenAI does not publish one)


class FakeModeration:
    def __init__(
        self,
        explicit_for: Callable[[np.ndarray], float] = lambda picture: 0.0012,
        minors_for: Callable[[np.ndarray], bool] = lambda picture: False,
    ):
        self.explicit_for, self.minors_for = explicit_for, minors_for
        self.requests: list[dict] = []
        self._limited: list[str] = []  # a Retry-After value per 429 still to answer
        self._ids = itertools.count(1)
        self._server = LoopbackServer(self._respond)

    @property
    def url(self) -> str:
        return self._server.url + "/v1"

    def start(self) -> FakeModeration:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeModeration:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rate_limit(self, times: int, retry_after: str = "0") -> None:
        self._limited.extend([retry_after] * times)

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if (method, target) != ("POST", "/v1/moderations"):
            return _error(404, f"Invalid URL ({method} {target})", "invalid_request_error", None)
        if headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if self._limited:
            status, payload, extra = _error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded")
            return status, payload, {**extra, "Retry-After": self._limited.pop(0)}
        try:
            request = json.loads(body)
            pictures = [_picture(part) for part in request["input"]]
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"Invalid request body: {exc}", "invalid_request_error", None)
        self.requests.append(request)
        results = [self._result(picture) for picture in pictures]
        answer = {
            "id": f"modr-{next(self._ids)}",
            "model": f"{request.get('model', 'omni-moderation-latest')}-2024-09-26",
            "results": results,
        }
        return 200, json.dumps(answer).encode(), {"Content-Type": "application/json"}

    def _result(self, picture: np.ndarray) -> dict:
        scores = {name: 0.0001 for name in CATEGORIES}
        scores["sexual"] = float(self.explicit_for(picture))
        scores["sexual/minors"] = 0.93 if self.minors_for(picture) else 0.00002
        categories = {name: score >= FLAG_AT for name, score in scores.items()}
        return {
            "flagged": any(categories.values()),
            "categories": categories,
            "category_scores": scores,
            "category_applied_input_types": {name: ["image"] if name in IMAGE_CATEGORIES else [] for name in CATEGORIES},
        }


def _picture(part: dict) -> np.ndarray:
    """An `image_url` part's picture: a data URL must hold an image (a remote URL is not fetched here)."""
    if part["type"] != "image_url":
        raise ValueError(f"this fake scores images only, not {part['type']!r}")
    url = part["image_url"]["url"]
    if not url.startswith("data:image/") or (data := data_url_bytes(url)) is None:
        raise ValueError("image_url.url must be a base64 data URL here")
    if (picture := picture_of(data)) is None:
        raise ValueError("the data URL is not an image")
    return picture


def _error(status: int, message: str, kind: str, code: str | None) -> tuple[int, bytes, dict[str, str]]:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(payload).encode(), {"Content-Type": "application/json"}
