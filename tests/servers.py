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


def _uvicorn_started(app, config: dict):
    """(server, thread, port) of the app served on a free port once started, or None when
    its thread ended first: its port went to another process between free_port() and its
    bind (uvicorn logs why)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # it starts in a fraction of a second, but its lifespan migrates the orders database:
    # on a loaded CI machine that once took over 30 s on PostgreSQL
    wait_until(lambda: server.started or not thread.is_alive(), 180, "the API server", interval=0.02)
    if server.started:
        return server, thread, port
    thread.join(timeout=30)
    return None


@contextmanager
def api_server(app, **config):
    """The app behind a real uvicorn server on a free port, in this process; `config` goes
    to uvicorn (e.g. `http=` the API's own protocol, as `photogen serve` runs it). A port
    lost before the bind is tried again on another."""
    started = _uvicorn_started(app, config) or _uvicorn_started(app, config) or _uvicorn_started(app, config)
    if started is None:
        raise AssertionError("the API server stopped before it started, three times (see its log above)")
    server, thread, port = started
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


@contextmanager
def ray_two_nodes(workdir: Path, head_cpus: int = 1, worker_cpus: int = 1):
    """A two-node Ray cluster on this machine (a scale-out test's, in place of the
    session's one-node cluster, not beside it): the head of `ray_cluster` and a worker node
    joining it, each a `ray start --block` of its own, stopped by its pid, the worker
    first. Yields ray_cluster's environment."""
    with ray_cluster(workdir, num_cpus=head_cpus) as env:
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", f"--address={env['RAY_ADDRESS']}"]
        command += ["--node-ip-address=127.0.0.1", f"--num-cpus={worker_cpus}", "--num-gpus=0", "--disable-usage-stats"]
        log = workdir / "ray-worker.log"
        stop_at_once = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        with server_process(command, log, env=stop_at_once) as process:
            wait_until(
                lambda: process.poll() is not None or "will now block forever" in log.read_text(), 120, "the Ray worker node"
            )
            assert process.poll() is None, log.read_text()
            try:
                yield env
            finally:  # as ray_cluster stops its head: SIGTERM to `ray start` alone, then its stragglers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
                deadline = time.monotonic() + 10
                while group_alive(process.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)


@contextmanager
def serve_application(ray_env: dict[str, str], args: dict, port: int):
    """engine_service.app:build_app(`args`) deployed on the cluster of `ray_env` by this
    process, as `photogen engines serve --address` deploys it, with the HTTP proxy on the
    head only (every node here has the one address 127.0.0.1, so a proxy per node would
    fight for the port). This process stays the cluster's driver, so a test can read
    serve.status() and kill a replica; yields the service's URL once /v1/engines answers.
    Serve and the connection are shut down at the end."""
    saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    # before Ray is imported: it reads its auth mode once, when it loads
    os.environ.update({name: ray_env[name] for name in saved})
    import ray
    from ray import serve
    from ray._private.authentication_test_utils import reset_auth_token_state

    # and where this process already joined another cluster (an earlier test's, with its
    # own token), Ray's cached token would be refused by this one: read it anew, as Ray's
    # own tests do between clusters
    reset_auth_token_state()

    from engine_service.app import APP_NAME, build_app

    ray.init(address=ray_env["RAY_ADDRESS"], namespace="photogen", include_dashboard=False, logging_level="WARNING")
    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers_ok(base + "/v1/engines"), 300, "the engine service")
        yield base
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def replicas_since(url: str, deployment: str, since: float) -> list[dict]:
    """The replicas of `deployment` in the service's GET /v1/status that reported since
    `since` (time.time() before the service started): the service's own. The stats actor
    outlives an application (a replica that is gone keeps its last report,
    engine_service/stats.py), so on a test session's cluster the replicas of an earlier
    test's service are listed too."""
    replicas = requests.get(f"{url}/v1/status", timeout=10).json()["replicas"].values()
    return [r for r in replicas if r["deployment"] == deployment and r["reported_at"] >= since]


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
