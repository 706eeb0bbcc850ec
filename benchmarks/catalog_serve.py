"""A merchant catalog shot through `photogen serve`: where a catalog's time goes, per shot.

    .venv/bin/python benchmarks/catalog_serve.py [--skus 2] [--timeout 900] [--json]

Starts `photogen serve` on free ports in a new home (the embedded engines), lets the catalog
preview runs a new home starts with finish, saves the shop's model as an identity over HTTP,
then writes a catalog of `--skus` garments (the tests' printed t-shirt in as many colours)
into the artifact store and waits until every SKU's fashion shoot is `ready`. Stops the
service and reads every run's event log: the wall time from the catalog written to the last
export, per shot run its queue wait, launch (a forked process that imports the code), time
inside the step, and the wall; the same for the export runs. Record the tables in
BENCHMARKS.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from benchmarks.order_runs import READY_WAIT_SECONDS, Service, read_runs, wait_for_quiet_queue  # noqa: E402
from photogen_pipelines.imaging.images import png_bytes  # noqa: E402
from tests.api_helpers import jpeg_bytes  # noqa: E402
from tests.product_photos import garment_photo  # noqa: E402
from tests.test_serve import new_api_key  # noqa: E402

COLOURS = [(28, 52, 120), (170, 70, 40), (40, 110, 60), (120, 40, 110), (90, 90, 90), (180, 150, 40)]


def write_catalog(artifacts: Path, model: str, skus: int) -> None:
    folder = artifacts / "catalogs" / "bench"
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rows = ["sku,name,category,product_photo"]
    for n in range(skus):
        sku = f"tee-{n}"
        (folder / "photos" / f"{sku}.png").write_bytes(png_bytes(garment_photo(COLOURS[n % len(COLOURS)])[0]))
        rows.append(f"{sku},Tee {n},tops,photos/{sku}.png")
    (folder / "model.json").write_text(json.dumps({"identity_id": model}))
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n")  # last: the sensor reads a whole catalog


def jobs_state(home: Path) -> list[tuple[str, str]]:
    from photogen_pipelines.db.database import open_database
    from photogen_pipelines.db.tables import JobRow

    with open_database(f"sqlite:///{home / 'orders.db'}").session() as session:
        return [(row.id, row.state) for row in session.query(JobRow)]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs, started: float, finished: float, skus: int) -> dict:
    shots = [r for r in runs if r.job == "shot_job" and r.finished]
    exports = [r for r in runs if r.job == "job_export_job" and r.finished]

    def table(selected) -> dict:
        return {
            "runs": len(selected),
            "queued_s": _median([r.queued_s for r in selected if r.queued_s is not None]),
            "launch_s": _median([r.launch_s for r in selected if r.launch_s is not None]),
            "steps_s": _median([r.steps_s for r in selected]),
            "wall_s": _median([r.wall_s for r in selected if r.wall_s is not None]),
        }

    wall = finished - started
    return {
        "machine": machine(),
        "skus": skus,
        "shots": len(shots),
        "catalog_to_last_export_s": round(wall, 1),
        "seconds_per_shot_end_to_end": round(wall / max(1, len(shots)), 2),
        "shot_runs": table(shots),
        "export_runs": table(exports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        service = Service(home, Path(tmp) / "serve.log", [])
        try:
            service.wait_ready(READY_WAIT_SECONDS)
            wait_for_quiet_queue(service)
            auth = new_api_key(home)
            from skimage import data

            upload = requests.post(
                f"{service.api}/v1/uploads", headers=auth, data={"consent": "true"},
                files={"file": ("model.jpg", jpeg_bytes(data.astronaut()))}, timeout=60,
            ).json()  # fmt: skip
            model = requests.post(
                f"{service.api}/v1/identities", headers=auth, json={"upload_ids": [upload["id"]], "consent": True}, timeout=60
            ).json()["id"]
            started = time.time()
            write_catalog(home / "artifacts", model, args.skus)
            deadline = time.monotonic() + args.timeout
            while True:
                states = jobs_state(home)
                if len(states) == args.skus and all(state == "ready" for _, state in states):
                    break
                if any(state in ("failed", "rejected") for _, state in states) or time.monotonic() > deadline:
                    raise RuntimeError(f"the catalog's shoots did not all get ready: {states}\n{service.tail()}")
                time.sleep(1)
            finished = time.time()
        finally:
            service.stop()
        report = summarize(read_runs(home / "dagster"), started, finished, args.skus)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    print(
        f"{report['skus']} SKUs, {report['shots']} shots: catalog written -> last export {report['catalog_to_last_export_s']} s "
        f"({report['seconds_per_shot_end_to_end']} s a shot, the sensor's tick included)"
    )
    print("| runs | count | median queued s | median launch s | median in step s | median wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("shot_runs", "export_runs"):
        row = report[name]
        cells = [f"{row[k]:.2f}" if row[k] is not None else "—" for k in ("queued_s", "launch_s", "steps_s", "wall_s")]
        print(f"| {name.replace('_', ' ')} | {row['runs']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
