"""The cursor the order sensors keep over the orders database's state history.

A transaction can commit a little after the time it stamped on its event, so each tick
looks back `OVERLAP` before the newest event it handled and skips the event ids it
already saw in that window. What still slips through twice is harmless: run requests
carry a `run_key`, and Dagster never launches one key twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

OVERLAP = timedelta(seconds=120)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class EventCursor:
    newest: datetime = EPOCH
    seen: dict[int, datetime] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> EventCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(datetime.fromisoformat(data["newest"]), {int(k): datetime.fromisoformat(v) for k, v in data["seen"].items()})

    @property
    def since(self) -> datetime:
        return self.newest - OVERLAP

    def advance(self, events: list[tuple[int, str, datetime, object]]) -> EventCursor:
        seen = {**self.seen, **{event_id: at for event_id, _, at, _ in events}}
        newest = max([self.newest, *(at for _, _, at, _ in events)])
        return EventCursor(newest, {k: v for k, v in seen.items() if v >= newest - OVERLAP})

    def serialize(self) -> str:
        return json.dumps({"newest": self.newest.isoformat(), "seen": {str(k): v.isoformat() for k, v in self.seen.items()}})
