"""`photogen api-key …` and `photogen db …`: what an operator sets up once."""

from __future__ import annotations

import json

import click

from photogen_pipelines.cli.common import UsageFailure, home_option, home_settings


def _database(home: str | None):
    """The orders database of the home (or PHOTOGEN_DATABASE_URL's), the home named on stderr."""
    from photogen_pipelines.db.database import open_database

    settings = home_settings(home, make_home=True)  # the embedded default: SQLite in the home folder
    return open_database(settings.resolved_database_url)


@click.group("api-key")
def api_key() -> None:
    """Storefront API keys (the storefront backend sends one as 'Authorization: Bearer …')."""


@api_key.command("create")
@click.option("--name", required=True, help="Whose key it is, e.g. the shop's name.")
@home_option
@click.option("--json", "as_json", is_flag=True)
def create_key(name: str, home: str | None, as_json: bool) -> None:
    """Create a key. Its secret is printed once and only its hash is kept."""
    from photogen_pipelines.access.api_keys import create_api_key

    if not name.strip():
        raise UsageFailure("--name must not be empty")
    database = _database(home)
    database.migrate()
    key, secret = create_api_key(database, name.strip())
    if as_json:
        click.echo(json.dumps({"id": key.id, "name": key.name, "secret": secret}))
        return
    click.echo(secret)
    click.echo(f"[photogen] API key {key.id} for {key.name!r}; the secret above is shown only now", err=True)


@api_key.command("list")
@home_option
def list_keys(home: str | None) -> None:
    """The keys, without their secrets."""
    from photogen_pipelines.access.api_keys import list_api_keys

    database = _database(home)
    database.migrate()
    for key in list_api_keys(database):
        click.echo(f"{key['id']}  {key['name']:<30} {key['created_at']}{'  (revoked)' if key['revoked'] else ''}")


@api_key.command("revoke")
@click.argument("key_id")
@home_option
def revoke_key(key_id: str, home: str | None) -> None:
    """Revoke a key at once."""
    from photogen_pipelines.access.api_keys import revoke_api_key

    if not revoke_api_key(_database(home), key_id):
        raise UsageFailure(f"no active API key {key_id}")
    click.echo(f"[photogen] revoked {key_id}", err=True)


@click.group("db")
def db() -> None:
    """The orders database (PHOTOGEN_DATABASE_URL; default SQLite in the home folder)."""


@db.command("upgrade")
@home_option
def upgrade(home: str | None) -> None:
    """Apply the Alembic migrations (run once per deploy in production)."""
    database = _database(home)
    database.migrate()
    click.echo(f"[photogen] orders database at revision {database.revision()} ({database.dialect})", err=True)
