"""Scale: 10,000 settled orders and 10,000 `orders` partitions, both on PostgreSQL (issue 12).

    .venv/bin/python benchmarks/scale.py [--orders 10000] [--keep] [--json]

Makes two throwaway databases on the PostgreSQL at 127.0.0.1:5432 (PHOTOGEN_TEST_POSTGRES_URL
names another server) and a temporary home with a local artifact store, and seeds them with a
fixed random seed:

- the orders database: settled orders spread over the last 60 days, as the storefront API
  and the runs leave them: an upload per order, the order row, its state history
  (`order_events`, moved through `Order.transition`, so every step is legal) and, for
  orders paid through Stripe, the webhook's `payment_events`. The shop ran with payments
  off for the first 20 days, then with Stripe. Outcomes: ready, rejected (at the selfie or
  by the identity gate), cancelled by the customer at proofs_ready, failed at print_master;
  with Stripe, every order not delivered is refunded. Rows are written in bulk (SQLAlchemy Core on
  the project's tables) with the same values the order book writes (`order_values`,
  `event_values`).
- the artifact store: the files each order's stages left (upload, selfie, candidates,
  proofs and the identity gate's validation.json, print master and print file with their
  JSON); images are one small valid PNG, the JSON documents are the project's models.
- the Dagster instance (dagster-postgres): each order's proof and print runs as the order
  sensors request them (`add_historical_run`, in their final status; a RUN_FAILURE event
  for each failed run, no other run events), every order an `orders` partition, and a
  materialization of each asset its runs completed, at the time it completed, written
  through Dagster's batched event writes (`report_dagster_event` with batch metadata).

Then it measures: each sensor's tick (built as the daemon builds it, evaluated directly),
`GET /v1/orders/{id}` through uvicorn, `photogen report`, the ledger and metrics assets,
a retention sweep, and the GraphQL queries behind the Dagster UI's asset and partitions
pages on a real `dagster-webserver`. Prints a markdown table and the machine; record it in
BENCHMARKS.md. A measure with a target (a sensor tick's p95 under 2 s, the API's p95 under
50 ms, ...) that misses it is marked **no** in the table and named on stderr, and the
benchmark exits with status 1: the targets are judged here, not in the tests. Servers are
stopped by their pid; the databases and the home are removed unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import requests  # noqa: E402
from dagster._core.definitions.run_status_sensor_definition import RunStatusSensorCursor  # noqa: E402
from dagster._core.events import (  # noqa: E402
    DagsterEvent,
    DagsterEventBatchMetadata,
    DagsterEventType,
    JobFailureData,
    RunFailureReason,
    StepMaterializationData,
)
from dagster._core.storage.tags import RUN_FAILURE_REASON_TAG  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from benchmarks.demo_order import machine  # noqa: E402
from benchmarks.postgres import POSTGRES_URL, create_database, drop_database  # noqa: E402
from photogen_pipelines.access.api_keys import create_api_key  # noqa: E402
from photogen_pipelines.catalog import load_products, load_styles  # noqa: E402
from photogen_pipelines.db.database import Database  # noqa: E402
from photogen_pipelines.db.tables import OrderEventRow, OrderRow, PaymentEventRow, UploadRow  # noqa: E402
from photogen_pipelines.generation.stages import variant_seed  # noqa: E402
from photogen_pipelines.imaging.images import EXTENSIONS  # noqa: E402
from photogen_pipelines.orders import lifecycle  # noqa: E402
from photogen_pipelines.orders.book import event_values, order_values  # noqa: E402
from photogen_pipelines.orders.states import (  # noqa: E402
    OWES_REFUND,
    Order,
    OrderEvent,
    OrderState,
    order_seed,
)
from photogen_pipelines.orders.uploads import Upload  # noqa: E402
from photogen_pipelines.payments.stripe_payments import money  # noqa: E402
from photogen_pipelines.storage.artifacts import (  # noqa: E402
    CandidateParams,
    CandidatesInfo,
    EngineVersions,
    FaceRecord,
    Manifest,
    MasterInfo,
    OrderKeys,
    ProofScore,
    SelfieInfo,
    Stage,
    Validation,
)
from photogen_pipelines.storage.stores import LocalArtifactStore  # noqa: E402
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest  # noqa: E402

S = OrderState
SEED = 20261129
WINDOW_DAYS = 60
PAYMENTS_OFF_DAYS = 20  # the shop's first days ran with payments off, then Stripe
# (outcome, weight): what happened to the orders, roughly as a shop sees it
OUTCOMES = [("ready", 0.82), ("rejected_selfie", 0.03), ("rejected_gate", 0.06), ("cancelled", 0.05), ("failed", 0.04)]
PRODUCTS = [("poster_a3", 0.35), ("poster_12x18", 0.25), ("poster_18x24", 0.15), ("poster_a2", 0.15), ("canvas_24x36", 0.10)]
# the embedded engine's figures (BENCHMARKS.md), seconds
STAGE_SECONDS = {
    Stage.SELFIE: 0.55,
    Stage.STYLED_CANDIDATES: 2.3,
    Stage.VALIDATED_PROOFS: 0.85,
    Stage.PRINT_MASTER: 8.0,
    Stage.PRINT_FILE: 1.2,
}
ENGINE = "magenta-arbitrary-int8/onnxruntime-1.31.1"
ENCODER = "sface-int8/opencv-4.12"
UPSCALER = "realesr-animevideov3-x4/ncnn"
TARGETS = {"sensor": 2.0, "api_p95_ms": 50.0, "report": 10.0, "graphql": 3.0}

log = logging.getLogger("benchmarks.scale")


# -- PostgreSQL: throwaway databases ----------------------------------------------------


def dagster_yaml(pg_url: str) -> str:
    """The project's dagster.yaml (run queue, run retries, monitoring) on PostgreSQL storage."""
    parts = urlsplit(pg_url)
    storage = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": parts.hostname,
                    "port": parts.port or 5432,
                    "username": parts.username or "postgres",
                    "password": parts.password or "",
                    "db_name": parts.path.lstrip("/"),
                    "scheme": "postgresql+psycopg2",  # dagster-postgres with SQLAlchemy 2 (DESIGN §5)
                }
            }
        }
    }
    import yaml

    return (ROOT / "dagster.yaml").read_text() + "\n" + yaml.safe_dump(storage, sort_keys=False)


