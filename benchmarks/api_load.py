"""Open-loop load on the storefront API from one shop's backend: one API key, one address.

    .venv/bin/python benchmarks/api_load.py [--rate 50] [--seconds 120] [--json] [--keep]

Makes a throwaway orders database on the PostgreSQL at 127.0.0.1:5432 (CREATE DATABASE;
PHOTOGEN_TEST_POSTGRES_URL names another server), migrates it with `photogen db upgrade`,
creates one key with `photogen api-key create`, and starts the API as `photogen serve`
does (`python -m uvicorn storefront_api.main:app --http storefront_api.server:HttpProtocol`)
on a free loopback port, in a new home, payments off, the rate limits at their defaults:
every request carries the key, so the key's limit (3000/minute) is the one that applies,
not the address's.

Before the clock starts it places a few uploads and orders (what the orders and the order
reads below use). Then it sends `--rate` requests a second for `--seconds`, each at its
scheduled time whatever the earlier ones are doing (open loop: a thread pool sends them),
in a fixed interleaved mix: 70 % `GET /v1/orders/{id}` (the orders placed so far),
15 % `POST /v1/orders` (a new Idempotency-Key each, on the uploads made beforehand),
10 % `POST /v1/uploads` (real face photos, tests/data/faces and skimage's astronaut, as
JPEG), 5 % `GET /v1/styles`. A request's latency runs from its scheduled start to its
answer, so time spent queued (in this client or in the server) counts. Requests still
unanswered `DRAIN_SECONDS` after the last one was due are counted as errors.

Per kind and overall: requests sent, answered as expected, 429s (`rate_limited`), errors
(any other status, or no answer), p50/p95/p99/max latency of the expected answers, and the
achieved rate. Prints a markdown table and the machine; record it in BENCHMARKS.md. The
server is stopped by its pid, the database dropped and the home removed unless --keep.
Paid orders are not run: no Dagster daemon is started.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo_order import machine  # noqa: E402
from benchmarks.postgres import POSTGRES_URL, create_database, drop_database  # noqa: E402
from tests.servers import free_port, server_process, wait_until  # noqa: E402

SEED = 20261129
# (kind, share of every 20 requests): the mix, interleaved evenly (smooth weighted round robin)
MIX = [("GET /v1/orders/{id}", 14), ("POST /v1/orders", 3), ("POST /v1/uploads", 2), ("GET /v1/styles", 1)]
EXPECTED = {"GET /v1/orders/{id}": 200, "POST /v1/orders": 201, "POST /v1/uploads": 201, "GET /v1/styles": 200}
PREPARED_UPLOADS = 4  # one per photo, before the clock starts
PREPARED_ORDERS = 10
REQUEST_TIMEOUT_SECONDS = 30
DRAIN_SECONDS = 60  # after the last request was due, how long unanswered ones are waited for
NO_ANSWER = {"timeout": -1, "connection": -2, "unanswered": -3}  # statuses of requests without one


# -- the set-up: database, key, server ------------------------------------------------------


def environment(home: Path, database_url: str) -> dict[str, str]:
    """This process's environment without any PhotoGen or Dagster settings (so payments are
    off and the rate limits are the defaults), in a new home on the throwaway database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
    return {
        **env,
        "PHOTOGEN_HOME": str(home),
        "PHOTOGEN_DATABASE_URL": database_url,
        "PHOTOGEN_SECRET_KEY": "load-" + uuid.uuid4().hex,
        "DAGSTER_HOME": str(home / "dagster"),
    }


def photogen(env: dict[str, str], *arguments: str) -> str:
    command = [str(Path(sys.executable).with_name("photogen")), *arguments]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"photogen {' '.join(arguments)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


