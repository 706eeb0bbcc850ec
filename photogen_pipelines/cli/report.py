"""`photogen report`: per style, how many orders settled, how often the identity gate
rejected them, their median identity score and median seconds per stage, and what
generating them cost per style, per engine backend and per quality tier, read from the
generation ledger in the artifact store, and, for the settled orders the ledger does not
hold yet (today's, days nobody materialized), directly from the orders database with the
ledger's own row builder (photogen_pipelines/analytics/ledger_view.py). The output says which days
and how many orders came from where; the command never writes ledger files. Then credits
per UTC day (analytics/credits.py): what was granted, sold, spent, refunded, expired,
clawed back and adjusted, and at each day's end the wallets' balance, the deferred revenue
(credits sold, not spent yet) and the money received for packs. Last, the waits each
tier's customers are told now (orders/waits.py): a premium print's minutes show.

No ledger yet is not an error (exit code 0): the command says, on stderr, how to build
one (materialize the `generation_ledger` asset); with `--json` it still prints one JSON
object, so a script can read it. A bad `--since` is exit code 2; an orders database that
is configured but cannot be read is exit code 1.

`photogen report --jobs` reports the studio's jobs instead, per kind: jobs, shots, the
passed share of the settled shots, the median retries and engine seconds a shot took and
what a shot cost, from the job ledger's day files (analytics/job_ledger.py) topped up from
the orders database the same way.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import click

from photogen_pipelines.cli.common import UsageFailure, clear_errors, home_option, home_settings
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.storage.artifacts import Stage

STAGE_COLUMNS = {
    Stage.SELFIE: "selfie",
    Stage.STYLED_CANDIDATES: "styled",
    Stage.VALIDATED_PROOFS: "proofs",
    Stage.PRINT_MASTER: "master",
    Stage.PRINT_FILE: "print",
    "total": "total",
}
# the cost tables' columns after the group's name, and their widths
COST_HEAD = (
    ("orders", 7),
    ("rejected", 10),
    ("rate", 6),
    ("costed", 8),
    ("mean cost", 11),
    ("total cost", 12),
    ("seconds", 9),
    ("reused", 8),
)
# the report's lists beside `styles`: per engine backend and per quality tier (the ledger's columns)
COST_GROUPS = {"engines": "engine_backend", "tiers": "tier"}
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


def _orders_book(settings: PhotoGenSettings):
    """The orders database to read what the ledger lacks, or None where there is none (a
    home without orders.db, a database never migrated): the report never creates one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from photogen_pipelines.db.database import normalise_url, open_database
    from photogen_pipelines.orders.book import SqlOrderBook

    url = settings.resolved_database_url
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        return None
    try:
        database = open_database(url)
        if database.revision() is None:  # no tables yet: no order ever placed
            return None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise PhotoGenError(f"cannot read the orders database: {reason}", code="database_unavailable") from None
    return SqlOrderBook(database)


def _sources(current) -> dict:
    """Which rows came from where: the ledger's day files, or read directly from the
    orders database (the orders the ledger does not hold yet)."""
    from photogen_pipelines.analytics.ledger_view import LEDGER, ORDERS_DB

    return {
        "ledger": {
            "days": [d.isoformat() for d in current.ledger_days],
            "orders": current.source.count(LEDGER),
        },
        "orders_db": {
            "read": current.database_read,
            "days": [d.isoformat() for d in current.days(ORDERS_DB)],
            "orders": current.source.count(ORDERS_DB),
            "order_ids": current.order_ids(ORDERS_DB),
        },
    }


def _rates_and_costs(row: dict) -> dict:
    """A group's orders, rejection rate and generation cost (USD, over its orders with a
    recorded cost)."""
    return {
        "orders": int(row["orders"]),
        "verdicts": int(row["verdicts"]),
        "rejected": int(row["rejected"]),
        "rejection_rate": _number(row["rejection_rate"]),
        "orders_costed": int(row["orders_costed"]),
        "generation_cost_usd_mean": _number(row["generation_cost_usd_mean"], 6),
        "generation_cost_usd_total": _number(row["generation_cost_usd_total"], 6),
        "generation_seconds_mean": _number(row["generation_seconds_mean"], 3),
        "predictions_reused": int(row["predictions_reused"]),
    }


def _payload(current, since: date | None) -> dict:
    from photogen_pipelines.analytics.ledger_view import ORDERS_DB
    from photogen_pipelines.analytics.metrics import rejection_table, summary

    styles = [
        {
            "style_id": row["style_id"],
            **_rates_and_costs(row),
            "identity_median": _number(row["identity_median"]),
            "median_seconds": {stage: _number(row[f"median_seconds_{stage}"], 3) for stage in STAGE_COLUMNS},
        }
        for row in rejection_table(current.rows, by=("style_id",)).to_dict("records")
    ]
    groups = {
        name: [{key: row[key], **_rates_and_costs(row)} for row in rejection_table(current.rows, by=(key,)).to_dict("records")]
        for name, key in COST_GROUPS.items()
    }
    days = sorted({*current.ledger_days, *current.days(ORDERS_DB)})
    return {
        "since": since.isoformat() if since else None,
        "days": [d.isoformat() for d in days],
        **summary(current.rows),
        "sources": _sources(current),
        "by_day": current.by_day(),
        "styles": styles,
        **groups,
    }


