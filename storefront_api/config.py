"""The storefront API's settings: one pydantic-settings class, read from PHOTOGEN_* variables."""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from limits import parse
from pydantic import PositiveInt, field_validator
from pydantic_settings import NoDecode

from photogen_pipelines.settings import PhotoGenSettings


class Settings(PhotoGenSettings):
    api_v1_prefix: str = "/v1"
    file_url_ttl_seconds: int = 900
    # Request size limits, in bytes (PHOTOGEN_MAX_URL_BYTES, ...). Over one, a request is refused
    # before the API reads it (storefront_api/limits.py; the server's protocol, server.py, for a
    # head too long to even hold). A URL: its path and query string as sent (414 uri_too_long).
    max_url_bytes: PositiveInt = 8 * 1024
    max_header_bytes: PositiveInt = 16 * 1024  # every header line, name and value (431 headers_too_large)
    max_json_body_bytes: PositiveInt = 64 * 1024  # any body but an upload's or Stripe's (413 body_too_large)
    # Stripe's events carry whole objects (a charge with its refunds): room to spare, still bounded
    max_webhook_body_bytes: PositiveInt = 512 * 1024
    max_upload_bytes: PositiveInt = 25 * 1024 * 1024  # the selfie file (413 file_too_large)
    # Rate limits (`limits` rate strings, moving windows; api/deps.py). A request counts against
    # ONE of them: a valid API key or order token against that caller's own limit, whatever
    # address it comes from (a shop's backend sends all its customers' requests from one
    # address); a request without valid credentials against its client address; failed
    # credentials against the address's failed-authentication limit. A 429 `rate_limited` has
    # a Retry-After. Sized for a busy shop, from BENCHMARKS.md (GET /v1/orders/{id} ~10 ms,
    # so one API process serves ~100 reads/s):
    # - per API key, 3000/minute (50/s): a shop polling 500 orders in flight every 15 s is
    #   2000/minute, leaving ~1000/minute for uploads, new orders and catalog reads at a peak;
    #   a leaked key or a runaway loop still gets at most about half of one API process.
    rate_limit_per_key: str = "3000/minute"
    # - per order token, 120/minute (2/s): one customer's page polling one order, with room for
    #   approve/cancel and reloads; each order's token is its own caller, wherever it comes from.
    rate_limit_per_order_token: str = "120/minute"
    # - per client address, requests without valid credentials, 300/minute (5/s): the catalog
    #   without a key and signed file links, which customers' browsers load directly (a catalog
    #   page shows ~30 style previews: ~10 page views a minute behind one household or office
    #   address), while a scraper is held to 5 requests a second.
    rate_limit_per_address: str = "300/minute"
    # - failed authentications (an unknown or revoked API key, a wrong order token) per client
    #   address, 10/minute: tight, to slow key and token guessing. Once it is spent the address's
    #   credentials are not even checked (429, valid ones too) until the window moves on, so a
    #   guess never learns whether it was right. Rotate a key by deploying the new one everywhere
    #   before revoking the old: a revoked key's requests are failed authentications.
    rate_limit_failed_auth_per_address: str = "10/minute"
    # the storage URI may be redis:// when several API processes share the limits
    rate_limit_storage_uri: str = "memory://"
    auto_migrate: bool = True  # the embedded default makes its schema; production runs `photogen db upgrade`
    # The storefront's own web pages that may call this API from the customer's browser (CORS),
    # as exact origins: PHOTOGEN_CORS_ORIGINS=https://shop.example,https://www.shop.example (or a
    # JSON list). Empty (the default): no CORS headers at all, so browsers on other sites cannot
    # read any answer. Browsers may send GET/POST with Authorization, Content-Type and
    # Idempotency-Key, never cookies; the page uses the customer's order token (otk_…): an API
    # key from a browser is refused whatever its origin (api/deps.py, 403 api_key_from_browser).
    cors_origins: Annotated[list[str], NoDecode] = []
    # The customer's pages under /shop/ (storefront_api/shop/), branded with no code change:
    # the shop's name, its logo (a path on this server such as /shop/static/logo.svg, a data:
    # image, or an https:// URL whose origin the pages' CSP then allows for images), its
    # colour (#rrggbb: buttons and links, darkened where needed to keep text readable), and
    # where "back to the shop" leads when a session did not name its own return_url.
    shop_name: str = "PhotoGen"
    shop_logo_url: str | None = None
    shop_primary_color: str = "#1f4e8c"
    shop_return_url: str | None = None
    shop_session_ttl_seconds: PositiveInt = 2 * 3600  # a /v1/shop-sessions link, and the cookie it becomes
    # the Dagster UI as operators reach it (e.g. http://127.0.0.1:3000): the order page links
    # an operator's browser (photogen shop operator-link) to the order's runs there
    dagster_ui_url: str | None = None
    # GET /metrics (storefront_api/prometheus.py): open unless this is set, then a Bearer token
    metrics_token: str | None = None

    @field_validator(
        "rate_limit_per_key", "rate_limit_per_order_token", "rate_limit_per_address", "rate_limit_failed_auth_per_address"
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse(value)  # a ValueError (so a settings error at start) for what `limits` cannot read
        return value

    @field_validator("shop_primary_color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value.strip()):
            raise ValueError(f"{value!r} is not a colour such as #1f4e8c")
        return value.strip().lower()

    @field_validator("shop_logo_url", "shop_return_url", "dagster_ui_url")
    @classmethod
    def _url(cls, value: str | None, info) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        logo = info.field_name == "shop_logo_url"
        if logo and (value.startswith("data:image/") or (value.startswith("/") and not value.startswith("//"))):
            return value
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = "an https:// URL, a path on this server (/…) or a data:image/… URL" if logo else "an http(s):// URL"
            raise ValueError(f"{value!r} is not {shown}")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list | tuple):
            return [_origin(item) for item in value if not isinstance(item, str) or item.strip()]
        return value


def _origin(value: object) -> str:
    """`scheme://host[:port]` as a browser sends it in `Origin`: no path, no wildcard."""
    if not isinstance(value, str):
        raise ValueError(f"a CORS origin is a string such as https://shop.example, not {value!r}")
    origin = value.strip().lower()
    parts = urlsplit(origin)
    exact = origin == f"{parts.scheme}://{parts.netloc}" and "@" not in parts.netloc and "*" not in origin
    if parts.scheme not in ("http", "https") or not parts.hostname or not exact:
        raise ValueError(f"{value!r} is not an exact origin such as https://shop.example (a scheme and host, no path)")
    return origin


@functools.cache
def get_settings() -> Settings:
    return Settings()
