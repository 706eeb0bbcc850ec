"""`photogen credentials verify FILE`: read a picture's C2PA Content Credentials back and
say whether they hold (imaging/content_credentials.py). Exit 0 for a valid manifest; one
line and exit 2 for a file without one, an invalid one, or a file that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import click

from photogen_pipelines.cli.common import UsageFailure, clear_errors
from photogen_pipelines.imaging.content_credentials import Verification, trust_anchors_from, verify
from photogen_pipelines.settings import PhotoGenSettings


@click.group()
def credentials() -> None:
    """C2PA Content Credentials: the signed note in every proof and print file that it was
    made by AI, with which models, for which shop."""


@credentials.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--trust-anchors",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM root certificates a trusted signer chains to (default: $PHOTOGEN_C2PA_TRUST_ANCHORS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@clear_errors
def verify_file(file: str, trust_anchors: str | None, as_json: bool) -> None:
    """Check FILE's Content Credentials: present, signature valid, pixels as signed; who
    signed, and whether a configured trust anchor vouches for them."""
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise UsageFailure(f"{file} cannot be read: {exc.strerror or exc}") from None
    anchors = Path(trust_anchors).read_text() if trust_anchors else trust_anchors_from(PhotoGenSettings())
    result = verify(data, anchors)
    if result is None:
        raise UsageFailure(f"{file} carries no Content Credentials (no C2PA manifest)")
    if as_json:
        click.echo(json.dumps({"file": file, **result.as_dict()}, indent=2))
    else:
        _print(file, result)
    if not result.valid:
        raise UsageFailure(f"{file}: its Content Credentials are invalid ({', '.join(result.failures) or result.state})")


def _print(file: str, result: Verification) -> None:
    models = "; ".join(f"{m.get('role')}: {m.get('version')}" for m in result.models) or "(none named)"
    made = f"{result.generator or 'unknown software'}" + (", AI-generated" if result.ai_generated else "")
    if result.development_certificate:
        trust = "a development certificate made in the home folder, not a shop's (set PHOTOGEN_C2PA_CERT and PHOTOGEN_C2PA_KEY)"
    elif result.trusted:
        trust = "trusted: the signer chains to a configured trust anchor"
    else:
        trust = "not trusted: no configured trust anchor vouches for the signer (PHOTOGEN_C2PA_TRUST_ANCHORS)"
    valid = (
        "yes: the signature is valid and the pixels are as signed"
        if result.valid
        else f"NO ({', '.join(result.failures) or result.state})"
    )
    rows = [
        ("generator", made),
        ("when", result.created or "not recorded"),
        ("models", models),
        ("shop", result.shop or "not named"),
        ("signer", result.signer or "unknown"),
        ("certificate", trust),
        ("manifest", result.label or "unknown"),
        ("valid", valid),
    ]
    click.echo(f"{file}: C2PA Content Credentials, {result.state}")
    for name, value in rows:
        click.echo(f"  {name + ':':<13}{value}")
