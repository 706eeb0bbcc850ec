"""Which engines an order's quality tier runs on (catalog `Tier`: `engine`, `steps`,
`upscale_model`), given the engines the deployment runs (factories.deployment).

One answer for everyone who asks: the Dagster resources and assets that build the tier's
engines, the storefront API that refuses a tier the shop cannot run before anyone pays,
and the CLI. The settings come in and go out as the factories' frozen settings
(StyleEngineSettings, UpscaleEngineSettings); this module sits on the floor just above
the factories (tests/test_layout.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from photogen_pipelines.catalog import Tier
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import Deployment, StyleEngineSettings, UpscaleEngineSettings

# The style backends a tier's denoising steps reach. The remote ones carry them in each
# request (the engine service's worker and the RunPod handler paint with them), so a
# premium order gets its steps wherever the shop's engine runs; the embedded engine has
# no steps to set, in a run or in the service.
# FLUX.2 klein is step-distilled (4 steps): more only take longer, so it keeps its own,
# in a run as in the service (its engine says so: `takes_tier_steps`, read by
# steps_for_call), and so do the hosted models, which take no step count at all. Where
# the steps do not reach, a tier is still what it says of itself everywhere: its proofs,
# and its print (products.yaml).
STEPPED_BACKENDS = ("diffusers", "qwen-edit", "replicate", "service", "runpod")
# The upscale backends a tier's `upscale_model` (one of the embedded engine's models)
# reaches: the embedded engine in the run, and the service, which carries it in each
# request and whose worker refuses it when it runs another upscaler. torch and RunPod run
# one model (Real-ESRGAN x4plus): a tier naming another cannot be honoured there.
CHOOSABLE_UPSCALE_BACKENDS = ("embedded", "service")
# the stylizer backends whose upscaler has one model (factories.engine_settings, serverless_settings)
ONE_UPSCALE_MODEL = {"diffusers": "torch", "flux2-klein": "torch", "qwen-edit": "torch", "runpod": "runpod"}
TIER_UNAVAILABLE = "tier_unavailable"


def check_engine(engine: str, running_backend: str, upscale_model: str | None = None) -> None:
    """ModelError (`tier_unavailable`) unless a tier asking for `engine` (and
    `upscale_model`) can run where the stylizer backend is `running_backend`: the
    deployment's own engine, or the embedded one, which any can run; an upscale model only
    where the upscaler has a choice. Answered from the backend's name alone, so the API
    refuses before anyone pays."""
    if engine not in ("default", "embedded", running_backend):
        raise ModelError(f"the tier asks for the {engine} engine; this deployment runs {running_backend}", code=TIER_UNAVAILABLE)
    if upscale_model and running_backend in ONE_UPSCALE_MODEL:
        _refuse_upscale_model(upscale_model, ONE_UPSCALE_MODEL[running_backend])


def check_tier(tier: Tier, running_backend: str) -> None:
    """check_engine for everything `tier` asks of the engines."""
    check_engine(tier.engine, running_backend, tier.upscale_model)


def _refuse_upscale_model(model: str, backend: str) -> None:
    raise ModelError(
        f"the tier asks for the upscale model {model}; the {backend} upscaler runs one model of its own",
        code=TIER_UNAVAILABLE,
    )


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
    of the embedded engine's models, in the run or through the service (which says at the
    call whether its upscaler has it). ModelError (`tier_unavailable`): the backend runs
    one model of its own (torch, RunPod), so the tier cannot be what it promises there."""
    if not model:
        return running
    if running.backend not in CHOOSABLE_UPSCALE_BACKENDS:
        _refuse_upscale_model(model, running.backend)
    return running.model_copy(update={"model": model})


@contextlib.contextmanager
def steps_for_call(stylizer: object, steps: int | None) -> Iterator[None]:
    """A loaded engine paints with a request's `steps` for the length of one call, and its
    own afterwards: the engine service's replicas and the RunPod worker keep one engine
    loaded and take each order's tier as it comes, rather than loading the models again
    per tier. Only for a caller that runs one call at a time on the engine (a replica's
    batch thread, the RunPod handler). An engine without steps (embedded) paints as it
    always does, as it would in a run."""
    takes_steps = isinstance(getattr(stylizer, "steps", None), int) and getattr(stylizer, "takes_tier_steps", True)
    if steps is None or not takes_steps:
        yield
        return
    own = stylizer.steps
    stylizer.steps = steps
    try:
        yield
    finally:
        stylizer.steps = own


def tier_engines(deployment: Deployment, tier: Tier) -> tuple[StyleEngineSettings, UpscaleEngineSettings]:
    """Both engines of `tier` on this deployment. ModelError: the deployment cannot run it."""
    return style_engine(deployment.styles, tier.engine, tier.steps), upscale_engine(deployment.upscale, tier.upscale_model)
