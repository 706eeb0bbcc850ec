"""A quality tier's engines (photogen_pipelines/tiers.py): one answer for the resources,
the assets, the API and the CLI, from the deployment's frozen settings."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from photogen_pipelines import factories, tiers
from photogen_pipelines.catalog import load_products
from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import ReferenceStylizer, SeededStylizer
from photogen_pipelines.engines.remote import EngineService, remote_stylizer
from photogen_pipelines.errors import BadInput, ModelError
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


SERVICE = StyleEngineSettings(backend="service", service_url="http://engines:8100")
RUNPOD = StyleEngineSettings(backend="runpod", api_key="k", endpoint_id="e")


def test_the_tiers_steps_reach_every_engine_with_steps_wherever_it_runs():
    assert tiers.style_engine(DIFFUSERS, steps=12).steps == 12
    assert tiers.style_engine(REPLICATE, "replicate", steps=8).steps == 8
    # the engine service and RunPod carry them in each request (the premium tier's 40 steps
    # were dropped there, and premium orders got the standard tier's pictures)
    assert tiers.style_engine(SERVICE, steps=40).steps == 40
    assert tiers.style_engine(RUNPOD, steps=40).steps == 40
    assert tiers.style_engine(StyleEngineSettings(), steps=12) == StyleEngineSettings()  # the embedded engine has none


def test_the_tiers_upscale_model_reaches_the_upscalers_with_a_choice_and_is_refused_by_the_others():
    assert tiers.upscale_engine(UpscaleEngineSettings(), "REALESRGAN_X4PLUS") == UpscaleEngineSettings(model="REALESRGAN_X4PLUS")
    assert tiers.upscale_engine(UpscaleEngineSettings(), None) == UpscaleEngineSettings()
    service = UpscaleEngineSettings(backend="service", service_url="http://engines:8100")
    assert tiers.upscale_engine(service, "REALESRGAN_X4PLUS").model == "REALESRGAN_X4PLUS"
    torch = UpscaleEngineSettings(backend="torch", model_path="/m/RealESRGAN_x4plus.pth")
    runpod = UpscaleEngineSettings(backend="runpod", api_key="k", endpoint_id="e")
    for one_model in (torch, runpod):
        assert tiers.upscale_engine(one_model, None) == one_model
        with pytest.raises(ModelError, match="runs one model of its own") as refused:
            tiers.upscale_engine(one_model, "REALESRGAN_X4PLUS")
        assert refused.value.code == "tier_unavailable"


@pytest.mark.parametrize(("running", "refused"), [("embedded", False), ("service", False), ("diffusers", True), ("runpod", True)])
def test_a_tier_whose_upscale_model_the_backend_cannot_run_is_refused_before_payment(running, refused):
    tier = load_products().tier("premium").model_copy(update={"upscale_model": "REALESRGAN_X4PLUS"})
    if refused:
        with pytest.raises(ModelError) as error:
            tiers.check_tier(tier, running)
        assert error.value.code == "tier_unavailable"
    else:
        tiers.check_tier(tier, running)
    for shipped in load_products().tiers:  # the catalog's own tiers run on every backend
        tiers.check_tier(shipped, running)


def test_the_service_stylizer_and_upscaler_carry_the_tiers_steps_and_upscale_model(recorder):
    service = StyleEngineSettings(backend="service", service_url=recorder.url, service_wait_seconds=5)
    premium = factories.stylizer(tiers.style_engine(service, steps=40))
    standard = factories.stylizer(tiers.style_engine(service))
    picture = np.zeros((8, 8, 3), np.uint8)
    for stylizer, steps in ((premium, 40), (standard, None)):
        stylizer.stylize(picture, {"prompt": "x"}, 0.5)
        fields, images = wire.unpack(recorder.bodies[-1])
        assert fields.get("steps") == steps and len(images) == 1
    assert premium.version != standard.version  # the documents tell the two apart

    service_upscale = UpscaleEngineSettings(backend="service", service_url=recorder.url)
    upscale = factories.upscaler(tiers.upscale_engine(service_upscale, "REALESRGAN_X4PLUS"))
    upscale.upscale(picture, 4)
    assert wire.unpack(recorder.bodies[-1])[0] == {"scale": 4, "model": "REALESRGAN_X4PLUS"}
    factories.upscaler(UpscaleEngineSettings(backend="service", service_url=recorder.url)).upscale(picture, 4)
    assert wire.unpack(recorder.bodies[-1])[0] == {"scale": 4}  # the service's own model


class _Recorder:
    """A loopback stand-in for the engine service's HTTP: it answers /v1/engines like a
    diffusion service and every POST with the picture it got, and keeps the bodies."""

    def __init__(self, max_references: int | None = None):
        self.bodies: list[bytes] = []
        self.max_references = max_references
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                style = {"name": "instantid-diffusers", "version": "v", "params_section": "diffusion", "seeded": True}
                if outer.max_references:
                    style["max_references"] = outer.max_references
                body = json.dumps({"style": style, "upscale": {"name": "ncnn", "version": "v", "scales": [2, 4]}}).encode()
                self._answer(body, "application/json")

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(body)
                fields, images = wire.unpack(body)
                if self.path == "/v1/references":  # one picture per seed, at the size asked for
                    width, height = fields["size"]
                    pictures = [np.full((height, width, 3), seed % 256, np.uint8) for seed in fields["seeds"]]
                    self._answer(wire.pack({}, pictures), wire.MEDIA_TYPE)
                    return
                scale = fields.get("scale", 1)
                self._answer(wire.pack({}, [np.repeat(np.repeat(images[0], scale, 0), scale, 1)]), wire.MEDIA_TYPE)

            def _answer(self, body: bytes, media: str):
                self.send_response(200)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def recorder(request):
    server = _Recorder(getattr(request, "param", None))
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


class _Stepped:
    steps = 30


def test_a_loaded_engine_paints_one_call_with_the_tiers_steps_and_keeps_its_own():
    engine = _Stepped()
    with tiers.steps_for_call(engine, 40):
        assert engine.steps == 40
    assert engine.steps == 30
    with pytest.raises(RuntimeError), tiers.steps_for_call(engine, 12):
        raise RuntimeError("the engine failed")
    assert engine.steps == 30  # a failed call gives the engine its own steps back too
    with tiers.steps_for_call(engine, None):
        assert engine.steps == 30
    unstepped = object()
    with tiers.steps_for_call(unstepped, 40):  # an engine without steps paints as it always does
        pass


def test_a_step_distilled_engine_keeps_its_own_steps_in_a_run_and_in_the_service():
    """FLUX.2 klein is distilled to 4 steps: premium's 40 would take ten times as long for no
    better picture. A tier's steps never reach it, wherever it runs."""
    klein = StyleEngineSettings(backend="flux2-klein", model_dir="/models")
    assert tiers.style_engine(klein, steps=40) == klein
    assert tiers.style_engine(StyleEngineSettings(backend="qwen-edit", model_dir="/models"), steps=50).steps == 50
    distilled = _Stepped()
    distilled.takes_tier_steps = False  # what the klein engine says of itself (engines/flux2_klein.py)
    with tiers.steps_for_call(distilled, 40):
        assert distilled.steps == 30


