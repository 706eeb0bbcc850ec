"""The local Dagster instance the CLI runs orders on, and `dagster dev` shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from photogen_pipelines.settings import LocalPaths

# the repository's dagster.yaml (an installed wheel has none: Dagster's defaults apply)
PROJECT_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def use_local_instance(paths: LocalPaths) -> Path:
    """Point DAGSTER_HOME at `$PHOTOGEN_HOME/dagster` unless the caller chose one, and
    give it the project's dagster.yaml the first time."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and PROJECT_INSTANCE_YAML.is_file():
        shutil.copyfile(PROJECT_INSTANCE_YAML, config)
    return home
