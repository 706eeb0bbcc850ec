"""Who is looking at a shop page, and may they do what they ask.

Three HttpOnly cookies, each holding a signed token that is never in a URL's query (the access
log would keep it) — links carry tokens in their fragment (`#s=`, `#t=`, `#o=`), which the
page's own script posts here once:

- the session (`shop_session`, Path=/shop/, SameSite=Strict): the shop's backend opened it for
  one customer with its API key (POST /v1/shop-sessions); it may upload and place orders, as
  that key and customer;
- an order's (`shop_order`, Path=/shop/orders/<id>, SameSite=Lax): the order's customer token
  (otk_…), set when the order is placed or from the shop's email link. Lax, so that a customer
  coming back from the shop's checkout or their mail (a navigation from another site) still
  sees the order; every POST still needs the CSRF token, which no other site can read;
- an operator's (`shop_operator`, Path=/shop/, SameSite=Strict): shows links into Dagster.

CSRF: each POST carries an HMAC of the cookie that authorises it (a hidden `csrf` field or an
`X-CSRF-Token` header); a POST from another origin (`Origin`, `Sec-Fetch-Site`) is refused
too, which also guards the posts that set a cookie from a fragment's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from photogen_pipelines.access.signing import OPERATOR, SHOP_SESSION
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders.states import Order
from storefront_api.api.deps import client_address
from storefront_api.services import Services

SESSION_COOKIE, ORDER_COOKIE, OPERATOR_COOKIE = "shop_session", "shop_order", "shop_operator"
CSRF_FIELD, CSRF_HEADER = "csrf", "X-CSRF-Token"
MAX_TOKEN_CHARS = 4096  # a session token carries a return URL of up to 2000 characters, base64'd


class ShopError(Exception):
    """A refusal a customer reads: the status, a stable code, and the translation key of the
    words for it (storefront_api/shop/translations/), with what to fill in. `detail` is the
    core's own English message, shown where no translation names the code."""

    def __init__(self, status: int, code: str, key: str | None = None, detail: str | None = None, **params):
        super().__init__(code)
        self.status, self.code, self.key, self.detail, self.params = status, code, key or f"error.{code}", detail, params


@dataclass(frozen=True)
class ShopSession:
    token: str
    api_key_id: str
    customer_ref: str | None
    return_url: str | None


def session_token(services: Services, api_key_id: str, customer_ref: str | None, return_url: str | None) -> tuple[str, int]:
    """A session token for the customer's pages and its expiry (Unix seconds)."""
    ttl = services.settings.shop_session_ttl_seconds
    token = services.signer.expiring_token(SHOP_SESSION, [api_key_id, customer_ref or "", return_url or ""], ttl)
    return token, services.signer.read_token(SHOP_SESSION, token).expires


def read_session(services: Services, token: str) -> ShopSession:
    """The session a token opens, or ShopError: 400 session_invalid, 410 session_expired."""
    signed = services.signer.read_token(SHOP_SESSION, token) if len(token) <= MAX_TOKEN_CHARS else None
    if signed is None or len(signed.fields) != 3:
        raise ShopError(400, "session_invalid")
    if signed.expired:
        raise ShopError(410, "session_expired")
    api_key_id, customer_ref, return_url = signed.fields
    return ShopSession(token, api_key_id, customer_ref or None, return_url or None)


def _limits(request: Request):
    return request.app.state.rate_limits


def guarded(request: Request, check):
    """`check()`'s answer; a ShopError it raises for bad credentials counts against the
    client address's failed authentications, and while that is spent nothing is checked
    (429), as for API keys and order tokens (api/deps.py): guessing tokens stays slow."""
    address = client_address(request)
    _limits(request).refuse_if_locked_out(address)
    try:
        return check()
    except ShopError as error:
        if error.status in (400, 404, 410):
            _limits(request).count_failed_authentication(address)
        raise


