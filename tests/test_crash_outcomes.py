"""A crash of the service is no fault of the order: a run has one outcome, and an order is
settled only by a failure that is still its run's outcome, from the state that run was
moving it through.

The race this guards against: `photogen serve` stopped the code server while a warm run's
worker was mid-step; the code server, asking the gone forkserver about its child, marked the
run failed; the worker went on (its step retried the interruption) and recorded a success;
after the restart run retries refused the run, and the failure sensor failed the approved
order on the stale failure event. The tests force each part of that timing instead of waiting
for it: a run recorded failed and then successful on a real instance, a worker whose
forkserver is killed under it, and the whole service killed twice (the daemon alone, then
everything) while its runs' workers wait, mid-step, on an engine service the test holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests
from PIL import Image

from photogen_pipelines.db.database import Database
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.engines import wire
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.stores import LocalArtifactStore
from resources import OrdersDatabase, StripePayments
from sensors import order_run_failures
from tests.dagster_helpers import local_instance
from tests.invariants import check_shop
from tests.servers import free_port, group_alive
from tests.test_serve import CHILD_PID, _kill_group, _read, _tail, _wait_until, new_api_key, start_serve

S = OrderState
OUTCOMES = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)


# -- the failure sensor, on a real instance: a stale failure settles nothing ----------------


@pytest.fixture
def shop(tmp_path, monkeypatch, orders_db):
    """The definitions on the test's orders database, a real instance, the sensor's resources."""
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", orders_db.url)
    defs = build_defs(str(tmp_path / "home"))
    resources = {"orders": OrdersDatabase(url=orders_db.url), "payments": StripePayments()}
    with local_instance(tmp_path / "dagster") as instance:
        yield defs, SqlOrderBook(orders_db), instance, resources


def _order_in(book: SqlOrderBook, state: OrderState) -> str:
    """An order walked along the happy path (payments off) up to `state`."""
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="uploads/x.png", variants=2))
    path = [S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY]
    for target in path[: path.index(state) + 1]:
        if target == S.APPROVED:
            book.update(order.id, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED, "auto-approved")))
        else:
            book.transition(order.id, target)
    return order.id


def _failed_run(defs, instance: dg.DagsterInstance, job_name: str, order_id: str) -> dg.DagsterRun:
    """A run of `job_name` for the order, started and then marked failed from outside, the way
    the code server marks a run whose process it believes gone; run retries have given up on
    it (what the retry daemon writes after refusing it)."""
    run = instance.create_run_for_job(defs.resolve_job_def(job_name), tags={"dagster/partition": order_id})
    instance.report_dagster_event(dg.DagsterEvent(event_type_value="PIPELINE_START", job_name=job_name), run.run_id)
    instance.report_run_failed(instance.get_run_by_id(run.run_id))
    instance.add_run_tags(run.run_id, {"dagster/will_retry": "false"})
    failed = instance.get_run_by_id(run.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    return failed


def _stale_failure_context(instance, failed: dg.DagsterRun, resources) -> dg.RunFailureSensorContext:
    """The context the daemon builds for the run's failure event, with the run as it was then."""
    failure = next(iter(instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE))).dagster_event
    return dg.build_run_status_sensor_context(
        sensor_name="order_run_failures",
        dagster_instance=instance,
        dagster_run=failed,
        dagster_event=failure,
        resources=resources,
    ).for_run_failure()


def test_a_run_failed_from_outside_that_then_succeeded_leaves_its_approved_order_alone(shop):
    defs, book, instance, resources = shop
    order_id = _order_in(book, S.GENERATING)
    failed = _failed_run(defs, instance, "proof_job", order_id)
    # the worker the code server gave up on goes on: the proofs, auto approval, the run's success
    book.transition(order_id, S.PROOFS_READY)
    book.update(order_id, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED, "auto-approved")))
    instance.report_dagster_event(dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name="proof_job"), failed.run_id)
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.SUCCESS

    order_run_failures(_stale_failure_context(instance, failed, resources))  # the stale event, evaluated now
    order = book.get(order_id)
    assert order.state == S.APPROVED, order.reason
    assert [e.to_state for e in order.events][-1] == S.APPROVED


@pytest.mark.parametrize(
    ("job_name", "state"),
    [
        ("proof_job", S.PROOFS_READY),
        ("proof_job", S.APPROVED),
        ("proof_job", S.RENDERING),
        ("print_job", S.PAID),
        ("print_job", S.GENERATING),
    ],
)
def test_a_failure_settles_an_order_only_from_the_states_its_run_moves_it_through(shop, job_name, state):
    """The run is failed for good, but its order is somewhere that run never takes it: the
    order moved on (or was never there) and its proofs or file stand."""
    defs, book, instance, resources = shop
    order_id = _order_in(book, state)
    failed = _failed_run(defs, instance, job_name, order_id)
    order_run_failures(_stale_failure_context(instance, failed, resources))
    assert book.get(order_id).state == state


