"""Real servers on loopback for the tests, each stopped by the test that started it."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still there."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
        return True
    except requests.ConnectionError:
        return False


@contextmanager
def server_process(command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    """A server process in its own session, its output in `log_path`; stopped by its pid
    (SIGTERM to its group, SIGKILL after 30 s)."""
    log = open(log_path, "w")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # it exited on its own
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextmanager
def _answering_server(name: str, command: list[str], base: str, probe_path: str, workdir: Path):
    log_path = workdir / f"{name}.log"
    with server_process(command, log_path) as process:
        wait_until(lambda: process.poll() is not None or _answers(base + probe_path), 60, name, interval=0.1)
        assert process.poll() is None, log_path.read_text()
        yield base


@contextmanager
def localstripe_server(workdir: Path):
    """localstripe (a stateful fake Stripe) on a free port; its state is flushed first."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("localstripe")), "--port", str(port)]
    with _answering_server("localstripe", command, f"http://127.0.0.1:{port}", "/v1/events", workdir) as base:
        requests.delete(base + "/_config/data", timeout=10).raise_for_status()
        yield base


@contextmanager
def api_server(app, **config):
    """The app behind a real uvicorn server on a free port, in this process; `config` goes
    to uvicorn (e.g. `http=` the API's own protocol, as `photogen serve` runs it)."""
    for attempt in range(3):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        # it starts in a fraction of a second, but its lifespan migrates the orders database:
        # on a loaded CI machine that once took over 30 s on PostgreSQL. A server whose
        # thread ended before it started lost its port to another process between
        # free_port() and its bind (uvicorn logs why): it is tried again on another port.
        wait_until(lambda: server.started or not thread.is_alive(), 180, "the API server", interval=0.02)
        if server.started:
            break
        thread.join(timeout=30)
    else:
        raise AssertionError("the API server stopped before it started, three times (see its log above)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def moto_s3_server(workdir: Path):
    """moto's S3 server (real HTTP, in-memory buckets) on a free loopback port; yields its URL."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    with _answering_server("moto", command, f"http://127.0.0.1:{port}", "/moto-api/", workdir) as base:
        yield base


@contextmanager
def ray_cluster(workdir: Path, num_cpus: int = 2):
    """One small local Ray cluster (loopback, no dashboard) for a test session: `ray start
    --block` in its own session, stopped by its pid. Yields the environment a process needs
    to join it: RAY_ADDRESS and the cluster's own auth token (Ray enables token auth)."""
    port = free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}"]
    command += ["--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false"]
    command += ["--disable-usage-stats"]
    # Stopping: SIGTERM to `ray start` alone, which stops the processes it started (the GCS,
    # the raylet and its workers) and exits; then server_process's SIGTERM to the group finds
    # at most a straggler. A SIGTERM to the whole group at once leaves `ray start` asking
    # the GCS (stopped by that same signal) to drain the node, and it waited out the drain
    # timeout (30 s) and was SIGKILLed; nor is a drain of any use to a test cluster: 0
    # skips it. Not `ray stop`: it stops every Ray process of the machine, by name.
    stop_at_once = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    log = workdir / "ray.log"
    with server_process(command, log, env=stop_at_once) as process:
        address = f"127.0.0.1:{port}"

        def started() -> bool:  # a SIGTERM while it still starts is lost (Ray's handler exits inside logging)
            return _ray_answers(address) and "will now block forever" in log.read_text()

        wait_until(lambda: process.poll() is not None or started(), 120, "the Ray cluster")
        assert process.poll() is None, log.read_text()
        try:
            yield {**env, "RAY_ADDRESS": address}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            deadline = time.monotonic() + 10  # its workers end with the raylet
            while group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def _ray_answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


@contextmanager
def engine_service(workdir: Path, ray_env: dict[str, str], *options: str):
    """`photogen engines serve` on a free port, on the session's Ray cluster (`ray_env`
    from ray_cluster); yields its URL once its models are loaded (GET /v1/engines answers),
    stops it by its pid."""
    port = free_port()
    photogen = str(Path(sys.executable).with_name("photogen"))
    command = [photogen, "engines", "serve", "--port", str(port), *options]
    base = f"http://127.0.0.1:{port}"
    with server_process(command, workdir / "engines.log", env=ray_env) as process:
        wait_until(lambda: process.poll() is not None or _answers_ok(base + "/v1/engines"), 300, "the engine service")
        assert process.poll() is None, (workdir / "engines.log").read_text()[-5000:]
        yield base
    # stopped by SIGTERM: it took its Serve application down before it exited
    assert process.returncode == 0, (workdir / "engines.log").read_text()[-5000:]


def _answers_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
