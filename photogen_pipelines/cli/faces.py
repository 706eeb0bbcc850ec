"""`photogen faces` and `photogen identity`: what the face engine sees in a photo."""

from __future__ import annotations

import click

from photogen_pipelines import factories
from photogen_pipelines.cli.common import clear_errors, emit, image_array
from photogen_pipelines.errors import BadInput
from photogen_pipelines.settings import PhotoGenSettings


def face_analyzer():
    """The face engine the pipelines validate with, for the settings in the environment."""
    return factories.face_analyzer(factories.deployment(PhotoGenSettings()).faces)


@click.command()
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


@click.command()
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
