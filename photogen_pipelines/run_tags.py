"""Run tags kept in a YAML file (deploy/gpu-run-tags.*.yaml), as the strings Dagster tags are.

A structured value (a mapping or a list) becomes its JSON: that is how a launcher's tags such
as `ecs/container_overrides` or `dagster-k8s/config` carry config. No Dagster import here, so
settings can load the file without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from photogen_pipelines.errors import BadInput


def _bad(path: Path, why: str) -> BadInput:
    return BadInput(f"run tags file {path}: {why}", code="bad_run_tags")


def load_run_tags(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise _bad(path, error.strerror or "cannot be read") from None
    except yaml.YAMLError as error:
        raise _bad(path, f"not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _bad(path, f"must be a mapping of tag to value, not {type(raw).__name__}")
    tags = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise _bad(path, f"tag {key!r} is not a string (quote it)")
        if value is None:
            raise _bad(path, f"tag {key!r} has no value")
        # JSON for booleans too: str() would give Python's "True", which no tag limit matches
        tags[key] = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
    return tags
