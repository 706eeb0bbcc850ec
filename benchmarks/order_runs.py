"""Where a paid order's time goes when orders run through `photogen serve`.

    .venv/bin/python benchmarks/order_runs.py [--orders 4] [--rounds 1] [--variants 2] [--product poster_a3]
        [--style ink_etching] [--engine-service] [--cold-runs] [--keep-home DIR] [--timeout 900] [--no-wait-previews] [--json]

Starts `photogen serve` on free ports in a new home (payments off; `--engine-service` and
`--cold-runs` are passed through), lets the catalog preview runs a new home starts with finish (unless
--no-wait-previews), uploads the astronaut selfie and places `--orders` auto-approved orders at
once, polls until every one is `ready` (or failed, or the timeout), `--rounds` times one round
after the other (each round meets the sensors at another moment of their tick), stops the service, then
reads every Dagster run's event log in the home's instance. Per job: the runs' wall time
(RUN_STARTING to RUN_SUCCESS/FAILURE), the time inside steps (STEP_START to
STEP_SUCCESS/FAILURE, asset checks included), the time a run waited in the queue before it
started and the launch (RUN_STARTING to RUN_START: a new process importing the code).
Per order: paid -> proofs_ready and paid -> ready from the order's history, and the
orchestration its runs cost (run wall minus time inside steps, summed over its runs).
Record the tables in BENCHMARKS.md with the machine named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from tests.servers import free_port, group_alive  # noqa: E402
from tests.test_serve import CHILDREN, new_api_key, start_serve  # noqa: E402

STOP_WAIT_SECONDS = 120  # serve gives each child 30 s after SIGTERM
READY_WAIT_SECONDS = 180
ENGINE_READY_WAIT_SECONDS = 600  # with --engine-service, serve says ready once the service has loaded its models
POLL_INTERVAL_SECONDS = 1.5  # one GET at a time: ~40 a minute, inside the API's 60/minute per address
TERMINAL_STATES = {"ready", "failed", "rejected", "cancelled", "refunded"}
# serve's children as the tests read them, and the engine service `--engine-service` adds
CHILD_PID = re.compile(rf"^\[photogen\] ({'|'.join((*CHILDREN, 'engine service'))})\b.*\bpid (\d+)", re.MULTILINE)

RUN_STARTING = {"PIPELINE_STARTING", "RUN_STARTING"}
RUN_START = {"PIPELINE_START", "RUN_START"}
RUN_END = {"PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED", "RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED"}
STEP_OPEN = {"STEP_START", "STEP_RESTARTED"}  # a retried step starts again with STEP_RESTARTED
STEP_CLOSE = {"STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY"}


# -- one run's event log --------------------------------------------------------------------


@dataclass
class RunTiming:
    run_id: str
    job: str
    order_id: str | None
    status: str
    finished: bool
    ended_at: float | None  # the run's RUN_SUCCESS/FAILURE/CANCELED, epoch seconds
    queued_s: float | None  # run created (enqueued) -> RUN_STARTING
    launch_s: float | None  # RUN_STARTING -> RUN_START: the run process starts and loads the code
    wall_s: float | None  # RUN_STARTING (or the run's creation) -> RUN_SUCCESS/FAILURE/CANCELED
    steps_s: float  # the sum over steps (asset checks included) of STEP_START -> STEP_SUCCESS/FAILURE
    steps: dict[str, float] = field(default_factory=dict)
    worker_start_s: float = 0.0  # STEP_WORKER_STARTING -> STEP_START, summed (multiprocess executor only)

    @property
    def outside_steps_s(self) -> float | None:
        return None if self.wall_s is None else self.wall_s - self.steps_s


def order_of(run) -> str | None:
    """The order a run (a DagsterRun) works for: the sensors tag it; its partition is the order too."""
    return run.tags.get("photogen/order") or run.tags.get("dagster/partition")


def _event_type(entry) -> str | None:
    event = entry.dagster_event
    return event.event_type_value if event is not None else None


def run_timing(instance, record) -> RunTiming:
    """The timing of one run (a dagster RunRecord) from its event log in `instance`."""
    run = record.dagster_run
    created = record.create_timestamp.timestamp()
    starting = start = end = None
    open_steps: dict[str, float] = {}
    worker_starting: dict[str, float] = {}
    steps: dict[str, float] = {}
    worker_start = 0.0
    for entry in instance.all_logs(run.run_id):
        kind, at, step = _event_type(entry), entry.timestamp, entry.step_key
        if kind is None:
            continue
        if kind in RUN_STARTING and starting is None:
            starting = at
        elif kind in RUN_START and start is None:
            start = at
        elif kind in RUN_END:
            end = at
        elif kind == "STEP_WORKER_STARTING" and step:
            worker_starting[step] = at
        elif kind in STEP_OPEN and step:
            open_steps[step] = at
            if step in worker_starting:
                worker_start += at - worker_starting.pop(step)
        elif kind in STEP_CLOSE and step in open_steps:
            steps[step] = steps.get(step, 0.0) + at - open_steps.pop(step)
    if end is not None:  # a step the run never closed (its process died) ran until the run ended
        for step, at in open_steps.items():
            steps[step] = steps.get(step, 0.0) + max(0.0, end - at)
    began = starting if starting is not None else created
    return RunTiming(
        run_id=run.run_id,
        job=run.job_name,
        order_id=order_of(run),
        status=run.status.value,
        finished=end is not None,
        ended_at=end,
        queued_s=None if starting is None else max(0.0, starting - created),
        launch_s=None if starting is None or start is None else start - starting,
        wall_s=None if end is None else end - began,
        steps_s=sum(steps.values()),
        steps=steps,
        worker_start_s=worker_start,
    )


def read_runs(dagster_home: Path) -> list[RunTiming]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records(order_by="create_timestamp", ascending=True)
        return [run_timing(instance, record) for record in records]


def sensor_tick_gaps(dagster_home: Path, names: tuple[str, ...] = ("paid_orders", "approved_orders")) -> dict[str, float]:
    """The median seconds between two ticks of each sensor: how long an order can wait for its run request."""
    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorType

    gaps = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.name in names:
                ticks = sorted(t.timestamp for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=500))
                if len(ticks) > 1:
                    gaps[state.name] = statistics.median(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    return gaps


# -- the service and the orders -----------------------------------------------------------


class Service:
    """`photogen serve` in its own session; stop() ends it and every child group it named."""

    def __init__(self, home: Path, log: Path, options: list[str]) -> None:
        self.home, self.log = home, log
        self.api_port, self.ui_port = free_port(), free_port()
        self.process = start_serve(home, self.api_port, self.ui_port, log, *options)
        self.child_pgids: set[int] = set()
        self.stopped_at: float | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def _note_children(self) -> None:
        self.child_pgids.update(int(pid) for _name, pid in CHILD_PID.findall(self.output()))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while "[photogen] ready" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"photogen serve exited ({self.process.returncode}) before it was ready:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"photogen serve was not ready after {timeout:.0f} s:\n{self.tail()}")
            self._note_children()
            time.sleep(1)
        self._note_children()

    def stop(self) -> int | None:
        """SIGTERM to serve's group (serve stops its children), wait; then SIGKILL whatever is
        left. A second Ctrl-C meanwhile is ignored: the stop is bounded and must not be cut short."""
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._stop()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _stop(self) -> int | None:
        self._note_children()
        self.stopped_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"photogen serve did not stop in {STOP_WAIT_SECONDS} s: killing it", file=sys.stderr)
        for pgid in [self.process.pid, *sorted(self.child_pgids)]:
            if group_alive(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        return self.process.returncode


def _stamp(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _since_paid(order: dict, state: str) -> float | None:
    times = {}
    for event in order["events"]:
        times.setdefault(event["to_state"], _stamp(event["at"]))  # the first time it entered each state
    if "paid" not in times or state not in times:
        return None
    return times[state] - times["paid"]


def _request(method: str, url: str, **kwargs) -> requests.Response:
    """One request, waiting out the API's rate limit (429) when it answers that."""
    for _ in range(10):
        response = requests.request(method, url, timeout=30, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("Retry-After") or 5))
    return response