def _waits(book, products_path: str | None) -> list[dict]:
    """What each tier's customers are told to expect now (GET /v1/tiers): the median of its
    recent orders, or the catalog's estimate until there are enough (orders/waits.py)."""
    from photogen_pipelines.catalog import load_products
    from photogen_pipelines.orders.waits import TierWait, tier_wait

    rows = []
    for tier in load_products(products_path).tiers:
        estimate = tier.expected_wait
        wait = (
            tier_wait(book, tier) if book is not None else TierWait(estimate.proofs_seconds, estimate.print_seconds, "catalog", 0)
        )
        rows.append({"tier": tier.id, **{k: getattr(wait, k) for k in ("proofs_seconds", "print_seconds", "basis", "orders")}})
    return rows


def _waits_text(waits: list[dict]) -> list[str]:
    def minutes(seconds: int) -> str:
        return f"{seconds} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    width = max(len(row["tier"]) for row in waits) + 2
    lines = ["", f"{'tier':<{width}}{'to proofs':>11}{'to print':>11}  told from"]
    for row in waits:
        basis = (
            f"the median of its last {_plural(row['orders'])}"
            if row["basis"] == "measured"
            else f"the catalog's estimate ({_plural(row['orders'])} measured so far)"
        )
        lines.append(f"{row['tier']:<{width}}{minutes(row['proofs_seconds']):>11}{minutes(row['print_seconds']):>11}  {basis}")
    lines.append("waits: what GET /v1/tiers tells customers now, from payment to proofs and from approval to the print file")
    return lines


def _credits(book, since: date | None) -> dict:
    """Credits per UTC day from the wallets' ledger (analytics/credits.py): granted, sold,
    spent, refunded, expired, clawed back, adjusted; the balance, the deferred revenue and
    the packs' money at each day's end."""
    from photogen_pipelines.analytics.credits import credits_summary

    if book is None:
        return credits_summary(None, since)
    with book.database.session() as session:
        return credits_summary(session, since)


CREDIT_COLUMNS = (
    ("granted", "granted"),
    ("sold", "sold"),
    ("spent", "spent"),
    ("refunded", "refunded"),
    ("expired", "expired"),
    ("clawed_back", "clawback"),
    ("adjusted", "adjusted"),
    ("balance", "balance"),
    ("deferred_credits", "deferred"),
)
CREDIT_DAYS_SHOWN = 14  # the text's last days; --json has every one


def _credits_text(payload: dict) -> list[str]:
    credits, since = payload["credits"], payload["since"]
    now = credits["now"]
    books = (
        f"{now['balance']} credits in wallets, {now['deferred_credits']} of them sold and unspent "
        f"({_dollars(now['deferred_cents'])} deferred); packs: {_dollars(now['pack_received_cents'])} received net of refunds"
    )
    if not credits["days"]:
        moved = f"no credits moved on or after {since}" if since else "no credits moved yet"
        return ["", f"Credits: {moved}; {books}"]
    days = credits["days"][-CREDIT_DAYS_SHOWN:]
    shown = "" if len(days) == len(credits["days"]) else f" (the last {len(days)} of {len(credits['days'])} days; --json has all)"
    lines = ["", f"Credits per day (UTC){shown}; now {books}", ""]
    lines.append(f"{'day':<12}" + "".join(f"{name:>10}" for _, name in CREDIT_COLUMNS) + f"{'deferred $':>12}{'packs $':>12}")
    for day in days:
        cells = "".join(f"{day[key]:>10}" for key, _ in CREDIT_COLUMNS)
        lines.append(f"{day['day']:<12}{cells}{_dollars(day['deferred_cents']):>12}{_dollars(day['pack_received_cents']):>12}")
    lines += [
        "",
        "credits moved that day; balance: every wallet at the day's end; deferred: credits sold and not spent yet,",
        "and their price; packs $: money received for packs to that day, less refunds",
    ]
    return lines


def _dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _plural(count: int) -> str:
    return f"{count} order{'' if count == 1 else 's'}"


