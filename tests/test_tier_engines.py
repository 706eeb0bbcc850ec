"""A quality tier's engines (photogen_pipelines/tiers.py): one answer for the resources,
the assets, the API and the CLI, from the deployment's frozen settings."""

from __future__ import annotations

import pytest

from photogen_pipelines import tiers
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings

DIFFUSERS = StyleEngineSettings(backend="diffusers", model_dir="/m", threads=2, price_per_second=0.001)
REPLICATE = StyleEngineSettings(backend="replicate", api_key="k", price_per_second=0.002)


@pytest.mark.parametrize("running", [StyleEngineSettings(), DIFFUSERS, REPLICATE])
def test_the_default_tier_runs_the_deployments_engine_as_it_is(running):
    assert tiers.style_engine(running) == running
    assert tiers.style_engine(running, running.backend) == running


def test_a_tier_on_the_embedded_engine_keeps_only_the_deployments_threads_and_price():
    embedded = tiers.style_engine(DIFFUSERS, "embedded", steps=4)
    assert embedded == StyleEngineSettings(threads=2, price_per_second=0.001)  # the embedded engine has no steps
    assert type(embedded) is StyleEngineSettings  # the factories' own class: their cache key


@pytest.mark.parametrize(("running", "engine"), [(StyleEngineSettings(), "diffusers"), (DIFFUSERS, "replicate")])
def test_a_tier_needing_an_engine_the_deployment_does_not_run_is_a_model_error(running, engine):
    with pytest.raises(ModelError, match=f"asks for the {engine} engine; this deployment runs {running.backend}"):
        tiers.style_engine(running, engine)


def test_the_tiers_steps_reach_only_the_engines_with_steps():
    assert tiers.style_engine(DIFFUSERS, steps=12).steps == 12
    assert tiers.style_engine(REPLICATE, "replicate", steps=8).steps == 8
    assert tiers.style_engine(StyleEngineSettings(), steps=12) == StyleEngineSettings()
    service = StyleEngineSettings(backend="service", service_url="http://engines:8100")
    assert tiers.style_engine(service, steps=12) == service


def test_the_tiers_upscale_model_changes_only_the_embedded_upscaler():
    assert tiers.upscale_engine(UpscaleEngineSettings(), "REALESRGAN_X4PLUS") == UpscaleEngineSettings(model="REALESRGAN_X4PLUS")
    assert tiers.upscale_engine(UpscaleEngineSettings(), None) == UpscaleEngineSettings()
    torch = UpscaleEngineSettings(backend="torch", model_path="/m/RealESRGAN_x4plus.pth")
    assert tiers.upscale_engine(torch, "REALESRGAN_X4PLUS") == torch
