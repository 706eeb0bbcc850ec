"""Engines that live in the warm engine service (engine_service/, Ray Serve), called over HTTP.

A run that uses them loads no model and imports neither torch nor diffusers: the service
keeps the models resident and batches across orders. HTTP rather than a Ray handle, so a
run needs no Ray, no cluster membership and no matching Python environment: any run
worker that can reach the URL can use it, and the same URL serves a laptop and a GPU box.

While the service is starting or scaling up it refuses connections or answers 502/503/504;
a call waits for it, up to `wait_seconds`, then fails with EngineUnavailable, which the
assets' RetryPolicy and the instance's run retries treat like any other transient failure.
The calls go through the outbound layer (photogen_pipelines/http.py), which loads its
HTTP library only when a call is made: importing this module (the serverless engines do,
for EngineUnavailable) stays light.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import check_upscale_input
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.http import RETRY_STATUSES, HttpClient, NoAnswer, RetryPolicy, Timeout

if TYPE_CHECKING:
    import requests

FIRST_BACKOFF_SECONDS = 0.5
MAX_STEPS = 150  # a request's denoising steps at most (the catalog's Tier.steps bound)
MAX_BACKOFF_SECONDS = 5.0
CONNECT_SECONDS = 10.0  # a connection the service has not accepted by then is tried again


class EngineUnavailable(ModelError):
    """The engine service did not answer within its wait bound: try again later."""

    code = "engine_unavailable"


@dataclass(frozen=True)
class EngineService:
    """The service at `url`. `wait_seconds` bounds how long a call waits for it to come up;
    `timeout_seconds` bounds one request once it is up (a print pass on a CPU takes long)."""

    url: str
    wait_seconds: float = 120.0
    timeout_seconds: float = 900.0

    def get_json(self, path: str) -> dict:
        return json.loads(self._call("GET", path, None, "application/json"))

    def post(self, path: str, fields: dict, images: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
        return wire.unpack(self._call("POST", path, wire.pack(fields, images), wire.MEDIA_TYPE))

    @functools.cached_property
    def _http(self) -> HttpClient:
        """One client (and pool of connections) per service: refused connections and
        502/503/504 are tried again until `wait_seconds` have passed, for every call (a
        picture rendered twice is the same picture)."""
        retry = RetryPolicy(
            attempts=None, deadline=self.wait_seconds, backoff=FIRST_BACKOFF_SECONDS, max_backoff=MAX_BACKOFF_SECONDS
        )
        timeout = Timeout(min(CONNECT_SECONDS, self.timeout_seconds), self.timeout_seconds)
        return HttpClient(self.url, timeout=timeout, retry=retry)

    def _call(self, method: str, path: str, body: bytes | None, content_type: str) -> bytes:
        try:
            response = self._http.request(method, path, data=body, headers={"Content-Type": content_type}, idempotent=True)
        except NoAnswer as failure:
            raise self._unavailable(str(failure)) from None
        if 200 <= response.status_code < 300:
            return response.content
        code, detail = _error_body(response)
        if response.status_code in RETRY_STATUSES:  # still starting when the wait ran out
            raise self._unavailable(f"{response.status_code} {detail}")
        kind = BadInput if response.status_code == 400 else ModelError
        raise kind(f"engine service {path}: {response.status_code} {detail}", code=code)

    def _unavailable(self, why: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"the engine service at {self.url} is not answering after {self.wait_seconds:.0f} s (starting or scaling up?): {why}"
        )

    @functools.cached_property
    def engines(self) -> dict:
        """What the service runs: `{"style": {...}, "upscale": {...}}` (names, versions, scales)."""
        return self.get_json("/v1/engines")


def _error_body(response: requests.Response) -> tuple[str, str]:
    """The service's own error code and message (the gateway answers `{"code", "detail"}`)."""
    fallback = "bad_engine_request" if response.status_code == 400 else "engine_failed"
    try:
        body = json.loads(response.content or b"{}")
        return str(body.get("code") or fallback), str(body.get("detail") or body)
    except (ValueError, AttributeError):
        return fallback, response.reason or ""


