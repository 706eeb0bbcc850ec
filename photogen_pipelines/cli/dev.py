"""`photogen dev`: tools for engineers working on PhotoGen itself."""

from __future__ import annotations

from pathlib import Path

import click

from photogen_pipelines.cli.common import UsageFailure


@click.group()
def dev() -> None:
    """Tools for working on PhotoGen (not for production)."""


@dev.command("make-tiny-models")
@click.argument("directory", type=click.Path(file_okay=False))
def make_tiny_models(directory: str) -> None:
    """Write tiny random-weight models for the diffusers engine into DIRECTORY, in the
    production layout: `photogen demo --engine diffusers --models DIRECTORY` then runs
    the GPU code path on this CPU. Their pictures are noise."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise UsageFailure(f"{target} is not empty; give a new or empty folder")
    try:
        from photogen_pipelines.devtools.tiny_models import write_tiny_models
    except ImportError as exc:
        raise UsageFailure(f"the diffusers engine is not installed ({exc.name}): pip install -e '.[gpu]'") from None
    write_tiny_models(target)
    size_mb = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    click.echo(f"tiny random-weight models ({size_mb:.1f} MB) in {target}")
    click.echo(f"try them: photogen demo --engine diffusers --models {target}")