@pytest.mark.parametrize(
    ("job_name", "state"),
    [("proof_job", S.PAID), ("proof_job", S.GENERATING), ("print_job", S.APPROVED), ("print_job", S.RENDERING)],
)
def test_a_run_that_failed_for_good_fails_an_order_it_was_moving(shop, job_name, state):
    defs, book, instance, resources = shop
    order_id = _order_in(book, state)
    failed = _failed_run(defs, instance, job_name, order_id)
    order_run_failures(_stale_failure_context(instance, failed, resources))
    order = book.get(order_id)
    assert order.state == S.FAILED
    assert order.reason == f"{job_name} failed after 1 attempt(s): run {failed.run_id}"


def test_settle_failed_run_leaves_an_order_outside_the_states_it_may_settle_from(orders_db):
    book = SqlOrderBook(orders_db)
    order_id = _order_in(book, S.APPROVED)
    kept = lifecycle.settle_failed_run(book, order_id, "proof_job", "run r1", 1, settles_from={S.PAID, S.GENERATING})
    assert kept.state == S.APPROVED
    failed = lifecycle.settle_failed_run(book, order_id, "print_job", "run r2", 1, settles_from={S.APPROVED, S.RENDERING})
    assert failed.state == S.FAILED


# -- the code server: a warm run's worker never outlives its forkserver --------------------

WORKER = """
import ctypes
import os
import time


def work(queue, keep_running_without_parent):
    if keep_running_without_parent:  # stands in for a platform without PR_SET_PDEATHSIG
        ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)
    queue.put(os.getpid())
    time.sleep(600)
"""

START_A_WORKER = """
import json, os, signal, socket, sys, threading, time
from multiprocessing import forkserver

from photogen_pipelines.cli import code_server

import worker

how, port = sys.argv[1], int(sys.argv[2])
seen = {}


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def start_a_worker():
    from dagster._grpc import server  # the module whose `multiprocessing` the server uses

    context = server.multiprocessing.get_context("spawn")  # what DagsterApiServer asks for
    queue = context.Queue()
    process = context.Process(target=worker.work, args=(queue, how == "outlives"))
    process.start()
    return process, queue.get(timeout=120)


def settle(what, process, pid):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (running(pid) or process.is_alive()):
        time.sleep(0.05)
    seen[what] = {"worker_running": running(pid), "server_sees_it_alive": process.is_alive()}


if how == "stop":
    # the real command: a worker started the way its server starts runs, then SIGTERM
    def stop_when_serving():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        seen["process"], seen["pid"] = start_a_worker()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_serving, daemon=True).start()
    try:
        code_server.code_server.main(["-p", str(port)], standalone_mode=False)
    except SystemExit:
        pass
    process, pid = seen.pop("process"), seen.pop("pid")
    settle("after_stop", process, pid)
else:
    code_server.start_runs_warm()
    process, pid = start_a_worker()
    seen["alive_at_start"] = process.is_alive()
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    settle("after_forkserver_died", process, pid)
    if how == "outlives":
        os.kill(pid, signal.SIGKILL)
        settle("after_worker_died", process, pid)
print(json.dumps(seen))
"""


