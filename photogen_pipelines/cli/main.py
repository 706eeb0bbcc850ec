"""`photogen`: run a real order on this machine, inspect faces, list the catalogs.

Exit codes: 0 success, 2 bad input (one line saying why), 1 anything else.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.errors import BadInput, NotFound, PhotoGenError


class UsageFailure(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"photogen: error: {self.format_message()}", err=True)


def clear_errors(command):
    """Core errors become one line and the documented exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (BadInput, NotFound) as exc:
            raise UsageFailure(f"{exc} [{exc.code}]") from None
        except PhotoGenError as exc:
            click.echo(f"photogen: error: {exc} [{exc.code}]", err=True)
            sys.exit(1)

    return wrapper


def emit(as_json: bool, payload, text: str) -> None:
    click.echo(json.dumps(payload, indent=2) if as_json else text)


def read_image_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", code="unreadable_file") from None


def image_array(path: str) -> np.ndarray:
    from photogen_pipelines.imaging import decode_upload

    return np.asarray(decode_upload(read_image_file(path)))


@functools.cache
def face_analyzer():
    from photogen_pipelines.engines.faces_opencv import OpenCvFaceAnalyzer

    return OpenCvFaceAnalyzer()


@click.group()
@click.version_option(package_name="photogen")
def cli() -> None:
    """PhotoGen: a selfie in, a print-ready portrait in an art style out."""
    # what photogen writes (orders, photos, key hashes, the Dagster instance) is its owner's
    # alone, and so is what the servers it starts write: they inherit the umask
    os.umask(0o077)


@cli.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@clear_errors
def faces(image: str, as_json: bool) -> None:
    """The faces found in IMAGE, largest first, with boxes and scores."""
    found = face_analyzer().detect(image_array(image))
    lines = [f"{len(found)} face(s) in {image}"] + [
        f"  #{i}: box x={f.box.x:.0f} y={f.box.y:.0f} w={f.box.w:.0f} h={f.box.h:.0f}  score {f.score:.3f}"
        for i, f in enumerate(found)
    ]
    emit(as_json, {"image": image, "faces": [f.to_json() for f in found]}, "\n".join(lines))


@cli.command()
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False))
@click.option("--threshold", type=float, default=None, help="Same-person threshold (default: the encoder's, 0.363 for SFace).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@clear_errors
def identity(image_a: str, image_b: str, threshold: float | None, as_json: bool) -> None:
    """How alike the largest face in IMAGE_A and in IMAGE_B are (cosine similarity)."""
    from photogen_pipelines.engines.base import cosine

    analyzer = face_analyzer()
    embeddings = []
    for path in (image_a, image_b):
        rgb = image_array(path)
        found = analyzer.detect(rgb)
        if not found:
            raise BadInput(f"no face found in {path}", code="no_face")
        embeddings.append(analyzer.embed(rgb, found[0]))
    similarity = cosine(*embeddings)
    threshold = analyzer.default_threshold if threshold is None else threshold
    verdict = "same person" if similarity >= threshold else "different people"
    emit(
        as_json,
        {
            "image_a": image_a,
            "image_b": image_b,
            "similarity": round(similarity, 4),
            "threshold": threshold,
            "same_person": similarity >= threshold,
            "encoder": analyzer.version,
        },
        f"similarity {similarity:.3f} (threshold {threshold:.3f}): {verdict}",
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON.")
def styles(as_json: bool) -> None:
    """The style catalog."""
    catalog = load_styles()
    rows = [f"{s.id:<20} {s.name:<20} identity ≥ {s.identity_threshold:.2f}  {s.description}" for s in catalog.styles]
    emit(as_json, catalog.model_dump(mode="json"), "\n".join(rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON.")
def products(as_json: bool) -> None:
    """The print products, with pixel sizes and prices."""
    catalog = load_products()
    payload = [{**p.model_dump(mode="json"), "pixel_size": list(p.pixel_size)} for p in catalog.products]
    rows = [
        f"{p.id:<14} {p.name:<26} {p.pixel_size[0]}x{p.pixel_size[1]} px  {p.format:<4}  ${p.price_cents / 100:.2f}"
        for p in catalog.products
    ]
    emit(as_json, payload, "\n".join(rows))


def main() -> None:
    from photogen_pipelines.cli import admin, demo, dev, report, serve, ui  # noqa: F401  (registers the commands)

    cli()