class RemoteStylizer:
    """A Stylizer whose pictures the service paints; the service routes each style to a
    replica that has it loaded (style_id). `steps` (the order's tier's) ride in every
    request, so a tier means on the service what it means in a run; None: the engine's own."""

    def __init__(self, service: EngineService, steps: int | None = None):
        info = service.engines["style"]
        self.service = service
        self.steps = steps
        self.name = f"{info['name']} (service)"
        self.version = f"{info['version']} via {service.url}" + (f", {steps} steps" if steps is not None else "")
        self.params_section = info["params_section"]

    def stylize(self, rgb: np.ndarray, params: dict, strength: float) -> np.ndarray:
        return self._render(rgb, params, strength, None)[0]

    def _fields(self, params: dict, strength: float, seeds: list[int] | None) -> dict:
        fields = {"params": params, "strength": strength, "seeds": seeds}
        return {**fields, "steps": self.steps} if self.steps is not None else fields

    def _render(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int] | None) -> list[np.ndarray]:
        _, images = self.service.post("/v1/stylize", self._fields(params, strength, seeds), [rgb])
        return images


class RemoteSeededStylizer(RemoteStylizer):
    """The service runs a diffusion engine: variants differ by seed and render in one batch."""

    def stylize_variants(self, rgb: np.ndarray, params: dict, strength: float, seeds: list[int]) -> list[np.ndarray]:
        return self._render(rgb, params, strength, list(seeds))


class _RemoteReferences:
    """The service's engine paints from reference photos (a ReferenceStylizer): all of an
    order's photos travel in one message (engines/wire.py), its seeds paint together."""

    service: EngineService
    max_references: int

    def paint_from_references(
        self, references: list[np.ndarray], params: dict, strength: float, seeds: list[int], size: tuple[int, int]
    ) -> list[np.ndarray]:
        if not 1 <= len(references) <= self.max_references:
            raise BadInput(
                f"{self.name} takes 1 to {self.max_references} reference photos, got {len(references)}",
                code="too_many_references",
            )
        fields = {**self._fields(params, strength, [int(seed) for seed in seeds]), "size": [int(size[0]), int(size[1])]}
        _, images = self.service.post("/v1/references", fields, list(references))
        if len(images) != len(seeds):
            raise ModelError(f"engine service: {len(images)} pictures for {len(seeds)} seeds", code="engine_failed")
        return images


class RemoteReferenceStylizer(_RemoteReferences, RemoteStylizer):
    """A reference-photo engine in the service that has no seeded variants of one picture."""


class RemoteSeededReferenceStylizer(_RemoteReferences, RemoteSeededStylizer):
    """A reference-photo engine in the service that also paints seeded variants of one picture."""


class RemoteUpscaler:
    """An Upscaler in the service. `model`, a tier's upscale model, rides in every request;
    the service refuses it (`upscale_model_unavailable`) when its upscaler has one model."""

    def __init__(self, service: EngineService, model: str | None = None):
        info = service.engines["upscale"]
        self.service = service
        self.model = model
        self.name = f"{info['name']} (service)"
        self.version = f"{info['version']} via {service.url}" + (f", model {model}" if model else "")
        # the tier's model's own scales where the service offers it (the print stage plans its passes on them)
        self.scales = tuple(info.get("models", {}).get(model) or info["scales"])

    def upscale(self, rgb: np.ndarray, scale: int) -> np.ndarray:
        check_upscale_input(rgb, scale, self.scales, self.name)
        fields = {"scale": scale, **({"model": self.model} if self.model else {})}
        return self.service.post("/v1/upscale", fields, [rgb])[1][0]


def style_id(params: dict) -> str:
    """The multiplexed model id of a style: its parameters, canonical, as the service's
    loader needs them (an id is all a Serve model loader is given)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def remote_stylizer(service: EngineService, steps: int | None = None) -> RemoteStylizer:
    """The stylizer the service's style engine is: seeded or not, a ReferenceStylizer when
    the service says its engine paints from references (GET /v1/engines `max_references`)."""
    info = service.engines["style"]
    seeded, references = info.get("seeded", False), info.get("max_references")
    if references:
        kind = RemoteSeededReferenceStylizer if seeded else RemoteReferenceStylizer
        stylizer = kind(service, steps)
        stylizer.max_references = int(references)
        return stylizer
    return RemoteSeededStylizer(service, steps) if seeded else RemoteStylizer(service, steps)