def _a_warm_worker(tmp_path: Path, how: str) -> dict:
    """The script above in its own process group, killed whole afterwards: a worker that
    outlived what should have ended it does not outlive the test."""
    (tmp_path / "worker.py").write_text(WORKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])]),
        "DAGSTER_HOME": str(tmp_path),
        "PHOTOGEN_HOME": str(tmp_path / "home"),
    }
    out, err = tmp_path / "script.out", tmp_path / "script.err"
    with out.open("w") as stdout, err.open("w") as stderr:  # files: a lingering worker holds no pipe open
        script = subprocess.Popen(
            [sys.executable, "-c", START_A_WORKER, how, str(free_port())],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        script.wait(timeout=300)
    finally:
        _kill_group(script.pid)
        script.wait(timeout=30)
    assert script.returncode == 0, err.read_text()[-3000:]
    return json.loads(out.read_text().strip().splitlines()[-1])


def test_a_warm_run_worker_dies_with_its_forkserver(tmp_path):
    seen = _a_warm_worker(tmp_path, "dies")
    assert seen["alive_at_start"]
    assert seen["after_forkserver_died"] == {"worker_running": False, "server_sees_it_alive": False}


@pytest.mark.slow
def test_a_worker_that_outlives_its_forkserver_counts_as_running_until_it_ends(tmp_path):
    """Where the kernel cannot tie the worker to its parent, the server must not mark its
    run failed while it runs: the forkserver's closed pipe is no exit."""
    seen = _a_warm_worker(tmp_path, "outlives")
    assert seen["after_forkserver_died"] == {"worker_running": True, "server_sees_it_alive": True}
    assert seen["after_worker_died"] == {"worker_running": False, "server_sees_it_alive": False}


@pytest.mark.slow
def test_a_code_server_told_to_stop_kills_its_run_workers_first(tmp_path):
    seen = _a_warm_worker(tmp_path, "stop")
    assert seen["after_stop"] == {"worker_running": False, "server_sees_it_alive": False}


# -- the whole service, killed twice while its runs wait mid-step on a held engine service ---

ENGINES = {
    "style": {"name": "held", "version": "1", "params_section": "embedded", "seeded": False},
    "upscale": {"name": "held-upscale", "version": "1", "scales": [2, 3, 4]},
}


class HeldEngines:
    """The engine service's HTTP API (engines/remote.py), in the test: a stylize gives the
    picture back as it came, an upscale is a bicubic resize, and while held every picture
    request waits, so the runs calling it stay inside their step for as long as the test wants."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()
        self._waiting = 0

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def waiting(self) -> int:
        with self._lock:
            return self._waiting

    def answer(self, path: str, body: bytes) -> bytes:
        with self._lock:
            self._waiting += 1
        try:
            self._released.wait(timeout=600)
        finally:
            with self._lock:
                self._waiting -= 1
        fields, [image] = wire.unpack(body)
        if path == "/v1/upscale":
            scale = int(fields["scale"])
            image = np.asarray(Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.BICUBIC))
        return wire.pack({}, [image])

    @contextmanager
    def serving(self):
        engines = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._send(json.dumps(ENGINES).encode(), "application/json")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self._send(engines.answer(self.path, body), wire.MEDIA_TYPE)

            def _send(self, body: bytes, media_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, *_args) -> None:  # a killed run's connection: nobody to answer
                pass

        server = Server(("127.0.0.1", free_port()), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            self.release()
            server.shutdown()
            server.server_close()
            thread.join(timeout=30)


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def _runs_waiting_mid_step(home: Path, orders: list[str], steps: set[str]) -> list[dg.DagsterRun]:
    """STARTED runs of these orders inside one of `steps` (begun, not ended)."""
    if not (home / "dagster" / "dagster.yaml").exists():
        return []
    inside = []
    with _instance(home) as instance:
        for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            if run.tags.get("dagster/partition") not in orders:
                continue
            records = instance.get_records_for_run(run.run_id, of_type={dg.DagsterEventType.STEP_START}).records
            ended = instance.get_records_for_run(
                run.run_id,
                of_type={
                    dg.DagsterEventType.STEP_SUCCESS,
                    dg.DagsterEventType.STEP_FAILURE,
                    dg.DagsterEventType.STEP_UP_FOR_RETRY,
                },
            ).records
            started = {r.event_log_entry.step_key for r in records}
            done = {r.event_log_entry.step_key for r in ended}
            if (started - done) & steps:
                inside.append(run)
    return inside


def _outcomes(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's terminal events, in order: a run has one."""
    records = instance.get_records_for_run(run_id, of_type=set(OUTCOMES)).records
    return [r.event_log_entry.dagster_event.event_type_value for r in records]


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event.engine_event_data else None
        if event.step_key is None and pid is not None:
            return int(pid.value)
    return None


def _pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _children(log: Path, since: int) -> dict[str, int]:
    return {name: int(pid) for name, pid in CHILD_PID.findall(_read(log)[since:])}


def _restart(home, api_port, ui_port, log, env, pgids) -> tuple[subprocess.Popen, dict[str, int]]:
    mark = len(_read(log))
    serve = start_serve(home, api_port, ui_port, log, env=env)
    pgids.append(serve.pid)
    _wait_until(lambda: "[photogen] ready" in _read(log)[mark:], 240, "the ready line", serve, log)
    children = _children(log, mark)
    pgids.extend(children.values())
    return serve, children


@pytest.mark.slow
def test_a_service_killed_mid_step_twice_delivers_every_order_and_each_run_has_one_outcome(tmp_path, astronaut_png):
    engines = HeldEngines()
    home, log = tmp_path / "home", tmp_path / "serve.log"
    api_port, ui_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    pgids: list[int] = []
    serve = None
    with engines.serving() as engine_url:
        env = {"PHOTOGEN_ENGINE_URL": engine_url}
        try:
            serve, children = _restart(home, api_port, ui_port, log, env, pgids)
            auth = new_api_key(home)
            upload = requests.post(
                f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
            )
            assert upload.status_code == 201, upload.text

            # 1. proof runs caught inside styled_candidates (a step whose RetryPolicy would take
            # an interruption as one more try), their workers waiting on the engine service;
            # then the daemon alone is killed and serve stops the others
            engines.hold()
            orders = []
            for n in range(4):
                body = {"upload_id": upload.json()["id"], "style_id": "ink_etching", "product_id": "poster_a3"}
                response = requests.post(
                    f"{api}/v1/orders",
                    headers={**auth, "Idempotency-Key": f"crash-{n}"},
                    json={**body, "variants": 2, "approval": "auto"},
                    timeout=30,
                )
                assert response.status_code == 201, response.text
                orders.append(response.json()["id"])
            held = _wait_until(
                lambda: engines.waiting and _runs_waiting_mid_step(home, orders, {"styled_candidates"}),
                240,
                "a proof run waiting mid-step on the engine service",
                serve,
                log,
            )
            os.kill(children["Dagster daemon"], signal.SIGKILL)

            def failed_or_serve_gone():
                with _instance(home) as instance:
                    statuses = {instance.get_run_by_id(r.run_id).status for r in held}
                return serve.poll() is not None or dg.DagsterRunStatus.STARTED not in statuses

            _wait_until(failed_or_serve_gone, 60, "the held runs to be marked failed")
            engines.release()  # a worker still alive now would finish its run, and its success follow the failure
            assert serve.wait(timeout=90) == 1, _tail(log)
            with _instance(home) as instance:
                for run in held:
                    assert _outcomes(instance, run.run_id) in ([], ["PIPELINE_FAILURE"]), run.run_id
                    pid = _worker_pid(instance, run.run_id)
                    assert pid is not None and not _pid_running(pid), f"run {run.run_id}: its worker outlived serve"

            serve, children = _restart(home, api_port, ui_port, log, env, pgids)

            # 2. the orders' runs caught mid-step again (proofs or prints), then every process
            # killed at once: nobody is left to record anything
            engines.hold()
            caught = _wait_until(
                lambda: engines.waiting and _runs_waiting_mid_step(home, orders, {"styled_candidates", "print_master"}),
                240,
                "an order's run waiting mid-step on the engine service",
                serve,
                log,
            )
            for pgid in [*children.values(), serve.pid]:  # serve last: its children get no word of its death
                _kill_group(pgid)
            serve.wait(timeout=30)
            _wait_until(lambda: not any(group_alive(p) for p in children.values()), 30, "every process to be gone")
            with _instance(home) as instance:
                assert {instance.get_run_by_id(r.run_id).status for r in caught} == {dg.DagsterRunStatus.STARTED}
            engines.release()

            serve, children = _restart(home, api_port, ui_port, log, env, pgids)

            def every_order_settled():
                time.sleep(2)
                states = {o: requests.get(f"{api}/v1/orders/{o}", headers=auth, timeout=10).json()["state"] for o in orders}
                return states if all(s in ("ready", "failed", "refunded", "rejected") for s in states.values()) else None

            states = _wait_until(every_order_settled, 480, "every order to settle", serve, log)
            assert set(states.values()) == {"ready"}, states

            with _instance(home) as instance:

                def order_runs_finished():
                    runs = [r for o in orders for r in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": o}))]
                    return runs if all(r.is_finished for r in runs) else None

                runs = _wait_until(order_runs_finished, 120, "the orders' runs to finish", serve, log)
                outcomes = {r.run_id: _outcomes(instance, r.run_id) for r in instance.get_runs()}
                assert {run_id: seen for run_id, seen in outcomes.items() if len(seen) > 1} == {}  # one outcome each
                for run in [*held, *caught]:
                    # failed with its worker gone, and re-executed once by run retries
                    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE, run.run_id
                    assert len([r for r in runs if r.parent_run_id == run.run_id]) == 1, run.run_id
                statuses = {r.run_id: r.status.value for r in runs}

            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=60) == 0, _tail(log)
            book = SqlOrderBook(Database(f"sqlite:///{home / 'orders.db'}"))
            settled = [book.get(o) for o in orders]
            assert all(S.FAILED not in [e.to_state for e in o.events] for o in settled)
            store = LocalArtifactStore(home / "artifacts")
            report = check_shop(settled, run_statuses=statuses, store=store, now=datetime.now(UTC))
            assert report.holds, "\n".join(report.lines())
        finally:
            engines.release()
            for pgid in {*pgids, *(int(pid) for _name, pid in CHILD_PID.findall(_read(log)))}:  # every one it started
                _kill_group(pgid)
            if serve is not None and serve.poll() is None:
                serve.wait(timeout=10)
