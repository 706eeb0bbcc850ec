"""A tier means on RunPod what it means in a run: the stylizer puts the tier's steps in each
job's input and the worker (deploy/runpod/handler.py, the real one, on the CPU with tiny
models, behind the fake RunPod endpoint of tests/fake_runpod.py) paints with them, for that
job only. A tier naming an upscale model is refused: the worker runs one model of its own."""

from __future__ import annotations

import numpy as np
import pytest

import tests.test_runpod as runpod_tests
from photogen_pipelines import tiers
from photogen_pipelines.engines.runpod import RunPodStylizer
from photogen_pipelines.errors import ModelError
from photogen_pipelines.factories import UpscaleEngineSettings
from tests.test_runpod import STYLE, b64, decoded, engine

# test_runpod's fixtures: its worker (the real handler, tiny models), the fake endpoint, its photo
worker, fake, portrait, one_thread = runpod_tests.worker, runpod_tests.fake, runpod_tests.portrait, runpod_tests.one_thread

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_the_tiers_steps_ride_in_the_job_and_the_worker_paints_with_them(worker, fake, portrait):
    own_steps = worker.engines()[0].steps
    premium = engine(RunPodStylizer, fake, steps=own_steps + 2)
    standard = engine(RunPodStylizer, fake)
    more = premium.stylize_variants(portrait, STYLE, 0.5, [1])
    usual = standard.stylize_variants(portrait, STYLE, 0.5, [1])
    first, second = fake.submissions
    assert first["steps"] == own_steps + 2 and "steps" not in second
    assert not np.array_equal(more[0], usual[0])  # the same seed, more steps: another picture
    assert worker.engines()[0].steps == own_steps  # the job's steps were for that job only

    # the worker's own steps, asked for by name, paint what no steps paint
    job = {"task": "stylize", "image": b64(portrait), "params": STYLE, "strength": 0.5, "seeds": [1], "steps": own_steps}
    named = worker.handler({"id": "j", "input": job})
    assert np.array_equal(decoded(named["images"][0]), usual[0])


@pytest.mark.parametrize("steps", [0, 151, "40", True])
def test_steps_out_of_bounds_fail_the_job_with_a_reason(worker, portrait, steps):
    job = {"task": "stylize", "image": b64(portrait), "params": STYLE, "strength": 0.5, "seeds": [1], "steps": steps}
    out = worker.handler({"id": "bad-steps", "input": job})
    assert out["error"].startswith("bad input: steps must be an integer from 1 to 150")


def test_a_tier_naming_an_upscale_model_is_refused_on_runpod():
    runpod = UpscaleEngineSettings(backend="runpod", api_key="k", endpoint_id="e")
    with pytest.raises(ModelError) as refused:
        tiers.upscale_engine(runpod, "REALESRGAN_X4PLUSANIME")
    assert refused.value.code == "tier_unavailable"