def _source_line(sources: dict) -> str:
    """ledger: 2026-11-01..2026-11-27 (40 orders); read directly from the orders database: …"""
    from photogen_pipelines.analytics.ledger_view import day_ranges

    ledger, direct = sources["ledger"], sources["orders_db"]
    files = [date.fromisoformat(d) for d in ledger["days"]]
    parts = [f"ledger: {day_ranges(files)} ({_plural(ledger['orders'])})" if files else "ledger: none yet"]
    if not direct["read"]:
        parts.append("no orders database to read")
    elif direct["orders"]:
        days = day_ranges([date.fromisoformat(d) for d in direct["days"]])
        parts.append(f"read directly from the orders database: {days} ({_plural(direct['orders'])}, not in the ledger yet)")
    else:
        parts.append("read directly from the orders database: nothing the ledger lacks")
    return "; ".join(parts)


def _text(payload: dict) -> str:
    from photogen_pipelines.analytics.metrics import rate_text

    days = payload["days"]
    span = "no days" if not days else f"on {days[0]}" if len(days) == 1 else f"from {days[0]} to {days[-1]}"
    if not payload["orders"]:
        none = f"No orders settled on or after {payload['since']}." if payload["since"] else "No settled orders."
        return "\n".join([none, _source_line(payload["sources"]), *_credits_text(payload), *_waits_text(payload["waits"])])
    width = max(len(style["style_id"]) for style in payload["styles"]) + 2
    lines = [
        f"{_plural(payload['orders'])} settled {span} (UTC); "
        f"{payload['rejected']} of the {payload['verdicts']} with a verdict were rejected "
        f"({rate_text(payload['rejection_rate'])})",
        _source_line(payload["sources"]),
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
    return "\n".join([*lines, "", *_cost_text(payload), *_credits_text(payload), *_waits_text(payload["waits"])])


def _cost_text(payload: dict) -> list[str]:
    """What generating the orders cost: in all, then per style, per engine backend and
    per quality tier, each beside its rejection rate."""
    from photogen_pipelines.analytics.metrics import rate_text, usd_text

    costed, orders = payload["orders_costed"], payload["orders"]
    if costed:
        total, mean = usd_text(payload["generation_cost_usd_total"]), usd_text(payload["generation_cost_usd_mean"])
        lines = [f"Generation cost: {total} for the {costed} of {_plural(orders)} with a recorded cost ({mean} an order)"]
    else:
        none = "settled before costs were recorded, or never generated"
        lines = [f"Generation cost: none recorded for the {_plural(orders)} ({none})"]
    groups = [("style", "style_id", payload["styles"]), ("engine", "engine_backend", payload["engines"])]
    groups.append(("tier", "tier", payload["tiers"]))
    width = max(len(str(row[key])) for _, key, rows in groups for row in rows) + 2
    for label, key, rows in groups:
        lines += ["", f"{label:<{width}}" + "".join(f"{name:>{size}}" for name, size in COST_HEAD)]
        for row in rows:
            seconds = "—" if row["generation_seconds_mean"] is None else f"{row['generation_seconds_mean']:.1f}"
            cells = [
                f"{row[key]:<{width}}",
                f"{row['orders']:>7}",
                f"{row['rejected']}/{row['verdicts']}".rjust(10),
                f"{rate_text(row['rejection_rate']):>6}",
                f"{row['orders_costed']:>8}",
                f"{usd_text(row['generation_cost_usd_mean']):>11}",
                f"{usd_text(row['generation_cost_usd_total']):>12}",
                f"{seconds:>9}",
                f"{row['predictions_reused']:>8}",
            ]
            lines.append("".join(cells))
    lines += [
        "",
        "cost: USD, every stage's engine (proofs, regenerations, upscaling); costed: orders with a recorded cost,",
        "the mean and total are over them; engine: the backend that painted the first proofs;",
        "seconds: mean metered engine seconds; reused: remote predictions found done on a retry, not paid again",
    ]
    return lines


# the jobs table's columns after the kind's name, and their widths
JOB_HEAD = (("jobs", 6), ("shots", 7), ("passed", 8), ("rate", 6), ("retries", 9), ("seconds", 9), ("cost/shot", 11))
HOW_TO_BUILD_JOBS = "materialize the job_ledger asset (photogen ui, Assets, job_ledger, Materialize) for the days you want"


def _jobs_payload(rows, sources: dict, since: date | None) -> dict:
    from photogen_pipelines.analytics.job_ledger import per_kind

    counts = rows["outcome"].value_counts()
    return {
        "since": since.isoformat() if since else None,
        "days": sorted(set(rows["day"])),
        "jobs": int(rows["job_id"].nunique()),
        "shots": len(rows),
        **{outcome: int(counts.get(outcome, 0)) for outcome in ("passed", "rejected", "pending")},
        "sources": sources,
        "kinds": [{**row, "median_retries": _number(row["median_retries"], 3)} for row in per_kind(rows)],
    }


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def _jobs_text(payload: dict) -> str:
    from photogen_pipelines.analytics.ledger_view import day_ranges
    from photogen_pipelines.analytics.metrics import rate_text, usd_text

    ledger, direct = payload["sources"]["ledger"], payload["sources"]["orders_db"]
    files = [date.fromisoformat(d) for d in ledger["days"]]
    where = f"job ledger: {day_ranges(files)} ({_jobs(ledger['jobs'])})" if files else "job ledger: none yet"
    read = f"read directly from the orders database: {_jobs(direct['jobs'])}" if direct["read"] else "no orders database to read"
    where = f"{where}; {read}"
    if not payload["shots"]:
        none = f"No jobs changed on or after {payload['since']}." if payload["since"] else "No studio jobs."
        return "\n".join([none, where])
    days = payload["days"]
    span = f"on {days[0]}" if len(days) == 1 else f"from {days[0]} to {days[-1]}"
    width = max(len(row["kind"]) for row in payload["kinds"]) + 2
    lines = [
        f"{_jobs(payload['jobs'])}, {payload['shots']} shots, last changed {span} (UTC): "
        f"{payload['passed']} passed, {payload['rejected']} rejected, {payload['pending']} pending",
        where,
        "",
        f"{'kind':<{width}}" + "".join(f"{name:>{size}}" for name, size in JOB_HEAD),
    ]
    for row in payload["kinds"]:
        retries = "—" if row["median_retries"] is None else f"{row['median_retries']:g}"
        seconds = "—" if row["median_seconds_per_shot"] is None else f"{row['median_seconds_per_shot']:.1f}"
        cells = [
            f"{row['kind']:<{width}}",
            f"{row['jobs']:>6}",
            f"{row['shots']:>7}",
            f"{row['passed']}/{row['passed'] + row['rejected']}".rjust(8),
            f"{rate_text(row['passed_rate']):>6}",
            f"{retries:>9}",
            f"{seconds:>9}",
            f"{usd_text(row['cost_usd_per_shot']):>11}",
        ]
        lines.append("".join(cells))
    lines += [
        "",
        "passed: shots passed / shots settled; rate: that share; retries and seconds: the median per settled shot;",
        "cost/shot: USD, the mean over the shots with a record (every attempt counted)",
    ]
    return "\n".join(lines)


def _jobs_report(store, book, since_day: date | None, as_json: bool) -> None:
    """The studio's jobs per kind, from the job ledger and the orders database."""
    from photogen_pipelines.analytics.job_ledger import JOB_LEDGER_PREFIX, current_job_ledger, job_ledger_days

    rows, sources = current_job_ledger(store, book.database if book is not None else None, since_day)
    if not job_ledger_days(store):
        where = store.path(JOB_LEDGER_PREFIX) if hasattr(store, "path") else store.uri(JOB_LEDGER_PREFIX)
        click.echo(f"photogen: no job ledger in {where} yet: {HOW_TO_BUILD_JOBS}", err=True)
    payload = _jobs_payload(rows, sources, since_day)
    click.echo(json.dumps(payload, indent=2) if as_json else _jobs_text(payload))


@click.command()
@click.option(
    "--since",
    metavar="YYYY-MM-DD",
    default=None,
    help="Only orders settled (with --jobs: jobs changed) on or after this day (UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--jobs", "jobs", is_flag=True, help="The studio's jobs per kind instead (shots, passed, retries, cost).")
@home_option
@clear_errors
def report(since: str | None, as_json: bool, jobs: bool, home: str | None) -> None:
    """Rejection rate, median identity score and median seconds per stage, per style, and
    the generation cost (USD) per style, engine and tier, from the generation ledger, and
    from the orders database for the settled orders the ledger does not hold yet. With
    --jobs: per kind of studio job, its shots passed, retries, seconds and cost per shot."""
    since_day = _day(since)
    # pandas and pyarrow load only for this command, not for every `photogen` call
    from photogen_pipelines.analytics.ledger import LEDGER_PREFIX, ledger_days
    from photogen_pipelines.analytics.ledger_view import current_ledger
    from photogen_pipelines.factories import open_artifact_store

    settings = home_settings(home)  # read only: a report makes no home
    store = open_artifact_store(settings.resolved_artifacts_root)
    book = _orders_book(settings)
    if jobs:
        _jobs_report(store, book, since_day, as_json)
        return
    current = current_ledger(store, book, since_day)
    if not current.ledger_days and not ledger_days(store):
        where = store.path(LEDGER_PREFIX) if hasattr(store, "path") else store.uri(LEDGER_PREFIX)
        click.echo(f"photogen: no generation ledger in {where} yet: {HOW_TO_BUILD}", err=True)
        if not as_json and current.rows.empty:
            return
    payload = {
        **_payload(current, since_day),
        "credits": _credits(book, since_day),
        "waits": _waits(book, settings.products_path),
    }
    click.echo(json.dumps(payload, indent=2) if as_json else _text(payload))
