"""Dependencies: the services, who is calling, and how often they may."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from photogen_pipelines.access.api_keys import verify_api_key
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders.states import Order
from photogen_pipelines.workflows.customer_accounts import DEFAULT_PAGE, MAX_PAGE, PageRequest
from storefront_api.config import Settings
from storefront_api.errors import ApiError
from storefront_api.services import Services

log = logging.getLogger("storefront_api")


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def public_base_url(request: Request, services: ServicesDep) -> str:
    """Where clients reach this API, for the links it signs."""
    return services.settings.public_base_url or str(request.base_url)


BaseUrlDep = Annotated[str, Depends(public_base_url)]

ORDER_TOKEN_PREFIX = "otk_"

bearer = HTTPBearer(auto_error=False, description="A storefront API key (pgk_…) or a customer's order token (otk_…).")


@dataclass(frozen=True)
class Caller:
    """Who is asking: a storefront backend (its API key) or a customer (one order's token)."""

    api_key_id: str | None = None
    order_id: str | None = None

    @property
    def identity(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"order:{self.order_id}"


class RateLimits:
    """Moving-window limits (the `limits` library), one per kind of caller (config.py says
    why each default is what it is). Each request counts against one of them: see
    `authenticate` and `limit_request`."""

    def __init__(self, settings: Settings):
        self.per_key = parse(settings.rate_limit_per_key)
        self.per_order_token = parse(settings.rate_limit_per_order_token)
        self.per_address = parse(settings.rate_limit_per_address)
        self.failed_auth_per_address = parse(settings.rate_limit_failed_auth_per_address)
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))

    def check(self, scope: str, limit: RateLimitItem, identity: str) -> None:
        """Count one request; a 429 once `limit` is spent."""
        if not self.limiter.hit(limit, scope, identity):
            raise self._refusal(scope, limit, identity, f"too many requests ({limit})")

    def check_caller(self, caller: Caller) -> None:
        self.check("caller", self.per_key if caller.api_key_id else self.per_order_token, caller.identity)

    def refuse_if_locked_out(self, address: str) -> None:
        """A 429, before any credentials are checked, while `address` has spent its failed
        authentications: a guess then never learns whether it was right."""
        if not self.limiter.test(self.failed_auth_per_address, "failed_auth", address):
            message = f"too many failed authentications from this address ({self.failed_auth_per_address})"
            raise self._refusal("failed_auth", self.failed_auth_per_address, address, message)

    def count_failed_authentication(self, address: str) -> None:
        self.limiter.hit(self.failed_auth_per_address, "failed_auth", address)

    def _refusal(self, scope: str, limit: RateLimitItem, identity: str, message: str) -> ApiError:
        reset = self.limiter.get_window_stats(limit, scope, identity).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return ApiError(429, "rate_limited", f"{message}; retry in {retry_after} s", headers={"Retry-After": str(retry_after)})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Authentication:
    """What a request's credentials turned out to be: a caller, failed ones, or none to check."""

    caller: Caller | None = None
    failed: bool = False


def _bearer_token(request: Request) -> str | None:
    """The credentials `bearer` would hand a route (same parsing), without marking every
    limited route as needing them in the OpenAPI schema."""
    authorization = request.headers.get("Authorization")
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and token and scheme.lower() == "bearer" else None


# Headers only a browser sets on its own (a page's script cannot set or remove them): `Origin`
# on every cross-origin request (and on a same-origin POST), `Sec-Fetch-Site` on every request
# of a current browser, same-origin ones too (this API's own /docs page). Server-to-server
# clients send neither.
BROWSER_HEADERS = ("origin", "sec-fetch-site")


def from_browser(request: Request) -> bool:
    return any(name in request.headers for name in BROWSER_HEADERS)


def _refuse_key_from_browser(request: Request, limits: RateLimits) -> None:
    """An API key sent by a browser: the key is in a web page, where anyone can read it. It is
    not checked (an answer that differed with its validity would help a guesser); the request
    counts against the address, like one without credentials, and is refused."""
    limits.check("address", limits.per_address, client_address(request))
    origin = request.headers.get("origin") or f"Sec-Fetch-Site: {request.headers.get('sec-fetch-site')}"
    log.warning("refused an API key sent from a browser (%s) to %s %s", origin, request.method, request.url.path)
    raise ApiError(
        403,
        "api_key_from_browser",
        "API keys are not accepted from a browser: call PhotoGen with the key from your shop's backend, "
        "and use the order's customer token (otk_…) in the browser; keep the key out of web pages",
    )


