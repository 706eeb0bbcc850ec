"""`photogen ui`: the Dagster UI on the same local instance the demo orders ran on."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import click

from photogen_pipelines.cli.common import UsageFailure, home_option, local_home, refuse_an_open_ui
from photogen_pipelines.cli.instance import fail_runs_left_behind, service_lock, use_local_instance
from photogen_pipelines.cli.processes import Supervisor, say

STOP_GRACE_SECONDS = 30


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Where it listens: beyond loopback only with --auth-in-front."
)
@click.option("--port", type=int, default=3000, show_default=True)
@click.option(
    "--auth-in-front",
    is_flag=True,
    help="A proxy that asks for a login stands in front of --host (deploy/operators/dagster-ui.nginx.conf).",
)
@home_option
def ui(host: str, port: int, auth_in_front: bool, home: str | None) -> None:
    """Start `dagster dev` (webserver + daemon) on the local instance; Ctrl-C or SIGTERM stops it."""
    refuse_an_open_ui(host, auth_in_front, "--host", "--auth-in-front")
    paths = local_home(home)
    os.environ["PHOTOGEN_HOME"] = str(paths.home)
    use_local_instance(paths)
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    if not Path(dagster).exists():
        raise UsageFailure("the dagster command is not installed in this environment")
    command = [dagster, "dev", "-m", "photogen_pipelines.definitions", "-h", host, "-p", str(port)]
    with service_lock(paths, "photogen ui"):
        fail_runs_left_behind(say)
        _supervise(command, host, port)


def _supervise(command: list[str], host: str, port: int) -> None:
    with Supervisor(grace_seconds=STOP_GRACE_SECONDS) as supervisor:
        # its own process group, so one signal reaches the webserver, the daemon and the code
        # server; dagster dev shuts down cleanly on SIGINT, which it is sent on SIGTERM too
        child = supervisor.start("Dagster UI", command, stop_signal=signal.SIGINT)
        say(f"Dagster UI at http://{host}:{port} (instance {os.environ['DAGSTER_HOME']}, pid {child.pid})")
        if supervisor.wait() is None:  # a stop signal, not the child's own exit
            say("stopping the Dagster UI")
        supervisor.stop_all()
