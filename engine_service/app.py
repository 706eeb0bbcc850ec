"""The Serve application: a gateway (HTTP) in front of a style worker and an upscale worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from engine_service.workers import Gateway, StyleWorker, UpscaleWorker
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings, engine_settings
from photogen_pipelines.licences import engine_models, refusal
from photogen_pipelines.settings import PhotoGenSettings

APP_NAME = "photogen-engines"
GATEWAY_ONGOING = 256  # requests the one gateway replica holds at a time


class EngineServiceArgs(BaseModel):
    """How the service runs: the engine, its models and its replicas (the `args` of
    `engine_service.app:build_app` in a Serve config, or `photogen engines serve` flags)."""

    model_config = ConfigDict(extra="forbid")

    # diffusers: SDXL + InstantID; flux2-klein, qwen-edit: the reference-photo engines (engines/stylize_reference.py)
    engine: Literal["embedded", "diffusers", "flux2-klein", "qwen-edit"] = "embedded"
    models_dir: str | None = None  # every engine but the embedded one: the models folder
    memory_profile: str = "auto"
    # GPUs per style replica; on diffusers the upscaler takes the rest of the card, so one
    # GPU holds one replica of each (0.8 + 0.2). 0 on the embedded engine.
    gpus_per_replica: float | None = Field(default=None, ge=0)
    upscale_gpus_per_replica: float | None = Field(default=None, ge=0)
    cpus_per_replica: float = Field(default=1, ge=0)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2, gt=0)
    # how long Serve waits before adding or removing a replica; None: Serve's own (30 s up,
    # 600 s down), which the KubeRay manifest keeps: a GPU replica is slow to start, so one
    # is not given back at the first quiet minute
    upscale_delay_s: float | None = Field(default=None, ge=0)
    downscale_delay_s: float | None = Field(default=None, ge=0)
    # requests gathered into one batch; default: the memory profile's batch on diffusers, 4 on CPU
    max_batch_size: int | None = Field(default=None, ge=1)
    batch_wait_s: float = Field(default=0.05, ge=0)
    styles_per_replica: int = Field(default=4, ge=1)  # multiplexed styles kept resident per replica

    @model_validator(mode="after")
    def _models_for_diffusers(self) -> EngineServiceArgs:
        if self.engine != "embedded" and not self.models_dir:
            raise ValueError(f"engine {self.engine} needs models_dir, the models folder")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self

    @property
    def style_gpus(self) -> float:
        return self.gpus_per_replica if self.gpus_per_replica is not None else (0.8 if self.engine != "embedded" else 0.0)

    @property
    def upscale_gpus(self) -> float:
        if self.upscale_gpus_per_replica is not None:
            return self.upscale_gpus_per_replica
        return 0.2 if self.style_gpus > 0 else 0.0  # with the style engine on the CPU, the upscaler too

    def unschedulable(self, resources: dict[str, float]) -> str | None:
        """Why one replica of each worker cannot start on a cluster with `resources` (None if it can)."""
        cpus = 2 * self.cpus_per_replica
        gpus = self.style_gpus + self.upscale_gpus
        if gpus > resources.get("GPU", 0):
            return (
                f"one replica of each engine needs {gpus:g} GPU(s) and this Ray cluster has {resources.get('GPU', 0):g}; "
                "on a machine without a GPU pass --gpus-per-replica 0 (tiny models, or the embedded engine)"
            )
        if cpus > resources.get("CPU", 0):
            return f"one replica of each engine needs {cpus:g} CPUs and this Ray cluster has {resources.get('CPU', 0):g}"
        return None

    def engines(self) -> tuple[StyleEngineSettings, UpscaleEngineSettings]:
        return engine_settings(self.engine, self.models_dir, self.memory_profile)

    def autoscaling(self) -> dict:
        """Serve's autoscaling_config for each worker deployment."""
        delays = {"upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s}
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            **{name: value for name, value in delays.items() if value is not None},
        }


def build_app(args: dict) -> serve.Application:
    """The application for `args` (EngineServiceArgs): Serve calls this with a config's `args`."""
    options = EngineServiceArgs.model_validate(args or {})
    styles, upscale = options.engines()
    # KubeRay builds the application without `photogen engines serve`: the licence check of a
    # paying shop (PHOTOGEN_COMMERCIAL_ONLY) happens here too, before a replica loads a model
    settings = PhotoGenSettings()
    if settings.commercial_only and (line := refusal(engine_models(styles, upscale, catalog=load_styles(settings.styles_path)))):
        raise ModelError(line)
    batch = options.max_batch_size or 4
    # An upscale replica takes a batch at a time, with room for one batch being painted and
    # the next one gathering. A style replica holds one batch and no more: Serve routes a
    # style's requests to the replicas that have it resident for as long as one accepts, so
    # with room for two batches the first replica kept a hot style's whole load while the
    # replica the autoscaler had added stood idle (benchmarks/engine_scaleout.py). Beyond a
    # batch, requests wait at the gateway's router for whichever replica frees first.
    ongoing = 2 * batch
    style_worker = StyleWorker.options(
        autoscaling_config=options.autoscaling(),
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.style_gpus},
        max_ongoing_requests=batch,
    ).bind(styles.model_dump(), options.max_batch_size, options.batch_wait_s, options.styles_per_replica)
    upscale_worker = UpscaleWorker.options(
        autoscaling_config=options.autoscaling(),
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.upscale_gpus},
        max_ongoing_requests=ongoing,
    ).bind(upscale.model_dump(), options.max_batch_size, options.batch_wait_s)
    # the gateway only forwards: it must never be what queues the runs' requests (Serve's
    # default of 5 at a time would hide the load from the workers' autoscaling)
    return Gateway.options(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=GATEWAY_ONGOING).bind(
        style_worker, upscale_worker
    )
