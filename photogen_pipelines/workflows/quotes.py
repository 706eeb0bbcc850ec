"""Quotes: the price of an order in money and in credits, and how long it should take,
promised for a while before ordering. An order that names a quote is charged its price
(even if the catalog changed since), as long as it orders what was quoted in time.

The waits are the shop's own: the median of its recent orders of the tier (orders/waits.py),
or the catalog's estimate until there are enough.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.credits import customers
from photogen_pipelines.db.tables import QuoteRow
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.waits import tier_wait

KINDS = ("portrait_print",)  # the job kinds sold so far; pose packs and shoots come with their own catalog
VALID_FOR = timedelta(minutes=30)


@dataclass(frozen=True)
class Quote:
    id: str
    kind: str
    product_id: str
    tier: str
    amount_cents: int
    currency: str
    credits: int | None  # None: the tier is not sold for credits
    proofs_seconds: int
    print_seconds: int
    basis: Literal["measured", "catalog"]
    customer_ref: str | None
    api_key_id: str | None
    expires_at: datetime
    created_at: datetime


def _to_quote(row: QuoteRow) -> Quote:
    return Quote(
        row.id,
        row.kind,
        row.product_id,
        row.tier,
        row.amount_cents,
        row.currency,
        row.credits,
        row.proofs_seconds,
        row.print_seconds,
        row.basis,
        row.customer_ref,
        row.api_key_id,
        as_utc(row.expires_at),
        as_utc(row.created_at),
    )


def make_quote(
    book: SqlOrderBook,
    products: ProductCatalog,
    product_id: str,
    tier_id: str | None,
    kind: str = "portrait_print",
    customer_ref: str | None = None,
    api_key_id: str | None = None,
) -> Quote:
    """Price `product_id` in `tier_id` now, record the promise, and return it."""
    if kind not in KINDS:
        raise NotFound(f"unknown kind {kind!r}; known: {', '.join(KINDS)}", code="unknown_kind")
    if customer_ref is not None:
        customers.check_ref(customer_ref)
    product, tier = products.get(product_id), products.tier(tier_id)
    amount = products.price(product, tier.id)
    credits = product.tier_credits.get(tier.id)
    wait = tier_wait(book, tier)
    now = utc_now()
    row = QuoteRow(
        id="quo_" + secrets.token_hex(8),
        api_key_id=api_key_id,
        customer_ref=customer_ref,
        kind=kind,
        product_id=product.id,
        tier=tier.id,
        amount_cents=amount,
        currency="usd",
        credits=credits,
        proofs_seconds=wait.proofs_seconds,
        print_seconds=wait.print_seconds,
        basis=wait.basis,
        expires_at=now + VALID_FOR,
        created_at=now,
    )
    with book.database.session() as session:
        session.add(row)
    return _to_quote(row)


def get_quote(book: SqlOrderBook, quote_id: str, api_key_id: str | None) -> Quote:
    with book.database.session() as session:
        row = session.get(QuoteRow, quote_id)
        if row is None or row.api_key_id != api_key_id:
            raise NotFound(f"quote {quote_id} not found", code="quote_not_found")
        return _to_quote(row)


def honour(quote: Quote, product_id: str, tier_id: str, customer_ref: str | None, now: datetime | None = None) -> Quote:
    """The quote, if an order of `product_id` in `tier_id` for `customer_ref` may be charged
    its price now; BadInput (quote_expired, quote_mismatch) otherwise."""
    if (now or utc_now()) >= quote.expires_at:
        raise BadInput(f"quote {quote.id} expired at {quote.expires_at.isoformat()}; ask for a new one", code="quote_expired")
    if (quote.product_id, quote.tier) != (product_id, tier_id):
        raise BadInput(
            f"quote {quote.id} is for {quote.product_id} in the {quote.tier} tier, not {product_id} in {tier_id}",
            code="quote_mismatch",
        )
    if quote.customer_ref is not None and quote.customer_ref != customer_ref:
        raise BadInput(f"quote {quote.id} was made for another customer", code="quote_mismatch")
    return quote
