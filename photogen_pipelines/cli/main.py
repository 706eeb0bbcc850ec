"""`photogen`: run a real order on this machine, inspect faces, list the catalogs, run the
whole service.

Exit codes: 0 success, 2 bad input (one line saying why), 1 anything else. Each
subcommand is a plain click command in its own module; this module builds the group.
"""

from __future__ import annotations

import os

import click

from photogen_pipelines.cli import (
    admin,
    catalogs,
    code_server,
    credentials,
    credits,
    customers,
    demo,
    dev,
    engines,
    faces,
    jobs,
    licences,
    report,
    serve,
    shop,
    ui,
)
from photogen_pipelines.cli.common import UsageFailure
from photogen_pipelines.errors import BadInput
from photogen_pipelines.logs import configure_logging

# the commands that serve (their INFO lines are the service's log; their runs inherit it)
SERVERS = frozenset({"serve", "code-server", "engines"})


@click.group()
@click.version_option(package_name="photogen")
def cli() -> None:
    """PhotoGen: a selfie in, a print-ready portrait in an art style out."""
    # what photogen writes (orders, photos, key hashes, the Dagster instance) is its owner's
    # alone, and so is what the servers it starts write: they inherit the umask
    os.umask(0o077)
    # once, before anything logs: one JSON object a line, or console lines on a terminal
    # (PHOTOGEN_LOG_FORMAT); the servers at INFO, a command's own run at WARNING
    try:
        configure_logging("INFO" if click.get_current_context().invoked_subcommand in SERVERS else "WARNING")
    except BadInput as exc:
        raise UsageFailure(str(exc)) from None


for command in (
    demo.demo,
    faces.faces,
    faces.identity,
    catalogs.styles,
    catalogs.products,
    catalogs.kinds,
    ui.ui,
    serve.serve,
    code_server.code_server,
    engines.engines,
    admin.api_key,
    admin.db,
    credits.credits,
    credentials.credentials,
    customers.customers,
    jobs.jobs,
    report.report,
    dev.dev,
    shop.shop,
    licences.licences,
):
    cli.add_command(command)


def main() -> None:
    cli()
