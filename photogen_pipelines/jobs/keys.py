"""Where a job's files live in the artifact store: `jobs/<id>/`, one folder, deleted together."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKeys:
    job_id: str

    @property
    def folder(self) -> str:
        return f"jobs/{self.job_id}/"

    def shot_picture(self, shot: str) -> str:
        """The shot's delivered picture (PNG, full size)."""
        return f"{self.folder}shots/{shot}.png"

    def shot_video(self, shot: str) -> str:
        return f"{self.folder}shots/{shot}.mp4"

    def rejected_picture(self, shot: str) -> str:
        """A rejected shot's last attempt, for the operator: never delivered."""
        return f"{self.folder}shots/{shot}.rejected.png"

    def rejected_video(self, shot: str) -> str:
        return f"{self.folder}shots/{shot}.rejected.mp4"

    def shot_record(self, shot: str) -> str:
        """The shot's ShotRecord (jobs/export.py): every attempt's seed and scores."""
        return f"{self.folder}shots/{shot}.json"

    @property
    def product(self) -> str:
        """The job's own copy of a merchant catalog's product photo."""
        return f"{self.folder}product.png"

    @property
    def export(self) -> str:
        return f"{self.folder}export.zip"
