"""The warm engine service: `photogen engines serve` (Ray Serve, on the session's small
local cluster) paints what the in-run engines paint, loads its models once per replica,
batches across orders and keeps styles resident; runs reach it over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests

import assets
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.engines import wire
from photogen_pipelines.engines.base import ReferenceStylizer
from photogen_pipelines.engines.remote import EngineService, EngineUnavailable, RemoteUpscaler, remote_stylizer
from photogen_pipelines.errors import BadInput, ModelError
from photogen_pipelines.factories import StyleEngineSettings, UpscaleEngineSettings, stylizer
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys
from tests.dagster_helpers import local_instance
from tests.servers import engine_service, free_port, replicas_since

STARTED: dict[str, float] = {}  # when this module's service was started: its replicas reported after


@pytest.fixture(scope="module")
def service_url(ray_env, tmp_path_factory):
    STARTED["service"] = time.time()
    with engine_service(tmp_path_factory.mktemp("engines"), ray_env) as url:
        yield url


def _status(url: str) -> dict:
    return requests.get(f"{url}/v1/status", timeout=10).json()


def _style_params(style_id: str) -> dict:
    return load_styles().get(style_id).embedded.model_dump(exclude_none=True)


def test_the_service_paints_and_upscales_what_the_in_run_engines_do(service_url, face_images):
    portrait = np.ascontiguousarray(face_images["ardern"][:320, :256])
    remote = remote_stylizer(EngineService(service_url))
    local = stylizer(StyleEngineSettings())
    assert remote.params_section == "embedded" and local.version in remote.version
    for style_id in ("starry_swirl", "sepia_oil"):  # a built-in blend and a style picture
        params = _style_params(style_id)
        assert np.array_equal(remote.stylize(portrait, params, 0.5), local.stylize(portrait, params, 0.5)), style_id

    from photogen_pipelines.factories import upscaler

    remote_upscaler = RemoteUpscaler(EngineService(service_url))
    small = portrait[:64, :48]
    assert remote_upscaler.scales == upscaler(UpscaleEngineSettings()).scales
    assert np.array_equal(remote_upscaler.upscale(small, 4), upscaler(UpscaleEngineSettings()).upscale(small, 4))


@pytest.mark.slow
def test_concurrent_orders_are_batched_by_replicas_that_load_their_models_once(service_url, face_images):
    portrait = np.ascontiguousarray(face_images["macron"][:256, :256])
    remote = remote_stylizer(EngineService(service_url))
    before = _status(service_url)["replicas"]
    params = _style_params("fauve")
    with ThreadPoolExecutor(8) as pool:  # eight orders' variants arriving at once
        pictures = list(pool.map(lambda i: remote.stylize(portrait, params, 0.3 + 0.05 * i), range(8)))
    assert all(p.shape == portrait.shape for p in pictures)
    assert len({p.tobytes() for p in pictures}) == 8  # each request got its own picture back

    status = _status(service_url)
    styles = {k: v for k, v in status["replicas"].items() if v["deployment"] == "StyleWorker"}
    assert styles and all(replica["model_loads"] == 1 for replica in styles.values())
    served = sum(r["requests"] for r in styles.values()) - sum(
        r["requests"] for k, r in before.items() if r["deployment"] == "StyleWorker"
    )
    assert served == 8
    batched = {int(size) for r in styles.values() for size, count in r["batch_sizes"].items() if count}
    assert max(batched) > 1, status  # at least one batch held several orders' requests
    assert sum(r["style_loads"] for r in styles.values()) >= 1
    assert status["deployments"]["StyleWorker"]["replicas"] == {"RUNNING": 1}
    assert status["gateway"]["in_flight"] == 0 and status["gateway"]["queued"] == 0


@pytest.mark.slow
def test_engines_status_prints_replicas_loads_and_batches(service_url):
    photogen = [str(Path(sys.executable).with_name("photogen"))]
    shown = subprocess.run([*photogen, "engines", "status", "--url", service_url], capture_output=True, text=True, check=True)
    assert "StyleWorker: healthy; replicas 1 running" in shown.stdout
    assert "1 model load(s)" in shown.stdout
    as_json = subprocess.run(
        [*photogen, "engines", "status", "--url", service_url, "--json"], capture_output=True, text=True, check=True
    )
    report = json.loads(as_json.stdout)
    assert {r["deployment"] for r in report["replicas"].values()} == {"StyleWorker", "UpscaleWorker"}

    down = subprocess.run(
        [*photogen, "engines", "status", "--url", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "not answering" in down.stderr


@pytest.mark.slow
def test_a_bad_message_is_a_400_with_a_code_and_the_client_says_bad_input(service_url):
    answer = requests.post(f"{service_url}/v1/stylize", data=b"not an npz", timeout=10)
    assert answer.status_code == 400 and answer.json()["code"] == "bad_engine_message"
    service = EngineService(service_url)
    with pytest.raises(BadInput, match="integer scale"):
        service.post("/v1/upscale", {"scale": "four"}, [np.zeros((8, 8, 3), np.uint8)])


def test_a_service_that_does_not_come_up_fails_the_call_after_its_wait_bound():
    service = EngineService(f"http://127.0.0.1:{free_port()}", wait_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="not answering after 2 s"):
        remote_stylizer(service)
    assert 1.0 <= time.monotonic() - started < 5


class _ScalingUp:
    """A loopback HTTP forwarder to the service that answers 503 (as Serve's proxy does
    while no replica is ready) to its first `refusals` requests: a fault injector, the
    service behind it is the real one."""

    def __init__(self, target: str, refusals: int):
        self.target, self.refusals, self.refused = target, refusals, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if outer.refused < outer.refusals:
                    outer.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                request = urllib.request.Request(outer.target + self.path, data=body, method=self.command)
                request.add_header("Content-Type", self.headers.get("Content-Type", "application/octet-stream"))
                with urllib.request.urlopen(request, timeout=300) as answer:
                    payload = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_an_order_runs_through_the_service_and_a_step_that_finds_it_scaling_up_is_retried(service_url, tmp_path, astronaut_png):
    # the first call waits up to 0.1 s, meets only 503s, and fails styled_candidates with
    # EngineUnavailable; the asset's RetryPolicy runs it again in the same process
    with _ScalingUp(service_url, refusals=3) as scaling, local_instance(tmp_path / "dagster") as instance:
        defs = build_defs(str(tmp_path / "home"), engine_url=scaling.url, engine_wait_seconds=0.1)
        job = defs.resolve_job_def("proof_job")
        assert job.executor_def is dg.in_process_executor
        order = register_local_order(defs, astronaut_png, "sepia_oil", "poster_a3", variants=2, approval="auto")
        instance.add_dynamic_partitions(assets.orders_partitions.name, [order.id])
        result = job.execute_in_process(partition_key=order.id, instance=instance)
        assert result.success and scaling.refused == 3
        retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        assert [e.step_key for e in retried] == ["styled_candidates"]
        assert "EngineUnavailable" in str(retried[0].event_specific_data.error)

        store = defs.resources["storage"].store()
        candidates = OrderKeys(order.id).load(store, CandidatesInfo)
        assert candidates.engine.endswith(f"via {scaling.url}")
        assert defs.resources["orders"].book().get(order.id).state in ("approved", "proofs_ready")


@pytest.mark.slow
def test_a_second_engine_service_on_the_same_cluster_is_refused_and_the_first_keeps_serving(service_url, ray_env):
    photogen = str(Path(sys.executable).with_name("photogen"))
    second = subprocess.run(
        [photogen, "engines", "serve", "--port", str(free_port())], env=ray_env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 2
    assert "photogen: error: Ray Serve already runs on this Ray cluster" in second.stderr
    assert requests.get(f"{service_url}/v1/engines", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["engines", "serve", "--engine", "diffusers"], "--engine diffusers needs --models DIR"),
        (
            ["engines", "serve", "--engine", "diffusers", "--models", "/no/such/models"],
            "--models /no/such/models: no such folder",
        ),
        (["engines", "serve", "--min-replicas", "3", "--max-replicas", "2"], "min_replicas 3 is above max_replicas 2"),
        (["serve", "--engine-service", "--engine-port", "3000"], "are the same port"),
    ],
)
@pytest.mark.slow
def test_engine_service_mistakes_are_one_line_and_exit_2(arguments, expected, tmp_path):
    photogen = str(Path(sys.executable).with_name("photogen"))
    done = subprocess.run(
        [photogen, *arguments, *(["--home", str(tmp_path)] if arguments[0] == "serve" else [])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr and done.stderr.startswith("photogen: error: ")


@pytest.mark.slow
def test_a_tiers_upscale_model_is_loaded_once_per_replica_and_paints_what_it_paints_in_a_run(service_url):
    from photogen_pipelines.engines.upscale_ncnn import NcnnRealEsrgan

    service = EngineService(service_url)
    assert "REALESRGAN_X4PLUS" in service.engines["upscale"]["models"]
    small = np.ascontiguousarray(np.random.default_rng(3).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    premium = RemoteUpscaler(service, model="REALESRGAN_X4PLUS")
    assert premium.scales == (4,)  # that model's scales, as in a run
    pictures = [premium.upscale(small, 4) for _ in range(3)]
    local = NcnnRealEsrgan("REALESRGAN_X4PLUS").upscale(small, 4)
    assert all(np.array_equal(picture, local) for picture in pictures)
    assert not np.array_equal(RemoteUpscaler(service).upscale(small, 4), local)  # the service's own model is another
    (upscale,) = replicas_since(service_url, "UpscaleWorker", STARTED["service"])
    assert upscale["model_loads"] == 2  # its own model at start, the tier's once, however many orders ask
    with pytest.raises(ModelError):
        RemoteUpscaler(service, model="NO_SUCH_MODEL").upscale(small, 4)


@pytest.mark.slow
def test_steps_reach_the_service_and_an_engine_without_steps_paints_as_it_does_in_a_run(service_url, face_images):
    portrait = np.ascontiguousarray(face_images["ardern"][:128, :96])
    service = EngineService(service_url)
    assert service.engines["style"]["steps"] is None  # the embedded engine has no steps, in the service as in a run
    params = _style_params("fauve")
    with_steps = remote_stylizer(service, steps=40).stylize(portrait, params, 0.5)
    assert np.array_equal(with_steps, remote_stylizer(service).stylize(portrait, params, 0.5))
    for steps in (0, 151, "forty"):
        body = wire.pack({"params": params, "strength": 0.5, "steps": steps}, [portrait])
        answer = requests.post(f"{service_url}/v1/stylize", data=body, timeout=30)
        assert answer.status_code == 400 and "steps must be an integer from 1 to 150" in answer.json()["detail"]


@pytest.mark.slow
def test_references_to_an_engine_that_paints_from_one_picture_are_refused_with_a_code(service_url, face_images):
    service = EngineService(service_url)
    assert "max_references" not in service.engines["style"]
    assert not isinstance(remote_stylizer(service), ReferenceStylizer)
    photos = [np.ascontiguousarray(face_images[name][:64, :48]) for name in ("ardern", "macron")]
    fields = {"params": _style_params("fauve"), "strength": 0.5, "seeds": [1], "size": [48, 64]}
    with pytest.raises(ModelError) as refused:
        service.post("/v1/references", fields, photos)
    assert refused.value.code == "engine_has_no_references"
    with pytest.raises(BadInput, match="size must be"):
        service.post("/v1/references", {**fields, "size": [0, 64]}, photos)


def test_a_message_carries_every_picture_in_order_whatever_their_sizes():
    pictures = [np.full((10 + i, 7 * (i + 1), 3), i, np.uint8) for i in range(4)]
    fields, back = wire.unpack(wire.pack({"seeds": [1, 2]}, pictures))
    assert fields == {"seeds": [1, 2]} and [p.shape for p in back] == [p.shape for p in pictures]
    assert all(np.array_equal(a, b) for a, b in zip(back, pictures, strict=True))
