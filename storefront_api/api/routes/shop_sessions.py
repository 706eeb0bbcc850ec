"""Shop sessions: the shop's backend opens the customer's pages (/shop/) for one customer.

Never an API key in a browser: the backend asks for a session with its key and sends the
customer to the link it gets. The link carries a signed, expiring token in its fragment
(`#s=…`), which browsers never send to a server or write to a log; the page's script hands it
to /shop/session, which makes it an HttpOnly cookie (storefront_api/shop/access.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, field_validator

from photogen_pipelines.credits.customers import check_ref
from storefront_api.api.deps import BaseUrlDep, ServicesDep, StorefrontDep
from storefront_api.schemas import RequestBody
from storefront_api.shop.access import session_token

router = APIRouter(prefix="/shop-sessions", tags=["shop"])


class ShopSessionIn(RequestBody):
    customer_ref: str | None = Field(None, max_length=64, description="the shop's own reference of the customer")
    return_url: str | None = Field(
        None, max_length=2000, description="where 'back to the shop' and the payment link lead (default PHOTOGEN_SHOP_RETURN_URL)"
    )

    @field_validator("customer_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else check_ref(value)  # BadInput: a 422 invalid_customer_ref

    @field_validator("return_url")
    @classmethod
    def _return_url(cls, value: str | None) -> str | None:
        parts = urlsplit(value) if value else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("return_url must be an http(s):// URL")
        return value


class ShopSessionOut(BaseModel):
    url: str = Field(description="send the customer's browser here; the token is in the fragment, never in a query or log")
    expires_at: datetime


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ShopSessionOut,
    responses={422: {"description": "invalid_customer_ref, or invalid_request (return_url not http(s))"}},
)
def create_shop_session(
    body: ShopSessionIn, caller: StorefrontDep, services: ServicesDep, base_url: BaseUrlDep
) -> ShopSessionOut:
    """A link to the shop's pages for one customer: upload, choose a style, order, follow it.
    Orders placed there belong to this key (and to `customer_ref`); valid for
    PHOTOGEN_SHOP_SESSION_TTL_SECONDS (2 h)."""
    token, expires = session_token(services, caller.api_key_id, body.customer_ref, body.return_url)
    return ShopSessionOut(url=f"{base_url.rstrip('/')}/shop/start#s={token}", expires_at=datetime.fromtimestamp(expires, UTC))
