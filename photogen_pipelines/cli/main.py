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
    credits,
    customers,
    demo,
    dev,
    engines,
    faces,
    licences,
    report,
    serve,
    shop,
    ui,
)


@click.group()
@click.version_option(package_name="photogen")
def cli() -> None:
    """PhotoGen: a selfie in, a print-ready portrait in an art style out."""
    # what photogen writes (orders, photos, key hashes, the Dagster instance) is its owner's
    # alone, and so is what the servers it starts write: they inherit the umask
    os.umask(0o077)


for command in (
    demo.demo,
    faces.faces,
    faces.identity,
    catalogs.styles,
    catalogs.products,
    ui.ui,
    serve.serve,
    code_server.code_server,
    engines.engines,
    admin.api_key,
    admin.db,
    credits.credits,
    customers.customers,
    report.report,
    dev.dev,
    shop.shop,
    licences.licences,
):
    cli.add_command(command)


def main() -> None:
    cli()
