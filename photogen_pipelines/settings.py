"""Where local state lives. One folder, `PHOTOGEN_HOME` (default `.photogen` in the
working directory), holds the Dagster instance, the artifacts and the order book, so a
demo order and `dagster dev` started in the same folder see the same runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalPaths:
    home: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> LocalPaths:
        return cls(Path(home or os.environ.get("PHOTOGEN_HOME") or ".photogen").resolve())

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    @property
    def orders(self) -> Path:
        return self.home / "orders"