@contextlib.contextmanager
def load_setup(keep: bool) -> Iterator[tuple[Path, dict[str, str]]]:
    """A new home and a throwaway orders database, migrated; removed afterwards unless `keep`."""
    database_url = create_database(POSTGRES_URL, "photogen_load")
    home = Path(tempfile.mkdtemp(prefix="photogen-load-"))
    try:
        env = environment(home, database_url)
        photogen(env, "db", "upgrade")
        yield home, env
    finally:
        if keep:
            print(f"kept: home {home}, orders DB {database_url}", file=sys.stderr)
        else:
            drop_database(POSTGRES_URL, database_url)
            shutil.rmtree(home, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def storefront_api(home: Path, env: dict[str, str]) -> Iterator[str]:
    """The API as `photogen serve` starts it, on a free loopback port; stopped by its pid."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "storefront_api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--http", "storefront_api.server:HttpProtocol"]
    log = home / "api.log"
    with server_process(command, log, env=env, cwd=ROOT) as process:
        wait_until(lambda: process.poll() is not None or _ready(base + "/readyz"), 120, "the storefront API")
        if process.poll() is not None:
            raise RuntimeError(f"the API exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        yield base


# -- the load ------------------------------------------------------------------------------


def photos() -> list[tuple[str, bytes]]:
    """Real face photos as a storefront sends them: the test faces and skimage's astronaut, JPEG."""
    from PIL import Image
    from skimage import data

    faces = [(path.name, path.read_bytes()) for path in sorted((ROOT / "tests" / "data" / "faces").glob("*.jpg"))]
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=90)
    return [*faces, ("astronaut.jpg", buffer.getvalue())]


def schedule(total: int) -> list[str]:
    """`total` request kinds in the MIX's proportions, evenly interleaved (smooth weighted
    round robin): any 20 in a row hold every kind in its share."""
    weights = dict(MIX)
    whole = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    kinds = []
    for _ in range(total):
        for kind, weight in weights.items():
            current[kind] += weight
        pick = max(current, key=lambda kind: current[kind])
        current[pick] -= whole
        kinds.append(pick)
    return kinds


@dataclass
class Sample:
    kind: str
    due: float  # seconds from the start of the clock
    lag: float | None = None  # seconds from due to the request leaving a worker (client-side queueing)
    latency: float | None = None  # seconds from due to the answer
    status: int = NO_ANSWER["unanswered"]  # HTTP status, or one of NO_ANSWER
    code: str | None = None  # the error body's `code`

    @property
    def ok(self) -> bool:
        return self.status == EXPECTED[self.kind]

    @property
    def limited(self) -> bool:
        return self.status == 429

    @property
    def error(self) -> bool:
        return not self.ok and not self.limited


