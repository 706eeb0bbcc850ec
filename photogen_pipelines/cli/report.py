"""`photogen report`: per style, how many orders settled, how often the identity gate
rejected them, their median identity score and median seconds per stage, read from the
generation ledger in the artifact store.

No ledger yet is not an error (exit code 0): the command says, on stderr, how to build
one (materialize the `generation_ledger` asset); with `--json` it still prints one JSON
object, with no orders, so a script can read it. A bad `--since` is exit code 2.
"""

from __future__ import annotations

import json
import math
from datetime import date

import click

from photogen_pipelines.artifacts import Stage
from photogen_pipelines.cli.common import UsageFailure, clear_errors, home_option
from photogen_pipelines.settings import PhotoGenSettings

STAGE_COLUMNS = {
    Stage.SELFIE: "selfie",
    Stage.STYLED_CANDIDATES: "styled",
    Stage.VALIDATED_PROOFS: "proofs",
    Stage.PRINT_MASTER: "master",
    Stage.PRINT_FILE: "print",
    "total": "total",
}
HOW_TO_BUILD = (
    "materialize the generation_ledger asset (photogen ui, Assets, generation_ledger, Materialize) for the days you want"
)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageFailure(f"--since must be a day as YYYY-MM-DD, e.g. 2026-11-21, not {value!r}") from None


def _number(value, digits: int = 4):
    """JSON has no NaN: a value that could not be computed is null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def _payload(ledger, table, since: date | None, days: list[date]) -> dict:
    from photogen_pipelines.metrics import summary

    styles = [
        {
            "style_id": row["style_id"],
            "orders": int(row["orders"]),
            "verdicts": int(row["verdicts"]),
            "rejected": int(row["rejected"]),
            "rejection_rate": _number(row["rejection_rate"]),
            "identity_median": _number(row["identity_median"]),
            "median_seconds": {stage: _number(row[f"median_seconds_{stage}"], 3) for stage in STAGE_COLUMNS},
        }
        for row in table.to_dict("records")
    ]
    return {
        "since": since.isoformat() if since else None,
        "days": [d.isoformat() for d in days],
        **summary(ledger),
        "styles": styles,
    }


def _text(payload: dict) -> str:
    from photogen_pipelines.metrics import rate_text

    days = payload["days"]
    span = "no days" if not days else f"on {days[0]}" if len(days) == 1 else f"from {days[0]} to {days[-1]}"
    if not payload["orders"]:
        return (
            f"No orders in the ledger settled on or after {payload['since']}." if payload["since"] else "No orders in the ledger."
        )
    width = max(len(style["style_id"]) for style in payload["styles"]) + 2
    lines = [
        f"{payload['orders']} order{'' if payload['orders'] == 1 else 's'} settled {span} (UTC); "
        f"{payload['rejected']} of the {payload['verdicts']} with a verdict were rejected "
        f"({rate_text(payload['rejection_rate'])})",
        "",
        f"{'style':<{width}}{'orders':>7}{'rejected':>10}{'rate':>6}{'identity':>10}"
        + "".join(f"{name:>9}" for name in STAGE_COLUMNS.values()),
    ]
    for style in payload["styles"]:
        identity = "—" if style["identity_median"] is None else f"{style['identity_median']:.2f}"
        seconds = "".join(
            f"{'—' if style['median_seconds'][stage] is None else format(style['median_seconds'][stage], '.1f'):>9}"
            for stage in STAGE_COLUMNS
        )
        rejected = f"{style['rejected']}/{style['verdicts']}"
        lines.append(
            f"{style['style_id']:<{width}}{style['orders']:>7}{rejected:>10}{rate_text(style['rejection_rate']):>6}{identity:>10}{seconds}"
        )
    lines += ["", "rate: rejected / orders with a verdict; identity: median final score; stage columns: median seconds"]
    return "\n".join(lines)


@click.command()
@click.option("--since", metavar="YYYY-MM-DD", default=None, help="Only orders settled on or after this day (UTC).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@home_option
@clear_errors
def report(since: str | None, as_json: bool, home: str | None) -> None:
    """Rejection rate, median identity score and median seconds per stage, per style,
    from the generation ledger."""
    since_day = _day(since)
    # pandas and pyarrow load only for this command, not for every `photogen` call
    from photogen_pipelines.ledger import LEDGER_PREFIX, ledger_days, read_ledger
    from photogen_pipelines.metrics import rejection_table
    from photogen_pipelines.storage import LocalArtifactStore

    settings = PhotoGenSettings(**({"home": home} if home else {}))
    store = LocalArtifactStore(settings.resolved_artifacts_root)
    built = ledger_days(store)
    if not built:
        click.echo(f"photogen: no generation ledger in {store.path(LEDGER_PREFIX)} yet: {HOW_TO_BUILD}", err=True)
        if not as_json:
            return
    days = [d for d in built if since_day is None or d >= since_day]
    ledger = read_ledger(store, since_day)
    payload = _payload(ledger, rejection_table(ledger, by=("style_id",)), since_day, days)
    click.echo(json.dumps(payload, indent=2) if as_json else _text(payload))
