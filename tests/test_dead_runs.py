"""A run whose worker is gone never stalls the shop: it is failed (by the dead_run_workers
sensor, or at once when `photogen serve` starts again), run retries re-execute it, and the
order still ends where it should. The processes are really killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import requests

from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.storage.stores import LocalArtifactStore
from sensors import dead_run_workers
from sensors.dead_runs import WORKER_TAG, fail_dead_runs, run_worker, worker_alive
from tests.dagster_helpers import local_instance
from tests.invariants import check_shop
from tests.servers import free_port, group_alive
from tests.test_serve import (
    CHILD_PID,
    PHOTOGEN,
    REPO,
    _kill_group,
    _read,
    _serve_env,
    _tail,
    _wait_until,
    new_api_key,
    start_serve,
)

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def _step_started(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START, limit=1)
    return bool(records.records)


def _runs_mid_step(home: Path, count: int, orders: list[str] | None = None) -> list[dg.DagsterRun] | None:
    """`count` STARTED runs (of these orders, else any), each inside a step: a worker is
    really executing it."""
    if not (home / "dagster" / "dagster.yaml").exists():
        return None
    with _instance(home) as instance:
        runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        busy = [
            run
            for run in runs
            if (orders is None or run.tags.get("dagster/partition") in orders) and _step_started(instance, run)
        ]
        return busy if len(busy) >= count else None


def _status(home: Path, run_id: str) -> dg.DagsterRunStatus:
    with _instance(home) as instance:
        return instance.get_run_by_id(run_id).status


# `photogen demo` killed mid-run: the run executes in the demo's own process


def test_a_run_whose_process_was_killed_is_failed_by_the_sensor_and_a_live_one_is_not(tmp_path):
    home = tmp_path / "home"
    env = {**_serve_env(home), "PHOTOGEN_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    log = tmp_path / "demo.log"
    with log.open("wb") as output:
        demo = subprocess.Popen(
            [str(PHOTOGEN), "demo", "--variants", "2", "--out", str(tmp_path / "out")],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        [run] = _wait_until(lambda: _runs_mid_step(home, 1), 180, "the demo's proof run to be inside a step", demo, log)
        assert run.tags[WORKER_TAG].endswith(f":{demo.pid}")
        with _instance(home) as instance:
            # alive: the sensor leaves it alone
            assert fail_dead_runs(instance) == []
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=30)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # nobody noticed

            result = dead_run_workers.evaluate_tick(dg.build_sensor_context(instance=instance))
            assert "1 run(s) without a worker marked failed" in result.skip_message
            failed = instance.get_run_by_id(run.run_id)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            # not a step failure: the instance's run retries will re-execute it
            assert failed.tags.get("dagster/failure_reason") == "UNEXPECTED_TERMINATION"
            message = next(iter(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE))).message
            assert f"pid {demo.pid}" in message
            # a second tick finds nothing more to do
            assert fail_dead_runs(instance) == []
    finally:
        if demo.poll() is None:
            _kill_group(demo.pid)
            demo.wait(timeout=10)


def test_the_start_sweep_fails_a_run_whose_launch_never_completed(tmp_path):
    """What a daemon killed mid-launch leaves: a run in STARTING, reported as the launcher
    reports it, with no worker. Only the start sweep (no daemon running) may fail it at once."""
    from assets import proof_job
    from photogen_pipelines.definitions import build_defs

    defs = build_defs(str(tmp_path / "home"))
    with local_instance(tmp_path / "dagster") as instance:
        run = instance.create_run_for_job(defs.resolve_job_def(proof_job.name), tags={"dagster/partition": "ord_x"})
        instance.report_dagster_event(
            dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name), run.run_id
        )
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING
        assert fail_dead_runs(instance) == []  # the sensor: a launch may be in progress
        assert fail_dead_runs(instance, starting_too=True) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


# the whole service killed mid-run, twice: the daemon's process group alone, then everything


def _children(log: Path, since: int) -> dict[str, int]:
    return {name: int(pid) for name, pid in CHILD_PID.findall(_read(log)[since:])}


def _place_orders(api: str, auth: dict, upload_id: str, count: int, key: str) -> list[str]:
    ids = []
    for n in range(count):
        body = {"upload_id": upload_id, "style_id": "ink_etching", "product_id": "poster_a3", "variants": 2}
        response = requests.post(f"{api}/v1/orders", headers={**auth, "Idempotency-Key": f"{key}-{n}"}, json=body, timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _settled(api: str, auth: dict, order_ids: list[str]):
    def check():
        time.sleep(3)
        states = {i: requests.get(f"{api}/v1/orders/{i}", headers=auth, timeout=10).json()["state"] for i in order_ids}
        return states if all(s in ("proofs_ready", "failed", "refunded") for s in states.values()) else None

    return check


@pytest.mark.slow
def test_killed_service_mid_run_restarts_fails_the_dead_runs_and_every_order_gets_its_proofs(tmp_path, astronaut_png):
    home, log = tmp_path / "home", tmp_path / "serve.log"
    api_port, ui_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    pgids: list[int] = []
    serve = start_serve(home, api_port, ui_port, log)
    try:
        _wait_until(lambda: "[photogen] ready" in _read(log), 180, "the ready line", serve, log)
        children = _children(log, 0)
        pgids += [serve.pid, *children.values()]
        auth = new_api_key(home)
        upload = requests.post(
            f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
        )
        assert upload.status_code == 201, upload.text

        # 1. the code server's process group (the server, its forkserver, the run worker) killed
        # mid-step: nobody is left to notice the worker died
        [first] = _place_orders(api, auth, upload.json()["id"], 1, "first")
        [dead] = _wait_until(lambda: _runs_mid_step(home, 1, [first]), 180, "its proof run inside a step", serve, log)
        _kill_group(children["Dagster code server"])
        assert serve.wait(timeout=60) == 1, _tail(log)  # the supervisor stops the rest and says so
        assert _status(home, dead.run_id) == dg.DagsterRunStatus.STARTED  # left behind, holding a slot

        mark = len(_read(log))
        serve = start_serve(home, api_port, ui_port, log)
        _wait_until(lambda: "[photogen] ready" in _read(log)[mark:], 180, "the ready line after the restart", serve, log)
        children = _children(log, mark)
        pgids += [serve.pid, *children.values()]
        assert f"run {dead.run_id} was left running by a service that died: marked failed" in _read(log)[mark:]
        assert _status(home, dead.run_id) == dg.DagsterRunStatus.FAILURE
        states = _wait_until(_settled(api, auth, [first]), 300, "the first order to settle", serve, log)
        assert states == {first: "proofs_ready"}

        # 2. two orders at once, both run slots taken (a catalog preview run may hold one), then
        # every process killed at once (a power cut)
        second = _place_orders(api, auth, upload.json()["id"], 2, "second")

        def both_slots_busy_with_an_order():
            runs = _runs_mid_step(home, 2)
            return runs if runs and any(r.tags.get("dagster/partition") in second for r in runs) else None

        dead_runs = _wait_until(both_slots_busy_with_an_order, 240, "two runs inside a step", serve, log)
        for pgid in [serve.pid, *children.values()]:
            _kill_group(pgid)
        serve.wait(timeout=30)
        _wait_until(lambda: not any(group_alive(p) for p in children.values()), 30, "every process to be gone")
        assert {_status(home, r.run_id) for r in dead_runs} == {dg.DagsterRunStatus.STARTED}

        mark = len(_read(log))
        serve = start_serve(home, api_port, ui_port, log)
        _wait_until(lambda: "[photogen] ready" in _read(log)[mark:], 180, "the ready line after the power cut", serve, log)
        pgids += [serve.pid, *_children(log, mark).values()]
        states = _wait_until(_settled(api, auth, second), 360, "both orders to settle", serve, log)
        assert set(states.values()) == {"proofs_ready"}, states

        with _instance(home) as instance:
            assert {instance.get_run_by_id(r.run_id).status for r in dead_runs} == {dg.DagsterRunStatus.FAILURE}
            order_ids = [first, *second]

            def order_runs_finished():
                runs = [r for o in order_ids for r in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": o}))]
                return runs if all(r.is_finished for r in runs) else None

            runs = _wait_until(order_runs_finished, 120, "the orders' runs to finish", serve, log)
            killed_orders = {first} | {r.tags.get("dagster/partition") for r in dead_runs} & set(second)
            for order_id in killed_orders:
                # the dead run and its retry, which Dagster's run retries launched
                retries = [r for r in runs if r.tags["dagster/partition"] == order_id and r.tags.get("dagster/retry_number")]
                assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS], order_id
            # whatever still runs (catalog previews) has a live worker: no slot is held by the dead
            for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
                worker = run_worker(instance, record.dagster_run, record.start_time)
                assert worker is None or worker_alive(worker), record.dagster_run.run_id

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, _tail(log)
        # the soak's invariants: every order settled or waiting on its customer, none of the
        # orders' runs left running, every live order's proofs on disk
        book = SqlOrderBook(Database(f"sqlite:///{home / 'orders.db'}"))
        report = check_shop(
            [book.get(order_id) for order_id in order_ids],
            run_statuses={r.run_id: r.status.value for r in runs},
            store=LocalArtifactStore(home / "artifacts"),
            now=datetime.now(UTC),
        )
        assert report.holds, "\n".join(report.lines())
    finally:
        for pgid in pgids:
            _kill_group(pgid)
        if serve.poll() is None:
            serve.wait(timeout=10)
