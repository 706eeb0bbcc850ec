"""Latency of the storefront API over real HTTP (uvicorn on loopback), payments off.

    .venv/bin/python benchmarks/api_latency.py [--requests 200] [--database sqlite|postgresql]

Times, one request after another: `POST /v1/uploads` (decode + YuNet face check + PNG
store), `POST /v1/orders` (a new Idempotency-Key each time), the same order again (an
idempotent replay), and `GET /v1/orders/{id}` (order + history + stage progress). Prints
medians and 95th percentiles in milliseconds and the machine; record them in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines.imaging.images import png_bytes  # noqa: E402
from tests.api_helpers import make_app, make_settings, new_key, order_body  # noqa: E402
from tests.conftest import POSTGRES_URL, throwaway_postgres  # noqa: E402
from tests.servers import api_server  # noqa: E402


def timed(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code < 300, response.text
    return samples


def run(database_url: str, workdir: Path, n: int) -> dict[str, list[float]]:
    from skimage import data

    settings = make_settings(workdir, database_url, rate_limit_per_key="100000/minute", rate_limit_per_address="100000/minute")
    selfie = png_bytes(data.astronaut())
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        consented = {"consent": "true"}
        upload = lambda: requests.post(f"{url}/v1/uploads", headers=auth, data=consented, files={"file": ("a.png", selfie)})  # noqa: E731
        upload_id = upload().json()["id"]
        body = order_body(upload_id)
        place = lambda key=None: requests.post(  # noqa: E731
            f"{url}/v1/orders", headers={**auth, "Idempotency-Key": key or str(uuid.uuid4())}, json=body
        )
        order_id = place("replayed").json()["id"]
        return {
            "POST /v1/uploads (512x512 PNG)": timed(upload, max(10, n // 10)),
            "POST /v1/orders (new)": timed(place, n),
            "POST /v1/orders (idempotent replay)": timed(lambda: place("replayed"), n),
            "GET /v1/orders/{id}": timed(lambda: requests.get(f"{url}/v1/orders/{order_id}", headers=auth), n),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.database == "sqlite":
            results = run(f"sqlite:///{tmp}/orders.db", Path(tmp), args.requests)
        else:
            with throwaway_postgres(POSTGRES_URL) as url:
                results = run(url, Path(tmp), args.requests)
    print(f"machine: {machine()}; database: {args.database}")
    print("| request | n | median ms | p95 ms |\n|---|---:|---:|---:|")
    for name, samples in results.items():
        p95 = statistics.quantiles(samples, n=20)[-1]
        print(f"| {name} | {len(samples)} | {statistics.median(samples):.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
