"""`photogen serve` runs the storefront API, the Dagster webserver, the Dagster daemon and the
code server they share, SIGTERM stops them all (exit 0, no process left), and a taken port is
a one-line error."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import requests
from PIL import Image

from tests.servers import free_port, group_alive

PHOTOGEN = Path(sys.executable).with_name("photogen")
REPO = Path(__file__).parents[1]
CHILDREN = ("storefront API", "Dagster UI", "Dagster daemon", "Dagster code server")
CHILD_PID = re.compile(rf"^\[photogen\] ({'|'.join(CHILDREN)})\b.*\bpid (\d+)", re.MULTILINE)


def _wait_until(predicate, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"photogen serve exited ({process.returncode}) while waiting for {what}:\n{_tail(log)}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")


def _read(log: Path | None) -> str:
    return log.read_text(errors="replace") if log and log.exists() else ""


def _tail(log: Path | None) -> str:
    return _read(log)[-4000:]


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


def _serve_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOGEN_STRIPE_")}
    return {**env, "PHOTOGEN_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_serve(
    home: Path, api_port: int, ui_port: int, log: Path, *options: str, env: dict[str, str] | None = None, **popen
) -> subprocess.Popen:
    """`photogen serve` in its own session (with `env` added to its environment); its stderr
    (and its children's output) is appended to `log`, so a restart on the same home keeps one log."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [str(PHOTOGEN), "serve", "--api-port", str(api_port), "--ui-port", str(ui_port), *options],
            env={**_serve_env(home), **(env or {})},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,
        )


@contextmanager
def serving(tmp_path: Path, env: dict[str, str], api_port: int | None = None):
    """`photogen serve` with `env` added, on `api_port` (else a free one) and a free UI port;
    yields (process, API URL, home, log) and stops every process it started."""
    api_port, ui_port = api_port or free_port(), free_port()
    home, log = tmp_path / "home", tmp_path / "serve.log"
    process = start_serve(home, api_port, ui_port, log, env=env)
    child_pgids: list[int] = []
    try:
        _wait_ready(process, log, child_pgids)
        yield process, f"http://127.0.0.1:{api_port}", home, log
        process.terminate()
        assert process.wait(timeout=60) == 0, _tail(log)
    finally:
        _stop_all(process, log, child_pgids)


def _stop_all(process: subprocess.Popen, log: Path, child_pgids: list[int]) -> None:
    """Kill serve and every child it logged, if a test left them running: no process may outlive the test."""
    child_pgids.extend(int(pid) for _name, pid in CHILD_PID.findall(_read(log)))
    if process.poll() is None:
        _kill_group(process.pid)
        process.wait(timeout=10)
    for pgid in child_pgids:
        _kill_group(pgid)


def new_api_key(home: Path) -> dict[str, str]:
    """A storefront key made with `photogen api-key create`, as the Authorization header."""
    created = subprocess.run(
        [str(PHOTOGEN), "api-key", "create", "--name", "test shop", "--json"],
        env=_serve_env(home),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return {"Authorization": f"Bearer {json.loads(created.stdout)['secret']}"}


@pytest.fixture
def serve(tmp_path):
    """`photogen serve` on free ports; its stderr (and its children's output) goes to a file."""
    api_port, ui_port = free_port(), free_port()
    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    process = start_serve(home, api_port, ui_port, log)
    child_pgids: list[int] = []
    try:
        yield process, api_port, ui_port, home, log, child_pgids
    finally:
        _stop_all(process, log, child_pgids)


def _sensor_daemon_heartbeat(dagster_home: Path) -> bool:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return "SENSOR" in instance.get_daemon_heartbeats()


def _code_locations(ui_port: int) -> list[dict]:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } } } }"
    response = requests.post(f"http://127.0.0.1:{ui_port}/graphql", json={"query": query}, timeout=30)
    return response.json()["data"]["workspaceOrError"]["locationEntries"]