# -- the orders: one story per order ---------------------------------------------------


@dataclass
class Seeded:
    """One order as the application leaves it: its rows, its files, its materializations."""

    order: Order
    outcome: str
    upload: dict
    idempotency_key: str
    request_hash: str
    payment_events: list[dict] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)  # (key, kind): kind picks the bytes
    documents: list[tuple[str, bytes]] = field(default_factory=list)
    # (asset, timestamp, metadata, run id)
    materializations: list[tuple[str, float, dict, str]] = field(default_factory=list)
    runs: list[SeededRun] = field(default_factory=list)


@dataclass
class SeededRun:
    """A proof or print run of the order, as the order sensors request it."""

    run_id: str
    job: str
    created: datetime
    tags: dict[str, str]
    failed_at: float | None = None  # its RUN_FAILURE event, for a run that failed


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in weighted], [w for _, w in weighted])[0]


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _move(order: Order, target: OrderState, at: datetime, reason: str | None = None) -> None:
    """`Order.transition` (illegal moves raise), stamped at `at` instead of now."""
    assert order.transition(target, reason), f"{order.id}: already {target}"
    order.events[-1].at = at
    order.updated_at = at


class Story:
    """Builds one order's life: a clock, the order, its stages' records."""

    def __init__(self, rng: random.Random, seeded: Seeded, keys: OrderKeys, style_threshold: float, max_rounds: int):
        self.rng, self.seeded, self.keys = rng, seeded, keys
        self.order = seeded.order
        self.threshold, self.max_rounds = style_threshold, max_rounds
        self.t = self.order.created_at

    def wait(self, low: float, high: float) -> datetime:
        self.t += timedelta(seconds=self.rng.uniform(low, high))
        return self.t

    def stage(self, stage: Stage, scale: float = 1.0) -> float:
        seconds = round(STAGE_SECONDS[stage] * scale * self.rng.uniform(0.85, 1.3), 3)
        self.order.stage = stage.value
        self.wait(seconds, seconds)
        self.order.stage_seconds = {**self.order.stage_seconds, stage.value: seconds}
        self.order.updated_at = self.t
        return seconds

    def start_run(self, job: str, sensor: str, kind: str, priority: int) -> SeededRun:
        order_id = self.order.id
        tags = {
            "dagster/partition": order_id,
            "dagster/priority": str(priority),
            "photogen/order": order_id,
            "dagster/sensor_name": sensor,
            "dagster/run_key": f"{kind}:{order_id}",
        }
        run = SeededRun(str(uuid.UUID(int=self.rng.getrandbits(128))), job, self.t - timedelta(seconds=1.5), tags)
        self.seeded.runs.append(run)
        return run

    def materialize(self, asset: str, metadata: dict) -> None:
        run_id = self.seeded.runs[-1].run_id
        self.seeded.materializations.append((asset, self.t.timestamp() + 0.2, metadata, run_id))

    def document(self, document) -> None:
        key = self.keys.key_of(type(document))
        self.seeded.documents.append((key, json.dumps(document.model_dump(mode="json"), indent=2).encode()))

    def image(self, key: str) -> None:
        self.seeded.files.append((key, "png"))


def _scores(rng: random.Random, variants: int, threshold: float, max_rounds: int, rejected: bool, strength: float):
    """The identity gate's attempts: failing variants are retried at lower strength."""
    scores, open_variants, rounds = [], list(range(variants)), 0
    for round_no in range(max_rounds):
        rounds = round_no + 1
        still = []
        for variant in open_variants:
            similarity = round(rng.gauss(0.55 + 0.08 * round_no, 0.1), 4)
            if rejected:
                similarity = round(min(similarity, threshold - rng.uniform(0.02, 0.2)), 4)
            passed = similarity >= threshold
            reason = None if passed else f"identity similarity {similarity:.2f} is below the style's threshold {threshold:.2f}"
            scores.append(
                ProofScore(
                    variant=variant,
                    round=round_no,
                    strength=round(strength * 0.6**round_no, 3),
                    similarity=similarity,
                    faces=1,
                    passed=passed,
                    reason=reason,
                )
            )
            if not passed:
                still.append(variant)
        open_variants = still
        if not open_variants:
            break
    return scores, rounds


