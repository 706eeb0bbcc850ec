"""`photogen ui` serves the code location: the daemon's sensor turns a paid order into a
proof run, a run launched through the webserver (as the UI's Materialize button does, tagged
photogen/rerun=true) regenerates its proofs, and SIGTERM stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.orders.states import OrderState
from tests.servers import free_port, group_alive, wait_until

pytestmark = pytest.mark.slow  # photogen ui: the Dagster webserver, daemon and code server, two runs


def _finished(instance, run_id: str):
    run = instance.get_run_by_id(run_id)
    return run.status if run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) else None


@pytest.fixture
def ui_server(tmp_path):
    port = free_port()
    env = {**os.environ, "PHOTOGEN_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "home" / "dagster")}
    photogen = Path(sys.executable).with_name("photogen")
    process = subprocess.Popen(
        [str(photogen), "ui", "--port", str(port)],
        env=env,
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield process, port, tmp_path / "home"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the test failed before stopping it
            process.wait(timeout=10)


def _server_up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok
    except requests.ConnectionError:
        return False


def test_the_daemon_runs_a_paid_order_and_a_webserver_launched_rerun_succeeds(ui_server, astronaut_png, monkeypatch):
    process, port, home = ui_server
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    defs = build_defs(str(home))
    book = defs.resources["orders"].book()
    order = register_local_order(defs, astronaut_png, "ink_etching", "poster_a3", variants=2)
    wait_until(lambda: _server_up(port), 120, "the Dagster webserver")

    # the paid order becomes a proof run through the daemon's paid_orders sensor
    with dg.DagsterInstance.get() as instance:
        sensor_run = wait_until(
            lambda: next(iter(instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": f"proofs:{order.id}"}))), None),
            180,
            "the paid_orders sensor's run",
        )
        status = wait_until(lambda: _finished(instance, sensor_run.run_id), 240, "the sensor's proof run")
        assert status == dg.DagsterRunStatus.SUCCESS
        assert order.id in instance.get_dynamic_partitions("orders")
    assert book.get(order.id).state == OrderState.PROOFS_READY

    # an operator regenerates the proofs from the UI: the webserver launches the run, with the
    # tag that asks for a redo (without it the run finds nothing to do: tests/test_operator_ui.py)
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("proof_job", tags={"dagster/partition": order.id, "photogen/rerun": "true"})
    status = wait_until(
        lambda: (s := client.get_run_status(run_id)) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE) and s,
        240,
        "the regeneration run",
    )
    assert status == dg.DagsterRunStatus.SUCCESS
    regenerated = book.get(order.id)
    assert regenerated.state == OrderState.PROOFS_READY
    assert [e.to_state for e in regenerated.events].count(OrderState.GENERATING) == 2

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) is not None
    wait_until(lambda: not group_alive(process.pid), 40, "the webserver, daemon and code server to exit")
    assert not _server_up(port)