def place_orders(service: Service, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """Upload the astronaut once, then place `args.orders` orders at once (one thread each); their ids and the key."""
    from skimage import data

    from photogen_pipelines.imaging.images import png_bytes

    auth = new_api_key(service.home)
    upload = _request(
        "POST",
        f"{service.api}/v1/uploads",
        headers=auth,
        data={"consent": "true"},
        files={"file": ("me.png", png_bytes(data.astronaut()))},
    )
    if upload.status_code != 201:
        raise RuntimeError(f"upload failed: {upload.status_code} {upload.text}")
    body = {
        "upload_id": upload.json()["id"],
        "style_id": args.style,
        "product_id": args.product,
        "variants": args.variants,
        "approval": "auto",
    }
    placed: list[dict | None] = [None] * args.orders
    barrier = threading.Barrier(args.orders)

    def place(index: int) -> None:
        barrier.wait()
        headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
        response = _request("POST", f"{service.api}/v1/orders", headers=headers, json=body)
        placed[index] = {"status": response.status_code, "body": response.json() if response.content else {}}

    threads = [threading.Thread(target=place, args=(i,), daemon=True) for i in range(args.orders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    orders = []
    for index, result in enumerate(placed):
        if result is None or result["status"] != 201:
            raise RuntimeError(f"order {index} was not placed: {result}")
        if result["body"].get("state") != "paid":
            raise RuntimeError(f"order {index} is {result['body'].get('state')}, not paid (payments should be off)")
        orders.append(result["body"]["id"])
    return orders, auth


def wait_for_orders(service: Service, orders: list[str], auth: dict[str, str], timeout: float) -> dict[str, dict]:
    """Poll each order in turn until all are in a terminal state; the last view of each."""
    views: dict[str, dict] = {}
    pending = list(orders)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while pending:
        if time.monotonic() > deadline:
            print(f"timed out after {timeout:.0f} s; still pending: {pending}", file=sys.stderr)
            break
        if service.process.poll() is not None:
            raise RuntimeError(f"photogen serve exited ({service.process.returncode}):\n{service.tail()}")
        order_id = pending[0]
        response = _request("GET", f"{service.api}/v1/orders/{order_id}", headers=auth)
        if response.status_code == 200:
            views[order_id] = response.json()
            if views[order_id]["state"] in TERMINAL_STATES:
                pending.remove(order_id)
                state = views[order_id]["state"]
                print(f"order {order_id}: {state} after {time.monotonic() - started:.0f} s", file=sys.stderr)
                continue
        pending.append(pending.pop(0))
        time.sleep(POLL_INTERVAL_SECONDS)
    return views


def wait_for_quiet_queue(service: Service, first_run_seconds: float = 60, timeout: float = 600) -> int:
    """Let the catalog previews a new home renders (8 runs, one at a time) finish before the
    orders come: they would take a run slot and CPU. Waits until some run was requested and
    every run has finished (or none came within `first_run_seconds`); the number of runs."""
    import dagster as dg

    started = time.monotonic()
    with dg.DagsterInstance.from_config(str(service.home / "dagster")) as instance:
        while time.monotonic() - started < timeout:
            if service.process.poll() is not None:
                raise RuntimeError(f"photogen serve exited ({service.process.returncode}):\n{service.tail()}")
            runs = instance.get_runs()
            if runs and all(r.is_finished for r in runs):
                return len(runs)
            if not runs and time.monotonic() - started > first_run_seconds:
                return 0
            time.sleep(2)
        print(f"runs were still queued or going after {timeout:.0f} s; placing the orders anyway", file=sys.stderr)
        return len(instance.get_runs())


def wait_for_order_runs(dagster_home: Path, order_ids: set[str], timeout: float = 90) -> None:
    """An order is ready a moment before its print run ends: wait for its runs to finish."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while time.monotonic() < deadline:
            if all(r.is_finished for r in instance.get_runs() if order_of(r) in order_ids):
                return
            time.sleep(1)
    print(f"some order runs were still going after {timeout:.0f} s", file=sys.stderr)


# -- the report ---------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarize(runs: list[RunTiming], views: dict[str, dict], order_ids: list[str], stopped_at: float | None = None) -> dict:
    """Per job, per order and in all; a run that ended after `stopped_at` (epoch seconds) was
    cut short by the service's stop and is left out, like one that never ended."""
    finished = [r for r in runs if r.finished and r.wall_s is not None and (stopped_at is None or r.ended_at < stopped_at)]
    jobs = {}
    for job in sorted({r.job for r in finished}):
        mine = [r for r in finished if r.job == job]
        walls = [r.wall_s for r in mine]
        launches = [r.launch_s for r in mine if r.launch_s is not None]
        queued = [r.queued_s for r in mine if r.queued_s is not None]
        jobs[job] = {
            "runs": len(mine),
            "failed": sum(r.status != "SUCCESS" for r in mine),
            "wall_min_s": min(walls),
            "wall_median_s": statistics.median(walls),
            "wall_max_s": max(walls),
            "wall_sum_s": sum(walls),
            "steps_sum_s": sum(r.steps_s for r in mine),
            "inside_steps_share": sum(r.steps_s for r in mine) / sum(walls) if sum(walls) else None,
            "launch_median_s": statistics.median(launches) if launches else None,
            "queued_median_s": statistics.median(queued) if queued else None,
            "worker_start_sum_s": sum(r.worker_start_s for r in mine),
            "step_median_s": {
                step: statistics.median(r.steps[step] for r in mine if step in r.steps)
                for step in sorted({s for r in mine for s in r.steps})
            },
        }

    order_runs = [r for r in finished if r.order_id in set(order_ids)]
    per_order = []
    for order_id in order_ids:
        view = views.get(order_id, {})
        mine = [r for r in order_runs if r.order_id == order_id]
        per_order.append(
            {
                "order_id": order_id,
                "state": view.get("state"),
                "paid_to_proofs_ready_s": _since_paid(view, "proofs_ready") if view else None,
                "paid_to_ready_s": _since_paid(view, "ready") if view else None,
                "runs": len(mine),
                "run_wall_s": sum(r.wall_s for r in mine),
                "steps_s": sum(r.steps_s for r in mine),
                "orchestration_s": sum(r.outside_steps_s for r in mine),
                "queued_s": sum(r.queued_s or 0.0 for r in mine),
            }
        )
    proofs = [o["paid_to_proofs_ready_s"] for o in per_order if o["paid_to_proofs_ready_s"] is not None]
    ready = [o["paid_to_ready_s"] for o in per_order if o["paid_to_ready_s"] is not None]
    wall = sum(r.wall_s for r in order_runs)
    inside = sum(r.steps_s for r in order_runs)
    totals = {
        "order_runs": len(order_runs),
        "order_runs_wall_s": wall,
        "order_runs_inside_steps_s": inside,
        "order_runs_inside_steps_share": inside / wall if wall else None,
        "all_runs": len(finished),
        "all_runs_wall_s": sum(r.wall_s for r in finished),
        "all_runs_inside_steps_s": sum(r.steps_s for r in finished),
        "unfinished_runs": len(runs) - len(finished),
        "unfinished_order_runs": sum(r.order_id in set(order_ids) for r in runs) - len(order_runs),
        "orchestration_per_order_median_s": statistics.median(o["orchestration_s"] for o in per_order if o["runs"])
        if any(o["runs"] for o in per_order)
        else None,
        "orders_ready": sum(o["state"] == "ready" for o in per_order),
        "paid_to_proofs_ready_p50_s": _percentile(proofs, 0.5),
        "paid_to_proofs_ready_max_s": max(proofs) if proofs else None,
        "paid_to_ready_p50_s": _percentile(ready, 0.5),
        "paid_to_ready_max_s": max(ready) if ready else None,
    }
    return {"jobs": jobs, "orders": per_order, "totals": totals}


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def print_report(report: dict) -> None:
    setup, totals = report["setup"], report["totals"]
    print(
        f"\nphotogen serve: {setup['orders']} orders placed at once ({setup.get('rounds', 1)} round(s)), "
        f"{setup['product']}, {setup['style']}, "
        f"{setup['variants']} variants, auto approval{', engine service' if setup['engine_service'] else ''}"
        f"{', cold runs' if setup.get('cold_runs') else ', warm runs'}"
        f"{'' if setup['wait_previews'] else ', catalog previews running alongside'}"
    )
    print(f"machine: {report['machine']}\n")
    print("| job | runs | run wall min–max s | median s | inside steps s | share | launch median s | queued median s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for job, row in report["jobs"].items():
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        print(
            f"| {job} | {row['runs']}{failed} | {row['wall_min_s']:.1f}–{row['wall_max_s']:.1f} | {row['wall_median_s']:.1f} "
            f"| {row['steps_sum_s']:.1f} | {_pct(row['inside_steps_share'])} | {_s(row['launch_median_s'])} "
            f"| {_s(row['queued_median_s'])} |"
        )
    for job, row in report["jobs"].items():
        steps = ", ".join(f"{step} {seconds:.1f}" for step, seconds in row["step_median_s"].items())
        worker = f"; step workers starting {row['worker_start_sum_s']:.1f} s in all" if row["worker_start_sum_s"] else ""
        print(f"\n{job}, median s per step: {steps}{worker}")

    print("\n| order | state | paid→proofs_ready s | paid→ready s | runs | run wall s | inside steps s | orchestration s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for order in report["orders"]:
        print(
            f"| {order['order_id']} | {order['state']} | {_s(order['paid_to_proofs_ready_s'])} | {_s(order['paid_to_ready_s'])} "
            f"| {order['runs']} | {order['run_wall_s']:.1f} | {order['steps_s']:.1f} | {order['orchestration_s']:.1f} |"
        )
    print(
        f"\norder runs ({totals['order_runs']}): {totals['order_runs_wall_s']:.1f} s of run wall, "
        f"{totals['order_runs_inside_steps_s']:.1f} s inside steps ({_pct(totals['order_runs_inside_steps_share'])})"
    )
    other = totals["all_runs"] - totals["order_runs"]
    if other:
        print(
            f"all runs ({totals['all_runs']}, {other} not an order's): {totals['all_runs_wall_s']:.1f} s of run wall, "
            f"{totals['all_runs_inside_steps_s']:.1f} s inside steps"
        )
    if totals["unfinished_runs"]:
        of_orders = f", {totals['unfinished_order_runs']} of them an order's" if totals["unfinished_order_runs"] else ""
        print(f"runs not finished before the service stopped (left out): {totals['unfinished_runs']}{of_orders}")
    orchestration = _s(totals["orchestration_per_order_median_s"])
    print(f"orchestration per order (run wall − inside steps, over its runs), median: {orchestration} s")
    print(
        f"paid→proofs_ready p50 {_s(totals['paid_to_proofs_ready_p50_s'])} s, max {_s(totals['paid_to_proofs_ready_max_s'])} s; "
        f"paid→ready p50 {_s(totals['paid_to_ready_p50_s'])} s, max {_s(totals['paid_to_ready_max_s'])} s "
        f"({totals['orders_ready']}/{setup['orders'] * setup.get('rounds', 1)} ready)"
    )
    gaps = ", ".join(f"{name} {gap:.1f} s" for name, gap in report.get("sensor_tick_gap_median_s", {}).items())
    print(f"sensor ticks, median seconds apart: {gaps or '–'}")


# -- main -----------------------------------------------------------------------------------


def _home(args: argparse.Namespace, tmp: str) -> Path:
    if not args.keep_home:
        return Path(tmp) / "home"
    home = Path(args.keep_home).resolve()
    if home.exists() and any(home.iterdir()):
        sys.exit(f"--keep-home {home}: not empty (its old runs would mix with this benchmark's)")
    return home


def _raise_on_sigterm(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally blocks that stop the service


def run(args: argparse.Namespace, tmp: str) -> dict:
    home = _home(args, tmp)
    log = home.parent / f"{home.name}-serve.log" if args.keep_home else Path(tmp) / "serve.log"
    options = ["--engine-service", "--engine-port", str(free_port())] if args.engine_service else []
    options += ["--cold-runs"] if args.cold_runs else []
    started = time.monotonic()
    service = Service(home, log, options)
    try:
        service.wait_ready(ENGINE_READY_WAIT_SECONDS if args.engine_service else READY_WAIT_SECONDS)
        print(f"photogen serve ready after {time.monotonic() - started:.0f} s", file=sys.stderr)
        if args.wait_previews:
            settled = time.monotonic()
            print("waiting for the new home's catalog preview runs to finish first", file=sys.stderr)
            previews = wait_for_quiet_queue(service)
            waited = time.monotonic() - settled
            print(f"{previews} run(s) done after {waited:.0f} s; placing {args.orders} orders", file=sys.stderr)
        orders: list[str] = []
        views: dict[str, dict] = {}
        for number in range(1, args.rounds + 1):
            placed, auth = place_orders(service, args)
            views.update(wait_for_orders(service, placed, auth, args.timeout))
            wait_for_order_runs(home / "dagster", set(placed))
            orders += placed
            print(f"round {number}/{args.rounds} done", file=sys.stderr)
    except BaseException:
        print(f"\nphotogen serve's log (the end of {log}):\n{service.tail()}", file=sys.stderr)
        raise
    finally:
        returncode = service.stop()
        print(f"photogen serve stopped (exit {returncode})", file=sys.stderr)
    runs = read_runs(home / "dagster")
    report = summarize(runs, views, orders, service.stopped_at)
    report["sensor_tick_gap_median_s"] = sensor_tick_gaps(home / "dagster")
    chosen = ("orders", "rounds", "variants", "product", "style", "engine_service", "cold_runs", "wait_previews")
    report["setup"] = {k: getattr(args, k) for k in chosen}
    report["machine"] = machine()
    report["runs"] = [asdict(r) for r in runs]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4, help="orders placed at once")
    parser.add_argument("--rounds", type=int, default=1, help="place --orders at once this many times, one round after the other")
    parser.add_argument("--variants", type=int, default=2, help="proofs per order")
    parser.add_argument("--product", default="poster_a3")
    parser.add_argument("--style", default="ink_etching")
    parser.add_argument("--engine-service", action="store_true", help="pass --engine-service to photogen serve")
    parser.add_argument("--cold-runs", action="store_true", help="pass --cold-runs to photogen serve (every run a new process)")
    parser.add_argument("--keep-home", metavar="DIR", help="run in DIR (new or empty) and keep it, instead of a temporary home")
    parser.add_argument(
        "--no-wait-previews",
        dest="wait_previews",
        action="store_false",
        help="place the orders at once, while the new home's catalog previews still hold a run slot",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the orders [900]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.orders < 1 or args.rounds < 1:
        parser.error("--orders and --rounds must be at least 1")

    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="order-runs-") as tmp:
            report = run(args, tmp)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