def make_order(rng: random.Random, now: datetime, api_key_id: str, styles, products) -> Seeded:
    start = now - timedelta(days=WINDOW_DAYS)
    created = start + timedelta(seconds=rng.uniform(0, WINDOW_DAYS * 86400 - 4 * 3600))
    style = styles.get(rng.choice(styles.ids()))
    product = products.get(_pick(rng, PRODUCTS))
    outcome = _pick(rng, OUTCOMES)
    payments = "off" if created < start + timedelta(days=PAYMENTS_OFF_DAYS) else "stripe"
    variants = rng.choice([2, 4, 4, 4])
    approval = "customer" if outcome == "cancelled" else rng.choice(["customer", "auto"])
    upload_id = "upl_" + _hex(rng, 16)
    upload_at = created - timedelta(seconds=rng.uniform(5, 120))
    upload = Upload(
        upload_id, f"uploads/{upload_id}.png", 1024, 1365, "jpeg", rng.randint(200_000, 4_000_000), 0.9, api_key_id, upload_at
    )
    order = Order(
        id="ord_" + _hex(rng, 16),
        style_id=style.id,
        product_id=product.id,
        variants=variants,
        approval=approval,
        upload_key=upload.storage_key,
        upload_id=upload.id,
        payments=payments,
        amount_cents=product.price_cents,
        api_key_id=api_key_id,
        created_at=created,
        updated_at=created,
    )
    order.events.append(OrderEvent(at=created, from_state=None, to_state=S.AWAITING_PAYMENT, reason="order created"))
    key = str(uuid.UUID(int=rng.getrandbits(128)))
    request = PlacementRequest(OrderRequest(style.id, product.id, variants, approval), upload, api_key_id, key)
    upload_row = {
        "id": upload.id,
        "storage_key": upload.storage_key,
        "sha256": _hex(rng, 64),
        "width": upload.width,
        "height": upload.height,
        "source_format": upload.source_format,
        "source_bytes": upload.source_bytes,
        "face_score": upload.face_score,
        "api_key_id": api_key_id,
        "created_at": upload_at,
    }
    seeded = Seeded(order, outcome, upload_row, key, request.digest())
    seeded.files.append((upload.storage_key, "png"))
    story = Story(rng, seeded, OrderKeys(order.id), style.identity_threshold, 3)

    # paid: at once with payments off, by the Stripe webhook otherwise
    if payments == "off":
        _move(order, S.PAID, story.wait(0.01, 0.05), lifecycle.PAYMENTS_OFF_REASON)
    else:
        intent = "pi_" + _hex(rng, 24)
        order.payment_intent_id, order.paid_cents = intent, order.amount_cents
        paid_at = story.wait(20, 600)
        _move(order, S.PAID, paid_at, f"payment {intent} succeeded")
        seeded.payment_events.append(_payment_event(rng, "payment_intent.succeeded", order, paid_at, "order paid"))

    # the proof run: the paid_orders sensor's tick and the run's launch, then the stages
    story.wait(6, 15)
    proof_run = story.start_run("proof_job", "paid_orders", "proofs", 20)
    _move(order, S.GENERATING, story.t)
    keys, seed = story.keys, order_seed(order.id)
    if outcome == "rejected_selfie":
        order.stage = Stage.SELFIE.value
        _move(order, S.REJECTED, story.wait(0.3, 0.8), "no_face: no face found in the framed portrait")
        proof_run.failed_at = story.t.timestamp() + 0.3  # the selfie step raised dg.Failure: the run failed
        return _settle(rng, story)
    selfie_s = story.stage(Stage.SELFIE)
    for image_key in (keys.selfie, keys.portrait):
        story.image(image_key)
    face = FaceRecord(box=[300.0, 280.0, 380.0, 460.0], score=0.93)
    story.document(SelfieInfo(face=face, portrait_face=face, embedding=[0.0] * 128, encoder=ENCODER))
    story.materialize(
        "selfie",
        {"face_score": 0.93, "face_px": 380, "portrait": dg.MetadataValue.path(keys.portrait), "seconds": selfie_s},
    )
    strength = style.embedded.strength
    candidates = [CandidateParams(variant=v, round=0, seed=variant_seed(seed, v), strength=strength) for v in range(variants)]
    styled_s = story.stage(Stage.STYLED_CANDIDATES, variants / 4)
    for candidate in candidates:
        story.image(keys.candidate(0, candidate.variant))
    story.document(CandidatesInfo(style=style.id, engine=ENGINE, candidates=candidates))
    story.materialize("styled_candidates", {"variants": variants, "style": style.id, "seconds": styled_s})

    rejected = outcome == "rejected_gate"
    scores, rounds = _scores(rng, variants, style.identity_threshold, story.max_rounds, rejected, strength)
    proofs_s = story.stage(Stage.VALIDATED_PROOFS, rounds)
    final = {s.variant: s for s in scores}
    passed = sorted(v for v, s in final.items() if s.passed)
    best = max(passed, key=lambda v: final[v].similarity) if passed else None
    for variant in passed:
        story.image(keys.proof(variant))
    validation = Validation(
        threshold=style.identity_threshold,
        encoder=ENCODER,
        rounds=rounds,
        proofs={v: keys.proof(v) for v in passed},
        best_variant=best,
        scores=scores,
        rejected=rejected,
    )
    story.document(validation)
    story.materialize(
        "validated_proofs",
        {
            "best_similarity": max(s.similarity for s in final.values()),
            "threshold": style.identity_threshold,
            "proofs_passed": len(passed),
            "attempts": len(scores),
            "rounds": rounds,
            "rejected": rejected,
            "seconds": proofs_s,
        },
    )
    if rejected:
        reasons = sorted({s.reason for s in final.values() if s.reason})
        reason = f"no proof kept the customer's likeness after {rounds} rounds: " + "; ".join(reasons)
        _move(order, S.REJECTED, story.t, reason)
        return _settle(rng, story)
    _move(order, S.PROOFS_READY, story.t)

    # the customer chooses (minutes to a day), or the best proof is approved at once
    if approval == "auto":
        order.approved_proof = best
        _move(order, S.APPROVED, story.t, f"auto-approved: proof {best} has the best identity score")
    else:
        room = max(60.0, (now - timedelta(minutes=30) - story.t).total_seconds())
        story.wait(min(60.0, room), min(rng.lognormvariate(7.5, 1.3), room))
        if outcome == "cancelled":
            _move(order, S.CANCELLED, story.t, "cancelled by request")
            return _settle(rng, story)
        order.approved_proof = rng.choice(passed)
        _move(order, S.APPROVED, story.t, f"proof {order.approved_proof} approved")

    # the print run
    story.wait(5, 12)
    print_run = story.start_run("print_job", "approved_orders", "print", 10)
    _move(order, S.RENDERING, story.t)
    pixels = product.pixel_size
    if outcome == "failed":
        order.stage = Stage.PRINT_MASTER.value
        story.wait(30, 90)  # three attempts (run retries)
        print_run.failed_at = story.t.timestamp() - 0.5
        reason = f"print_job failed after 1 attempt(s): run {print_run.run_id} at print_master"
        _move(order, S.FAILED, story.t, reason)  # by the order_run_failures sensor
        return _settle(rng, story)
    passes = [4] if max(pixels) <= 5500 else [4, 2]
    master_s = story.stage(Stage.PRINT_MASTER, len(passes))
    dpi = round(rng.uniform(175, 260), 1)
    story.image(keys.print_master)
    master = MasterInfo(
        passes=passes,
        native_size=(688 * 4, 1024 * 4),
        pixel_size=pixels,
        effective_dpi=dpi,
        proof=order.approved_proof,
        upscaler=UPSCALER,
    )
    story.document(master)
    story.materialize("print_master", {"effective_dpi": dpi, "min_dpi": 150, "upscale_passes": passes, "seconds": master_s})
    print_s = story.stage(Stage.PRINT_FILE)
    print_key = keys.print_file(EXTENSIONS[product.format])
    story.image(print_key)
    engines = EngineVersions(faces=ENCODER, style=ENGINE, upscale=UPSCALER, upscale_passes=passes)
    approved = validation.approved_score(order.approved_proof)
    manifest = Manifest(
        order_id=order.id,
        style_id=style.id,
        product_id=product.id,
        file=print_key,
        format=product.format,
        bytes=rng.randint(8_000_000, 60_000_000),
        pixel_size=pixels,
        dpi=300,
        effective_dpi=dpi,
        bleed_px=47 if product.bleed_mm else 0,
        trim_inches=(product.width_in or product.width_mm / 25.4, product.height_in or product.height_mm / 25.4),
        color_profile="sRGB IEC61966-2.1",
        approved_proof=order.approved_proof,
        identity_score=approved.similarity,
        identity_threshold=style.identity_threshold,
        seeds=[c.seed for c in candidates],
        engines=engines,
    )
    story.document(manifest)
    story.materialize("print_file", {"path": dg.MetadataValue.path(print_key), "effective_dpi": dpi, "seconds": print_s})
    _move(order, S.READY, story.wait(0.2, 0.6), lifecycle.DELIVERED_REASON)
    story.materialize("delivery", {"state": "ready"})
    return seeded


