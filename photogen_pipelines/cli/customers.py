"""`photogen customers`: what an operator does for a customer's privacy request.

`erase REF` removes the customer's photos, identity embeddings, proofs, print files,
recipients and reference (workflows/erasure.py), as `DELETE /v1/customers/{ref}` does;
orders on their way make it wait (exit 1, naming them). Which customer REF names follows
`photogen credits`: `--key` says which storefront key's, else the one customer with it.
"""

from __future__ import annotations

import click

from photogen_pipelines.cli.common import UsageFailure, clear_errors, emit, home_option, home_settings
from photogen_pipelines.cli.credits import OneLineCommand, customer_scope, json_option, key_option


@click.group()
def customers() -> None:
    """A customer's data: erase it on request."""


@customers.command("erase", cls=OneLineCommand)
@click.argument("ref")
@key_option
@home_option
@json_option
@clear_errors
def erase(ref, key_id, home, as_json) -> None:
    """Erase customer REF's photos, embeddings, proofs, print files, recipients and reference;
    their orders' money and states stay, anonymised, for the books."""
    from photogen_pipelines.access.signing import Signer
    from photogen_pipelines.db.database import open_database
    from photogen_pipelines.factories import open_artifact_store
    from photogen_pipelines.orders.book import SqlOrderBook
    from photogen_pipelines.payments.stripe_payments import StripeGateway
    from photogen_pipelines.workflows.erasure import erase_customer, erased_by

    settings = home_settings(home, make_home=True)
    database = open_database(settings.resolved_database_url)
    database.migrate()
    signer = Signer(settings.resolved_secret_key)
    try:
        with database.session() as session:
            api_key_id = customer_scope(session, ref, key_id, new_allowed=False)
    except UsageFailure:
        # erased before? Their reference is gone from every row but the erasure's own HMAC
        erased = [key for key in erased_by(database, signer, ref) if key_id is None or key == (key_id or None)]
        if len(erased) != 1:
            raise
        api_key_id = erased[0]
    gateway = None
    if settings.payments_on:  # the customer's open orders are cancelled first: their money goes back
        gateway = StripeGateway(settings.stripe_api_key, settings.stripe_webhook_secret, settings.stripe_api_base)
    done = erase_customer(
        SqlOrderBook(database),
        open_artifact_store(settings.resolved_artifacts_root),
        gateway,
        signer,
        api_key_id,
        ref,
    )
    payload = {"id": done.id, "erased_at": done.erased_at, "orders": done.orders, "files": done.files, "repeated": done.repeated}
    what = "was erased before; nothing was left" if done.repeated else f"erased: {done.orders} order(s), {done.files} file(s)"
    emit(as_json, payload, f"customer {ref} {what} ({done.id})")
