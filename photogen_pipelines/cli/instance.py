"""The local Dagster instance the CLI runs orders on, and `dagster dev` shows."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from photogen_pipelines.cli.common import UsageFailure
from photogen_pipelines.settings import LocalPaths

# the repository's dagster.yaml (an installed wheel has none: Dagster's defaults apply)
PROJECT_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


# the first line of the project's dagster.yaml: a copy that still starts with it is ours to
# update (new instance settings reach existing homes); delete the line to keep your own
MANAGED_MARKER = "# The local Dagster instance"


def use_local_instance(paths: LocalPaths) -> Path:
    """Point DAGSTER_HOME at `$PHOTOGEN_HOME/dagster` unless the caller chose one, give it
    the project's dagster.yaml (again when the project's changed and the copy is still
    ours), and keep the home folder private."""
    paths.make_private()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if PROJECT_INSTANCE_YAML.is_file() and _managed_copy_outdated(config):
        shutil.copyfile(PROJECT_INSTANCE_YAML, config)
    return home


def _managed_copy_outdated(config: Path) -> bool:
    if not config.exists():
        return True
    current = config.read_text()
    return current.startswith(MANAGED_MARKER) and current != PROJECT_INSTANCE_YAML.read_text()


@contextmanager
def service_lock(paths: LocalPaths, what: str) -> Iterator[None]:
    """Hold the home folder for one service (`photogen serve` or `photogen ui`): two daemons
    on one instance would run every sensor twice, and the sweep for runs left behind by a
    dead service is only sound while no other service is launching runs. The lock goes
    with the process, however it ends."""
    paths.home.mkdir(parents=True, exist_ok=True)
    handle = open(paths.home / "service.lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageFailure(f"{paths.home} is in use by {holder}; stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        handle.close()


def fail_runs_left_behind(say) -> None:
    """Before the daemon starts: a run still STARTING or STARTED whose worker is gone was
    left behind by a service that died (killed, a power cut); fail it now, so run retries
    and the failure sensor settle its order instead of it holding a run slot for good."""
    import dagster as dg

    from sensors.dead_runs import fail_dead_runs, workers_are_local

    with dg.DagsterInstance.get() as instance:
        if workers_are_local(instance):
            for run_id in fail_dead_runs(instance, starting_too=True):
                say(f"run {run_id} was left running by a service that died: marked failed (run retries take it from here)")
