"""A customer's account as their shop sees it: the plan, the balance, and their orders and
credit movements, newest first, a page at a time.

Pages are cut by position (keyset), not by offset: an order placed or credits moved while
someone pages never shifts a page or shows an item twice. A cursor names the last item of
the page before; it is opaque to clients (base64) and must name an item of the same
customer, else BadInput(invalid_cursor).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.clock import as_utc
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import CreditEntryRow, CustomerRow, OrderRow
from photogen_pipelines.errors import BadInput

MAX_PAGE = 100
DEFAULT_PAGE = 20

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this is the last page


@dataclass(frozen=True)
class OrderLine:
    id: str
    state: str
    product_id: str
    tier: str | None
    payment: str  # off | stripe | credits
    amount_cents: int
    currency: str
    credits_price: int
    credits_paid: int
    credits_refunded: int
    quote_id: str | None
    preview: bool
    created_at: datetime


@dataclass(frozen=True)
class EntryLine:
    id: int
    kind: str
    amount: int
    balance_after: int  # the wallet's balance once this entry was written
    counter_account: str
    reason: str
    order_id: str | None
    pack_purchase_id: str | None
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Account:
    ref: str
    plan: str
    balance: int
    created_at: datetime
    orders: Page[OrderLine]
    entries: Page[EntryLine]


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_PAGE
    orders_cursor: str | None = None
    entries_cursor: str | None = None


def set_plan(database: Database, products: ProductCatalog, api_key_id: str | None, ref: str, plan: str) -> Account:
    """Put the customer on `plan` (NotFound unknown_plan), creating them on first mention
    with the plan's welcome credits (once: moving plans later grants nothing)."""
    customers.check_ref(ref)
    products.plan(plan)
    with database.session() as session:
        wallet.open_wallet(session, products, api_key_id, ref, plan)
    return account(database, api_key_id, ref)


def account(database: Database, api_key_id: str | None, ref: str, page: PageRequest = PageRequest()) -> Account:
    """The customer of `api_key_id` named `ref` (NotFound customer_not_found for any other
    key's), with one page of their orders and one of their wallet's entries. Grants past
    their date are expired first (once, under the customer's lock, as a spend would), so
    the balance is what can be spent now and the entries add up to it."""
    customers.check_ref(ref)
    if not 1 <= page.limit <= MAX_PAGE:
        raise BadInput(f"limit must be 1 to {MAX_PAGE}", code="invalid_limit")
    with database.session() as session:
        customer = customers.get(session, api_key_id, ref, lock=True)
        wallet.expire_due(session, customer)
        return Account(
            ref=customer.ref,
            plan=customer.plan,
            balance=wallet.balance(session, customer.id),
            created_at=as_utc(customer.created_at),
            orders=_orders(session, customer, page.limit, page.orders_cursor),
            entries=_entries(session, customer, page.limit, page.entries_cursor),
        )


# -- cursors ---------------------------------------------------------------------------------


def _cursor(kind: str, last: object) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{last}".encode()).decode().rstrip("=")


def _position(kind: str, cursor: str) -> str:
    bad = BadInput(f"{kind}s_cursor: not a cursor this listing gave", code="invalid_cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    prefix, _, last = text.partition(":")
    if prefix != kind or not last:
        raise bad
    return last


# -- the pages -------------------------------------------------------------------------------


def _orders(session: Session, customer: CustomerRow, limit: int, cursor: str | None) -> Page[OrderLine]:
    api_key_id = customer.shop_key or None  # customers.shop_key: "" for the CLI's, without a storefront key
    key = OrderRow.api_key_id.is_(None) if api_key_id is None else OrderRow.api_key_id == api_key_id
    query = select(OrderRow).where(key, OrderRow.customer_ref == customer.ref)
    if cursor is not None:
        last = session.scalars(query.where(OrderRow.id == _position("order", cursor))).one_or_none()
        if last is None:
            raise BadInput("orders_cursor: not a cursor this listing gave", code="invalid_cursor")
        query = query.where(
            or_(OrderRow.created_at < last.created_at, and_(OrderRow.created_at == last.created_at, OrderRow.id < last.id))
        )
    rows = session.scalars(query.order_by(OrderRow.created_at.desc(), OrderRow.id.desc()).limit(limit + 1)).all()
    items = [_order_line(row) for row in rows[:limit]]
    return Page(items, _cursor("order", items[-1].id) if len(rows) > limit else None)


def _order_line(row: OrderRow) -> OrderLine:
    return OrderLine(
        id=row.id,
        state=row.state,
        product_id=row.product_id,
        tier=row.tier,
        payment=row.payments,
        amount_cents=row.amount_cents,
        currency=row.currency,
        credits_price=row.credits_price or 0,
        credits_paid=row.credits_paid or 0,
        credits_refunded=row.credits_refunded or 0,
        quote_id=row.quote_id,
        preview=bool(row.preview),
        created_at=as_utc(row.created_at),
    )


def _entries(session: Session, customer: CustomerRow, limit: int, cursor: str | None) -> Page[EntryLine]:
    mine = CreditEntryRow.customer_id == customer.id
    query = select(CreditEntryRow).where(mine)
    if cursor is not None:
        last = _position("entry", cursor)
        if not last.isdigit() or session.scalar(select(CreditEntryRow.id).where(mine, CreditEntryRow.id == int(last))) is None:
            raise BadInput("entries_cursor: not a cursor this listing gave", code="invalid_cursor")
        query = query.where(CreditEntryRow.id < int(last))
    rows = session.scalars(query.order_by(CreditEntryRow.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    items = []
    if page:  # the balance after the page's newest entry in one sum, then walked back entry by entry
        upto = select(func.coalesce(func.sum(CreditEntryRow.amount), 0)).where(mine, CreditEntryRow.id <= page[0].id)
        after = int(session.scalar(upto))
        for row in page:
            items.append(_entry_line(row, after))
            after -= row.amount
    return Page(items, _cursor("entry", items[-1].id) if len(rows) > limit else None)


def _entry_line(row: CreditEntryRow, balance_after: int) -> EntryLine:
    return EntryLine(
        id=row.id,
        kind=row.kind,
        amount=row.amount,
        balance_after=balance_after,
        counter_account=row.counter_account,
        reason=row.reason,
        order_id=row.order_id,
        pack_purchase_id=row.pack_purchase_id,
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        created_at=as_utc(row.created_at),
    )
