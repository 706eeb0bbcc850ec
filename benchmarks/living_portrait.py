"""Seconds of compute per second of living-portrait video: Wan image-to-video, the MP4 and
the identity gate on sampled frames.

    .venv/bin/python benchmarks/living_portrait.py [--models DIR] [--seconds 2] [--fps 8]
        [--size 64x64] [--runs 3] [--samples 8] [--device auto]

Without --models it writes the tiny random-weight Wan 2.2 TI2V-5B folder
(`photogen dev make-tiny-models --family wan-i2v`) in a temporary folder: that times the
harness and the production code path on this CPU, not a real video. With --models DIR
holding Wan-AI's diffusers folder in DIR/wan-i2v/ (on a GPU) it times the real model at the
folder's steps. Prints one JSON object: the machine, the model, load seconds, and the
median / min / max over --runs of the generation, the MP4 encode and the gate, each also
per second of video.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_order import machine  # noqa: E402
from photogen_pipelines.engines.video_wan import WanAnimator, frame_count  # noqa: E402
from photogen_pipelines.factories import FaceEngineSettings, face_analyzer  # noqa: E402
from photogen_pipelines.generation.stages import SELFIE_MIN_FACE_SCORE, detect_faces  # noqa: E402
from photogen_pipelines.generation.video_gate import video_identity_gate  # noqa: E402
from photogen_pipelines.imaging.video import mp4_bytes  # noqa: E402

PORTRAIT = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces" / "obama_senate.jpg"


def stats(samples: list[float], seconds_of_video: float) -> dict:
    median = statistics.median(samples)
    return {
        "median_s": round(median, 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "median_s_per_video_s": round(median / seconds_of_video, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="a models folder with wan-i2v/ (default: tiny random weights)")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="frames the identity gate scores")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))

    import torch

    portrait = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    faces = face_analyzer(FaceEngineSettings())
    [face] = detect_faces(portrait, faces, SELFIE_MIN_FACE_SCORE)
    reference = faces.embed(portrait, face)
    with tempfile.TemporaryDirectory() as tmp:
        if args.models:
            models = Path(args.models)
        else:
            from photogen_pipelines.devtools.tiny_wan import write_tiny_wan_models

            models = write_tiny_wan_models(Path(tmp) / "models")
        started = time.perf_counter()
        animator = WanAnimator(models, device=args.device)
        animator.load()
        load_s = time.perf_counter() - started

        generate, encode, gate = [], [], []
        animator.animate(portrait, "a gentle smile", args.seconds, args.fps, 0, (width, height))  # warm-up
        for run in range(args.runs):
            started = time.perf_counter()
            frames = animator.animate(portrait, "a gentle smile", args.seconds, args.fps, run, (width, height))
            generate.append(time.perf_counter() - started)
            started = time.perf_counter()
            video = mp4_bytes(frames, args.fps)
            encode.append(time.perf_counter() - started)
            started = time.perf_counter()
            verdict = video_identity_gate(frames, reference, faces, samples=args.samples)
            gate.append(time.perf_counter() - started)
    assert len(frames) == frame_count(args.seconds, args.fps)
    on = "cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else "cpu"
    where = (
        torch.cuda.get_device_name()
        if on == "cuda"
        else f"{machine()}, torch {torch.__version__} CPU, {torch.get_num_threads()} threads"
    )
    result = {
        "device": where,
        "model": animator.version + ("" if args.models else " [tiny random weights]"),
        "video": {
            "seconds": args.seconds,
            "fps": args.fps,
            "frames": len(frames),
            "size": [width, height],
            "mp4_bytes": len(video),
        },
        "load_s": round(load_s, 2),
        "generate": stats(generate, args.seconds),
        "mp4_encode": stats(encode, args.seconds),
        "identity_gate": {**stats(gate, args.seconds), "samples": args.samples, "passed": verdict.passed},
        "runs": args.runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
