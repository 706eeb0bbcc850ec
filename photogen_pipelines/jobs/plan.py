"""A job's shots, planned from its kind before anything is painted: their names (the poses
asked, or the kind's own), their order, the words each pose gives the engine, and the seed
of every attempt.

A kind with locked seeds (a fashion shoot) paints every pose from the job's one seed, so the
light, backdrop and model stay the same across the set; otherwise each shot has its own.
A retry always takes a new seed, derived, so a re-run of the same attempt paints the same
picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from photogen_pipelines.catalog.kinds import Kind, KindCatalog

SEED_SPACE = 2**32
# distinct odd multipliers: the seeds of shots and of retries never meet for small numbers
_SHOT_STEP = 7919
_RETRY_STEP = 104_729


@dataclass(frozen=True)
class PlannedShot:
    name: str  # the pose (or the kind's named shot): the shot's partition key within its job
    position: int
    seed: int  # the first attempt's
    pose_words: str | None  # what the engine is told of the pose; None for a named shot that is no pose

    def seed_of(self, attempt: int) -> int:
        """The seed of attempt `attempt` (0: the first); every retry a new one."""
        return (self.seed + _RETRY_STEP * attempt) % SEED_SPACE


def plan_shots(
    catalog: KindCatalog, kind: Kind, job_seed: int, poses: list[str] | None = None, proofs: int = 0
) -> list[PlannedShot]:
    """The job's shots in order. `poses`: the job's own (checked against the catalog; default
    the kind's); `proofs`: how many a kind whose shots are its proofs makes (the tier's)."""
    if kind.shots == "proofs":
        names = [f"proof_{n}" for n in range(proofs)]
    else:
        names = kind.shot_names(catalog.check_poses(poses) if poses else None)
    return [
        PlannedShot(
            name=name,
            position=position,
            seed=job_seed % SEED_SPACE if kind.seeds == "locked" else (job_seed + _SHOT_STEP * position) % SEED_SPACE,
            pose_words=catalog.poses.get(name),
        )
        for position, name in enumerate(names)
    ]
