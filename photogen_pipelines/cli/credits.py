"""`photogen credits …`: an operator gives a customer credits, corrects a wallet, or looks
at one, in the orders database the service uses (PHOTOGEN_DATABASE_URL, else the home's).

Which customer REF names: a customer belongs to the storefront key that first named them
(credits/customers.py). `--key` says which; without it, the one customer with that
reference, whatever its key; for a grant to someone not seen yet, the shop's only active
key (else no key: a shop without storefront keys). A reference two keys know, or a new
customer in a shop with several keys, is ambiguous: exit code 2 asks for `--key`.

Every movement goes through the wallet (credits/wallet.py): under the customer's row lock,
once per idempotency key, never below zero. A reason is required: it is what the customer
support reads in the ledger later.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta

import click

from photogen_pipelines.cli.common import UsageFailure, clear_errors, home_option, home_settings
from photogen_pipelines.errors import Conflict, PaymentRequired


class OneLineCommand(click.Command):
    """click's own complaints about the arguments (a missing REF or --reason, a number that
    is not one) are bad input like any other: one line and exit code 2, not the usage text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise UsageFailure(f"photogen credits {self.name}: {exc.format_message()}") from None


# "-5" is an amount, not an option: adjustments go down too
NUMBERS_ARE_NOT_OPTIONS = {"ignore_unknown_options": True}

key_option = click.option(
    "--key",
    "key_id",
    metavar="API_KEY_ID",
    default=None,
    help="The storefront key whose customer REF is (photogen api-key list); '' for the shop's own, without a key.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
idempotency_option = click.option(
    "--idempotency-key",
    metavar="K",
    default=None,
    help="Run it again with the same K and nothing more moves (a retried script). Default: a new movement each time.",
)


def _open(home: str | None):
    """The orders database (migrated, as `photogen api-key` does) and the product catalog."""
    from photogen_pipelines.catalog import load_products
    from photogen_pipelines.db.database import open_database

    settings = home_settings(home, make_home=True)
    database = open_database(settings.resolved_database_url)
    database.migrate()
    return database, load_products(settings.products_path)


def customer_scope(session, ref: str, key_id: str | None, *, new_allowed: bool) -> str | None:
    """The api_key_id (None: no key) whose customer REF is meant, or UsageFailure saying why not."""
    from sqlalchemy import select

    from photogen_pipelines.credits import customers
    from photogen_pipelines.db.tables import ApiKeyRow, CustomerRow

    customers.check_ref(ref)
    if key_id is not None:
        if key_id and session.get(ApiKeyRow, key_id) is None:
            raise UsageFailure(f"no API key {key_id} (photogen api-key list shows them)")
        return key_id or None
    shops = sorted(session.scalars(select(CustomerRow.shop_key).where(CustomerRow.ref == ref)).all())
    if len(shops) == 1:
        return shops[0] or None
    if len(shops) > 1:
        named = ", ".join(shop or "'' (no key)" for shop in shops)
        raise UsageFailure(f"customer {ref} is known to {len(shops)} storefront keys ({named}): say which with --key")
    if not new_allowed:
        raise UsageFailure(f"customer {ref} not found [customer_not_found]")
    active = session.scalars(select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)).order_by(ApiKeyRow.id)).all()
    if len(active) > 1:
        raise UsageFailure(
            f"no customer {ref} yet and {len(active)} active API keys ({', '.join(active)}): say whose customer with --key"
        )
    return active[0] if active else None


def _expiry(expires: str | None, in_days: int | None) -> datetime | None:
    """--expires DATE (spendable through that UTC day) or an exact ISO time, or --expires-in-days."""
    if expires is not None and in_days is not None:
        raise UsageFailure("give --expires or --expires-in-days, not both")
    now = datetime.now(UTC)
    if in_days is not None:
        return now + timedelta(days=in_days)
    if expires is None:
        return None
    try:
        day = date.fromisoformat(expires)
        until = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)  # the credits last through DAY
    except ValueError:
        try:
            until = datetime.fromisoformat(expires)
        except ValueError:
            raise UsageFailure(f"--expires must be a day as YYYY-MM-DD (or an ISO time), not {expires!r}") from None
        until = until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC)
    if until <= now:
        raise UsageFailure(f"--expires {expires} is past: the credits would expire at once")
    return until


def _reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise UsageFailure("--reason is required: say why, for whoever reads this wallet later")
    return reason.strip()


def _move(home, ref, key_id, kind, amount, reason, idempotency_key, expires_at, as_json) -> None:
    """Post one movement to REF's wallet and say what happened."""
    from photogen_pipelines.credits import customers, wallet

    database, products = _open(home)
    key = f"operator:{idempotency_key or uuid.uuid4().hex}"  # never one of the wallet's own keys (welcome, spend:…)
    with database.session() as session:
        api_key_id = customer_scope(session, ref, key_id, new_allowed=kind == wallet.EntryKind.GRANT)
        if kind == wallet.EntryKind.GRANT:
            before = customers.find(session, api_key_id, ref) is not None
            row = wallet.open_wallet(session, products, api_key_id, ref)
            welcomes = [e for e in wallet.entries(session, row.id) if e.idempotency_key == "welcome" and not before]
            welcome = welcomes[0] if welcomes else None
        else:
            row, welcome = customers.get(session, api_key_id, ref, lock=True), None
        try:
            posted = wallet.post(session, row, kind, amount, key=key, reason=reason, expires_at=expires_at)
        except Conflict as exc:
            raise UsageFailure(
                f"--idempotency-key {idempotency_key} already moved other credits of {ref}'s "
                f"(photogen credits show {ref} lists them) [{exc.code}]"
            ) from None
        except PaymentRequired as exc:
            raise UsageFailure(f"{exc} [{exc.code}]") from None
        customer = customers.to_customer(row)
    payload = {
        "ref": customer.ref,
        "customer_id": customer.id,
        "api_key_id": customer.api_key_id,
        "plan": customer.plan,
        "created": posted.created,
        "entry": _entry(posted.entry),
        "welcome_credits": welcome.amount if welcome else 0,
        "balance": posted.balance,
    }
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    did = f"{posted.entry.kind.value} of {posted.entry.amount:+d} credits"
    if not posted.created:
        did = f"nothing moved: {idempotency_key!r} already made the {did} (entry {posted.entry.id})"
    else:
        did += f" (entry {posted.entry.id}"
        did += f", expiring {posted.entry.expires_at:%Y-%m-%d %H:%M} UTC)" if posted.entry.expires_at else ")"
    if welcome:
        did += f"; a new customer on the {customer.plan} plan, with its {welcome.amount} welcome credits"
    click.echo(f"{customer.ref} ({customer.id}, {_shop_text(customer.api_key_id)}): {did}; balance {posted.balance}")


