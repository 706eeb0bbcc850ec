"""Load on the warm engine service, and its replicas as Serve sees them: what the scale-out
test (tests/test_engine_service_scaleout.py) and its benchmark (benchmarks/engine_scaleout.py)
share. The service runs with the autoscaling settings the KubeRay manifest ships."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from photogen_pipelines.catalog import load_styles
from photogen_pipelines.engines.remote import EngineService, remote_stylizer

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kuberay" / "rayservice.yaml"


def shipped_args() -> dict:
    """The engine service's args as deploy/kuberay/rayservice.yaml ships them (its
    serveConfigV2 is a YAML document inside the YAML)."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    return dict(application["args"])


def cpu_args(**changes) -> dict:
    """The shipped args on this machine's CPUs: the embedded engine (no GPU, no models
    folder), half a CPU per replica, so that two replicas of each worker fit two 1-CPU
    nodes; the autoscaling settings as shipped, except `changes`."""
    args = shipped_args()
    args.update(engine="embedded", gpus_per_replica=0, cpus_per_replica=0.5)
    args.pop("models_dir", None)
    args.update(changes)
    return args


def replica_counts(deployment: str = "StyleWorker") -> dict[str, int]:
    """The deployment's replicas by state (RUNNING, STARTING, …), from Serve's controller
    (this process is the cluster's driver)."""
    from ray import serve

    for application in serve.status().applications.values():
        if deployment in application.deployments:
            states = application.deployments[deployment].replica_states
            return {str(getattr(state, "value", state)): count for state, count in states.items() if count}
    return {}


def replica_actors(deployment: str = "StyleWorker") -> list[str]:
    """The names of the deployment's live replica actors (Serve's namespace)."""
    import ray

    prefix = "SERVE_REPLICA::"
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefix) and f"#{deployment}#" in actor["name"]
    )


def kill_replica(name: str) -> None:
    """Kill a replica's actor as a crash would (no restart by Ray: Serve's controller
    notices and starts another)."""
    import ray

    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


@dataclass
class Load:
    """`clients` threads, each a run worker sending one proof request after another to
    the service, until stopped. Each client has its own EngineService (its own
    connections), which waits out refusals and 503s for `wait_seconds`, as a run's does."""

    url: str
    clients: int
    size: int = 96
    wait_seconds: float = 120.0
    answered: int = 0
    wrong: int = 0  # answers that are not the picture asked for
    errors: list[str] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (finished at, seconds)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.params = load_styles().get("sepia_oil").embedded.model_dump(exclude_none=True)
        rng = np.random.default_rng(7)
        self.picture = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)

    def set_clients(self, clients: int) -> None:
        """Start clients until `clients` run (a ramp only goes up; stop() ends them all)."""
        while len(self._threads) < clients:
            thread = threading.Thread(target=self._client, args=(len(self._threads),), daemon=True)
            self._threads.append(thread)
            thread.start()
        self.clients = max(self.clients, clients)

    def start(self) -> Load:
        self.set_clients(self.clients)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.wait_seconds + 60)

    def in_flight(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def _client(self, number: int) -> None:
        stylizer = remote_stylizer(EngineService(self.url, wait_seconds=self.wait_seconds, timeout_seconds=120))
        sent = 0
        while not self._stop.is_set():
            # each request its own strength: every answer is a picture of its own
            strength = 0.3 + 0.001 * ((number * 1000 + sent) % 600)
            started = time.perf_counter()
            try:
                picture = stylizer.stylize(self.picture, self.params, strength)
            except Exception as error:  # counted, and the test says which
                with self._lock:
                    self.errors.append(f"{type(error).__name__}: {error}")
                continue
            finally:
                sent += 1
            with self._lock:
                self.latencies.append((time.time(), time.perf_counter() - started))
                if picture.shape == self.picture.shape and picture.dtype == np.uint8:
                    self.answered += 1
                else:
                    self.wrong += 1
