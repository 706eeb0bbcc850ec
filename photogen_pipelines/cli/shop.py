"""`photogen shop operator-link`: a signed, expiring link that shows an operator's browser,
on the customer's order pages (/shop/orders/<id>), a link to each order's runs in Dagster."""

from __future__ import annotations

import click

from photogen_pipelines.cli.common import UsageFailure, home_option, home_settings

DEFAULT_API = "http://127.0.0.1:8000"  # where `photogen serve` puts the API


@click.group("shop")
def shop() -> None:
    """The customer's pages that the storefront API serves under /shop/."""


@shop.command("operator-link")
@click.option("--hours", type=float, default=12.0, show_default=True, help="How long the link and its cookie stay good.")
@click.option("--base-url", help="Where the browser reaches the API (default PHOTOGEN_PUBLIC_BASE_URL, else serve's).")
@home_option
def operator_link(hours: float, base_url: str | None, home: str | None) -> None:
    """Print the link (its token in the fragment: never sent in a request line, never logged).
    Signed with the home's secret (PHOTOGEN_SECRET_KEY): the API must share it."""
    from photogen_pipelines.access.signing import OPERATOR, Signer

    if not 0 < hours <= 24 * 30:
        raise UsageFailure("--hours must be more than 0 and at most 720 (30 days)")
    settings = home_settings(home, make_home=True)
    base = (base_url or settings.public_base_url or DEFAULT_API).rstrip("/")
    token = Signer(settings.resolved_secret_key).expiring_token(OPERATOR, ["operator"], round(hours * 3600))
    click.echo(f"{base}/shop/operator#o={token}")
    click.echo(f"[photogen] open it in the operator's browser; it is good for {hours:g} h", err=True)