def _shop_text(api_key_id: str | None) -> str:
    return f"key {api_key_id}" if api_key_id else "no storefront key"


def _entry(entry) -> dict:
    return {
        "id": entry.id,
        "kind": entry.kind.value,
        "amount": entry.amount,
        "counter_account": entry.counter_account,
        "reason": entry.reason,
        "idempotency_key": entry.idempotency_key,
        "order_id": entry.order_id,
        "pack_purchase_id": entry.pack_purchase_id,
        "lot_id": entry.lot_id,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "created_at": entry.created_at.isoformat(),
    }


@click.group("credits")
def credits() -> None:
    """Customers' credit wallets: grant credits, correct a balance, show a wallet."""


@credits.command("grant", cls=OneLineCommand, context_settings=NUMBERS_ARE_NOT_OPTIONS)
@click.argument("ref")
@click.argument("amount", metavar="N", type=int)
@click.option("--reason", default=None, help="Why (required): support reads it in the ledger.")
@click.option("--expires", metavar="DATE", default=None, help="Spendable through this UTC day (YYYY-MM-DD), then gone.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None, help="Gone after D days.")
@key_option
@idempotency_option
@home_option
@json_option
@clear_errors
def grant(ref, amount, reason, expires, expires_in_days, key_id, idempotency_key, home, as_json) -> None:
    """Give customer REF N credits (a customer not seen yet is created, with their plan's
    welcome credits)."""
    from photogen_pipelines.credits.wallet import EntryKind

    reason = _reason(reason)
    if amount <= 0:
        raise UsageFailure(f"a grant gives credits: N must be at least 1, not {amount} (photogen credits adjust takes some away)")
    _move(home, ref, key_id, EntryKind.GRANT, amount, reason, idempotency_key, _expiry(expires, expires_in_days), as_json)


@credits.command("adjust", cls=OneLineCommand, context_settings=NUMBERS_ARE_NOT_OPTIONS)
@click.argument("ref")
@click.argument("amount", metavar="N", type=int)
@click.option("--reason", default=None, help="Why (required): support reads it in the ledger.")
@key_option
@idempotency_option
@home_option
@json_option
@clear_errors
def adjust(ref, amount, reason, key_id, idempotency_key, home, as_json) -> None:
    """Correct customer REF's balance by N credits, up or down (never below zero)."""
    from photogen_pipelines.credits.wallet import EntryKind

    reason = _reason(reason)
    if amount == 0:
        raise UsageFailure("an adjustment of 0 credits changes nothing: N is a number of credits up (5) or down (-5)")
    _move(home, ref, key_id, EntryKind.ADJUSTMENT, amount, reason, idempotency_key, None, as_json)


@credits.command("show", cls=OneLineCommand)
@click.argument("ref")
@key_option
@home_option
@json_option
@clear_errors
def show(ref, key_id, home, as_json) -> None:
    """Customer REF's balance, their credits' lots and every entry, oldest first."""
    from photogen_pipelines.credits import customers, wallet

    database, _ = _open(home)
    with database.session() as session:
        api_key_id = customer_scope(session, ref, key_id, new_allowed=False)
        customer = customers.to_customer(customers.get(session, api_key_id, ref))
        entries = wallet.entries(session, customer.id)
    lots = wallet.lots_of(entries)
    balance = sum(e.amount for e in entries)
    payload = {
        "ref": customer.ref,
        "customer_id": customer.id,
        "api_key_id": customer.api_key_id,
        "plan": customer.plan,
        "balance": balance,
        "lots": [
            {
                "entry_id": lot.entry_id,
                "kind": lot.kind.value,
                "added": lot.added,
                "remaining": lot.remaining,
                "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
            }
            for lot in lots.lots.values()
            if lot.remaining > 0
        ],
        "entries": [_entry(e) for e in entries],
    }
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    lines = [f"{customer.ref} ({customer.id}, {_shop_text(customer.api_key_id)}, {customer.plan} plan): {balance} credits"]
    for lot in payload["lots"]:
        until = f", expires {lot['expires_at'][:16].replace('T', ' ')} UTC" if lot["expires_at"] else ""
        lines.append(f"  {lot['remaining']} of {lot['added']} from {lot['kind']} entry {lot['entry_id']}{until}")
    lines += ["", f"{'id':>6}  {'when (UTC)':<16}  {'kind':<10} {'credits':>8}  reason"]
    for e in entries:
        lines.append(f"{e.id:>6}  {e.created_at:%Y-%m-%d %H:%M}  {e.kind.value:<10} {e.amount:>+8d}  {e.reason}")
    click.echo("\n".join(lines))
