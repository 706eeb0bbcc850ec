"""`photogen serve --engine-service`: the service starts first, under the same supervision,
every run calls it, and SIGTERM stops it with the rest. Its own module: the engine service
of tests/test_engine_service.py must be gone from the session's Ray cluster (one per cluster)."""

from __future__ import annotations

import signal
import time

import dagster as dg
import pytest
import requests

from tests.servers import free_port, group_alive
from tests.test_serve import _read, _wait_until, new_api_key, start_serve

pytestmark = pytest.mark.slow  # photogen serve with the engine service on the session's Ray cluster


def _status(url: str) -> dict:
    return requests.get(f"{url}/v1/status", timeout=10).json()


def test_photogen_serve_with_the_engine_service_delivers_orders_that_it_painted(ray_env, tmp_path, monkeypatch, astronaut_png):
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):  # its engine service joins the session's cluster
        monkeypatch.setenv(name, ray_env[name])
    api_port, ui_port, engine_port = free_port(), free_port(), free_port()
    home, log = tmp_path / "home", tmp_path / "serve.log"
    process = start_serve(home, api_port, ui_port, log, "--engine-service", "--engine-port", str(engine_port))
    engine_url = f"http://127.0.0.1:{engine_port}"
    try:
        _wait_until(lambda: "[photogen] ready" in _read(log), 300, "the ready line", process, log)
        assert f"engine service  {engine_url}" in _read(log)
        api, auth = f"http://127.0.0.1:{api_port}", new_api_key(home)
        upload = requests.post(
            f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
        )
        body = {"upload_id": upload.json()["id"], "product_id": "poster_a3", "variants": 2, "approval": "auto"}
        orders = [
            requests.post(
                f"{api}/v1/orders", headers={**auth, "Idempotency-Key": style}, json={**body, "style_id": style}, timeout=30
            ).json()
            for style in ("ink_etching", "fauve")
        ]

        def all_ready():
            time.sleep(3)
            states = [requests.get(f"{api}/v1/orders/{o['id']}", headers=auth, timeout=10).json()["state"] for o in orders]
            assert not {"rejected", "failed"} & set(states), states
            return states == ["ready", "ready"]

        _wait_until(all_ready, 480, "both orders to be ready", process, log)
        status = _status(engine_url)
        workers = {r["deployment"]: r for r in status["replicas"].values()}
        assert workers["StyleWorker"]["model_loads"] == 1 and workers["StyleWorker"]["style_loads"] >= 2
        assert workers["StyleWorker"]["requests"] >= 4 and workers["UpscaleWorker"]["requests"] == 2

        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:

            def order_runs_finished():  # an order is ready a moment before its print run ends
                runs = [r for o in orders for r in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": o["id"]}))]
                return runs if len(runs) == 4 and all(r.is_finished for r in runs) else None

            runs = _wait_until(order_runs_finished, 60, "the order runs to finish", process, log)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            assert not any("photogen/gpu" in r.tags for r in runs)  # the service holds the engines: runs need no GPU
            step_processes = {
                (r.run_id, e.dagster_event.pid)
                for r in runs
                for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_START)
            }
            assert len(step_processes) == 4  # each run's steps share the run's one process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0, _read(log)[-3000:]
    assert not group_alive(process.pid)
    assert "stopping the engine service" in _read(log)
    with pytest.raises(requests.ConnectionError):
        requests.get(engine_url + "/v1/engines", timeout=5)
