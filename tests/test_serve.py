"""`photogen serve` runs the storefront API, the Dagster webserver, the Dagster daemon and the
code server they share, SIGTERM stops them all (exit 0, no process left), and a taken port is
a one-line error. It names its home and the command that makes a key for it, and its log is
plain text with the daemon's routine ticks once (cli/dagster_logs.py)."""

from __future__ import annotations

import io
import json
import logging
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


SENSOR_TICKS_QUERY = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 20) { status } } } } }"""
SKIPPED = re.compile(r" - dagster\.daemon\.SensorDaemon - INFO - (Sensor (\S+) skipped: .*)$", re.M)


def _sensor_ticks(ui_port: int, sensor: str) -> int:
    location = "photogen_pipelines.definitions"
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": sensor}
    response = requests.post(
        f"http://127.0.0.1:{ui_port}/graphql", json={"query": SENSOR_TICKS_QUERY, "variables": {"selector": selector}}, timeout=30
    )
    state = response.json()["data"]["sensorOrError"].get("sensorState") or {}
    return len(state.get("ticks") or [])


def _pasted(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """A line of serve's output run as a person pastes it into a new shell: no PHOTOGEN_HOME of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_serve_runs_api_webserver_and_daemon_and_sigterm_stops_them_all(serve, tmp_path):
    process, api_port, ui_port, home, log, child_pgids = serve
    _wait_ready(process, log, child_pgids)
    output = _read(log)
    assert f"[photogen] storefront API  http://127.0.0.1:{api_port}  (docs: /docs, pid " in output
    assert f"[photogen] Dagster UI  http://127.0.0.1:{ui_port}  (pid " in output
    assert "payments are OFF" in output
    assert f"[photogen] home {home} (from PHOTOGEN_HOME)\n" in output
    assert f"DAGSTER_HOME  {home / 'dagster'}" in output
    assert "warning" not in "\n".join(line for line in output.splitlines() if line.startswith("[photogen]"))

    # the key line serve prints, pasted into another shell, makes a key this service accepts
    (key_line,) = re.findall(r"^\[photogen\] create a storefront key: (.*)$", output, re.M)
    assert key_line.startswith(f"PHOTOGEN_HOME={home} ") and 'api-key create --name "my shop"' in key_line
    created = _pasted(key_line, tmp_path)
    assert created.returncode == 0 and created.stdout.startswith("pgk_"), created.stderr
    assert f"[photogen] home {home} (from PHOTOGEN_HOME)" in created.stderr
    key = {"Authorization": f"Bearer {created.stdout.strip()}"}
    endpoints = requests.get(f"http://127.0.0.1:{api_port}/v1/webhook-endpoints", headers=key, timeout=10)
    assert endpoints.status_code == 200, endpoints.text

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
    # the log is a file: no colour codes; the sensors ticked again and again, their skips logged once
    _wait_until(lambda: _sensor_ticks(ui_port, "webhook_deliveries") >= 4, 120, "four webhook_deliveries ticks", process, log)
    output = _read(log)
    assert "\x1b[" not in output
    skipped = SKIPPED.findall(output)
    assert any(sensor == "webhook_deliveries" for _line, sensor in skipped), output[-4000:]
    repeated = {line for line in (line for line, _ in skipped) if [seen for seen, _ in skipped].count(line) > 1}
    assert not repeated, repeated
    assert output.count("Checking for new runs for sensor: webhook_deliveries") == 1
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


# the daemon's console log (cli/dagster_logs.py), on its own


