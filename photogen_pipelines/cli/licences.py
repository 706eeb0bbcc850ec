"""`photogen licences`: the models this configuration loads and the licence of each, and the
start-up check that PHOTOGEN_COMMERCIAL_ONLY=1 turns on for `photogen serve`, `photogen demo`
and `photogen engines serve` (photogen_pipelines/licences.py; the data: catalog/models.yaml)."""

from __future__ import annotations

import json

import click

from photogen_pipelines.cli.common import UsageFailure
from photogen_pipelines.errors import ModelError
from photogen_pipelines.settings import PhotoGenSettings


def environment_settings(**overrides) -> PhotoGenSettings:
    """The PHOTOGEN_* settings, a bad value one line (exit 2) rather than a traceback."""
    from pydantic import ValidationError

    try:
        return PhotoGenSettings(**overrides)
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = "PHOTOGEN_" + "_".join(str(part) for part in problem["loc"]).upper()
        raise UsageFailure(f"{name}: {problem['msg']}") from None


def require_commercial(models_of, settings: PhotoGenSettings | None = None) -> None:
    """With PHOTOGEN_COMMERCIAL_ONLY on, a UsageFailure (one line, exit 2) naming every model
    `models_of()` returns that a paying shop may not use; nothing when the setting is off,
    so a shop that has not asked pays nothing for the check. Call it before anything starts."""
    settings = settings or environment_settings()
    if not settings.commercial_only:
        return
    from photogen_pipelines.licences import refusal

    try:
        models = models_of()
    except ModelError as exc:
        # a configuration whose models cannot be named cannot be shown to be commercial
        raise UsageFailure(f"PHOTOGEN_COMMERCIAL_ONLY is on and the models cannot be checked: {exc}") from None
    if line := refusal(models):
        raise UsageFailure(line)


def require_commercial_configuration(settings: PhotoGenSettings) -> None:
    """require_commercial for everything `settings` loads in a run (licences.configuration_models)."""
    from photogen_pipelines.licences import configuration_models

    require_commercial(lambda: configuration_models(settings), settings)


def _table(rows: list[dict]) -> str:
    headers = ("model", "licence", "commercial", "used for")
    cells = [(r["model"], r["licence"], "yes" if r["commercial"] else "NO", r["used_for"]) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _verdict(rows: list[dict]) -> str:
    bad = [r["model"] for r in rows if not r["commercial"]]
    if not bad:
        return "A paying shop may use all of these models (under their licences' own conditions)."
    return f"A paying shop may NOT use: {', '.join(bad)} (see the README, 'Model licences')."


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list: model, licence, commercial, source, used_for.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (the README's table is --markdown --all).")
@click.option("--all", "every", is_flag=True, help="Every model PhotoGen knows, not only those this configuration loads.")
def licences(as_json: bool, markdown: bool, every: bool) -> None:
    """The models this configuration (the PHOTOGEN_* environment) loads, with their licences.

    With PHOTOGEN_COMMERCIAL_ONLY=1 it also exits 2, after the list, when one of them may not
    be used by a paying shop: the check serve, demo and the engine service make at start."""
    from photogen_pipelines import licences as core

    if as_json and markdown:
        raise UsageFailure("--json and --markdown are two outputs: pick one")
    settings = environment_settings()
    if markdown and every:
        click.echo(core.markdown_table())
        return
    try:
        if every:
            book = core.load_licences()
            models = [core.UsedModel(key, "", entry) for key, entry in book.models.items()]
        else:
            models = core.configuration_models(settings)
    except ModelError as exc:
        raise UsageFailure(f"{exc} [{exc.code}]") from None
    rows = [model.as_json() for model in models]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif markdown:
        click.echo("| model | licence | commercial | used for | source |\n|---|---|---|---|---|")
        for r in rows:
            click.echo(
                f"| {r['model']} | {r['licence']} | {'yes' if r['commercial'] else '**no**'} | {r['used_for']} | {r['source']} |"
            )
    else:
        click.echo(_table(rows))
        if settings.engine_url and not every:
            click.echo(
                f"Proofs and prints of the shop's engine come from the engine service at {settings.engine_url}: "
                "it checks its own models when it starts (photogen engines serve)."
            )
        click.echo(_verdict(rows))
    if settings.commercial_only and not every and (line := core.refusal(models)):
        raise UsageFailure(line)
