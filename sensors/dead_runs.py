"""Runs whose worker is gone are failed, so run retries and `order_run_failures` take over
and the run slot comes free.

With the default run launcher a run's worker is a process on the code server's host: the
code server notices a worker that dies under it, but when the code server dies too (the
daemon killed, a power cut) nobody does, and the run stays STARTED for good while holding
one of the queue's slots. Run monitoring fails runs stuck in STARTING or CANCELING after
its timeouts; this module finds STARTED runs whose worker process no longer exists. It
runs as a sensor (on the code server's host, where the workers are) and once at
`photogen serve` start, before the daemon is up.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.launcher import DefaultRunLauncher

# set by runs executed in the caller's own process (`photogen demo`): "<host>:<pid>"
WORKER_TAG = "photogen/worker"
MAX_RUNS_PER_SWEEP = 100
# a worker's process may start a moment before it reports itself: more than this, and the
# pid has been reused by another process since
PID_REUSE_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class Worker:
    host: str
    pid: int
    reported_at: float  # when the worker said it started (seconds since the epoch)


def worker_tags() -> dict[str, str]:
    """Tags for a run executed in this process, so a sweep can tell when it died."""
    return {WORKER_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun, started_at: float | None) -> Worker | None:
    """The process executing `run`, as the run's tag or its worker's own engine event say."""
    if tag := run.tags.get(WORKER_TAG):
        host, _, pid = tag.rpartition(":")
        if pid.isdigit():
            return Worker(host, int(pid), started_at or 0.0)
    # the worker's first run-level engine event reports its pid ("Started process for run")
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20)
    for record in records.records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if event.step_key is None and pid is not None and str(pid.value).isdigit():
            return Worker(socket.gethostname(), int(pid.value), record.timestamp)
    return None


def _process_started_at(pid: int) -> float | None:
    """When process `pid` started (Linux: /proc), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        with open("/proc/stat") as system:
            boot = next(float(line.split()[1]) for line in system if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    if fields[0] == "Z":  # exited, not reaped yet
        return float("inf")
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_alive(worker: Worker) -> bool:
    """Whether the worker's process still exists (and is the same process, not a reused pid)."""
    if worker.host != socket.gethostname():
        return True  # another machine's process: not ours to judge
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = _process_started_at(worker.pid)
    return started is None or started <= worker.reported_at + PID_REUSE_SLACK_SECONDS


def workers_are_local(instance: dg.DagsterInstance) -> bool:
    """Runs are processes on this host only with the default launcher; the ECS and
    Kubernetes launchers check their own workers (run monitoring asks them)."""
    return isinstance(instance.run_launcher, DefaultRunLauncher)


def fail_dead_runs(instance: dg.DagsterInstance, *, starting_too: bool = False) -> list[str]:
    """Fail STARTED runs whose worker process is gone; with `starting_too` (no daemon is
    running, so no launch is in progress) STARTING runs as well. Returns their run ids."""
    statuses = [dg.DagsterRunStatus.STARTED] + ([dg.DagsterRunStatus.STARTING] if starting_too else [])
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=statuses), limit=MAX_RUNS_PER_SWEEP):
        run = record.dagster_run
        if run.status == dg.DagsterRunStatus.STARTING:
            reason = "its launch never completed: the daemon that launched it is gone"
        else:
            worker = run_worker(instance, run, record.start_time)
            if worker is None or worker_alive(worker):
                continue
            reason = f"its worker (pid {worker.pid} on {worker.host}) no longer exists"
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != run.status:  # it moved on while we looked
            continue
        instance.report_run_failed(
            current,
            f"Run {run.run_id} marked failed: {reason} (killed, or its machine restarted).",
            # not a step failure: run retries re-execute it
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        failed.append(run.run_id)
    return failed


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails runs whose worker process is gone (a killed code server, a power cut), so retries and refunds follow.",
)
def dead_run_workers(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if not workers_are_local(context.instance):
        return dg.SkipReason("the run launcher checks its own workers (run monitoring)")
    started = time.monotonic()
    failed = fail_dead_runs(context.instance)
    for run_id in failed:
        context.log.warning(f"run {run_id} had no worker any more: marked failed")
    return dg.SkipReason(f"{len(failed)} run(s) without a worker marked failed ({time.monotonic() - started:.2f} s)")