def current_session(request: Request, services: Services) -> ShopSession:
    """The session cookie's session, or 401 no_session (missing, expired or not ours)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise ShopError(401, "no_session")
    try:
        return guarded(request, lambda: read_session(services, token))
    except ShopError:
        raise ShopError(401, "no_session") from None


def optional_session(request: Request, services: Services) -> ShopSession | None:
    """The session, if this browser has a valid one (for its return URL); no counting."""
    token = request.cookies.get(SESSION_COOKIE)
    try:
        return read_session(services, token) if token else None
    except ShopError:
        return None


def viewer_order(request: Request, services: Services, order_id: str) -> Order:
    """The order in the path, if this browser holds its token; else 404 order_not_found,
    whether it exists or not."""

    def check() -> Order:
        token = request.cookies.get(ORDER_COOKIE, "")
        if not token.isascii() or not services.signer.order_token_valid(order_id, token):
            raise ShopError(404, "order_not_found")
        try:
            return services.book.get(order_id)
        except NotFound:
            raise ShopError(404, "order_not_found") from None

    if not request.cookies.get(ORDER_COOKIE):  # no cookie at all is no guess: not counted
        raise ShopError(404, "order_not_found")
    return guarded(request, check)


def order_token_valid(services: Services, order_id: str, token: str) -> bool:
    return token.isascii() and len(token) < 200 and services.signer.order_token_valid(order_id, token)


def is_operator(request: Request, services: Services) -> bool:
    token = request.cookies.get(OPERATOR_COOKIE)
    signed = services.signer.read_token(OPERATOR, token) if token and len(token) <= MAX_TOKEN_CHARS else None
    return signed is not None and not signed.expired


def read_operator_token(services: Services, token: str) -> int:
    """The expiry of a genuine operator token, or ShopError as for sessions."""
    signed = services.signer.read_token(OPERATOR, token) if len(token) <= MAX_TOKEN_CHARS else None
    if signed is None:
        raise ShopError(400, "operator_link_invalid")
    if signed.expired:
        raise ShopError(410, "operator_link_expired")
    return signed.expires


# -- CSRF ------------------------------------------------------------------------------------


def csrf_token(services: Services, credential: str) -> str:
    """The CSRF token of the pages a cookie's holder sees: an HMAC of that cookie, which
    another site can neither read nor compute."""
    return services.signer.link_signature("shop-csrf", credential)


def same_origin(request: Request) -> None:
    """403 csrf_failed for a request a browser says came from another site or origin."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    # ours: the Host the browser asked for, or the public base URL a proxy in front serves
    ours = {request.headers.get("host", ""), urlsplit(services_base(request)).netloc}
    # a page whose referrer policy withholds its origin posts `Origin: null`; the browser's own
    # Sec-Fetch-Site (which a page cannot set) still says where it came from
    opaque = origin == "null" and site == "same-origin"
    if site not in (None, "same-origin", "none") or (origin is not None and not opaque and urlsplit(origin).netloc not in ours):
        raise ShopError(403, "csrf_failed")


def services_base(request: Request) -> str:
    return request.app.state.services.settings.public_base_url or ""


def check_csrf(request: Request, services: Services, credential: str, sent: str | None) -> None:
    """The POST's CSRF token (form field or header) must be the one for `credential`."""
    same_origin(request)
    sent = sent or request.headers.get(CSRF_HEADER)
    if not sent or not sent.isascii() or not services.signer.link_signature_valid("shop-csrf", credential, sent):
        raise ShopError(403, "csrf_failed")


# -- cookies ---------------------------------------------------------------------------------


def secure(request: Request, services: Services) -> bool:
    """Secure cookies wherever the customer's browser reaches us over HTTPS."""
    base = services.settings.public_base_url or str(request.base_url)
    return urlsplit(base).scheme == "https"


def set_cookie(response: Response, request: Request, services: Services, name: str, value: str, path: str, **options) -> None:
    options.setdefault("samesite", "strict")
    response.set_cookie(name, value, path=path, httponly=True, secure=secure(request, services), **options)


ORDER_COOKIE_DAYS = 60  # the order's page stays open in this browser; the shop's email link opens it anywhere


def set_order_cookie(response: Response, request: Request, services: Services, order_id: str) -> None:
    """The order's customer token as its page's cookie: Lax (see above), on its pages only."""
    token, path = services.signer.order_token(order_id), f"/shop/orders/{order_id}"
    set_cookie(response, request, services, ORDER_COOKIE, token, path, samesite="lax", max_age=ORDER_COOKIE_DAYS * 86400)
