"""The Serve application: a gateway (HTTP) in front of a style worker and an upscale worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from engine_service.workers import Gateway, StyleWorker, UpscaleWorker
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings, engine_settings

APP_NAME = "photogen-engines"


class EngineServiceArgs(BaseModel):
    """How the service runs: the engine, its models and its replicas (the `args` of
    `engine_service.app:build_app` in a Serve config, or `photogen engines serve` flags)."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["embedded", "diffusers"] = "embedded"
    models_dir: str | None = None  # diffusers: the models folder
    memory_profile: str = "auto"
    # GPUs per style replica; on diffusers the upscaler takes the rest of the card, so one
    # GPU holds one replica of each (0.8 + 0.2). 0 on the embedded engine.
    gpus_per_replica: float | None = Field(default=None, ge=0)
    upscale_gpus_per_replica: float | None = Field(default=None, ge=0)
    cpus_per_replica: float = Field(default=1, ge=0)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2, gt=0)
    # requests gathered into one batch; default: the memory profile's batch on diffusers, 4 on CPU
    max_batch_size: int | None = Field(default=None, ge=1)
    batch_wait_s: float = Field(default=0.05, ge=0)
    styles_per_replica: int = Field(default=4, ge=1)  # multiplexed styles kept resident per replica

    @model_validator(mode="after")
    def _models_for_diffusers(self) -> EngineServiceArgs:
        if self.engine == "diffusers" and not self.models_dir:
            raise ValueError("engine diffusers needs models_dir, the models folder")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self

    @property
    def style_gpus(self) -> float:
        return self.gpus_per_replica if self.gpus_per_replica is not None else (0.8 if self.engine == "diffusers" else 0.0)

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
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }


def build_app(args: dict) -> serve.Application:
    """The application for `args` (EngineServiceArgs): Serve calls this with a config's `args`."""
    options = EngineServiceArgs.model_validate(args or {})
    styles, upscale = options.engines()
    # a replica takes a batch at a time: it needs room for one batch being painted and the next one gathering
    ongoing = 2 * (options.max_batch_size or 4)
    style_worker = StyleWorker.options(
        autoscaling_config=options.autoscaling(),
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.style_gpus},
        max_ongoing_requests=ongoing,
    ).bind(styles.model_dump(), options.max_batch_size, options.batch_wait_s, options.styles_per_replica)
    upscale_worker = UpscaleWorker.options(
        autoscaling_config=options.autoscaling(),
        ray_actor_options={"num_cpus": options.cpus_per_replica, "num_gpus": options.upscale_gpus},
        max_ongoing_requests=ongoing,
    ).bind(upscale.model_dump(), options.max_batch_size, options.batch_wait_s)
    return Gateway.options(ray_actor_options={"num_cpus": 0}).bind(style_worker, upscale_worker)