@pytest.mark.parametrize("recorder", [4], indirect=True)
def test_a_service_whose_engine_paints_from_references_gets_every_photo_in_one_message(recorder):
    remote = remote_stylizer(EngineService(recorder.url, wait_seconds=5), steps=6)
    assert isinstance(remote, ReferenceStylizer) and isinstance(remote, SeededStylizer) and remote.max_references == 4
    photos = [np.full((40 + 8 * i, 32, 3), i, np.uint8) for i in range(3)]  # photos of their own sizes
    pictures = remote.paint_from_references(photos, {"prompt": "x"}, 0.8, [3, 4], (48, 64))
    assert [p.shape for p in pictures] == [(64, 48, 3)] * 2
    fields, sent = wire.unpack(recorder.bodies[-1])
    assert fields == {"params": {"prompt": "x"}, "strength": 0.8, "seeds": [3, 4], "steps": 6, "size": [48, 64]}
    assert len(sent) == 3 and all(np.array_equal(a, b) for a, b in zip(sent, photos, strict=True))  # the primary first
    with pytest.raises(BadInput) as refused:
        remote.paint_from_references(photos * 2, {"prompt": "x"}, 0.8, [3], (48, 64))
    assert refused.value.code == "too_many_references" and len(recorder.bodies) == 1  # refused before it was sent


def test_a_service_whose_engine_paints_from_one_picture_is_no_reference_stylizer(recorder):
    remote = remote_stylizer(EngineService(recorder.url, wait_seconds=5))
    assert not isinstance(remote, ReferenceStylizer) and not hasattr(remote, "paint_from_references")
