"""What the pages do, done by the API's own route functions and the core's workflows, so a
customer's page and a shop's backend get one behaviour (uploads, orders, approvals, cancels,
bundles): nothing here decides anything about an order. Their refusals become ShopErrors, which
the pages show in words (render.error_response)."""

from __future__ import annotations

import contextlib
import hashlib
import re

from fastapi import Response, UploadFile
from pydantic import ValidationError

from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.orders.states import Order
from photogen_pipelines.workflows import quotes
from storefront_api.api.deps import Caller
from storefront_api.api.routes import orders as order_routes
from storefront_api.api.routes import uploads as upload_routes
from storefront_api.errors import ApiError, _status_of
from storefront_api.schemas import ApproveIn, CancelIn, OrderIn
from storefront_api.services import Services
from storefront_api.shop.access import ShopError, ShopSession

MAX_PHOTOS = 4
UPLOAD_ID = re.compile(r"^upl_[0-9a-f]{16}$")
# the pages' links are the API's own, relative: same origin as the page (CSP 'self'), whatever
# host or proxy the customer reached it through
LINK_BASE = "/"


@contextlib.contextmanager
def refusals_shown():
    """The API's and the core's refusals, as ShopErrors with their status and code."""
    try:
        yield
    except ApiError as error:
        raise ShopError(error.status, error.code, detail=error.message) from None
    except PhotoGenError as error:
        raise ShopError(_status_of(error), error.code, detail=str(error)) from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ShopError(422, "invalid_request", detail=problems) from None


def upload(services: Services, session: ShopSession, file: UploadFile, consent: bool) -> str:
    """The photo taken in as POST /v1/uploads takes it, for the session's key and customer,
    with the customer's own word that they agreed (the page's consent box)."""
    with refusals_shown():
        caller = Caller(api_key_id=session.api_key_id)
        return upload_routes.create_upload(file, caller, services, consent=consent, customer_ref=session.customer_ref).id


def upload_ids(values: list[str]) -> list[str]:
    """The photos an order form names: one to four uploads, each named once."""
    ids = list(dict.fromkeys(values))
    if not ids or len(ids) > MAX_PHOTOS or not all(UPLOAD_ID.match(value) for value in ids):
        raise ShopError(422, "photos_invalid", max=MAX_PHOTOS)
    return ids


def idempotency_key(session: ShopSession, nonce: str) -> str:
    """One order per rendered form: a double click, or a retried post, finds the first."""
    return "shop_" + hashlib.sha256(f"{session.token}\n{nonce}".encode()).hexdigest()[:40]


def place(
    services: Services,
    session: ShopSession,
    uploads: list[str],
    style: str,
    product: str,
    tier: str,
    nonce: str,
    shipping: dict[str, str] | None = None,
    quote_id: str | None = None,
) -> Order:
    """POST /v1/orders as the session's key, for its customer, paid by card (nothing with
    payments off). Several photos go as `upload_ids`, one as `upload_id`. With `shipping`
    (the page's address form, where the shop ships through a print provider) the order has
    a recipient, and the provider's status and tracking show on its page."""
    photos = {"upload_id": uploads[0]} if len(uploads) == 1 else {"upload_ids": uploads}
    with refusals_shown():
        body = OrderIn.model_validate(
            {
                **photos,
                "style_id": style,
                "product_id": product,
                "tier": tier or None,
                "customer_ref": session.customer_ref,
                **({"quote_id": quote_id} if quote_id else {}),
                **_recipient(shipping),
            }
        )
        placed = order_routes.create_order(
            body=body,
            base_url=LINK_BASE,
            response=Response(),
            caller=Caller(api_key_id=session.api_key_id),
            services=services,
            idempotency_key=idempotency_key(session, nonce),
        )
    return services.book.get(placed.id)


def _recipient(shipping: dict[str, str] | None) -> dict:
    """The order body's recipient from the address form (empty fields left out, so the API's
    own rules say what is missing); nothing where the page asked for no address."""
    if shipping is None:
        return {}
    given = {name: value for name, value in shipping.items() if value}
    address = {name: given[name] for name in ("line1", "line2", "city", "state", "postal_code", "country_code") if name in given}
    recipient = {"name": given.get("name", ""), "address": address, **({"email": given["email"]} if "email" in given else {})}
    return {"recipient": recipient, "shipping_method": given.get("shipping_method") or "standard"}


def quote(services: Services, session: ShopSession, product: str, tier: str | None) -> quotes.Quote:
    with refusals_shown():
        return quotes.make_quote(
            services.book,
            services.products,
            product,
            tier or None,
            customer_ref=session.customer_ref,
            api_key_id=session.api_key_id,
        )


def approve(services: Services, order: Order, proof: str) -> None:
    if not proof.isdigit() or len(proof) > 2:
        raise ShopError(422, "unknown_proof")
    with refusals_shown():
        order_routes.approve(order, ApproveIn(proof=int(proof)), services, LINK_BASE)


def cancel(services: Services, order: Order) -> None:
    with refusals_shown():
        order_routes.cancel(order, services, LINK_BASE, CancelIn(reason="cancelled by the customer on the shop's page"))


def bundle(services: Services, order: Order) -> Response:
    with refusals_shown():
        return order_routes.bundle_zip(order, services)


def print_link(services: Services, order: Order) -> str | None:
    """The print file's signed link once it is made; None before."""
    try:
        return order_routes.print_file(order, services, LINK_BASE).url
    except ApiError:
        return None
