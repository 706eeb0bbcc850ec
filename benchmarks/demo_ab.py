"""The demo order, A/B: `photogen demo --json` from two commits, runs interleaved.

    .venv/bin/python -m benchmarks.demo_ab --base 7871867 [--runs 3]

The base commit is exported to a temporary folder and run with that folder first on
PYTHONPATH (the installed dependencies are shared); the working tree is the other side.
Runs alternate base, new, base, new, ... each in a new home, so a busy machine slows both
sides alike. Prints the median wall time and seconds per stage of each side, their ratio,
and the machine; record the table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.demo_order import STAGES, machine

REPO = Path(__file__).resolve().parents[1]


def export(commit: str, into: Path) -> Path:
    """The commit's files, unpacked under `into` (no checkout of this repository changes)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def one_demo(tree: Path, home: Path, args: argparse.Namespace) -> tuple[dict, float]:
    photogen = Path(sys.executable).with_name("photogen")
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PHOTOGEN_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    # the side really runs its own tree's code: the console script imports the CLI from PYTHONPATH
    where = subprocess.run(
        [sys.executable, "-c", "import photogen_pipelines.cli.main as m; print(m.__file__)"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        sys.exit(f"{tree} is not the code that runs: {where}")
    command = [str(photogen), "demo", "--json", "--variants", str(args.variants), "--product", args.product]
    command += ["--style", args.style, "--out", str(home / "out")]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout)
    if summary["outcome"] != "ready":
        sys.exit(f"{tree}: the order ended {summary['outcome']}: {summary.get('reason')}")
    return summary, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare the working tree with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--product", default="poster_12x18")
    parser.add_argument("--style", default="starry_swirl")
    args = parser.parse_args()

    results: dict[str, list[tuple[dict, float]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": export(args.base, Path(tmp) / "base"), "new": REPO}
        for index in range(args.runs):
            for side in ("base", "new"):
                home = Path(tmp) / f"{side}-{index}"
                home.mkdir()
                summary, wall = one_demo(trees[side], home, args)
                results[side].append((summary, wall))
                print(f"run {index + 1}/{args.runs} {side}: {wall:.1f} s", file=sys.stderr)

    def medians(side: str) -> dict[str, float]:
        runs = results[side]
        row = {stage: statistics.median(s["seconds_per_stage"][stage] for s, _ in runs) for stage in STAGES}
        row["stages"] = sum(row[stage] for stage in STAGES)
        row["wall"] = statistics.median(wall for _, wall in runs)
        row["outside stages"] = row["wall"] - row["stages"]
        return row

    base, new = medians("base"), medians("new")
    print(f"\nphotogen demo A/B: {args.variants} proofs, {args.product}, {args.style}; {args.runs} runs a side, interleaved")
    print(f"base {args.base}, new: the working tree; machine: {machine()}\n")
    print(f"| {'median s':<22} | base | new | new/base |")
    print(f"|{'-' * 24}|-----:|----:|---------:|")
    for name in [*STAGES, "stages", "outside stages", "wall"]:
        print(f"| {name:<22} | {base[name]:.2f} | {new[name]:.2f} | {new[name] / base[name]:.2f} |")


if __name__ == "__main__":
    main()