def _wait_ready(process, log: Path, child_pgids: list[int]) -> dict[str, int]:
    _wait_until(lambda: "[photogen] ready" in _read(log), 180, "the ready line", process, log)
    children = {name: int(pid) for name, pid in CHILD_PID.findall(_read(log))}
    assert set(children) == set(CHILDREN)
    child_pgids.extend(children.values())
    return children


@pytest.mark.slow
def test_serve_runs_api_webserver_and_daemon_and_sigterm_stops_them_all(serve):
    process, api_port, ui_port, home, log, child_pgids = serve
    _wait_ready(process, log, child_pgids)
    output = _read(log)
    assert f"[photogen] storefront API  http://127.0.0.1:{api_port}  (docs: /docs, pid " in output
    assert f"[photogen] Dagster UI  http://127.0.0.1:{ui_port}  (pid " in output
    assert "payments are OFF" in output
    assert f"DAGSTER_HOME  {home / 'dagster'}" in output
    assert "warning" not in "\n".join(line for line in output.splitlines() if line.startswith("[photogen]"))

    health = _get(f"http://127.0.0.1:{api_port}/healthz")
    assert health is not None and health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = _get(f"http://127.0.0.1:{api_port}/readyz")
    assert ready is not None and ready.status_code == 200, ready and ready.text
    server_info = _get(f"http://127.0.0.1:{ui_port}/server_info")
    assert server_info is not None and server_info.status_code == 200
    locations = _code_locations(ui_port)
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in locations] == [
        ("photogen_pipelines.definitions", "LOADED", "RepositoryLocation")
    ]
    _wait_until(lambda: _sensor_daemon_heartbeat(home / "dagster"), 120, "the daemon's sensor heartbeat", process, log)
    assert (home / "orders.db").exists()  # migrated before the children started
    for pgid in child_pgids:
        assert group_alive(pgid)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, _tail(log)
    for pgid in child_pgids:
        assert not group_alive(pgid), f"process group {pgid} outlived photogen serve"
    assert "did not stop in time" not in _read(log)  # each stopped on SIGTERM, none needed SIGKILL
    assert _get(f"http://127.0.0.1:{api_port}/healthz") is None
    assert _get(f"http://127.0.0.1:{ui_port}/server_info") is None


@pytest.mark.slow
def test_a_child_that_dies_stops_the_others_and_serve_exits_1(serve):
    process, api_port, ui_port, home, log, child_pgids = serve
    children = _wait_ready(process, log, child_pgids)

    os.kill(children["storefront API"], signal.SIGKILL)
    assert process.wait(timeout=60) == 1, _tail(log)
    assert f"[photogen] storefront API (pid {children['storefront API']}) stopped on its own, ended by SIGKILL" in _read(log)
    for pgid in child_pgids:
        assert not group_alive(pgid), f"process group {pgid} outlived photogen serve"


