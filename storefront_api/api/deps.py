"""Dependencies: the services, who is calling, and how often they may."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from photogen_pipelines.api_keys import verify_api_key
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import Order
from storefront_api.errors import ApiError
from storefront_api.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def public_base_url(request: Request, services: ServicesDep) -> str:
    """Where clients reach this API, for the links it signs."""
    return services.settings.public_base_url or str(request.base_url)


BaseUrlDep = Annotated[str, Depends(public_base_url)]

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
    """Moving-window limits per caller and per client address (the `limits` library)."""

    def __init__(self, per_key: str, per_address: str, storage_uri: str):
        self.per_key, self.per_address = parse(per_key), parse(per_address)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def check(self, scope: str, limit, identity: str) -> None:
        if self.limiter.hit(limit, scope, identity):
            return
        reset = self.limiter.get_window_stats(limit, scope, identity).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests ({limit}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def limit_address(request: Request) -> None:
    limits: RateLimits = request.app.state.rate_limits
    limits.check("address", limits.per_address, request.client.host if request.client else "unknown")


def _credentials(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "missing_credentials", "send an API key or an order token as 'Authorization: Bearer …'")
    return credentials.credentials


def _storefront(request: Request, services: Services, token: str) -> Caller:
    key = verify_api_key(services.database, token)
    if key is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    caller = Caller(api_key_id=key.id)
    limits: RateLimits = request.app.state.rate_limits
    limits.check("caller", limits.per_key, caller.identity)
    return caller


def storefront_caller(
    request: Request, services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """Only a storefront backend (API key) may call this."""
    token = _credentials(credentials)
    if token.startswith("otk_"):
        raise ApiError(403, "api_key_required", "this endpoint needs the storefront's API key, not an order token")
    return _storefront(request, services, token)


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
    if token.startswith("otk_"):
        if not services.signer.order_token_valid(order_id, token):
            raise not_found
        caller = Caller(order_id=order_id)
        limits: RateLimits = request.app.state.rate_limits
        limits.check("caller", limits.per_key, caller.identity)
    else:
        caller = _storefront(request, services, token)
    try:
        order = services.book.get(order_id)
    except NotFound:
        raise not_found from None
    if caller.api_key_id is not None and order.api_key_id != caller.api_key_id:
        raise not_found
    return order


StorefrontDep = Annotated[Caller, Depends(storefront_caller)]
OrderDep = Annotated[Order, Depends(order_caller)]