def _payment_event(rng: random.Random, kind: str, order: Order, at: datetime, outcome: str) -> dict:
    return {
        "id": "evt_" + _hex(rng, 24),
        "type": kind,
        "order_id": order.id,
        "payment_intent_id": order.payment_intent_id,
        "source": "webhook",
        "outcome": outcome,
        "stripe_created": at.replace(microsecond=0) - timedelta(seconds=1),
        "received_at": at,
    }


def _settle(rng: random.Random, story: Story) -> Seeded:
    """An order that will not be delivered: with Stripe, the sensor refunds it and the
    webhook's charge.refunded follows (already recorded by then)."""
    order = story.order
    if order.payments == "stripe" and order.state in OWES_REFUND:
        refund_id = "re_" + _hex(rng, 24)
        order.refund_id, order.refunded_cents = refund_id, order.paid_cents
        at = story.wait(2, 70)
        _move(order, S.REFUNDED, at, f"refund {refund_id} of {money(order.paid_cents, order.currency)}")
        event_at = story.t + timedelta(seconds=rng.uniform(1, 5))
        story.seeded.payment_events.append(_payment_event(rng, "charge.refunded", order, event_at, "refund already recorded"))
    return story.seeded


def make_orders(count: int, now: datetime, api_key_id: str, seed: int = SEED) -> list[Seeded]:
    rng = random.Random(seed)
    styles, products = load_styles(None), load_products(None)
    return [make_order(rng, now, api_key_id, styles, products) for _ in range(count)]


def _tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 80)).save(buffer, "PNG")
    return buffer.getvalue()


def write_orders(database: Database, seeded: list[Seeded]) -> None:
    """The rows in bulk: the order book's own column values, events in time order (their
    ids grow with time, as when the application writes them one by one)."""
    orders = [{**order_values(s.order), "idempotency_key": s.idempotency_key, "request_hash": s.request_hash} for s in seeded]
    events = sorted((event_values(s.order.id, event) for s in seeded for event in s.order.events), key=lambda e: e["at"])
    payments = [event for s in seeded for event in s.payment_events]
    with database.engine.begin() as connection:
        for table, rows in ((UploadRow, [s.upload for s in seeded]), (OrderRow, orders), (OrderEventRow, events)):
            for chunk in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[chunk : chunk + 5000])
        if payments:
            connection.execute(insert(PaymentEventRow), payments)
        connection.exec_driver_sql("ANALYZE")


def write_files(store: LocalArtifactStore, seeded: list[Seeded]) -> int:
    png, count = _tiny_png(), 0
    for s in seeded:
        for key, _ in s.files:
            store.put_bytes(key, png)
        for key, data in s.documents:
            store.put_bytes(key, data)
        count += len(s.files) + len(s.documents)
    return count


