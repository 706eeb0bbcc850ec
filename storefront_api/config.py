"""The storefront API's settings: one pydantic-settings class, read from PHOTOGEN_* variables."""

from __future__ import annotations

import functools

from pydantic import PositiveInt

from photogen_pipelines.settings import PhotoGenSettings


class Settings(PhotoGenSettings):
    api_v1_prefix: str = "/v1"
    public_base_url: str | None = None  # where clients reach this API (file URLs); default: the request's host
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
    # limits' rate strings; the storage URI may be redis:// when several API processes share the limits
    rate_limit_per_key: str = "120/minute"
    rate_limit_per_address: str = "60/minute"
    rate_limit_storage_uri: str = "memory://"
    auto_migrate: bool = True  # the embedded default makes its schema; production runs `photogen db upgrade`


@functools.cache
def get_settings() -> Settings:
    return Settings()
