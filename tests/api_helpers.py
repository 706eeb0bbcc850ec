"""Helpers shared by the API tests: an app on a fresh orders database, keys, uploads."""

from __future__ import annotations

import io
import uuid

from PIL import Image

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import open_database
from storefront_api.config import Settings
from storefront_api.main import create_app


def make_settings(tmp_path, database_url: str, **overrides) -> Settings:
    values = {
        "home": str(tmp_path / "home"),
        "database_url": database_url,
        "secret_key": "test-secret-" + uuid.uuid4().hex,
        "rate_limit_per_key": "1000/minute",
        "rate_limit_per_address": "1000/minute",
        "stripe_api_key": None,
        "stripe_webhook_secret": None,
        "stripe_api_base": None,
    }
    return Settings(**{**values, **overrides})


def make_app(settings: Settings):
    return create_app(settings)


def new_key(settings: Settings, name: str = "test shop") -> dict[str, str]:
    database = open_database(settings.resolved_database_url)
    database.migrate()
    _, secret = create_api_key(database, name)
    return {"Authorization": f"Bearer {secret}"}


def jpeg_bytes(array, **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92, **save_args)
    return buffer.getvalue()


def order_body(upload_id: str, **fields) -> dict:
    return {"upload_id": upload_id, "style_id": "ink_etching", "product_id": "poster_a3", "variants": 2, **fields}