def write_runs(instance: dg.DagsterInstance, seeded: list[Seeded], threads: int = 8) -> int:
    """Each order's proof and print runs (`add_historical_run`: the run at its creation
    time, in its final status), and a RUN_FAILURE event for each run that failed.
    dagster-postgres opens a connection per call (~10 ms): a few threads share the wait."""
    runs = [run for s in seeded for run in s.runs]

    def add(run: SeededRun) -> None:
        status = dg.DagsterRunStatus.FAILURE if run.failed_at else dg.DagsterRunStatus.SUCCESS
        tags = {**run.tags, RUN_FAILURE_REASON_TAG: RunFailureReason.STEP_FAILURE.value} if run.failed_at else run.tags
        instance.run_storage.add_historical_run(
            dg.DagsterRun(job_name=run.job, run_id=run.run_id, status=status, tags=tags), run.created
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(add, runs))
    for run in sorted((r for r in runs if r.failed_at), key=lambda r: r.failed_at):
        failure = JobFailureData(error=None, failure_reason=RunFailureReason.STEP_FAILURE)
        event = DagsterEvent(
            event_type_value=DagsterEventType.RUN_FAILURE.value,
            job_name=run.job,
            message=f'Execution of run for "{run.job}" failed. Steps failed: 1.',
            event_specific_data=failure,
        )
        instance.report_dagster_event(event, run_id=run.run_id, timestamp=run.failed_at)
    return len(runs)


def write_dagster(instance: dg.DagsterInstance, seeded: list[Seeded], batch: int = 1000) -> int:
    """Every order a partition of `orders`; each asset's materializations through Dagster's
    batched event writes, one asset key per batch, oldest first (dagster-postgres writes a
    batch in one INSERT and points the asset's latest materialization at its last event)."""
    instance.add_dynamic_partitions("orders", [s.order.id for s in seeded])
    jobs = {run.run_id: run.job for s in seeded for run in s.runs}
    by_asset: dict[str, list[tuple[float, str, dict]]] = {}
    for s in seeded:
        for asset, timestamp, metadata, run_id in s.materializations:
            by_asset.setdefault(asset, []).append((timestamp, s.order.id, metadata, run_id))
    previous = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(batch)
    written = 0
    try:
        for asset, events in by_asset.items():
            events.sort()
            batch_id = f"scale-seed-{asset}"
            for index, (timestamp, partition, metadata, run_id) in enumerate(events):
                materialization = dg.AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
                instance.report_dagster_event(
                    DagsterEvent(
                        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                        event_specific_data=StepMaterializationData(materialization),
                        job_name=jobs[run_id],
                    ),
                    run_id=run_id,
                    timestamp=timestamp,
                    batch_metadata=DagsterEventBatchMetadata(batch_id, index == len(events) - 1),
                )
                written += 1
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        else:
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = previous
    return written


# -- measuring ---------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def add(self, measure: str, samples: list[float], unit: str = "s", target: float | None = None, note: str = "") -> dict:
        value = statistics.median(samples)
        row = {
            "measure": measure,
            "n": len(samples),
            "median": round(value, 4),
            "p95": round(p95(samples), 4),
            "max": round(max(samples), 4),
            "unit": unit,
            "target": target,
            "met": None if target is None else p95(samples) < target if len(samples) > 1 else value < target,
            "note": note,
        }
        self.rows.append(row)
        print(f"  {measure}: median {row['median']} {unit}, p95 {row['p95']} (n={len(samples)}) {note}", flush=True)
        return row


@dataclass
class Setup:
    home: Path
    orders_url: str
    dagster_url: str
    dagster_home: Path
    artifacts: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
        return {
            **env,
            "PHOTOGEN_HOME": str(self.home),
            "PHOTOGEN_DATABASE_URL": self.orders_url,
            "PHOTOGEN_ARTIFACTS_ROOT": str(self.artifacts),
            "DAGSTER_HOME": str(self.dagster_home),
            **extra,
        }


def sensor_tick(sensor, instance, resources, cursor: str | None, repository_def=None):
    """One tick as the daemon evaluates it: a context with the instance, the resources and
    the stored cursor, then the sensor's evaluation (run requests, cursor, skip reason)."""
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor, repository_def=repository_def) as context:
        return sensor.evaluate_tick(context)


def measure_sensors(results: Results, setup: Setup, instance, defs, seeded: list[Seeded], ticks: int, stripe_base: str | None):
    import sensors
    from sensors._cursor import EventCursor

    repository = defs.get_repository_def()
    resources = dict(defs.resources)
    note_payments = "payments off: the tick returns at once"
    if stripe_base:
        from resources import StripePayments

        resources["payments"] = StripePayments(api_key="sk_test_scale", api_base=stripe_base)
        note_payments = "payments on, against localstripe (no events): owed refunds and stray payments queried"
    paid_events = [e.at for s in seeded for e in s.order.events if e.to_state == S.PAID]
    approved_events = [e.at for s in seeded for e in s.order.events if e.to_state == S.APPROVED]
    steady = {
        "paid_orders": EventCursor(newest=max(paid_events)).serialize(),
        "approved_orders": EventCursor(newest=max(approved_events)).serialize(),
    }
    for sensor in (sensors.paid_orders, sensors.approved_orders):
        samples = []
        cursor = None
        for _ in range(ticks):  # a sensor meeting the whole history (a reset cursor): 25 old events a tick
            seconds, data = timed(lambda cursor=cursor, sensor=sensor: sensor_tick(sensor, instance, resources, cursor))
            samples.append(seconds)
            cursor = data.cursor
        results.add(f"sensor `{sensor.name}` tick, cursor reset (walks history)", samples, target=TARGETS["sensor"])
        cursor = steady[sensor.name]
        samples = [timed(lambda s=sensor, c=cursor: sensor_tick(s, instance, resources, c))[0] for _ in range(ticks)]
        results.add(f"sensor `{sensor.name}` tick, steady (cursor at the newest event)", samples, target=TARGETS["sensor"])

    samples, cursor = [], None
    for _ in range(ticks):
        seconds, data = timed(lambda cursor=cursor: sensor_tick(sensors.stripe_reconciliation, instance, resources, cursor))
        samples.append(seconds)
        cursor = data.cursor or cursor
    results.add("sensor `stripe_reconciliation` tick", samples, target=TARGETS["sensor"], note=note_payments)

    failures = sensors.order_run_failures

    def failure_ticks(cursor: str | None, count: int) -> tuple[list[float], int, str | None]:
        samples, reactions = [], 0
        for _ in range(count):
            seconds, data = timed(lambda cursor=cursor: sensor_tick(failures, instance, resources, cursor, repository))
            samples.append(seconds)
            reactions += len(data.dagster_run_reactions or [])
            cursor = data.cursor or cursor
        return samples, reactions, cursor

    first, _, cursor = failure_ticks(None, 1)  # the first tick sets the cursor at the newest failure
    samples, _, _ = failure_ticks(cursor, ticks)
    results.add("sensor `order_run_failures` tick, steady", first + samples, target=TARGETS["sensor"], note="first tick included")
    failed_runs = sum(1 for s in seeded for run in s.runs if run.failed_at)
    samples, reactions, _ = failure_ticks(RunStatusSensorCursor(record_id=-1).to_json(), ticks)
    results.add(
        "sensor `order_run_failures` tick, cursor at the start of history",
        samples,
        target=TARGETS["sensor"],
        note=f"{failed_runs} failed runs in the instance; {reactions} handled over {ticks} ticks (orders already settled)",
    )
    samples = [timed(lambda: sensor_tick(sensors.dead_run_workers, instance, resources, None))[0] for _ in range(ticks)]
    runs = sum(len(s.runs) for s in seeded)
    results.add("sensor `dead_run_workers` tick", samples, target=TARGETS["sensor"], note=f"{runs} runs, none STARTED")

    samples, cursor, purged = [], None, 0
    for _ in range(ticks):
        seconds, data = timed(lambda cursor=cursor: sensor_tick(sensors.order_retention, instance, resources, cursor))
        samples.append(seconds)
        cursor = data.cursor
        purged += sum(len(r.partition_keys) for r in data.dynamic_partitions_requests or [])
    results.add(
        "sensor `order_retention` tick",
        samples,
        target=TARGETS["sensor"],
        note=f"each tick retires up to 10 expired orders ({purged} partition deletions requested over {ticks} ticks)",
    )


