"""The engine service's Prometheus metrics, `GET /metrics` on its HTTP ingress: what the
gateway measures itself (each request's latency and answer, the requests it holds per
worker) and, read at each scrape, what the replicas reported to the stats actor (stats.py:
batch sizes, model loads, requests, busy replicas) and the replicas Serve runs.

Counters add up every replica the stats actor has heard of, those gone included, so they
only grow while the actor lives (a restarted actor is a counter reset, which Prometheus
handles). Gauges count live replicas only: one that has not reported for LIVE_SECONDS is gone.
"""

from __future__ import annotations

import time
from collections import Counter

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

# the deployments, as a worker kind in each series' `worker` label
WORKERS = {"StyleWorker": "style", "UpscaleWorker": "upscale"}
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# seconds: a CPU take is under a second, a GPU painting tens of seconds, a print upscale minutes
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600)
# a replica reports after each batch and at every Serve health check (every 10 s): three
# checks missed, it is gone
LIVE_SECONDS = 35
MEDIA_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The gateway's registry: its own latency and answers, and the replicas' reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "photogen_engine_request_seconds",
            "Seconds from a request's arrival at the gateway to its answer, per endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = CounterMetric(
            "photogen_engine_answers",
            "Requests answered by the gateway, per endpoint and outcome (ok, or the error's code)",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.in_flight: Counter[str] = Counter({worker: 0 for worker in WORKERS.values()})
        self._reports = _Reports(self)
        self.registry.register(self._reports)

    def render(self, replicas: dict[str, dict], deployments: dict[str, dict]) -> bytes:
        """The text exposition, with the stats actor's `replicas` and Serve's `deployments`
        (/v1/status's) as of now."""
        self._reports.replicas, self._reports.deployments = replicas, deployments
        return generate_latest(self.registry)


class _Reports:
    """A collector of what the replicas and Serve said, set just before each scrape."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.replicas: dict[str, dict] = {}
        self.deployments: dict[str, dict] = {}

    def describe(self) -> list:
        return []  # its series are known at scrape time only

    def collect(self):
        now = time.time()
        by_worker: dict[str, list[dict]] = {worker: [] for worker in WORKERS.values()}
        for replica in self.replicas.values():
            if replica.get("deployment") in WORKERS:
                by_worker[WORKERS[replica["deployment"]]].append(replica)

        waiting = GaugeMetricFamily(
            "photogen_engine_requests_waiting",
            "Requests at the gateway not being painted yet (queued for a replica or in one's batch queue), per worker",
            labels=["worker"],
        )
        in_flight = GaugeMetricFamily(
            "photogen_engine_requests_in_flight", "Requests the gateway holds, per worker", labels=["worker"]
        )
        running = GaugeMetricFamily("photogen_engine_replicas_running", "Replicas Serve runs, per worker", labels=["worker"])
        busy = GaugeMetricFamily(
            "photogen_engine_replicas_busy", "Live replicas painting a batch now, per worker", labels=["worker"]
        )
        batches = HistogramMetricFamily(
            "photogen_engine_batch_size", "Requests in each batch a replica ran, per worker", labels=["worker"]
        )
        counters = {
            key: CounterMetricFamily(f"photogen_engine_{name}", text, labels=["worker"])
            for key, name, text in (
                (
                    "model_loads",
                    "model_loads",
                    "Engine models replicas loaded (one each at start, and any model a tier asked for)",
                ),
                ("style_loads", "style_loads", "Styles made resident in replicas (multiplexed)"),
                ("requests", "replica_requests", "Requests the replicas ran"),
                ("failures", "replica_failures", "Requests the replicas ran that failed"),
                ("busy_seconds", "busy_seconds", "Seconds replicas spent painting"),
            )
        }
        for deployment, worker in WORKERS.items():
            reports = by_worker[worker]
            live = [r for r in reports if now - r.get("reported_at", 0) <= LIVE_SECONDS]
            painting = sum(r.get("processing", 0) for r in live)
            held = self.metrics.in_flight[worker]
            waiting.add_metric([worker], max(0, held - painting))
            in_flight.add_metric([worker], held)
            states = self.deployments.get(deployment, {}).get("replicas", {})
            running.add_metric([worker], states.get("RUNNING", 0))
            busy.add_metric([worker], sum(1 for r in live if r.get("processing", 0) > 0))
            sizes: Counter[int] = Counter()
            for report in reports:
                sizes.update({int(size): count for size, count in report.get("batch_sizes", {}).items()})
            cumulative = [(floatToGoString(bound), sum(c for s, c in sizes.items() if s <= bound)) for bound in BATCH_BUCKETS]
            cumulative.append(("+Inf", sum(sizes.values())))
            batches.add_metric([worker], cumulative, sum_value=sum(size * count for size, count in sizes.items()))
            for key, family in counters.items():
                family.add_metric([worker], sum(r.get(key, 0) for r in reports))
        yield from (waiting, in_flight, running, busy, batches, *counters.values())
