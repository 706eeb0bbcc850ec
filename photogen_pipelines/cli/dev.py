"""`photogen dev`: tools for engineers working on PhotoGen itself."""

from __future__ import annotations

from pathlib import Path

import click

from photogen_pipelines.cli.common import UsageFailure

FAMILIES = ("instantid", "flux2-klein", "qwen-edit")  # devtools.tiny_models.FAMILIES, without importing torch
VIDEO_FAMILY = "wan-i2v"  # the living portrait's Wan image-to-video (devtools/tiny_wan.py)


@click.group()
def dev() -> None:
    """Tools for working on PhotoGen (not for production)."""


@dev.command("make-tiny-models")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--family",
    type=click.Choice((*FAMILIES, VIDEO_FAMILY)),
    default="instantid",
    show_default=True,
    help="instantid: SDXL + InstantID and insightface (--engine diffusers); flux2-klein: FLUX.2 [klein]; "
    "qwen-edit: Qwen-Image-Edit-Plus. Each with the print upscaler. wan-i2v: Wan 2.2 TI2V-5B image-to-video "
    "(living portraits), without one.",
)
def make_tiny_models(directory: str, family: str) -> None:
    """Write tiny random-weight models of one engine family into DIRECTORY, in the
    production layout: `photogen demo --engine ENGINE --models DIRECTORY` then runs the
    GPU code path on this CPU. Their pictures are noise."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise UsageFailure(f"{target} is not empty; give a new or empty folder")
    try:
        from photogen_pipelines.devtools.tiny_models import FAMILIES as ENGINES
        from photogen_pipelines.devtools.tiny_models import write_tiny_models
    except ImportError as exc:
        raise UsageFailure(f"the diffusers engines are not installed ({exc.name}): pip install -e '.[gpu]'") from None
    if family == VIDEO_FAMILY:
        from photogen_pipelines.devtools.tiny_wan import write_tiny_wan_models

        write_tiny_wan_models(target)
    else:
        write_tiny_models(target, family=family)
    size_mb = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    click.echo(f"tiny random-weight {family} models ({size_mb:.1f} MB) in {target}")
    if family != VIDEO_FAMILY:  # no command serves living portraits yet
        click.echo(f"try them: photogen demo --engine {ENGINES[family]} --models {target}")
