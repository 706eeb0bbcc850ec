"""The deployments: a StyleWorker and an UpscaleWorker that load their engine once per
replica and batch across orders, and the Gateway that speaks HTTP to the runs."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations at run time
import asyncio
import json
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from engine_service.stats import ReplicaStats, stats_actor
from photogen_pipelines import factories
from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import ResidentStyles, SeededStylizer
from photogen_pipelines.engines.remote import style_id
from photogen_pipelines.errors import BadInput, PhotoGenError
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings

DEFAULT_CPU_BATCH = 4


@dataclass
class StyleJob:
    image: np.ndarray
    params: dict
    strength: float
    seeds: list[int] | None


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
    def _start_stats(self, deployment: str, engine: str) -> None:
        context = serve.get_replica_context()
        self.stats = ReplicaStats(deployment=deployment, replica=context.replica_id.unique_id, engine=engine, model_loads=1)
        self._stats_actor = stats_actor()
        self._report()

    def _report(self) -> None:
        self._stats_actor.report.remote(self.stats.snapshot())

    async def _run_batch(self, work, items: list) -> list[Outcome]:
        self.stats.processing = len(items)
        self.stats.batch_sizes[len(items)] += 1
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
        self.stylizer = factories.stylizer(StyleEngineSettings(**settings))
        if hasattr(self.stylizer, "load"):
            self.stylizer.load()  # readiness only once the models are in memory
        self.seeded = isinstance(self.stylizer, SeededStylizer)
        self.paint_batch.set_max_batch_size(max_batch_size or DEFAULT_CPU_BATCH)
        self.paint_batch.set_batch_wait_timeout_s(batch_wait_s)

        # a plain function, not the bound method: Serve keeps its LRU cache as an attribute of what it wraps
        async def make_resident(model_id: str) -> ResidentStyle:
            return await self._make_resident(model_id)

        self._resident = serve.multiplexed(max_num_models_per_replica=styles_per_replica)(make_resident)
        self._start_stats("StyleWorker", self.stylizer.version)

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
        }

    async def paint(self, image: np.ndarray, params: dict, strength: float, seeds: list[int] | None) -> list[np.ndarray]:
        await self._resident(serve.get_multiplexed_model_id())
        outcome = await self.paint_batch(StyleJob(image, params, strength, seeds))
        return outcome.unwrap()

    @serve.batch(max_batch_size=DEFAULT_CPU_BATCH, batch_wait_timeout_s=0.05)
    async def paint_batch(self, jobs: list[StyleJob]) -> list[Outcome]:
        # Serve splits batches by model id: every job here is one style, loaded once
        return await self._run_batch(self._paint_one, jobs)

    def _paint_one(self, job: StyleJob) -> list[np.ndarray]:
        if job.seeds is not None:
            if not self.seeded:
                raise BadInput("this engine has no seeds: send seeds null", code="bad_engine_request")
            return self.stylizer.stylize_variants(job.image, job.params, job.strength, job.seeds)
        return [self.stylizer.stylize(job.image, job.params, job.strength)]


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
        self.upscaler = factories.upscaler(UpscaleEngineSettings(**settings))
        for scale in self.upscaler.scales:  # load every scale's network now: readiness after loading
            self.upscaler.upscale(np.zeros((16, 16, 3), dtype=np.uint8), scale)
        self.upscale_batch.set_max_batch_size(max_batch_size or DEFAULT_CPU_BATCH)
        self.upscale_batch.set_batch_wait_timeout_s(batch_wait_s)
        self._start_stats("UpscaleWorker", self.upscaler.version)

    def describe(self) -> dict:
        return {"name": self.upscaler.name, "version": self.upscaler.version, "scales": list(self.upscaler.scales)}

    async def upscale(self, image: np.ndarray, scale: int) -> np.ndarray:
        outcome = await self.upscale_batch((image, scale))
        return outcome.unwrap()[0]

    @serve.batch(max_batch_size=DEFAULT_CPU_BATCH, batch_wait_timeout_s=0.05)
    async def upscale_batch(self, jobs: list[tuple[np.ndarray, int]]) -> list[Outcome]:
        return await self._run_batch(lambda job: [self.upscaler.upscale(*job)], jobs)


def _error_response(error: Exception) -> JSONResponse:
    if isinstance(error, BadInput):
        return JSONResponse({"code": error.code, "detail": str(error)}, status_code=400)
    if isinstance(error, PhotoGenError):
        return JSONResponse({"code": error.code, "detail": str(error)}, status_code=422)
    return JSONResponse({"code": "engine_error", "detail": f"{type(error).__name__}: {error}"}, status_code=500)


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
            if seeds is not None and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
                raise BadInput("seeds must be a list of integers or null")
            handle = self.styles.options(multiplexed_model_id=style_id(params))
            return await handle.paint.remote(images[0], params, float(strength), seeds)

        return await self._serve(request, work)

    @api.post("/v1/upscale")
    async def upscale(self, request: Request) -> Response:
        async def work(fields: dict, images: list[np.ndarray]) -> list[np.ndarray]:
            scale = fields.get("scale")
            if len(images) != 1 or not isinstance(scale, int):
                raise BadInput("upscale takes one image and an integer scale")
            return [await self.upscaler.upscale.remote(images[0], scale)]

        return await self._serve(request, work)

    @api.get("/v1/status")
    async def status(self) -> dict:
        replicas = await stats_actor().all.remote()
        painting = sum(replica["processing"] for replica in replicas.values())
        gateway = {"in_flight": self.in_flight, "queued": max(0, self.in_flight - painting), "answered": self.answered}
        return {"gateway": gateway, "replicas": replicas, **_serve_status()}

    async def _serve(self, request: Request, work) -> Response:
        self.in_flight += 1
        try:
            fields, images = wire.unpack(await request.body())
            pictures = await work(fields, images)
            return Response(wire.pack({}, pictures), media_type=wire.MEDIA_TYPE)
        except Exception as error:  # a replica's exception arrives wrapped: answer with its cause
            return _error_response(getattr(error, "cause", None) or error)
        finally:
            self.in_flight -= 1
            self.answered += 1