def measure_api(results: Results, setup: Setup, seeded: list[Seeded], secret: str, requests_count: int, rng: random.Random):
    from tests.servers import free_port, server_process, wait_until

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # generous limits for the measurement: one key sends everything (the default is 3000/minute)
    env = setup.env(
        PHOTOGEN_SECRET_KEY="scale-" + uuid.uuid4().hex,
        PHOTOGEN_RATE_LIMIT_PER_KEY="1000000/minute",
        PHOTOGEN_RATE_LIMIT_PER_ADDRESS="1000000/minute",
    )
    command = [sys.executable, "-m", "uvicorn", "storefront_api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning"]
    with server_process(command, setup.home / "api.log", env=env, cwd=ROOT) as process:
        wait_until(lambda: process.poll() is not None or _ok(base + "/healthz"), 60, "the API")
        assert process.poll() is None, (setup.home / "api.log").read_text()[-3000:]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {secret}"
        ids = [s.order.id for s in seeded]
        for order_id in rng.sample(ids, min(20, len(ids))):  # warm-up: connections, caches
            session.get(f"{base}/v1/orders/{order_id}").raise_for_status()
        samples = []
        for order_id in (rng.choice(ids) for _ in range(requests_count)):
            start = time.perf_counter()
            response = session.get(f"{base}/v1/orders/{order_id}")
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
            assert response.json()["id"] == order_id
        session.close()
    return results.add(
        "`GET /v1/orders/{id}` (random orders, one keep-alive client)",
        samples,
        unit="ms",
        target=TARGETS["api_p95_ms"],
        note="uvicorn on loopback, rate limits raised to 1000000/minute for the measurement",
    )


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def measure_report(results: Results, setup: Setup, label: str) -> dict:
    photogen = str(Path(sys.executable).with_name("photogen"))
    seconds, done = timed(
        lambda: subprocess.run([photogen, "report", "--json"], env=setup.env(), capture_output=True, text=True, cwd=setup.home)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    sources = payload.get("sources", {})
    note = (
        f"{payload.get('orders')} orders; ledger {sources.get('ledger', {}).get('orders')}, "
        f"read from the orders DB {sources.get('orders_db', {}).get('orders')}"
    )
    results.add(f"`photogen report --json` wall, {label}", [seconds], target=TARGETS["report"], note=note)
    return payload


def partition_days(now: datetime) -> list[str]:
    from assets.analytics import daily_partitions

    keys = daily_partitions.get_partition_keys(current_time=now)
    start = (now - timedelta(days=WINDOW_DAYS)).date().isoformat()
    return [k for k in keys if k >= start]


def measure_ledger(results: Results, instance, defs, now: datetime, store) -> None:
    """The analytics assets for one day, then every day of the window that is a partition;
    the days before the partitions' start_date get their ledger file from the same core
    function the asset calls (so retention can read them)."""
    from assets.analytics import generation_ledger, rejection_metrics
    from photogen_pipelines.analytics.ledger import build_ledger_day, write_ledger_day

    resources = {name: defs.resources[name] for name in ("orders", "storage", "links")}
    days = partition_days(now)
    busiest = days[-2] if len(days) > 1 else days[-1]  # yesterday: a whole day

    def materialize(day: str):
        result = dg.materialize(
            [generation_ledger, rejection_metrics],
            partition_key=day,
            resources=resources,
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # no DEBUG lines per step
        )
        assert result.success
        return result

    seconds, result = timed(lambda: materialize(busiest))
    rows = result.asset_materializations_for_node("generation_ledger")[0].metadata["orders"].value
    results.add(f"ledger + metrics assets, one day ({busiest}, {rows} orders)", [seconds], note="dg.materialize, real resources")
    samples = [timed(lambda day=day: materialize(day))[0] for day in days if day != busiest]
    results.add(
        f"ledger + metrics assets, per day over the window ({len(days)} partitions)",
        samples,
        note=f"{sum(samples) + seconds:.1f} s for the whole window",
    )
    before = sorted({d for d in _days_back(now) if d.isoformat() < days[0]})
    book = defs.resources["orders"].book()
    seconds, _ = timed(lambda: [write_ledger_day(store, day, build_ledger_day(book, store, day)) for day in before])
    results.facts["ledger_days_before_partitions"] = len(before)
    results.add(
        f"ledger files for the {len(before)} days before the partitions' start (core `build_ledger_day`)",
        [seconds],
        note="not partitions (start_date 2026-11-01): written for retention",
    )


def _days_back(now: datetime) -> list[date]:
    first = (now - timedelta(days=WINDOW_DAYS)).date()
    return [first + timedelta(days=i) for i in range((now.date() - first).days + 1)]


def measure_retention(results: Results, defs, now: datetime, seeded: list[Seeded]) -> None:
    from photogen_pipelines.workflows.retention import purge_expired

    book, store = defs.resources["orders"].book(), defs.resources["storage"].store()
    policy = defs.resources["retention"].policy()
    seconds, swept = timed(lambda: purge_expired(book, store, now, policy, limit=len(seeded)))
    files = sum(len(keys) for keys in swept.purged.values())
    results.facts["retention"] = {"purged": len(swept.purged), "files": files, "waiting": len(swept.waiting)}
    results.add(
        f"retention sweep, `purge_expired` over all {len(seeded)} orders",
        [seconds],
        note=f"{len(swept.purged)} expired orders purged ({files} files), {len(swept.waiting)} waiting; "
        f"{seconds / max(1, len(swept.purged)) * 1000:.1f} ms per purged order",
    )


GRAPHQL = {
    "asset page: partition stats + status + latest": """
query AssetPage($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionStats { numMaterialized numMaterializing numFailed numPartitions }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
      }
    }
  }
  assetOrError(assetKey: $assetKey) {
    ... on Asset { id assetMaterializations(limit: 1) { partition timestamp runId } }
  }
}""",
    "partitions page: keys + status per key": """
query PartitionsPage($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions unmaterializedPartitions
        }
      }
    }
  }
}""",
    "one partition: latest materialization": """
query OnePartition($assetKey: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      latestMaterializationByPartition(partitions: [$partition]) { partition timestamp runId metadataEntries { label } }
    }
  }
  assetOrError(assetKey: $assetKey) {
    ... on Asset { id assetMaterializations(partitions: [$partition], limit: 5) { partition timestamp } }
  }
}""",
    "events tab: latest 100 materializations": """
query AssetEvents($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      assetEventHistory(limit: 100, eventTypeSelectors: [MATERIALIZATION, FAILED_TO_MATERIALIZE]) {
        cursor
        results { ... on MaterializationEvent { partition timestamp runId } }
      }
    }
  }
}""",
}


def measure_graphql(results: Results, setup: Setup, seeded: list[Seeded], repeats: int, rng: random.Random) -> None:
    from tests.servers import free_port, server_process, wait_until

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    webserver = str(Path(sys.executable).with_name("dagster-webserver"))
    command = [webserver, "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
    variables = {"assetKey": {"path": ["selfie"]}}
    materialized = [s.order.id for s in seeded if any(m[0] == "selfie" for m in s.materializations)]

    def post(query: str, extra: dict | None = None) -> dict:
        response = requests.post(f"{base}/graphql", json={"query": query, "variables": {**variables, **(extra or {})}})
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def loaded() -> bool:  # a cheap probe: the partition queries' first answer is measured below
        try:
            return (
                post(
                    "query Probe($assetKey: AssetKeyInput!) { assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { id } } }"
                )["assetNodeOrError"].get("id")
                is not None
            )
        except (requests.RequestException, AssertionError, KeyError):
            return False

    with server_process(command, setup.home / "webserver.log", env=setup.env(), cwd=ROOT) as process:
        started = time.perf_counter()
        wait_until(lambda: process.poll() is not None or _ok(base + "/server_info"), 120, "dagster-webserver")
        assert process.poll() is None, (setup.home / "webserver.log").read_text()[-3000:]
        wait_until(loaded, 180, "the code location in dagster-webserver", interval=1)
        results.facts["webserver_ready_s"] = round(time.perf_counter() - started, 1)
        first = GRAPHQL["asset page: partition stats + status + latest"]
        seconds, data = timed(lambda: post(first))
        results.facts["selfie_partition_stats"] = data["assetNodeOrError"]["partitionStats"]
        results.add(
            "GraphQL `selfie` asset page, first request (partition status not cached yet)",
            [seconds],
            target=TARGETS["graphql"],
            note=f"partitionStats {json.dumps(data['assetNodeOrError']['partitionStats'])}",
        )
        for name, query in GRAPHQL.items():
            samples = []
            for _ in range(repeats):
                extra = {"partition": rng.choice(materialized)} if "$partition" in query else None
                samples.append(timed(lambda query=query, extra=extra: post(query, extra))[0])
            results.add(f"GraphQL `selfie` {name}", samples, target=TARGETS["graphql"])


# -- the run -----------------------------------------------------------------------------


@contextlib.contextmanager
def scale_setup(keep: bool) -> Iterator[Setup]:
    orders_url = create_database(POSTGRES_URL, "photogen_scale_orders")
    dagster_url = create_database(POSTGRES_URL, "photogen_scale_dagster")
    home = Path(tempfile.mkdtemp(prefix="photogen-scale-"))
    setup = Setup(home, orders_url, dagster_url, home / "dagster", home / "artifacts")
    setup.dagster_home.mkdir()
    (setup.dagster_home / "dagster.yaml").write_text(dagster_yaml(dagster_url))
    try:
        yield setup
    finally:
        if keep:
            print(f"kept: home {home}, orders DB {orders_url}, Dagster DB {dagster_url}", file=sys.stderr)
        else:
            import shutil

            drop_database(POSTGRES_URL, orders_url)
            drop_database(POSTGRES_URL, dagster_url)
            shutil.rmtree(home, ignore_errors=True)


def seed(setup: Setup, count: int, now: datetime, results: Results | None = None):
    """The orders database, the artifact store and the Dagster instance; returns
    (definitions, instance, seeded orders, the API key's secret)."""
    from photogen_pipelines.definitions import build_defs

    database = Database(setup.orders_url)
    database.migrate()
    key, secret = create_api_key(database, "scale benchmark shop")
    seconds_make, seeded = timed(lambda: make_orders(count, now, key.id))
    seconds_rows, _ = timed(lambda: write_orders(database, seeded))
    store = LocalArtifactStore(setup.artifacts)
    seconds_files, files = timed(lambda: write_files(store, seeded))
    instance = dg.DagsterInstance.from_config(str(setup.dagster_home))
    seconds_runs, runs = timed(lambda: write_runs(instance, seeded))
    seconds_dagster, events = timed(lambda: write_dagster(instance, seeded))
    database.dispose()
    defs = build_defs(str(setup.home), database_url=setup.orders_url, artifacts_root=str(setup.artifacts))
    if results is not None:
        results.facts["seeding"] = {
            "orders": count,
            "build_s": round(seconds_make, 1),
            "orders_db_s": round(seconds_rows, 1),
            "files": files,
            "files_s": round(seconds_files, 1),
            "runs": runs,
            "runs_failed": sum(1 for s in seeded for r in s.runs if r.failed_at),
            "runs_s": round(seconds_runs, 1),
            "materializations": events,
            "dagster_s": round(seconds_dagster, 1),
            "states": _count(s.order.state.value for s in seeded),
            "events": sum(len(s.order.events) for s in seeded),
            "payment_events": sum(len(s.payment_events) for s in seeded),
        }
        print(f"seeded: {json.dumps(results.facts['seeding'])}", flush=True)
    return defs, instance, seeded, secret


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def run(args: argparse.Namespace) -> Results:
    results = Results()
    now = datetime.now(UTC)
    rng = random.Random(SEED + 1)
    with scale_setup(args.keep) as setup:
        print(f"seeding {args.orders} orders ...", flush=True)
        defs, instance, seeded, secret = seed(setup, args.orders, now, results)
        try:
            store = defs.resources["storage"].store()
            print("photogen report, no ledger files yet ...", flush=True)
            measure_report(results, setup, "no ledger files (all read from the orders DB)")
            print("ledger and metrics assets ...", flush=True)
            measure_ledger(results, instance, defs, now, store)
            print("photogen report, ledger built ...", flush=True)
            measure_report(results, setup, "ledger files for every day")
            print("sensor ticks ...", flush=True)
            stripe = _localstripe(setup) if not args.payments_off else contextlib.nullcontext(None)
            with stripe as stripe_base:
                measure_sensors(results, setup, instance, defs, seeded, args.ticks, stripe_base)
            print("GET /v1/orders/{id} ...", flush=True)
            measure_api(results, setup, seeded, secret, args.requests, rng)
            if not args.skip_graphql:
                print("dagster-webserver GraphQL ...", flush=True)
                measure_graphql(results, setup, seeded, args.graphql_repeats, rng)
            print("retention sweep ...", flush=True)
            measure_retention(results, defs, now, seeded)
        finally:
            instance.dispose()
            defs.resources["orders"].database().dispose()
    return results


@contextlib.contextmanager
def _localstripe(setup: Setup):
    from tests.servers import localstripe_server

    if not Path(sys.executable).with_name("localstripe").exists():
        yield None
        return
    with localstripe_server(setup.home) as base:
        yield base


def table(results: Results) -> str:
    lines = ["| measure | median | p95 | n | target | met? |", "|---|---:|---:|---:|---:|---|"]
    for row in results.rows:
        unit = row["unit"]
        target = "" if row["target"] is None else f"< {row['target']:g} {unit}"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        p95_cell = f"{row['p95']:.3f} {unit}" if row["n"] > 1 else ""
        lines.append(f"| {row['measure']} | {row['median']:.3f} {unit} | {p95_cell} | {row['n']} | {target} | {met} |")
    return "\n".join(lines)


def missed(results: Results) -> list[dict]:
    """The measures that missed their target (p95 of several samples, else the one value)."""
    return [row for row in results.rows if row["met"] is False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the home (their names go to stderr)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--ticks", type=int, default=10, help="ticks per sensor")
    parser.add_argument("--requests", type=int, default=600, help="GET /v1/orders/{id} requests")
    parser.add_argument("--graphql-repeats", type=int, default=5)
    parser.add_argument("--skip-graphql", action="store_true")
    parser.add_argument("--payments-off", action="store_true", help="stripe_reconciliation without localstripe")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensors' own log lines (one per purged order)
    started = time.perf_counter()
    results = run(args)
    total = time.perf_counter() - started
    print(f"\nmachine: {machine()}; {datetime.now(UTC):%Y-%m-%d}; {args.orders} orders; whole run {total:.0f} s\n")
    print(table(results))
    print("\n" + json.dumps(results.facts, default=str))
    if args.json:
        print(
            json.dumps(
                {"machine": machine(), "orders": args.orders, "total_s": round(total, 1), "rows": results.rows, **results.facts},
                default=str,
            )
        )
    if misses := missed(results):
        for row in misses:
            value = row["p95"] if row["n"] > 1 else row["median"]
            print(f"TARGET MISSED: {row['measure']}: {value:g} {row['unit']}, target < {row['target']:g}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
