"""An order end to end through `photogen serve` on each serverless engine: Replicate paints
the proofs, or a RunPod endpoint runs our own engine; the identity gate is ours and really
runs on what comes back, and the order's cost reaches the ledger's artifacts.

The providers are the loopback fakes of tests/fake_replicate.py and tests/fake_runpod.py
(their APIs cannot be reached from here); the Replicate fake returns the customer's picture
re-tinted (a real face for the gate), the RunPod fake runs the real worker handler."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from photogen_pipelines.generation.stages import variant_seed
from photogen_pipelines.orders.states import order_seed
from photogen_pipelines.storage.artifacts import CandidatesInfo, OrderKeys, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from tests.fake_replicate import TOKEN, FakeReplicate
from tests.test_serve import _wait_until, new_api_key, serving

pytestmark = pytest.mark.slow  # photogen serve, an order end to end on each serverless engine


def _order_until_ready(api: str, home: Path, process, log: Path, selfie: bytes) -> dict:
    auth = new_api_key(home)
    upload = requests.post(
        f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", selfie)}, timeout=30
    )
    assert upload.status_code == 201, upload.text
    body = {"upload_id": upload.json()["id"], "style_id": "sepia_oil", "product_id": "poster_a3", "variants": 2}
    placed = requests.post(
        f"{api}/v1/orders", headers={**auth, "Idempotency-Key": "serverless-1"}, json={**body, "approval": "auto"}, timeout=30
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]

    def ready():
        time.sleep(2)
        current = requests.get(f"{api}/v1/orders/{order_id}", headers=auth, timeout=10).json()
        assert current["state"] not in ("rejected", "failed"), current
        return current if current["state"] == "ready" else None

    return _wait_until(ready, 480, "the order to be ready", process, log)


def test_an_order_is_painted_by_replicate_gated_by_us_and_costed(tmp_path, astronaut_png):
    with FakeReplicate(predict_time=3.0) as replicate:
        env = {
            "PHOTOGEN_ENGINE": "replicate",
            "PHOTOGEN_REPLICATE_API_TOKEN": TOKEN,
            "PHOTOGEN_REPLICATE_API_BASE": replicate.url,
            "PHOTOGEN_ENGINE_PRICE_PER_SECOND": "0.001",
        }
        with serving(tmp_path, env) as (process, api, home, log):
            order = _order_until_ready(api, home, process, log, astronaut_png)
        # the catalog's default model (FLUX.2 [klein], run by name) paints one prediction per
        # variant, none paid twice; the catalog's style previews are painted on the shop's engine
        # too, with their own seeds
        seeds = {variant_seed(order_seed(order["id"]), index) for index in range(2)}
        for_the_order = [c for c in replicate.creates() if c.body["input"].get("seed") in seeds]
        assert len(for_the_order) == 2 and {c.body["input"]["seed"] for c in for_the_order} == seeds
        assert all(c.path == "/v1/models/black-forest-labs/flux-2-klein-4b/predictions" for c in for_the_order)
        assert for_the_order[0].body["input"]["prompt"].startswith("portrait of a person as a classical oil painting")

    store, keys = LocalArtifactStore(home / "artifacts"), OrderKeys(order["id"])
    validation = keys.load(store, Validation)
    assert validation.encoder.startswith("SFace") or "sface" in validation.encoder.lower()  # our gate, not the model's
    assert validation.best_similarity() >= validation.threshold
    candidates = keys.load(store, CandidatesInfo)
    assert candidates.engine == "replicate-http-v1"
    assert candidates.usage.backend == "replicate" and candidates.usage.predictions == 2
    # priced per picture (the catalog's price_per_image), not by the second
    assert candidates.usage.predict_seconds == 6.0 and candidates.usage.cost_usd == pytest.approx(2 * 0.002)


def _runpod_worker(tmp_path: Path, monkeypatch):
    """deploy/runpod/handler.py as RunPod would start it, on tiny random-weight models."""
    import importlib.util

    from photogen_pipelines.devtools.tiny_models import write_tiny_models

    models = write_tiny_models(tmp_path / "models")
    monkeypatch.setenv("PHOTOGEN_MODELS_DIR", str(models))
    monkeypatch.setenv("PHOTOGEN_DEVICE", "cpu")
    # noise does not compress: the print pass's picture goes back inline, not through a bucket
    monkeypatch.setenv("PHOTOGEN_RUNPOD_MAX_OUTPUT_MB", "200")
    handler = Path(__file__).resolve().parents[1] / "deploy" / "runpod" / "handler.py"
    spec = importlib.util.spec_from_file_location("photogen_runpod_worker_serve", handler)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_runpod_shop_paints_on_its_worker_and_prints_there_and_the_gate_stays_ours(tmp_path, monkeypatch, astronaut_png):
    """Two orders on a shop whose engine is a RunPod endpoint running our worker (tiny
    random weights: their pictures are noise). The standard tier is painted there: no face
    survives, and our gate rejects it. The fast tier is painted by the embedded engine in the
    run, and its print is upscaled on the worker."""
    from tests.fake_runpod import FakeRunPod

    worker = _runpod_worker(tmp_path, monkeypatch)
    products = tmp_path / "products.yaml"
    products.write_text(_products_with_a_4x6_print())
    with FakeRunPod(worker.handler) as runpod:
        env = {
            "PHOTOGEN_ENGINE": "runpod",
            "PHOTOGEN_RUNPOD_API_KEY": runpod.api_key,
            "PHOTOGEN_RUNPOD_ENDPOINT_ID": runpod.endpoint_id,
            "PHOTOGEN_RUNPOD_API_BASE": runpod.api_base,
            "PHOTOGEN_ENGINE_PRICE_PER_SECOND": "0.0005",
            "PHOTOGEN_PRODUCTS_PATH": str(products),
        }
        with serving(tmp_path, env) as (process, api, home, log):
            auth = new_api_key(home)
            upload = requests.post(
                f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
            )
            ids = {}
            for tier in ("standard", "fast"):
                body = {"upload_id": upload.json()["id"], "style_id": "sepia_oil", "product_id": "print_4x6", "tier": tier}
                body.update(variants=1, approval="auto")
                placed = requests.post(f"{api}/v1/orders", headers={**auth, "Idempotency-Key": tier}, json=body, timeout=30)
                assert placed.status_code == 201, placed.text
                ids[tier] = placed.json()["id"]

            def settled(order_id: str, state: str):
                time.sleep(2)
                current = requests.get(f"{api}/v1/orders/{order_id}", headers=auth, timeout=10).json()
                return current if current["state"] == state else None

            rejected = _wait_until(lambda: settled(ids["standard"], "rejected"), 480, "the RunPod-painted order", process, log)
            ready = _wait_until(lambda: settled(ids["fast"], "ready"), 480, "the fast order", process, log)
        tasks = [job.input["task"] for job in runpod.jobs.values()]

    assert "no face found in the proof" in rejected["reason"]  # our gate judged the worker's pictures
    # the order's three rounds were painted there (its usage, below), the catalog's previews too,
    # and the fast order's print pass ran there
    assert tasks.count("stylize") >= 3 and tasks.count("upscale") == 1
    store = LocalArtifactStore(home / "artifacts")
    painted = OrderKeys(ids["standard"]).load(store, CandidatesInfo)
    assert painted.usage.backend == "runpod" and painted.usage.predictions == 1 and painted.usage.cost_usd > 0
    assert OrderKeys(ids["standard"]).load(store, Validation).usage.predictions == 2  # the two regeneration rounds
    fast = OrderKeys(ids["fast"]).load(store, CandidatesInfo)
    assert fast.usage.backend == "embedded" and fast.tier == "fast"
    assert ready["print_file_ready"]


def _products_with_a_4x6_print() -> str:
    """The packaged catalog with a 4 x 6 in print: a 1024-px proof needs one x2 pass for it."""
    import yaml

    from photogen_pipelines.catalog import load_products

    catalog = load_products().model_dump()
    catalog["products"].append(
        {"id": "print_4x6", "name": "4 x 6", "width_in": 4, "height_in": 6, "price_cents": 1500, "tier_prices": {"fast": 900}}
    )
    return yaml.safe_dump(catalog)
