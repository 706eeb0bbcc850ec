"""`photogen code-server`: PhotoGen's Dagster code location as a gRPC server whose runs start warm.

The webserver and the daemon load the definitions from it over gRPC, it evaluates the sensors,
and Dagster's default run launcher asks it to start every run. Dagster's own server
(`dagster api grpc`) starts each run as a new Python process (multiprocessing's "spawn"), which
imports Dagster and our code again: 2 s alone, 4–6 s with two runs working on 2 cores, twice
per order. This server is Dagster's, with one change: runs are forked from a forkserver that
imported the code location once, so a run starts in a fraction of a second. A run is still a
process of its own (its pid in the run's engine events, killed and retried as before), forked
from a process that holds no threads, no sockets and no model: the forkserver method exists
for exactly that. Dagster offers the same for step processes (`multiprocess_executor`'s
`start_method: forkserver` with `preload_modules`); its code server has no option for runs,
so this module swaps the multiprocessing context the server takes, before it is built.

The code a forkserver imported is the code runs execute: restart the server after changing it
(the UI's "Reload" cannot re-import it; `photogen ui` keeps Dagster's own reloading server).

A run has one outcome. Dagster's server learns that a run's process ended by asking the
process's parent, which for a warm run is the forkserver: when the forkserver is gone (the
server's process group stopped, the forkserver killed) that question reads as "exited", and
the server would mark the run failed while its worker goes on and records a success. So a
warm run's worker never outlives the server that started it: it dies with the forkserver
(Linux: the kernel kills it when its parent goes), the server kills its workers when it is
told to stop, and a worker counts as running for as long as its own process exists. A run
cut short that way is failed with its worker gone, and run retries re-execute it (the dead
run sweep of `photogen serve` fails the ones a killed server left behind).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import weakref
from multiprocessing import forkserver

import click

from photogen_pipelines.cli.common import clear_errors
from photogen_pipelines.cli.dagster_logs import plain_logs_unless_terminal

DEFINITIONS_MODULE = "photogen_pipelines.definitions"
LOCATION_NAME = "photogen"
RUN_PRELOAD_MODULE = "photogen_pipelines.cli.run_preload"  # the definitions, imported so that a failure cannot end the forkserver
PR_SET_PDEATHSIG = 1
FORKSERVER_GONE = 255  # the exit code multiprocessing reports for a child whose forkserver's pipe closed


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Process `pid`'s state letter and start time (clock ticks after boot), from Linux's
    /proc; None where it cannot be read (no such process, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_running(pid: int, started: int | None) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has), and is the process
    that started at `started` ticks (not a later one that reuses its pid) where /proc says."""
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X", "x") and (started is None or stat[1] == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _die_with_parent(parent_pid: int | None) -> None:
    """In a run's worker, first thing: the kernel kills it when its parent (the forkserver)
    goes, and it goes now if the parent has gone already."""
    if not sys.platform.startswith("linux"):
        return  # the server still waits for the worker itself (RunProcess.is_alive)
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc's, already loaded: no library search
    except (OSError, AttributeError):
        return
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


_run_workers: weakref.WeakSet[RunProcess] = weakref.WeakSet()  # started by this server, not yet collected
_run_workers_lock = threading.RLock()  # runs start on the server's threads; the stop handler reads on the main one


class RunProcess(multiprocessing.context.ForkServerProcess):
    """A run's worker, forked by the warm forkserver: it never outlives the forkserver, and
    the server counts it running while its process exists, whatever the forkserver says."""

    _forkserver_pid: int | None = None
    _started: int | None = None

    def start(self) -> None:
        forkserver.ensure_running()
        self._forkserver_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # the worker's parent-to-be
        with _run_workers_lock:
            _run_workers.add(self)
        super().start()
        stat = _proc_stat(self.pid)
        self._started = stat[1] if stat else None

    def run(self) -> None:  # in the worker
        _die_with_parent(self._forkserver_pid)
        super().run()

    def is_alive(self) -> bool:
        if super().is_alive():
            return True
        # the forkserver reports its children's exits through a pipe; a forkserver that is
        # gone reads as an exit (code 255) although the worker may still be running
        return self.exitcode == FORKSERVER_GONE and process_running(self.pid, self._started)


