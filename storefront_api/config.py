"""The storefront API's settings: one pydantic-settings class, read from PHOTOGEN_* variables."""

from __future__ import annotations

import functools

from photogen_pipelines.settings import PhotoGenSettings


class Settings(PhotoGenSettings):
    api_v1_prefix: str = "/v1"
    public_base_url: str | None = None  # where clients reach this API (file URLs); default: the request's host
    file_url_ttl_seconds: int = 900
    max_upload_bytes: int = 25 * 1024 * 1024
    # limits' rate strings; the storage URI may be redis:// when several API processes share the limits
    rate_limit_per_key: str = "120/minute"
    rate_limit_per_address: str = "60/minute"
    rate_limit_storage_uri: str = "memory://"
    auto_migrate: bool = True  # the embedded default makes its schema; production runs `photogen db upgrade`


@functools.cache
def get_settings() -> Settings:
    return Settings()
