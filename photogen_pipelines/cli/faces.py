"""`photogen faces` and `photogen identity`: what the face engine sees in a photo."""

from __future__ import annotations

import click

from photogen_pipelines import factories
from photogen_pipelines.cli.common import UsageFailure, clear_errors, emit, image_array
from photogen_pipelines.cli.processes import say
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


def _gate_thresholds(catalog) -> str:
    """The identity gate's thresholds, grouped: "0.40 for starry_swirl, sepia_oil; 0.36 for ember_glow"."""
    groups: dict[float, list[str]] = {}
    for style in catalog.styles:
        groups.setdefault(style.identity_threshold, []).append(style.id)
    return "; ".join(f"{value:.2f} for {', '.join(ids)}" for value, ids in sorted(groups.items(), reverse=True))


@click.command()
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False))
@click.option(
    "--style",
    "style_id",
    default=None,
    help="Judge with this style's identity gate threshold (styles.yaml), as the gate judges a proof against the selfie.",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Same-person threshold (default: the face encoder's own for two photos, 0.363 for SFace; "
    "the identity gate's are per style: --style).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@clear_errors
def identity(image_a: str, image_b: str, style_id: str | None, threshold: float | None, as_json: bool) -> None:
    """How alike the largest face in IMAGE_A and in IMAGE_B are (cosine similarity), against
    the encoder's photo-to-photo threshold, or a style's identity gate threshold (--style)."""
    from photogen_pipelines.catalog import load_styles
    from photogen_pipelines.engines.base import cosine

    if style_id is not None and threshold is not None:
        raise UsageFailure("give --style or --threshold, not both")
    catalog = load_styles(PhotoGenSettings().styles_path)  # the catalog the gate reads
    style = catalog.get(style_id) if style_id is not None else None  # an unknown id fails before the models load
    analyzer = face_analyzer()
    embeddings = []
    for path in (image_a, image_b):
        rgb = image_array(path)
        found = analyzer.detect(rgb)
        if not found:
            raise BadInput(f"no face found in {path}", code="no_face")
        embeddings.append(analyzer.embed(rgb, found[0]))
    similarity = cosine(*embeddings)
    if style is not None:
        threshold, source = style.identity_threshold, "style"
        why = f"threshold {threshold:.2f}: the identity gate's for {style.id}, styles.yaml"
        if catalog.encoder.lower() not in analyzer.version.lower():
            say(f"warning: styles.yaml's thresholds are calibrated for the {catalog.encoder} encoder, not {analyzer.version}")
    elif threshold is not None:
        source, why = "option", f"threshold {threshold:.3f}, from --threshold"
    else:
        threshold, source = analyzer.default_threshold, "encoder"
        why = f"threshold {threshold:.3f}: the face encoder's photo-to-photo one, not the identity gate's"
    passed = similarity >= threshold
    if style is not None:
        verdict = f"passes {style.id}'s identity gate" if passed else f"fails {style.id}'s identity gate"
    else:
        verdict = "same person" if passed else "different people"
    lines = [f"similarity {similarity:.3f} ({why}): {verdict}"]
    if style is None:
        lines.append(
            f"  the identity gate judges a proof by its style's threshold ({_gate_thresholds(catalog)}): add --style ID for one"
        )
    emit(
        as_json,
        {
            "image_a": image_a,
            "image_b": image_b,
            "similarity": round(similarity, 4),
            "threshold": threshold,
            # encoder: the encoder's photo-to-photo threshold; style: that style's gate; option: --threshold
            "threshold_source": source,
            "style_id": style.id if style else None,
            "same_person": passed,
            "verdict": verdict,
            "encoder": analyzer.version,
            "gate_thresholds": {s.id: s.identity_threshold for s in catalog.styles},
        },
        "\n".join(lines),
    )