def kill_run_workers() -> list[int]:
    """SIGKILL every run worker this server started that still runs; returns their pids."""
    killed = []
    with _run_workers_lock:
        workers = list(_run_workers)
    for process in workers:
        if process.pid is not None and process_running(process.pid, process._started):
            try:
                os.kill(process.pid, signal.SIGKILL)
                killed.append(process.pid)
            except ProcessLookupError:
                pass
    return killed


def _stop_runs_then_interrupt(signum: int, frame) -> None:
    """SIGINT, and SIGTERM (Dagster gives it SIGINT's handler): the server is stopping, and
    the runs it started stop with it, so none records an outcome after the server has marked
    it failed; then Dagster's own shutdown (KeyboardInterrupt) goes on."""
    try:
        kill_run_workers()
    finally:
        signal.default_int_handler(signum, frame)


class _WarmRunContext(multiprocessing.context.ForkServerContext):
    Process = RunProcess


_WARM_RUN_CONTEXT = _WarmRunContext()


class _WarmRunStarts:
    """What the code server sees as `multiprocessing`: the real module, except that the
    context it asks for starts processes through the warm forkserver, as RunProcesses."""

    def get_context(self, method: str | None = None):  # noqa: ARG002 - the server asks for "spawn"
        return _WARM_RUN_CONTEXT

    def __getattr__(self, name: str):
        return getattr(multiprocessing, name)


def start_runs_warm() -> None:
    """Make Dagster's code server start runs from a forkserver that imported the definitions,
    and start that forkserver now (in the background) so the first run finds it warm."""
    from dagster._grpc import server as dagster_code_server

    multiprocessing.set_forkserver_preload([RUN_PRELOAD_MODULE])
    dagster_code_server.multiprocessing = _WarmRunStarts()
    threading.Thread(target=forkserver.ensure_running, name="photogen-warm-forkserver", daemon=True).start()


@click.command(name="code-server")
@click.option("-h", "--host", default="127.0.0.1", show_default=True, help="Where the code server listens.")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=4000, show_default=True, help="Its gRPC port.")
@click.option(
    "--location-name",
    default=LOCATION_NAME,
    show_default=True,
    help="The code location's name in the UI and in every run's origin; keep it across restarts.",
)
@click.option(
    "--cold-runs",
    is_flag=True,
    help="Start every run as a new process importing the code (Dagster's default) instead of forking a warm one.",
)
@clear_errors
def code_server(host: str, port: int, location_name: str, cold_runs: bool) -> None:
    """Serve PhotoGen's Dagster definitions over gRPC to the webserver and the daemon; runs start warm."""
    from dagster._cli.api import grpc_command

    # Dagster's server stops on SIGTERM by giving it SIGINT's handler. A process started with
    # SIGINT ignored (a background job of a script, under nohup) would then ignore SIGTERM
    # too, and never stop for its supervisor: SIGINT gets Python's own handler back first.
    # With warm runs that handler first kills the runs' workers (see the module's docstring);
    # cold runs are the server's own children, whose exits it reads right.
    signal.signal(signal.SIGINT, signal.default_int_handler if cold_runs else _stop_runs_then_interrupt)
    if not cold_runs:
        start_runs_warm()
    plain_logs_unless_terminal()  # no colour codes in a log file (cli/dagster_logs.py)
    arguments = ["-m", DEFINITIONS_MODULE, "-a", "defs", "--location-name", location_name, "-h", host, "-p", str(port)]
    # a definitions module that fails to import is reported to the UI and the daemon (and by
    # `photogen serve`), not a server that exits
    grpc_command.main(args=[*arguments, "--lazy-load-user-code"], prog_name="photogen code-server", standalone_mode=True)
