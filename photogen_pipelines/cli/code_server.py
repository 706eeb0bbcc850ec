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
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing import forkserver

import click

from photogen_pipelines.cli.common import clear_errors

DEFINITIONS_MODULE = "photogen_pipelines.definitions"
LOCATION_NAME = "photogen"
RUN_PRELOAD_MODULE = "photogen_pipelines.cli.run_preload"  # the definitions, imported so that a failure cannot end the forkserver


class _WarmRunStarts:
    """What the code server sees as `multiprocessing`: the real module, except that the
    context it asks for starts processes through the warm forkserver."""

    def get_context(self, method: str | None = None):  # noqa: ARG002 - the server asks for "spawn"
        return multiprocessing.get_context("forkserver")

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
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not cold_runs:
        start_runs_warm()
    arguments = ["-m", DEFINITIONS_MODULE, "-a", "defs", "--location-name", location_name, "-h", host, "-p", str(port)]
    # a definitions module that fails to import is reported to the UI and the daemon (and by
    # `photogen serve`), not a server that exits
    grpc_command.main(args=[*arguments, "--lazy-load-user-code"], prog_name="photogen code-server", standalone_mode=True)
