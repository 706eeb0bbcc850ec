"""Time the demo order stage by stage: `photogen demo --json` run N times as a user runs it.

    .venv/bin/python benchmarks/demo_order.py [--runs 5] [--variants 4] [--product poster_12x18]

Prints the median and spread of every stage and of the whole command (process start,
model loading and both Dagster runs included), and the machine it ran on. Record the
table in BENCHMARKS.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ["selfie", "styled_candidates", "validated_proofs", "print_master", "print_file"]


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def one_run(home: Path, args: argparse.Namespace) -> tuple[dict, float]:
    photogen = Path(sys.executable).with_name("photogen")
    env = {**os.environ, "PHOTOGEN_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    command = [
        str(photogen),
        "demo",
        "--json",
        "--variants",
        str(args.variants),
        "--product",
        args.product,
        "--style",
        args.style,
        "--out",
        str(home / "out"),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return json.loads(done.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--product", default="poster_12x18")
    parser.add_argument("--style", default="starry_swirl")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.runs):
            summary, wall = one_run(Path(tmp), args)
            if summary["outcome"] != "ready":
                sys.exit(f"run {index}: order ended {summary['outcome']}: {summary['reason']}")
            results.append((summary, wall))
            print(f"run {index + 1}/{args.runs}: {wall:.1f} s", file=sys.stderr)

    rows = [(stage, [s["seconds_per_stage"][stage] for s, _ in results]) for stage in STAGES]
    rows.append(("whole command (wall)", [wall for _, wall in results]))
    total = statistics.median(w for _, w in results)
    print(f"\nphotogen demo: {args.variants} proofs, {args.product}, {args.style}; {args.runs} runs")
    print(f"machine: {machine()}\n")
    print(f"| {'stage':<22} | median s | min s | max s | share |")
    print(f"|{'-' * 24}|---------:|------:|------:|------:|")
    for name, values in rows:
        median = statistics.median(values)
        print(f"| {name:<22} | {median:8.2f} | {min(values):5.2f} | {max(values):5.2f} | {median / total:5.0%} |")
    stage_sum = sum(statistics.median(v) for _, v in rows[:-1])
    print(
        f"\nstages sum to {stage_sum:.1f} s of {total:.1f} s; the rest is start-up, model loading and Dagster's run bookkeeping"
    )


if __name__ == "__main__":
    main()