def authenticate(request: Request, services: Services) -> Authentication:
    """Who is calling, decided once per request (kept in `request.state`) and counted:
    a valid API key, or a valid order token for the order in the path, against that caller's
    own limit; credentials that fail against the client address's failed-authentication limit
    (and while that is spent, none from the address are checked: 429). An order token outside
    an order's path cannot be checked: like no credentials, it is for the route to refuse.
    An API key (anything but an order token) from a browser is a 403 on every route."""
    done: Authentication | None = getattr(request.state, "authentication", None)
    if done is not None:
        return done
    limits: RateLimits = request.app.state.rate_limits
    token, order_id = _bearer_token(request), request.path_params.get("order_id")
    if token is not None and not token.startswith(ORDER_TOKEN_PREFIX) and from_browser(request):
        _refuse_key_from_browser(request, limits)
    if token is None or (token.startswith(ORDER_TOKEN_PREFIX) and order_id is None):
        done = Authentication()
    else:
        address = client_address(request)
        limits.refuse_if_locked_out(address)
        caller = _verify(services, token, order_id)
        if caller is None:
            limits.count_failed_authentication(address)
            done = Authentication(failed=True)
        else:
            limits.check_caller(caller)
            done = Authentication(caller=caller)
    request.state.authentication = done
    return done


def _verify(services: Services, token: str, order_id: str | None) -> Caller | None:
    if token.startswith(ORDER_TOKEN_PREFIX):
        return Caller(order_id=order_id) if services.signer.order_token_valid(order_id, token) else None
    key = verify_api_key(services.database, token)
    return Caller(api_key_id=key.id) if key else None


def limit_request(request: Request, services: ServicesDep) -> None:
    """Every rate-limited route's first dependency. An authenticated caller is counted by
    `authenticate`, never by its address: a storefront backend sends all its customers'
    requests from one. A request without valid credentials counts against its address."""
    authentication = authenticate(request, services)
    if authentication.caller is None and not authentication.failed:
        limits: RateLimits = request.app.state.rate_limits
        limits.check("address", limits.per_address, client_address(request))


def _credentials(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "missing_credentials", "send an API key or an order token as 'Authorization: Bearer …'")
    return credentials.credentials


def storefront_caller(
    request: Request, services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """Only a storefront backend (API key) may call this."""
    token = _credentials(credentials)
    if token.startswith(ORDER_TOKEN_PREFIX):
        raise ApiError(403, "api_key_required", "this endpoint needs the storefront's API key, not an order token")
    caller = authenticate(request, services).caller
    if caller is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    return caller


def order_caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    order_id: Annotated[str, Path(max_length=64)],
) -> Order:
    """The order in the path, if the caller may see it: the storefront key that placed it,
    or that order's own customer token. Anything else is a 404, as if it did not exist."""
    token = _credentials(credentials)
    not_found = ApiError(404, "order_not_found", f"order {order_id} not found")
    caller = authenticate(request, services).caller
    if caller is None:
        if token.startswith(ORDER_TOKEN_PREFIX):
            raise not_found
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    try:
        order = services.book.get(order_id)
    except NotFound:
        raise not_found from None
    if caller.api_key_id is not None and order.api_key_id != caller.api_key_id:
        raise not_found
    return order


StorefrontDep = Annotated[Caller, Depends(storefront_caller)]
OrderDep = Annotated[Order, Depends(order_caller)]


def history_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page, of the orders and the entries")] = DEFAULT_PAGE,
    orders_cursor: Annotated[str | None, Query(max_length=200, description="the orders' next_cursor")] = None,
    entries_cursor: Annotated[str | None, Query(max_length=200, description="the entries' next_cursor")] = None,
) -> PageRequest:
    """Which page of a customer's orders and credit entries to show (newest first)."""
    return PageRequest(limit, orders_cursor, entries_cursor)


HistoryPageDep = Annotated[PageRequest, Depends(history_page)]
