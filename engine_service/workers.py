"""The deployments: a StyleWorker and an UpscaleWorker that load their engine once per
replica and batch across orders, and the Gateway that speaks HTTP to the runs."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations at run time
import asyncio
import json
import threading
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError

from engine_service.metrics import MEDIA_TYPE as METRICS_MEDIA_TYPE
from engine_service.metrics import ServiceMetrics
from engine_service.stats import ReplicaStats, stats_actor
from photogen_pipelines import factories
from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import ReferenceStylizer, ResidentStyles, SeededStylizer
from photogen_pipelines.engines.remote import MAX_STEPS, style_id
from photogen_pipelines.errors import BadInput, ModelError, PhotoGenError
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings
from photogen_pipelines.tiers import steps_for_call

DEFAULT_CPU_BATCH = 4
MAX_SIDE = 4096  # a reference painting's size, each side: the service's own bound on what it makes


@dataclass
class StyleJob:
    image: np.ndarray
    params: dict
    strength: float
    seeds: list[int] | None
    steps: int | None = None  # the order's tier's steps; None: the engine's own


@dataclass
class ReferenceJob:
    references: list[np.ndarray]
    params: dict
    strength: float
    seeds: list[int]
    size: tuple[int, int]
    steps: int | None = None


@dataclass
class Outcome:
    """A batch item's result or its error: one order's failure must not fail the others'."""

    images: list[np.ndarray] | None = None
    error: Exception | None = None

    def unwrap(self) -> list[np.ndarray]:
        if self.error is not None:
            raise self.error
        return self.images


class _Worker:
    def _start_stats(self, deployment: str, engine: str, model_loads: int) -> None:
        import ray

        context = serve.get_replica_context()
        self.stats = ReplicaStats(
            deployment=deployment,
            replica=context.replica_id.unique_id,
            engine=engine,
            model_loads=model_loads,
            node=ray.get_runtime_context().get_node_id(),
        )
        self._stats_actor = stats_actor()
        self._report()

    def _report(self) -> None:
        self._stats_actor.report.remote(self.stats.snapshot())

    def check_health(self) -> None:
        """Serve's health check (every 10 s) doubles as the replica's heartbeat: a replica
        whose report is older than a few checks is gone (metrics.py counts live ones)."""
        if hasattr(self, "stats"):
            self._report()

    async def _run_batch(self, work, items: list) -> list[Outcome]:
        self.stats.processing = len(items)
        self.stats.batch_sizes[len(items)] += 1
        self._report()  # busy now: the gateway's metrics see it while the batch paints
        started = time.perf_counter()
        try:
            # in a thread, so the replica keeps gathering the next batch while this one paints
            outcomes = await asyncio.to_thread(lambda: [_attempt(work, item) for item in items])
        finally:
            self.stats.processing = 0
            self.stats.busy_seconds = round(self.stats.busy_seconds + time.perf_counter() - started, 3)
        self.stats.requests += len(items)
        self.stats.failures += sum(1 for outcome in outcomes if outcome.error is not None)
        self._report()
        return outcomes


def _built(factory, settings) -> tuple[object, int]:
    """The engine the factory makes for `settings`, and 1 if this call loaded its models (0
    if the process-wide cache already held it): the replicas count what they really load."""
    before = factory.cache_info().misses
    engine = factory(settings)
    return engine, factory.cache_info().misses - before


def _attempt(work, item) -> Outcome:
    try:
        return Outcome(images=work(item))
    except Exception as error:  # handed back to that order's caller, not the batch's
        return Outcome(error=error)