def test_a_taken_port_is_a_one_line_error_and_starts_nothing(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        process = subprocess.Popen(
            [str(PHOTOGEN), "serve", "--api-port", str(free_port()), "--ui-port", str(port)],
            env=_serve_env(tmp_path / "home"),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                _kill_group(process.pid)
                process.wait(timeout=10)
    finally:
        taken.close()
    assert process.returncode == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("photogen: error:") and str(port) in lines[0]
    assert "[photogen]" not in stderr  # nothing was started
    assert not (tmp_path / "home").exists()


# the supervisor on its own, with small shell children


def _shell(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_supervisor_reports_the_child_that_exits_and_stops_the_rest_with_their_children():
    from photogen_pipelines.cli.processes import Supervisor

    with Supervisor(grace_seconds=10) as supervisor:
        sleeper = supervisor.start("sleeper", _shell("sleep 300 & wait"))  # a grandchild in the same group
        crasher = supervisor.start("crasher", _shell("sleep 0.5; exit 3"))
        assert supervisor.wait(timeout=30) is crasher
        assert crasher.process.returncode == 3
        assert sleeper.group_alive()
        started = time.monotonic()
        supervisor.stop_all(log=None)
        assert time.monotonic() - started < 5
        assert not sleeper.group_alive() and not crasher.group_alive()
        assert sleeper.process.returncode == -signal.SIGTERM


@pytest.mark.slow
def test_supervisor_kills_a_child_that_ignores_sigterm_after_the_grace_period():
    from photogen_pipelines.cli.processes import Supervisor

    messages = []
    with Supervisor(grace_seconds=1) as supervisor:
        stubborn = supervisor.start("stubborn", _shell("trap '' TERM; sleep 300 & wait"))
        time.sleep(0.5)  # let the shell set its trap
        supervisor.stop_all(log=messages.append)
        assert not stubborn.group_alive()
        assert stubborn.process.returncode == -signal.SIGKILL
    assert messages == ["stubborn did not stop in time: killing it"]


def test_supervisor_children_get_default_sigint_and_leaving_the_block_kills_them(tmp_path):
    from photogen_pipelines.cli.processes import Supervisor

    report = tmp_path / "sigint"
    probe = f"import signal, time; open({str(report)!r}, 'w').write(repr(signal.getsignal(signal.SIGINT))); time.sleep(300)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job would have it
    try:
        with Supervisor() as supervisor:
            child = supervisor.start("probe", [sys.executable, "-c", probe])
            _wait_until(lambda: report.exists() and report.read_text(), 30, "the probe's report")
        assert "default_int_handler" in report.read_text()
        assert not child.group_alive()  # killed on leaving the block
    finally:
        signal.signal(signal.SIGINT, previous)


# a real order through the running service: HTTP in, sensors and daemon runs, print file out


@pytest.mark.slow
def test_an_order_placed_over_http_is_delivered_by_the_daemon(serve, astronaut_png):
    process, api_port, ui_port, home, log, child_pgids = serve
    _wait_ready(process, log, child_pgids)
    api = f"http://127.0.0.1:{api_port}"
    auth = new_api_key(home)

    upload = requests.post(f"{api}/v1/uploads", headers=auth, files={"file": ("me.png", astronaut_png)}, timeout=30)
    assert upload.status_code == 201, upload.text
    body = {"upload_id": upload.json()["id"], "style_id": "ink_etching", "product_id": "poster_a3", "variants": 2}
    order = requests.post(
        f"{api}/v1/orders", headers={**auth, "Idempotency-Key": "e2e-1"}, json={**body, "approval": "auto"}, timeout=30
    ).json()
    assert order["state"] == "paid", order

    def delivered():
        time.sleep(2)  # poll like a storefront would
        current = requests.get(f"{api}/v1/orders/{order['id']}", headers=auth, timeout=10).json()
        assert current["state"] not in ("rejected", "failed"), current
        return current if current["state"] == "ready" else None

    ready = _wait_until(delivered, 480, "the order to be delivered", process, log)
    history = [e["to_state"] for e in ready["events"]]
    assert history == ["awaiting_payment", "paid", "generating", "proofs_ready", "approved", "rendering", "ready"]
    assert all(s["status"] == "done" for s in ready["stages"])
    assert ready["approved_proof"] in [p["variant"] for p in ready["proofs"] if p["passed"]]

    print_file = requests.get(f"{api}/v1/orders/{order['id']}/print-file", headers=auth, timeout=10).json()
    downloaded = requests.get(print_file["url"], timeout=60)
    assert downloaded.status_code == 200 and len(downloaded.content) == print_file["bytes"]
    image = Image.open(io.BytesIO(downloaded.content))
    assert (image.format, image.size) == ("JPEG", (3508, 4961))

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:

        def runs_finished():
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": order["id"]}))
            return runs if all(r.is_finished for r in runs) else None  # the order is ready a moment before its run ends

        runs = _wait_until(runs_finished, 60, "the print run to finish", process, log)
        assert sorted(r.tags["dagster/run_key"] for r in runs) == [f"print:{order['id']}", f"proofs:{order['id']}"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, _tail(log)
