"""A studio job and its shots, and the state machine of each.

A job is paid when placed (credits, or nothing with payments off), generates while its
shots are made (each shot its own Dagster partition), and is `ready` once every shot is
settled and the ZIP is built: with at least one passing shot. A job whose every shot was
rejected ends `rejected` and its credits come back, like a run that fails for good
(`failed`) or a job cancelled before it started. An operator may send a settled shot
back to `pending` (its retry); the job then generates again and its export is rebuilt.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

from pydantic import BaseModel, Field

from photogen_pipelines.errors import IllegalTransition


class JobState(enum.StrEnum):
    PAID = "paid"
    GENERATING = "generating"
    READY = "ready"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


J = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    J.PAID: frozenset({J.GENERATING, J.CANCELLED, J.FAILED}),
    J.GENERATING: frozenset({J.READY, J.REJECTED, J.FAILED}),
    # an operator retries a shot of a delivered or rejected job: its export is made again
    J.READY: frozenset({J.GENERATING}),
    J.REJECTED: frozenset({J.GENERATING, J.REFUNDED}),
    J.FAILED: frozenset({J.REFUNDED}),
    J.CANCELLED: frozenset({J.REFUNDED}),
    J.REFUNDED: frozenset(),
}
OWES_REFUND = frozenset({J.REJECTED, J.FAILED, J.CANCELLED})
SETTLED = frozenset({J.READY, J.REJECTED, J.FAILED, J.CANCELLED, J.REFUNDED})


class ShotState(enum.StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    REJECTED = "rejected"  # every attempt failed a gate: the reason says which


SHOT_TRANSITIONS: dict[ShotState, frozenset[ShotState]] = {
    ShotState.PENDING: frozenset({ShotState.PASSED, ShotState.REJECTED}),
    ShotState.PASSED: frozenset({ShotState.PENDING}),
    ShotState.REJECTED: frozenset({ShotState.PENDING}),
}


def check_move(current: enum.StrEnum, target: enum.StrEnum, table: dict, what: str) -> bool:
    """True to move, False for a harmless repeat; IllegalTransition otherwise."""
    if current == target:
        return False
    if target not in table[current]:
        raise IllegalTransition(f"{what} cannot go from {current.value} to {target.value}", code="illegal_transition")
    return True


class Shot(BaseModel):
    name: str  # the pose or the kind's named shot: with the job id, the shot's partition key
    position: int
    state: ShotState = ShotState.PENDING
    tries: int = 0  # attempts made, every retry counted
    reason: str | None = None  # why it was rejected
    scores: dict | None = None  # the delivered (or last) attempt's scores, gate by gate
    updated_at: datetime | None = None


class Job(BaseModel):
    id: str = Field(default_factory=lambda: "job_" + secrets.token_hex(8))
    kind: str
    tier: str | None = None
    state: JobState = JobState.PAID
    reason: str | None = None
    inputs: dict
    seed: int
    engine: str
    payments: str = "off"  # off | credits
    amount_cents: int = 0
    credits_price: int = 0
    credits_paid: int = 0
    credits_refunded: int = 0
    api_key_id: str | None = None
    customer_ref: str | None = None
    catalog: str | None = None
    sku: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    shots: list[Shot] = Field(default_factory=list)

    def shot(self, name: str) -> Shot:
        for shot in self.shots:
            if shot.name == name:
                return shot
        raise KeyError(name)

    @property
    def settled_shots(self) -> list[Shot]:
        return [s for s in self.shots if s.state != ShotState.PENDING]

    @property
    def all_settled(self) -> bool:
        return bool(self.shots) and len(self.settled_shots) == len(self.shots)


def partition_key(job_id: str, shot: str) -> str:
    """The shot's key in the `job_shots` asset's partitions (job x shot), as Dagster writes a
    multi-partition key: the dimensions by name, joined by '|'."""
    return f"{job_id}|{shot}"