@serve.deployment
class StyleWorker(_Worker):
    """The style engine, loaded once per replica; each replica keeps up to
    `styles_per_replica` styles resident (model multiplexing: the style's parameters are
    the model id, so Serve routes a style's orders to a replica that has it)."""

    def __init__(self, settings: dict, max_batch_size: int | None, batch_wait_s: float, styles_per_replica: int):
        self.stylizer, loads = _built(factories.stylizer, StyleEngineSettings(**settings))
        if hasattr(self.stylizer, "load"):
            self.stylizer.load()  # readiness only once the models are in memory
        self.seeded = isinstance(self.stylizer, SeededStylizer)
        # paints from several photos of the customer (FLUX.2 klein, Qwen-Image-Edit): the
        # runs' remote stylizer offers paint_from_references only when this says so
        self.references = isinstance(self.stylizer, ReferenceStylizer)
        # the two batch queues paint in threads of their own: one call on the engine at a
        # time, so a call's steps (tiers.steps_for_call) are never another call's
        self._engine_lock = threading.Lock()
        for batch in (self.paint_batch, self.references_batch):
            batch.set_max_batch_size(max_batch_size or DEFAULT_CPU_BATCH)
            batch.set_batch_wait_timeout_s(batch_wait_s)

        # a plain function, not the bound method: Serve keeps its LRU cache as an attribute of what it wraps
        async def make_resident(model_id: str) -> ResidentStyle:
            return await self._make_resident(model_id)

        self._resident = serve.multiplexed(max_num_models_per_replica=styles_per_replica)(make_resident)
        self._start_stats("StyleWorker", self.stylizer.version, loads)

    async def _make_resident(self, model_id: str) -> "ResidentStyle":
        style = ResidentStyle(self, json.loads(model_id))
        await asyncio.to_thread(style.load)
        return style

    def describe(self) -> dict:
        return {
            "name": self.stylizer.name,
            "version": self.stylizer.version,
            "params_section": self.stylizer.params_section,
            "seeded": self.seeded,
            # how many photos one painting takes; absent: the engine paints from one picture
            **({"max_references": int(self.stylizer.max_references)} if self.references else {}),
            # the engine's own denoising steps (None: it has none); a request's `steps` replaces them for its call
            "steps": getattr(self.stylizer, "steps", None),
        }

    async def paint(
        self, image: np.ndarray, params: dict, strength: float, seeds: list[int] | None, steps: int | None = None
    ) -> list[np.ndarray]:
        await self._resident(serve.get_multiplexed_model_id())
        outcome = await self.paint_batch(StyleJob(image, params, strength, seeds, steps))
        return outcome.unwrap()

    async def paint_references(
        self,
        references: list[np.ndarray],
        params: dict,
        strength: float,
        seeds: list[int],
        size: tuple[int, int],
        steps: int | None = None,
    ) -> list[np.ndarray]:
        if not self.references:
            raise ModelError(
                f"the service's style engine {self.stylizer.name} paints from one picture, not from references",
                code="engine_has_no_references",
            )
        if len(references) > self.stylizer.max_references:
            raise BadInput(
                f"{self.stylizer.name} takes at most {self.stylizer.max_references} reference photos, got {len(references)}",
                code="too_many_references",
            )
        await self._resident(serve.get_multiplexed_model_id())
        outcome = await self.references_batch(ReferenceJob(references, params, strength, seeds, tuple(size), steps))
        return outcome.unwrap()

    @serve.batch(max_batch_size=DEFAULT_CPU_BATCH, batch_wait_timeout_s=0.05)
    async def paint_batch(self, jobs: list[StyleJob]) -> list[Outcome]:
        # Serve splits batches by model id: every job here is one style, loaded once
        return await self._run_batch(self._paint_one, jobs)

    @serve.batch(max_batch_size=DEFAULT_CPU_BATCH, batch_wait_timeout_s=0.05)
    async def references_batch(self, jobs: list[ReferenceJob]) -> list[Outcome]:
        # gathered across orders like paint_batch; the interface paints one order's
        # references (all its seeds together) per call, so a batch is that many calls on
        # the one loaded engine, with no model load between them
        return await self._run_batch(self._paint_references_one, jobs)

    def _paint_one(self, job: StyleJob) -> list[np.ndarray]:
        with self._engine_lock, steps_for_call(self.stylizer, job.steps):
            if job.seeds is not None:
                if not self.seeded:
                    raise BadInput("this engine has no seeds: send seeds null", code="bad_engine_request")
                return self.stylizer.stylize_variants(job.image, job.params, job.strength, job.seeds)
            return [self.stylizer.stylize(job.image, job.params, job.strength)]

    def _paint_references_one(self, job: ReferenceJob) -> list[np.ndarray]:
        with self._engine_lock, steps_for_call(self.stylizer, job.steps):
            return self.stylizer.paint_from_references(job.references, job.params, job.strength, job.seeds, job.size)


class ResidentStyle:
    """One style kept loaded in a replica; Serve drops the least recently used, and
    dropping it frees its weights."""

    def __init__(self, worker: StyleWorker, params: dict):
        self.worker, self.params = worker, params

    def load(self) -> None:
        if isinstance(self.worker.stylizer, ResidentStyles):
            self.worker.stylizer.load_style(self.params)
        self.worker.stats.style_loads += 1
        self.worker.stats.resident_styles += 1

    def __del__(self) -> None:
        if isinstance(self.worker.stylizer, ResidentStyles):
            self.worker.stylizer.unload_style(self.params)
        self.worker.stats.style_unloads += 1
        self.worker.stats.resident_styles -= 1


