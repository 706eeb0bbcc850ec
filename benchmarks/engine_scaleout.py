"""The warm engine service scaled out on a two-node Ray cluster on this machine: replica
counts over time under a load ramp, through a replica kill, and back down when idle.

    .venv/bin/python benchmarks/engine_scaleout.py [--out /tmp/engine_scaleout.json]
        [--ramp 1,3,6] [--step-seconds 45] [--downscale-delay 10]

It starts a head and a worker node (`ray start`, one CPU each, no dashboard), deploys
engine_service.app:build_app with the autoscaling settings deploy/kuberay/rayservice.yaml
ships (min/max replicas, target ongoing requests; Serve's own 30 s upscale delay) on the
embedded engine with half a CPU per replica, and then: ramps the clients (run workers
sending proof requests back to back) through `--ramp`, each step `--step-seconds`; kills
one style replica under the full load; keeps the load `--step-seconds` more; stops it and
waits for the scale-down. The downscale delay, Serve's 600 s, is shortened to
`--downscale-delay` (the only setting changed), or the run would idle ten minutes.

Every second it samples the StyleWorker's replicas by state (Serve's controller), the
answered requests and the clients' errors; the JSON has the samples, the events (ramp
steps, kill, replacement, scale-up and scale-down times) and each replica's counters from
GET /v1/status (node, model loads, requests, batches). No request may be lost: a client's
error is counted and printed.
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
from tests.engine_load import Load, cpu_args, kill_replica, replica_actors, replica_counts, shipped_args  # noqa: E402
from tests.servers import free_port, ray_two_nodes, serve_application  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/engine_scaleout.json")
    parser.add_argument("--ramp", default="1,3,6", help="clients at each step of the ramp")
    parser.add_argument("--step-seconds", type=float, default=45.0)
    parser.add_argument("--downscale-delay", type=float, default=10.0)
    parser.add_argument("--idle-wait", type=float, default=150.0, help="the longest wait for the scale-down")
    args = parser.parse_args()
    ramp = [int(n) for n in args.ramp.split(",")]

    samples: list[dict] = []
    events: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scaleout-") as workdir, ray_two_nodes(Path(workdir)) as env:
        service_args = cpu_args(downscale_delay_s=args.downscale_delay)
        started_at = time.monotonic()
        with serve_application(env, service_args, free_port()) as url:
            t0 = time.monotonic()
            events.append({"t": 0.0, "event": "service up", "seconds_to_start": round(t0 - started_at, 1)})
            load = Load(url, 0)

            def sample() -> dict:
                counts = replica_counts()
                row = {
                    "t": round(time.monotonic() - t0, 1),
                    "clients": load.clients,
                    "running": counts.get("RUNNING", 0),
                    "states": counts,
                    "answered": load.answered,
                    "errors": len(load.errors),
                }
                samples.append(row)
                return row

            def hold(seconds: float, until=None) -> dict | None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    row = sample()
                    if until and until(row):
                        return row
                    time.sleep(1.0)
                return None

            def note(event: str, **extra) -> None:
                events.append({"t": round(time.monotonic() - t0, 1), "event": event, **extra})
                print(f"{events[-1]['t']:7.1f} s  {event} {extra or ''}", flush=True)

            max_replicas = shipped_args()["max_replicas"]
            scaled_up_at = None
            for clients in ramp:
                load.set_clients(clients)
                note("clients", clients=clients)
                row = hold(args.step_seconds, (lambda r: r["running"] == max_replicas) if scaled_up_at is None else None)
                if row and scaled_up_at is None:
                    scaled_up_at = row["t"]
                    note("scaled up", running=row["running"])
                    hold(max(0.0, args.step_seconds - (time.monotonic() - t0 - row["t"])))
            if scaled_up_at is None:
                row = hold(120, lambda r: r["running"] == max_replicas)
                if row:
                    scaled_up_at = row["t"]
                    note("scaled up", running=row["running"])

            victim = replica_actors()[0]
            before = set(replica_actors())
            kill_replica(victim)
            note("killed a replica", replica=victim.rsplit("#", 1)[-1])
            replaced = lambda r: set(replica_actors()) - before and r["running"] == max_replicas  # noqa: E731
            row = hold(120, replaced)
            if row:
                note("replacement running", running=row["running"])
            hold(args.step_seconds)
            load.stop()
            note("load stopped", answered=load.answered, errors=len(load.errors))
            idle = {"RUNNING": service_args["min_replicas"]}
            row = hold(args.idle_wait, lambda r: r["states"] == idle)
            if row:
                note("scaled down", running=row["running"])

            status = requests.get(f"{url}/v1/status", timeout=10).json()
            replicas, gateway = status["replicas"], status["gateway"]
            latencies = [seconds for _, seconds in load.latencies]

    report = {
        "benchmark": "engine_scaleout",
        "machine": machine(),
        "cluster": "two Ray nodes on this machine (head 1 CPU, worker 1 CPU), no dashboard",
        "service_args": service_args,
        "shipped_args": shipped_args(),
        "ramp": ramp,
        "step_seconds": args.step_seconds,
        "answered": load.answered,
        "wrong": load.wrong,
        "gateway": gateway,  # replica_lost: requests a dying replica held, answered 503 and sent again
        "errors": load.errors,
        "latency_seconds": {
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "p95": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        },
        "events": events,
        "replicas": {
            key: {k: r[k] for k in ("deployment", "node", "model_loads", "requests", "failures", "batch_sizes", "busy_seconds")}
            for key, r in replicas.items()
        },
        "samples": samples,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
