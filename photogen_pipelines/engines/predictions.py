"""The journal of remote predictions: a retried step never pays twice for the same picture.

A serverless backend (Replicate, RunPod) names each request by a key derived from what it
asks for (the model, the input picture's bytes, the parameters, the seed). Before it
creates a prediction it looks the key up: one that succeeded is fetched again (its outputs,
or the provider's record of it) instead of paid for again, and one still running is
waited on. The journal lives in the orders database (`predictions`), which every run
worker already reaches; `MemoryPredictionJournal` is for scripts and tests.

A prediction's status is a `PredictionStatus`, stored as its plain word; the journals'
`save` is its only writer (tests/test_status_writers.py).
"""

from __future__ import annotations

import enum
import hashlib
import json
import threading
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from photogen_pipelines.clock import utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import PredictionRow


class PredictionStatus(enum.StrEnum):
    """A remote prediction's status in our words (Replicate's; each backend maps its own)."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# statuses after which a prediction will not change
FINISHED = frozenset({PredictionStatus.SUCCEEDED, PredictionStatus.FAILED, PredictionStatus.CANCELED})


@dataclass(frozen=True)
class PredictionRecord:
    key: str  # request_key(): what was asked
    provider: str  # replicate | runpod
    prediction_id: str  # the provider's id (Replicate's prediction id, RunPod's job id)
    status: PredictionStatus  # its plain word ("succeeded") is taken too, and converted
    predict_seconds: float | None = None
    cost_usd: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", PredictionStatus(self.status))


class PredictionJournal(Protocol):
    def find(self, key: str) -> PredictionRecord | None: ...
    def save(self, record: PredictionRecord) -> None: ...


def request_key(provider: str, model: str, image: np.ndarray, fields: dict) -> str:
    """A stable name for one request: the same picture, model and fields give the same key."""
    digest = hashlib.sha256()
    digest.update(f"{provider}\n{model}\n{image.shape}\n".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    digest.update(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode())
    return digest.hexdigest()


class MemoryPredictionJournal:
    def __init__(self) -> None:
        self._records: dict[str, PredictionRecord] = {}
        self._lock = threading.Lock()

    def find(self, key: str) -> PredictionRecord | None:
        with self._lock:
            return self._records.get(key)

    def save(self, record: PredictionRecord) -> None:
        now = utc_now()
        with self._lock:
            earlier = self._records.get(record.key)
            created = earlier.created_at if earlier else now
            self._records[record.key] = replace(record, created_at=record.created_at or created, updated_at=now)


class SqlPredictionJournal:
    """The journal in the orders database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database):
        self.database = database

    def find(self, key: str) -> PredictionRecord | None:
        with self.database.session() as session:
            row = session.get(PredictionRow, key)
            if row is None:
                return None
            # the record is the row: every field under its column's name
            return PredictionRecord(**{f.name: getattr(row, f.name) for f in fields(PredictionRecord)})

    def save(self, record: PredictionRecord) -> None:
        """Insert the record, or update the one saved under its key before.

        Atomic on both dialects: the row is created with INSERT … ON CONFLICT DO NOTHING
        (a concurrent save of the same new key waits for the other's insert and then finds
        its row, where a SELECT … FOR UPDATE of a row that does not exist yet locks nothing
        on PostgreSQL), then read back under a row lock and updated.
        """
        now = utc_now()
        values = {
            "provider": record.provider,
            "prediction_id": record.prediction_id,
            "status": record.status.value,
            "predict_seconds": record.predict_seconds,
            "cost_usd": record.cost_usd,
        }
        dialect = postgresql if self.database.dialect == "postgresql" else sqlite
        insert = (
            dialect.insert(PredictionRow)
            .values(key=record.key, created_at=now, updated_at=now, **values)
            .on_conflict_do_nothing(index_elements=[PredictionRow.key])
        )
        with self.database.session() as session:
            if session.execute(insert).rowcount == 1:
                return  # a new key: the row is what was asked for
            row = session.scalars(select(PredictionRow).where(PredictionRow.key == record.key).with_for_update()).one()
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utc_now()  # under the lock: never before a racing saver's insert
