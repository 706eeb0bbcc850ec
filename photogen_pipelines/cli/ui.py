"""`photogen ui`: the Dagster UI on the same local instance the demo orders ran on."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from photogen_pipelines.cli.instance import use_local_instance
from photogen_pipelines.cli.main import UsageFailure, cli
from photogen_pipelines.settings import LocalPaths

STOP_GRACE_SECONDS = 30


def _restore_default_signals() -> None:
    # A shell starts background jobs with SIGINT ignored, and dagster dev inherits that;
    # it must stop on SIGINT like a foreground one.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@click.option(
    "--home", type=click.Path(file_okay=False), default=None, help="Local state (default: $PHOTOGEN_HOME or ./.photogen)."
)
def ui(host: str, port: int, home: str | None) -> None:
    """Start `dagster dev` (webserver + daemon) on the local instance; Ctrl-C or SIGTERM stops it."""
    paths = LocalPaths.resolve(home)
    os.environ["PHOTOGEN_HOME"] = str(paths.home)
    use_local_instance(paths)
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    if not Path(dagster).exists():
        raise UsageFailure("the dagster command is not installed in this environment")
    command = [dagster, "dev", "-m", "photogen_pipelines.definitions", "-h", host, "-p", str(port)]
    # its own process group, so one signal reaches the webserver, the daemon and the code server
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_restore_default_signals)
    click.echo(
        f"[photogen] Dagster UI at http://{host}:{port} (instance {os.environ['DAGSTER_HOME']}, pid {child.pid})", err=True
    )

    def kill_group() -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(signum, _frame) -> None:
        # dagster dev shuts down cleanly on SIGINT only; it ignores SIGTERM
        click.echo("[photogen] stopping the Dagster UI", err=True)
        os.killpg(child.pid, signal.SIGINT)
        deadline = threading.Timer(STOP_GRACE_SECONDS, kill_group)
        deadline.daemon = True
        deadline.start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        child.wait()
    finally:
        kill_group()  # whatever of its group outlived it
