"""Which engines an order's quality tier runs on (catalog `Tier`: `engine`, `steps`,
`upscale_model`), given the engines the deployment runs (factories.deployment).

One answer for everyone who asks: the Dagster resources and assets that build the tier's
engines, the storefront API that refuses a tier the shop cannot run before anyone pays,
and the CLI. The settings come in and go out as the factories' frozen settings
(StyleEngineSettings, UpscaleEngineSettings); this module sits on the floor just above
the factories (tests/test_layout.py).
"""

from __future__ import annotations

from photogen_pipelines.catalog import Tier
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import Deployment, StyleEngineSettings, UpscaleEngineSettings

# the style backends with denoising steps a tier can set; the others have none to set
STEPPED_BACKENDS = ("diffusers", "replicate")


def check_engine(engine: str, running_backend: str) -> None:
    """ModelError unless a tier asking for `engine` can run where the stylizer backend is
    `running_backend`: the deployment's own engine, or the embedded one, which any can run."""
    if engine not in ("default", "embedded", running_backend):
        raise ModelError(f"the tier asks for the {engine} engine; this deployment runs {running_backend}")


def style_engine(running: StyleEngineSettings, engine: str = "default", steps: int | None = None) -> StyleEngineSettings:
    """The stylizer settings a tier asks for, given the deployment's `running` ones: the
    deployment's own engine ("default", or its backend's name), or the embedded engine,
    which needs nothing configured and keeps the deployment's threads and price; with the
    tier's steps where the backend has steps. ModelError: the tier needs an engine this
    deployment does not run."""
    check_engine(engine, running.backend)
    if engine not in ("default", running.backend):
        running = StyleEngineSettings(backend="embedded", threads=running.threads, price_per_second=running.price_per_second)
    if steps is not None and running.backend in STEPPED_BACKENDS:
        running = running.model_copy(update={"steps": steps})
    return running


def upscale_engine(running: UpscaleEngineSettings, model: str | None = None) -> UpscaleEngineSettings:
    """The upscaler settings a tier asks for, given the deployment's `running` ones: another
    of the embedded engine's models; the other backends have one model each and keep it."""
    if model and running.backend == "embedded":
        return running.model_copy(update={"model": model})
    return running


def tier_engines(deployment: Deployment, tier: Tier) -> tuple[StyleEngineSettings, UpscaleEngineSettings]:
    """Both engines of `tier` on this deployment. ModelError: the deployment cannot run it."""
    return style_engine(deployment.styles, tier.engine, tier.steps), upscale_engine(deployment.upscale, tier.upscale_model)
