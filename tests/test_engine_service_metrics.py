"""The warm engine service's Prometheus metrics (issue 28): `photogen engines serve` on the
session's small Ray cluster answers `GET /metrics` in Prometheus's text format, and its
series move with the requests it serves: the requests waiting and the replicas busy while a
burst paints, the batches it ran, the models its replicas loaded, every request's latency
and answer. The deploy's scrape job, dashboard and alerts read only series it exposes."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine_service.metrics import ServiceMetrics
from photogen_pipelines.catalog import load_styles
from photogen_pipelines.engines.remote import EngineService, RemoteUpscaler, remote_stylizer
from tests.servers import engine_service

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
ENGINE_SERIES = re.compile(r"\bphotogen_engine_[a-z_]+\b")


@pytest.fixture(scope="module")
def service_url(ray_env, tmp_path_factory):
    with engine_service(tmp_path_factory.mktemp("engine-metrics"), ray_env) as url:
        yield url


def _scrape(url: str) -> dict[tuple[str, frozenset], float]:
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.slow  # the engine service on the session's Ray cluster, and a burst of paintings
def test_the_service_metrics_move_with_the_requests_it_serves(service_url, face_images):
    before = _scrape(service_url)
    assert _value(before, "photogen_engine_replicas_running", worker="style") == 1
    assert _value(before, "photogen_engine_replicas_running", worker="upscale") == 1
    assert _value(before, "photogen_engine_model_loads_total", worker="style") >= 1
    assert _value(before, "photogen_engine_requests_waiting", worker="style") == 0

    portrait = np.ascontiguousarray(face_images["macron"][:384, :384])
    params = load_styles().get("fauve").embedded.model_dump(exclude_none=True)
    stylizer, upscaler = remote_stylizer(EngineService(service_url)), RemoteUpscaler(EngineService(service_url))
    seen = {"busy": 0.0, "waiting": 0.0}
    done = threading.Event()

    def watch() -> None:  # scrapes while the burst paints
        while not done.is_set():
            scraped = _scrape(service_url)
            seen["busy"] = max(seen["busy"], _value(scraped, "photogen_engine_replicas_busy", worker="style"))
            seen["waiting"] = max(seen["waiting"], _value(scraped, "photogen_engine_requests_waiting", worker="style"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:  # eight orders' variants at once, and two print upscales
            paintings = [pool.submit(stylizer.stylize, portrait, params, 0.3 + 0.05 * i) for i in range(8)]
            upscales = [pool.submit(upscaler.upscale, portrait[:64, :64], 4) for _ in range(2)]
            assert all(p.result().shape == portrait.shape for p in paintings)
            assert all(u.result().shape == (256, 256, 3) for u in upscales)
    finally:
        done.set()
        watcher.join()
    bad = requests.post(f"{service_url}/v1/upscale", data=b"not an npz", timeout=10)
    assert bad.status_code == 400
    after = _scrape(service_url)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert seen["busy"] >= 1 and seen["waiting"] >= 1, seen  # the burst queued while a batch painted
    assert moved("photogen_engine_replica_requests_total", worker="style") == 8
    assert moved("photogen_engine_replica_requests_total", worker="upscale") == 2
    assert moved("photogen_engine_batch_size_sum", worker="style") == 8
    assert 1 <= moved("photogen_engine_batch_size_count", worker="style") < 8  # batches held several requests
    assert moved("photogen_engine_batch_size_bucket", worker="style", le="1.0") < 8
    assert moved("photogen_engine_busy_seconds_total", worker="style") > 0
    assert moved("photogen_engine_request_seconds_count", endpoint="stylize") == 8
    assert moved("photogen_engine_request_seconds_sum", endpoint="stylize") > 0
    assert moved("photogen_engine_answers_total", endpoint="stylize", code="ok") == 8
    assert moved("photogen_engine_answers_total", endpoint="upscale", code="ok") == 2
    assert moved("photogen_engine_answers_total", endpoint="upscale", code="bad_engine_message") == 1
    assert moved("photogen_engine_model_loads_total", worker="style") == 0  # loaded once, at the replica's start
    assert _value(after, "photogen_engine_requests_waiting", worker="style") == 0
    assert _value(after, "photogen_engine_requests_in_flight", worker="upscale") == 0

    # what the deploy's dashboard and alert rules read of the engine service, it exposes
    exposed = {name for name, _ in after} | {re.sub(r"_(bucket|sum|count)$", "", name) for name, _ in after}
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    read = {name for expr in expressions for name in ENGINE_SERIES.findall(expr)}
    assert read and read <= exposed, sorted(read - exposed)


def test_the_metrics_of_reports_count_live_replicas_and_add_up_every_batch():
    """The exposition from given reports (a replica's report is what stats.py's actor holds)."""
    now = time.time()
    report = {"deployment": "StyleWorker", "model_loads": 1, "requests": 7, "failures": 1, "busy_seconds": 2.5}
    replicas = {
        "StyleWorker/a": {**report, "processing": 2, "reported_at": now, "batch_sizes": {"1": 1, "3": 2}},
        # gone a while ago, mid-batch: its counts stay, it is neither busy nor painting
        "StyleWorker/b": {**report, "processing": 4, "reported_at": now - 600, "batch_sizes": {"4": 1}},
    }
    metrics = ServiceMetrics()
    metrics.in_flight["style"] = 5
    scraped = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(
            metrics.render(replicas, {"StyleWorker": {"replicas": {"RUNNING": 1}}}).decode()
        )
        for s in family.samples
    }
    assert _value(scraped, "photogen_engine_replicas_busy", worker="style") == 1
    assert _value(scraped, "photogen_engine_requests_waiting", worker="style") == 3  # 5 held, 2 painting
    assert _value(scraped, "photogen_engine_replicas_running", worker="style") == 1
    assert _value(scraped, "photogen_engine_replicas_running", worker="upscale") == 0
    assert _value(scraped, "photogen_engine_batch_size_bucket", worker="style", le="2.0") == 1
    assert _value(scraped, "photogen_engine_batch_size_bucket", worker="style", le="4.0") == 4
    assert _value(scraped, "photogen_engine_batch_size_sum", worker="style") == 1 + 6 + 4
    assert _value(scraped, "photogen_engine_model_loads_total", worker="style") == 2
    assert _value(scraped, "photogen_engine_replica_failures_total", worker="style") == 2