def _record(message: str, level: int = logging.INFO, name: str = "dagster.daemon.SensorDaemon") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_repeated_sensor_ticks_are_logged_when_their_message_changes_and_warnings_always():
    from photogen_pipelines.cli.dagster_logs import RepeatedTicks

    now = [0.0]
    ticks = RepeatedTicks(remind_seconds=3600, clock=lambda: now[0])

    def shown(*messages: str, level: int = logging.INFO) -> list[bool]:
        return [ticks.filter(_record(m, level)) for m in messages]

    idle = "Sensor webhook_deliveries skipped: delivered 0, retrying 0, failed 0"
    assert shown("Checking for new runs for sensor: webhook_deliveries", idle) == [True, True]
    assert shown("Checking for new runs for sensor: webhook_deliveries", idle, idle) == [False, False, False]
    # news: it delivered; then idle again is news once
    assert shown(idle.replace("delivered 0", "delivered 3"), idle, idle) == [True, True, False]
    # another sensor's skip is its own; a tick's own timing is not news
    timed = "Sensor dead_run_workers skipped: 0 run(s) without a worker marked failed ({} s)"
    assert shown(timed.format("0.18"), timed.format("0.07"), timed.format("12")) == [True, False, False]
    assert shown("Sensor paid_orders skipped: Sensor function returned an empty result") == [True]
    queue = "Priority sorting and checking tag concurrency limits for queued runs."
    queued = [ticks.filter(_record(queue, name="dagster.daemon.QueuedRunCoordinatorDaemon")) for _ in range(3)]
    assert queued == [True, False, False]
    # what happened is always shown, and so is anything at WARNING or above, repeated or not
    assert shown("Creating new run for paid_orders", "Creating new run for paid_orders") == [True, True]
    assert shown(idle, idle, level=logging.WARNING) == [True, True]
    assert shown(idle, idle, level=logging.ERROR) == [True, True]
    # a reminder an hour on
    now[0] += 3601
    assert shown(idle, idle) == [True, False]


def test_the_tick_filter_sits_on_the_loggers_a_sensors_tick_log_reaches():
    """A sensor's tick logs through an InstigationLogger that hands each record to the daemon's
    logger (`logger.handle`): the filter on that logger sees both kinds."""
    from photogen_pipelines.cli.dagster_logs import TICK_LOGGERS, quiet_repeated_ticks

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    daemon_logger = logging.getLogger(TICK_LOGGERS[0])
    handler, ticks = Keep(), quiet_repeated_ticks()
    daemon_logger.addHandler(handler)
    previous = daemon_logger.level
    daemon_logger.setLevel(logging.INFO)
    try:
        for _ in range(3):
            daemon_logger.handle(_record("Sensor paid_orders skipped: nothing"))
            daemon_logger.info("Sensor paid_orders skipped: nothing")
        daemon_logger.warning("Sensor paid_orders skipped: nothing")
    finally:
        daemon_logger.removeHandler(handler)
        daemon_logger.setLevel(previous)
        for name in TICK_LOGGERS:
            logging.getLogger(name).removeFilter(ticks)
    assert seen == ["Sensor paid_orders skipped: nothing"] * 2  # once, then the warning


PRINT_DAGSTER_LOG = """
import logging, sys
from photogen_pipelines.cli.dagster_logs import plain_logs_unless_terminal
if sys.argv[1] == "plain":
    plain_logs_unless_terminal()
from dagster._utils.log import configure_loggers
configure_loggers()  # as the daemon, the webserver and the code server configure their console log
logging.getLogger("dagster.daemon").warning("a warning")
"""


@pytest.mark.parametrize(("mode", "coloured"), [("dagster", True), ("plain", False)])
def test_dagster_console_log_is_plain_in_a_file(mode, coloured, tmp_path):
    """Dagster's "colored" console format colours even a file (the first case, which shows the
    swap is needed); photogen's Dagster processes swap it for the same format, plain."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    done = subprocess.run([sys.executable, "-c", PRINT_DAGSTER_LOG, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\S*\d{4}-\d\d-\d\d .* - dagster.daemon - \S*WARNING\S* - a warning$", done.stdout, re.M), done.stdout
    assert ("\x1b[" in done.stdout) is coloured


def test_colour_only_for_a_terminal_and_never_with_no_color(monkeypatch):
    from photogen_pipelines.cli.dagster_logs import wants_colour

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(Terminal()) and not wants_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(Terminal())


def test_serve_tells_how_to_make_a_key_for_its_own_home(tmp_path, monkeypatch):
    from photogen_pipelines.cli.serve import key_command
    from photogen_pipelines.settings import LocalPaths, PhotoGenSettings

    paths = LocalPaths.resolve(tmp_path / "my home")
    monkeypatch.delenv("PHOTOGEN_DATABASE_URL", raising=False)
    line = key_command(paths, PhotoGenSettings(home=str(paths.home)))
    assert line.startswith(f"PHOTOGEN_HOME='{paths.home}' ") and line.endswith(' api-key create --name "my shop"')
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", "postgresql://shop:pw@db/photogen")
    line = key_command(paths, PhotoGenSettings(home=str(paths.home)))
    assert "pw" not in line and line.endswith("(with this same PHOTOGEN_DATABASE_URL set)")


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

    upload = requests.post(
        f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
    )
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