@serve.deployment
class UpscaleWorker(_Worker):
    """The print upscaler, loaded once per replica."""

    def __init__(self, settings: dict, max_batch_size: int | None, batch_wait_s: float):
        self.settings = UpscaleEngineSettings(**settings)
        self.upscaler, loads = _built(factories.upscaler, self.settings)
        self._warm(self.upscaler)
        # a tier may name another of the embedded engine's models (tiers.upscale_engine):
        # each is loaded the first time an order asks for it, then kept like the first
        self.models = {self.settings.model: self.upscaler} if self.settings.backend == "embedded" else {}
        self.upscale_batch.set_max_batch_size(max_batch_size or DEFAULT_CPU_BATCH)
        self.upscale_batch.set_batch_wait_timeout_s(batch_wait_s)
        self._start_stats("UpscaleWorker", self.upscaler.version, loads)

    @staticmethod
    def _warm(upscaler) -> None:
        for scale in upscaler.scales:  # load every scale's network now: readiness after loading
            upscaler.upscale(np.zeros((16, 16, 3), dtype=np.uint8), scale)

    def describe(self) -> dict:
        from photogen_pipelines.engines.upscale_ncnn import MODEL_SCALES

        choices = MODEL_SCALES if self.settings.backend == "embedded" else {}
        return {
            "name": self.upscaler.name,
            "version": self.upscaler.version,
            "scales": list(self.upscaler.scales),
            # what a request's `model` may name, with each one's scales; {}: this upscaler has one model
            "models": {name: list(scales) for name, scales in sorted(choices.items())},
        }

    def _engine_for(self, model: str | None):
        """The upscaler for a request's `model` (None: the service's own). ModelError
        `upscale_model_unavailable`: this service runs an upscaler with one model."""
        if model is None or model == self.settings.model and self.settings.backend == "embedded":
            return self.upscaler
        if self.settings.backend != "embedded":
            raise ModelError(
                f"the service's upscaler is {self.upscaler.name} with one model; it cannot upscale with {model}",
                code="upscale_model_unavailable",
            )
        if model not in self.models:
            engine, loads = _built(factories.upscaler, self.settings.model_copy(update={"model": model}))
            self._warm(engine)
            self.models[model] = engine
            self.stats.model_loads += loads
        return self.models[model]

    async def upscale(self, image: np.ndarray, scale: int, model: str | None = None) -> np.ndarray:
        outcome = await self.upscale_batch((image, scale, model))
        return outcome.unwrap()[0]

    @serve.batch(max_batch_size=DEFAULT_CPU_BATCH, batch_wait_timeout_s=0.05)
    async def upscale_batch(self, jobs: list[tuple[np.ndarray, int, str | None]]) -> list[Outcome]:
        return await self._run_batch(lambda job: [self._engine_for(job[2]).upscale(job[0], job[1])], jobs)


def _error_response(error: Exception) -> JSONResponse:
    if isinstance(error, RayActorError):
        # the replica died under the request (killed, its node gone): nothing was painted,
        # and Serve routes the same request to a live replica, so the caller sends it again
        # (503 is what engines/remote.py retries while its wait lasts)
        return JSONResponse({"code": "engine_replica_lost", "detail": f"{type(error).__name__}: {error}"}, status_code=503)
    if isinstance(error, BadInput):
        return JSONResponse({"code": error.code, "detail": str(error)}, status_code=400)
    if isinstance(error, PhotoGenError):
        return JSONResponse({"code": error.code, "detail": str(error)}, status_code=422)
    return JSONResponse({"code": "engine_error", "detail": f"{type(error).__name__}: {error}"}, status_code=500)


def _integers(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value)


def _steps(fields: dict) -> int | None:
    """A request's denoising steps (its order's tier), or None for the engine's own."""
    steps = fields.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
        raise BadInput(f"steps must be an integer from 1 to {MAX_STEPS}, or null")
    return steps


def _serve_status() -> dict:
    """Replica states per deployment, from Serve's controller."""
    try:
        status = serve.status()
    except Exception as error:  # status is best effort; the counts above still answer
        return {"deployments_error": str(error)}
    deployments = {}
    for app in status.applications.values():
        for name, deployment in app.deployments.items():
            deployments[name] = {
                "status": str(deployment.status.value if hasattr(deployment.status, "value") else deployment.status),
                "replicas": {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()},
            }
    return {"deployments": deployments}


api = FastAPI(title="PhotoGen engine service", docs_url=None, redoc_url=None)


