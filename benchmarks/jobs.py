"""Seconds per shot of a studio job on the embedded engine (CPU): what `job_shots` pays for
one partition, measured on the core alone (jobs.shots.make_shot: painted and gated).

    .venv/bin/python -m benchmarks.jobs [--repeats 3] [--poses 3] [--style starry_swirl]

- pose_pack: the embedded engine's style-transfer takes of scikit-image's astronaut (framed
  4:5 at 1024 px, painted in `--style`), each through the identity and content-safety gates;
- fashion_shoot: product packshots at 2048 px on the catalog's backdrops and aspects, each
  through the product lock (cut-out and SIFT of the product photo, then SSIM of the packshot)
  and content safety; for two products: the tests' printed t-shirt and scikit-image's coffee cup.

Each row is the median over `--repeats` runs of every one of `--poses` shots (the kind's
first poses), after one untimed shot that loads the models. Prints a markdown table and the
machine; record it in BENCHMARKS.md, measured on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.packshot import machine  # noqa: E402
from photogen_pipelines.generation.references import face_embedding  # noqa: E402
from photogen_pipelines.jobs.plan import plan_shots  # noqa: E402
from photogen_pipelines.jobs.shots import ShotEngines, ShotInputs, make_shot  # noqa: E402

JOB_SEED = 20261206


def embedded_parts(home: str, style_id: str):
    """The embedded engines and catalogs, as the `job_shots` asset gets them from its resources."""
    from photogen_pipelines.definitions import build_defs

    resources = build_defs(home, engine="embedded").resources
    catalog = resources["catalog"]
    engines = ShotEngines(
        stylizer=resources["styles"].stylizer_for(),
        faces=resources["faces"].analyzer(),
        safety=resources["safety"].gate(catalog.quality()),
        retry_decay=catalog.styles().retry_decay,
    )
    return engines, catalog.kinds(), catalog.styles().get(style_id)


def time_shots(kinds, kind_id: str, inputs: ShotInputs, engines: ShotEngines, poses: int, repeats: int) -> dict:
    kind = kinds.get(kind_id)
    planned = plan_shots(kinds, kind, JOB_SEED)[:poses]
    make_shot(kind, planned[0], inputs, engines, embedded=True)  # loads the models and warms the caches
    seconds, outcomes = [], []
    for _ in range(repeats):
        for shot in planned:
            started = time.perf_counter()
            outcome = make_shot(kind, shot, inputs, engines, embedded=True)
            seconds.append(time.perf_counter() - started)
            outcomes.append(outcome)
    tries = [len(o.record.attempts) for o in outcomes]
    pictures = [o.picture for o in outcomes if o.picture is not None]
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "shots": len(seconds),
        "passed": sum(o.passed for o in outcomes),
        "tries": statistics.mean(tries),
        "sizes": ", ".join(dict.fromkeys(f"{p.shape[1]}x{p.shape[0]}" for p in pictures)),  # each size once, in order
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of every shot (default 3)")
    parser.add_argument("--poses", type=int, default=3, help="shots per kind, the kind's first poses (default 3)")
    parser.add_argument("--style", default="starry_swirl", help="the pose pack's style (default starry_swirl)")
    args = parser.parse_args()

    from skimage import data

    from tests.product_photos import garment_photo

    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        engines, kinds, style = embedded_parts(home, args.style)
        astronaut = data.astronaut()
        person = ShotInputs(person=[astronaut], identity=face_embedding(astronaut, engines.faces), style=style)
        takes = time_shots(kinds, "pose_pack", person, engines, args.poses, args.repeats)
        rows.append((f"pose_pack ({args.style} takes)", takes))
        for name, photo in (("t-shirt", garment_photo()[0]), ("coffee cup", data.coffee())):
            product = ShotInputs(person=[astronaut], product=photo)
            timing = time_shots(kinds, "fashion_shoot", product, engines, args.poses, args.repeats)
            rows.append((f"fashion_shoot ({name} packshots, product lock)", timing))

    print(f"machine: {machine()}; embedded engine; medians of {args.repeats} runs of {args.poses} shots per kind\n")
    print("| shot | pictures | shots timed | median s/shot | min–max s | passed | tries/shot | vs a pose pack take |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    take = rows[0][1]["median_s"]
    for label, r in rows:
        print(
            f"| {label} | {r['sizes'] or '-'} | {r['shots']} | {r['median_s']:.2f} | {r['min_s']:.2f}–{r['max_s']:.2f} "
            f"| {r['passed']}/{r['shots']} | {r['tries']:.1f} | {r['median_s'] / take:.2f}× |"
        )
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