class Shop:
    """One shop's backend: one key, a connection pool per worker thread, the orders it placed."""

    def __init__(self, base: str, secret: str, rng: random.Random) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {secret}"}
        self.rng = rng
        self.local = threading.local()
        self.photos = photos()
        self.uploads: list[str] = []
        self.order_ids: list[str] = []  # appended by workers (list.append is atomic)
        self.styles: list[str] = []
        self.products: list[str] = []
        self.lock = threading.Lock()
        self.closed = False  # past the drain deadline: answers that come now are not recorded

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update(self.auth)
        return session

    def prepare(self) -> None:
        session = self.session()
        self.styles = [s["id"] for s in _json(session.get(f"{self.base}/v1/styles", timeout=30), 200)]
        self.products = [p["id"] for p in _json(session.get(f"{self.base}/v1/products", timeout=30), 200)]
        for name, data in self.photos[:PREPARED_UPLOADS]:
            response = session.post(
                f"{self.base}/v1/uploads", data={"consent": "true"}, files={"file": (name, data, "image/jpeg")}, timeout=60
            )
            self.uploads.append(_json(response, 201)["id"])
        for _ in range(PREPARED_ORDERS):
            method, url, kwargs = self.order_request()
            self.order_ids.append(_json(session.request(method, url, timeout=60, **kwargs), 201)["id"])

    # each request is decided in the dispatching thread (one random generator), sent by a worker

    def request(self, kind: str) -> tuple[str, str, dict]:
        if kind == "GET /v1/orders/{id}":
            return "GET", f"{self.base}/v1/orders/{self.rng.choice(self.order_ids)}", {}
        if kind == "POST /v1/orders":
            return self.order_request()
        if kind == "POST /v1/uploads":
            name, data = self.rng.choice(self.photos)
            return "POST", f"{self.base}/v1/uploads", {"data": {"consent": "true"}, "files": {"file": (name, data, "image/jpeg")}}
        if kind == "GET /v1/styles":
            return "GET", f"{self.base}/v1/styles", {}
        raise ValueError(kind)

    def order_request(self) -> tuple[str, str, dict]:
        body = {
            "upload_id": self.rng.choice(self.uploads),
            "style_id": self.rng.choice(self.styles),
            "product_id": self.rng.choice(self.products),
            "variants": 2,
        }
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return "POST", f"{self.base}/v1/orders", {"json": body, "headers": headers}

    def send(self, sample: Sample, clock: float, method: str, url: str, kwargs: dict) -> None:
        with self.lock:
            if self.closed:
                return
            sample.lag = time.perf_counter() - clock - sample.due
        code = order_id = None
        try:
            response = self.session().request(method, url, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
        except requests.Timeout:
            status, code = NO_ANSWER["timeout"], "client_timeout"
        except requests.RequestException as exc:
            status, code = NO_ANSWER["connection"], type(exc).__name__
        else:
            status = response.status_code
            if status >= 400:
                with contextlib.suppress(ValueError, AttributeError):
                    code = response.json().get("code")
            elif sample.kind == "POST /v1/orders" and status == EXPECTED[sample.kind]:
                order_id = response.json()["id"]
        latency = time.perf_counter() - clock - sample.due
        with self.lock:
            if not self.closed:
                sample.status, sample.code, sample.latency = status, code, latency
                if order_id:
                    self.order_ids.append(order_id)


def _json(response: requests.Response, status: int):
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}")
    return response.json()


def run_load(shop: Shop, rate: float, seconds: float) -> tuple[list[Sample], dict]:
    """Open loop: request i is due at i / rate seconds; a worker sends it then, or as soon as
    one is free. Bounded: rate × seconds requests, dispatched within `seconds`, waited for at
    most DRAIN_SECONDS after that."""
    total = max(1, math.floor(rate * seconds))
    workers = min(256, max(16, math.ceil(rate * 2)))
    samples = [Sample(kind, i / rate) for i, kind in enumerate(schedule(total))]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
    futures = []
    clock = time.perf_counter()
    try:
        for sample in samples:
            delay = clock + sample.due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method, url, kwargs = shop.request(sample.kind)
            futures.append(pool.submit(shop.send, sample, clock, method, url, kwargs))
        dispatched = time.perf_counter() - clock
        _, pending = wait(futures, timeout=max(0.0, clock + samples[-1].due + DRAIN_SECONDS - time.perf_counter()))
    finally:
        with shop.lock:
            shop.closed = True
        pool.shutdown(wait=False, cancel_futures=True)
    finished = time.perf_counter() - clock
    answered = [s for s in samples if s.latency is not None]
    unfinished = len(pending)
    for sample in samples:  # still in flight at the drain deadline, or never left the queue
        if sample.latency is None:
            sample.status, sample.code = NO_ANSWER["unanswered"], "unanswered"
    starts = [s.due + s.lag for s in samples if s.lag is not None]
    span = (max(starts) - min(starts) + 1 / rate) if starts else 0.0
    facts = {
        "requests_planned": total,
        "workers": workers,
        "dispatch_s": round(dispatched, 2),
        "wall_s": round(finished, 2),
        "send_span_s": round(span, 2),
        "unanswered_at_drain": unfinished,
        "answered": len(answered),
        "client_lag_ms_p99": _ms(_percentile([s.lag for s in samples if s.lag is not None], 99)),
        "client_lag_ms_max": _ms(max((s.lag for s in samples if s.lag is not None), default=None)),
    }
    return samples, facts