@serve.deployment
@serve.ingress(api)
class Gateway:
    """HTTP for the runs: pictures in and out as .npz (photogen_pipelines/engines/wire.py)."""

    def __init__(self, styles, upscaler):
        self.styles, self.upscaler = styles, upscaler
        self.in_flight = 0
        self.answered = 0
        self.replicas_lost = 0  # requests answered 503 engine_replica_lost (their caller sends them again)
        self.metrics = ServiceMetrics()

    @api.get("/v1/engines")
    async def engines(self) -> dict:
        """What the service runs; answers once a replica of each worker is up with its models."""
        style, upscale = await asyncio.gather(self.styles.describe.remote(), self.upscaler.describe.remote())
        return {"style": style, "upscale": upscale}

    @api.post("/v1/stylize")
    async def stylize(self, request: Request) -> Response:
        async def work(fields: dict, images: list[np.ndarray]) -> list[np.ndarray]:
            params, strength, seeds = fields.get("params"), fields.get("strength"), fields.get("seeds")
            if len(images) != 1 or not isinstance(params, dict) or not isinstance(strength, int | float):
                raise BadInput("stylize takes one image, params (an object) and strength (a number)")
            if seeds is not None and not _integers(seeds):
                raise BadInput("seeds must be a list of integers or null")
            handle = self.styles.options(multiplexed_model_id=style_id(params))
            return await handle.paint.remote(images[0], params, float(strength), seeds, _steps(fields))

        return await self._serve(request, work, "stylize", "style")

    @api.post("/v1/references")
    async def references(self, request: Request) -> Response:
        """One painting per seed from 1..max_references photos of the customer (the primary first)."""

        async def work(fields: dict, images: list[np.ndarray]) -> list[np.ndarray]:
            params, strength, seeds, size = (fields.get(k) for k in ("params", "strength", "seeds", "size"))
            if not images or not isinstance(params, dict) or not isinstance(strength, int | float):
                raise BadInput("references takes 1 or more images, params (an object) and strength (a number)")
            if not _integers(seeds) or not seeds:
                raise BadInput("seeds must be a list of one or more integers")
            if not (_integers(size) and len(size) == 2 and all(1 <= side <= MAX_SIDE for side in size)):
                raise BadInput(f"size must be [width, height], each 1 to {MAX_SIDE}")
            handle = self.styles.options(multiplexed_model_id=style_id(params))
            return await handle.paint_references.remote(images, params, float(strength), seeds, tuple(size), _steps(fields))

        return await self._serve(request, work, "references", "style")

    @api.post("/v1/upscale")
    async def upscale(self, request: Request) -> Response:
        async def work(fields: dict, images: list[np.ndarray]) -> list[np.ndarray]:
            scale, model = fields.get("scale"), fields.get("model")
            if len(images) != 1 or not isinstance(scale, int):
                raise BadInput("upscale takes one image and an integer scale")
            if model is not None and not isinstance(model, str):
                raise BadInput("model must be a string (one of GET /v1/engines' upscale models) or null")
            return [await self.upscaler.upscale.remote(images[0], scale, model)]

        return await self._serve(request, work, "upscale", "upscale")

    @api.get("/v1/status")
    async def status(self) -> dict:
        replicas = await stats_actor().all.remote()
        painting = sum(replica["processing"] for replica in replicas.values())
        gateway = {
            "in_flight": self.in_flight,
            "queued": max(0, self.in_flight - painting),
            "answered": self.answered,
            "replica_lost": self.replicas_lost,
        }
        return {"gateway": gateway, "replicas": replicas, **_serve_status()}

    @api.get("/metrics")
    async def scrape(self) -> Response:
        """Prometheus's text format (engine_service/metrics.py): queues, batches, replicas, loads, latency."""
        replicas = await stats_actor().all.remote()
        body = self.metrics.render(replicas, _serve_status().get("deployments", {}))
        return Response(body, media_type=METRICS_MEDIA_TYPE)

    async def _serve(self, request: Request, work, endpoint: str, worker: str) -> Response:
        self.in_flight += 1
        self.metrics.in_flight[worker] += 1
        started = time.perf_counter()
        code = "ok"
        try:
            fields, images = wire.unpack(await request.body())
            pictures = await work(fields, images)
            return Response(wire.pack({}, pictures), media_type=wire.MEDIA_TYPE)
        except Exception as error:  # a replica's exception arrives wrapped: answer with its cause
            if isinstance(error, RayActorError):
                self.replicas_lost += 1
                answer = _error_response(error)
            else:
                answer = _error_response(getattr(error, "cause", None) or error)
            code = json.loads(answer.body)["code"]
            return answer
        finally:
            self.in_flight -= 1
            self.answered += 1
            self.metrics.in_flight[worker] -= 1
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.answers.labels(endpoint, code).inc()
