"""What the service has done, per replica: engine loads, style loads, requests, batch sizes.

Replicas report to one named actor as each batch starts and ends, and at every Serve health
check (fire and forget); the gateway reads it for `GET /v1/status` and `GET /metrics`
(metrics.py). A replica that is gone keeps its last report, marked by its age.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import ray

STATS_ACTOR = "photogen-engine-stats"


@dataclass
class ReplicaStats:
    deployment: str
    replica: str
    engine: str = ""
    node: str = ""  # the Ray node the replica runs on
    # the engine's models as this replica really loaded them (cache misses of the factories):
    # one at start; another only for a second upscale model a tier asked for
    model_loads: int = 0
    style_loads: int = 0  # multiplexed styles made resident (LoRAs, style vectors)
    style_unloads: int = 0
    resident_styles: int = 0
    requests: int = 0
    failures: int = 0
    processing: int = 0  # requests in the batch being painted now
    busy_seconds: float = 0.0
    batch_sizes: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict:
        data = asdict(self)
        data["batch_sizes"] = {str(size): count for size, count in sorted(self.batch_sizes.items())}
        data["reported_at"] = time.time()
        return data


@ray.remote(num_cpus=0)
class EngineStats:
    def __init__(self) -> None:
        self.replicas: dict[str, dict] = {}

    def report(self, snapshot: dict) -> None:
        self.replicas[f"{snapshot['deployment']}/{snapshot['replica']}"] = snapshot

    def all(self) -> dict[str, dict]:
        return self.replicas


def stats_actor():
    """The cluster's one stats actor (made by whichever replica asks first; it outlives replicas)."""
    return EngineStats.options(name=STATS_ACTOR, get_if_exists=True, lifetime="detached").remote()