def _percentile(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def summarize(samples: list[Sample], span: float) -> dict:
    rows = {}
    for kind in [k for k, _ in MIX] + ["all"]:
        chosen = [s for s in samples if kind in ("all", s.kind)]
        latencies = [s.latency for s in chosen if s.ok]
        errors: dict[str, int] = {}
        for s in chosen:
            if s.error:
                label = f"{s.status} {s.code}" if s.code else str(s.status)
                errors[label] = errors.get(label, 0) + 1
        rows[kind] = {
            "sent": sum(1 for s in chosen if s.lag is not None),
            "planned": len(chosen),
            "ok": len(latencies),
            "rate_limited": sum(1 for s in chosen if s.limited),
            "errors": sum(errors.values()),
            "error_kinds": dict(sorted(errors.items())),
            "p50_ms": _ms(_percentile(latencies, 50)),
            "p95_ms": _ms(_percentile(latencies, 95)),
            "p99_ms": _ms(_percentile(latencies, 99)),
            "max_ms": _ms(max(latencies, default=None)),
            "rate_per_s": round(sum(1 for s in chosen if s.lag is not None) / span, 2) if span else 0.0,
        }
    return rows


def table(rows: dict) -> str:
    def cell(value) -> str:
        return "–" if value is None else f"{value:.1f}"

    lines = [
        "| request | sent | ok | 429 | errors | p50 ms | p95 ms | p99 ms | max ms | achieved /s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, row in rows.items():
        name = "**all**" if kind == "all" else f"`{kind}`"
        lines.append(
            f"| {name} | {row['sent']} | {row['ok']} | {row['rate_limited']} | {row['errors']} | {cell(row['p50_ms'])} | "
            f"{cell(row['p95_ms'])} | {cell(row['p99_ms'])} | {cell(row['max_ms'])} | {row['rate_per_s']:.1f} |"
        )
    return "\n".join(lines)


def key_limit() -> str:
    """The per-key limit the API applies with no PHOTOGEN_RATE_LIMIT_PER_KEY set (this run's)."""
    from storefront_api.config import Settings

    return Settings.model_fields["rate_limit_per_key"].default


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(SEED)
    with load_setup(args.keep) as (home, env):
        secret = json.loads(photogen(env, "api-key", "create", "--name", "load benchmark shop", "--json"))["secret"]
        with storefront_api(home, env) as base:
            shop = Shop(base, secret, rng)
            shop.prepare()
            print(f"prepared {len(shop.uploads)} uploads and {len(shop.order_ids)} orders; sending ...", flush=True)
            samples, facts = run_load(shop, args.rate, args.seconds)
    rows = summarize(samples, facts["send_span_s"])
    return {
        "machine": machine(),
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "rate": args.rate,
        "seconds": args.seconds,
        "key_limit": key_limit(),
        "mix": {kind: f"{share / sum(w for _, w in MIX):.0%}" for kind, share in MIX},
        "prepared": {"uploads": PREPARED_UPLOADS, "orders": PREPARED_ORDERS},
        **facts,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second (default 50)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long requests are sent (default 120)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line too (last line)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the home (their names go to stderr)")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    result = run(args)
    print(
        f"\nmachine: {result['machine']}; {result['date']}; open loop at {args.rate:g} requests/s for {args.seconds:g} s "
        f"from one API key (its limit: {result['key_limit']}, the default);\n"
        f"{result['workers']} client threads; orders on PostgreSQL; payments off\n"
    )
    print(table(result["rows"]))
    print(
        f"\nlatency from each request's scheduled start (client-side queueing included), expected answers only; "
        f"client lag p99 {result['client_lag_ms_p99']} ms, max {result['client_lag_ms_max']} ms; "
        f"sent over {result['send_span_s']} s; {result['unanswered_at_drain']} unanswered at the drain deadline; "
        f"run {result['wall_s']} s"
    )
    errors = result["rows"]["all"]["error_kinds"]
    if errors:
        print("errors: " + ", ".join(f"{label} ×{count}" for label, count in errors.items()))
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
