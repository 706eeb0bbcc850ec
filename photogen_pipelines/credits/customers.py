"""Customers: the shop's own reference for a person (`customer_ref`), never a login of ours.

A customer belongs to the storefront key that first named them: another key of another
shop naming the same reference names another customer. The CLI without a key works in
the shop's own scope (""). A customer's row is the lock every change to their wallet
takes first, so two requests spending one wallet queue up instead of both passing the
balance check.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from photogen_pipelines.catalog import ProductCatalog
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.tables import CustomerRow
from photogen_pipelines.errors import BadInput, NotFound

REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
NO_STOREFRONT_KEY = ""  # customers named by the operator's CLI in a shop without storefront keys


@dataclass(frozen=True)
class Customer:
    id: str
    shop_key: str
    ref: str
    plan: str
    created_at: datetime

    @property
    def api_key_id(self) -> str | None:
        return self.shop_key or None


def check_ref(ref: str) -> str:
    """The reference as given, or BadInput(invalid_customer_ref): 1–64 plain characters."""
    if not isinstance(ref, str) or not REF_PATTERN.match(ref):
        raise BadInput(
            "a customer_ref is 1 to 64 letters, digits or _ . : @ + -, starting with a letter or digit",
            code="invalid_customer_ref",
        )
    return ref


def shop_key(api_key_id: str | None) -> str:
    return api_key_id or NO_STOREFRONT_KEY


def to_customer(row: CustomerRow) -> Customer:
    return Customer(row.id, row.shop_key, row.ref, row.plan, as_utc(row.created_at))


def find(session: Session, api_key_id: str | None, ref: str, *, lock: bool = False) -> CustomerRow | None:
    query = select(CustomerRow).where(CustomerRow.shop_key == shop_key(api_key_id), CustomerRow.ref == check_ref(ref))
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def get(session: Session, api_key_id: str | None, ref: str, *, lock: bool = False) -> CustomerRow:
    row = find(session, api_key_id, ref, lock=lock)
    if row is None:
        raise NotFound(f"customer {ref} not found", code="customer_not_found")
    return row


def ensure(
    session: Session, products: ProductCatalog, api_key_id: str | None, ref: str, plan: str | None = None
) -> tuple[CustomerRow, bool]:
    """The customer, locked, created on first mention (on `plan`, or the catalog's default);
    returns (row, created). A plan given for an existing customer changes it. Two requests
    naming a new customer at once create one: the loser of the insert reads the winner's."""
    if plan is not None:
        products.plan(plan)  # unknown_plan before anything is written
    row = find(session, api_key_id, ref, lock=True)
    created = False
    if row is None:
        now = utc_now()
        row = CustomerRow(
            id="cus_" + secrets.token_hex(8),
            shop_key=shop_key(api_key_id),
            ref=ref,
            plan=products.plan(plan).id,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
            created = True
        except IntegrityError:
            row = get(session, api_key_id, ref, lock=True)
    if plan is not None and row.plan != plan:
        row.plan, row.updated_at = plan, utc_now()
    return row, created
