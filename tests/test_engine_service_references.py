"""The engine service running a reference-photo engine (FLUX.2 klein, tiny random weights,
on the session's Ray cluster): it says so, a run's remote stylizer becomes a
ReferenceStylizer that sends every photo of an order in one message, the replica paints
them on its one loaded engine, loaded once; klein, step-distilled, keeps its own steps
whatever the tier asks. Its own module: one Serve application per cluster, so the embedded service of
tests/test_engine_service.py must be gone."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from photogen_pipelines import factories
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import ReferenceStylizer
from photogen_pipelines.engines.remote import EngineService, remote_stylizer
from photogen_pipelines.errors import BadInput
from tests.servers import free_port, replicas_since, serve_application

pytestmark = [
    pytest.mark.slow,  # a Serve application with diffusers models on the session's cluster
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from photogen_pipelines.devtools.tiny_models import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("flux2") / "tiny", family="flux2-klein")


STARTED: dict[str, float] = {}  # when this module's service was started: its replicas reported after


@pytest.fixture(scope="module")
def service_url(ray_env, models):
    args = {"engine": "flux2-klein", "models_dir": str(models), "gpus_per_replica": 0, "max_batch_size": 2}
    STARTED["service"] = time.time()
    with serve_application(ray_env, args, free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (64 + 8 * i, 48, 3), dtype=np.uint8) for i in range(3)]


def _params() -> dict:
    return load_styles().get("fauve").engine_params("diffusion").model_dump(exclude_none=True)


def _style_replicas(url: str) -> list[dict]:
    return replicas_since(url, "StyleWorker", STARTED["service"])


def test_every_photo_reaches_the_replicas_engine_and_paints_what_it_paints_in_a_run(service_url, models, photos):
    remote = remote_stylizer(EngineService(service_url))
    styles, _ = factories.engine_settings("flux2-klein", str(models))
    local = factories.stylizer(styles)  # the same engine in this process, from the same settings
    assert isinstance(remote, ReferenceStylizer) and remote.max_references == local.max_references
    pictures = remote.paint_from_references(photos, _params(), 1.0, [5, 6], (48, 64))
    painted = local.paint_from_references(photos, _params(), 1.0, [5, 6], (48, 64))
    assert [p.shape for p in pictures] == [(64, 48, 3)] * 2
    for there, here in zip(pictures, painted, strict=True):  # torch on another process's threads: within a level
        assert np.abs(there.astype(int) - here.astype(int)).max() <= 2


def test_a_step_distilled_engine_keeps_its_steps_through_the_service_and_the_models_load_once(service_url, photos):
    """FLUX.2 klein is distilled to its steps: a premium order's 40 would only take longer, so
    a tier's steps never reach it, here as in a run (tiers.steps_for_call; the steps that do
    reach an engine with steps are tested in test_engine_service.py)."""
    service = EngineService(service_url)
    own = service.engines["style"]["steps"]
    usual = remote_stylizer(service).paint_from_references(photos, _params(), 1.0, [7], (48, 64))[0]
    premium = remote_stylizer(service, steps=own + 2)
    more = [premium.paint_from_references(photos, _params(), 1.0, [7], (48, 64))[0] for _ in range(3)]
    assert all(np.abs(picture.astype(int) - usual.astype(int)).max() <= 2 for picture in more)  # its own steps
    assert service.get_json("/v1/engines")["style"]["steps"] == own
    (replica,) = _style_replicas(service_url)
    assert replica["model_loads"] == 1 and replica["requests"] >= 5  # however many tiers ask


def test_more_photos_than_the_engine_takes_are_refused_with_a_code(service_url, photos):
    remote = remote_stylizer(EngineService(service_url))
    too_many = photos * 2
    with pytest.raises(BadInput) as refused:
        remote.paint_from_references(too_many, _params(), 1.0, [1], (48, 64))
    assert refused.value.code == "too_many_references"
    body = wire.pack({"params": _params(), "strength": 1.0, "seeds": [1], "size": [48, 64]}, too_many)
    answer = requests.post(f"{service_url}/v1/references", data=body, timeout=60)
    assert answer.status_code == 400 and answer.json()["code"] == "too_many_references"
