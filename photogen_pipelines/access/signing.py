"""HMAC tokens: the per-order customer token and short-lived signed file URLs.

Both are derived from one server secret, so nothing has to be stored to check them;
the order token carries no expiry (it is the customer's link to their order), file
URLs expire after minutes. A link signature (`link_signature`) signs one operator link
for good, such as the rejection chart's in Dagster's metadata, under a purpose of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote


def _mac(secret: str, purpose: str, message: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\n{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Signer:
    def __init__(self, secret: str):
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 characters")
        self.secret = secret

    def order_token(self, order_id: str) -> str:
        return "otk_" + _mac(self.secret, "order", order_id)

    def order_token_valid(self, order_id: str, token: str) -> bool:
        return hmac.compare_digest(self.order_token(order_id), token)

    def file_query(self, key: str, ttl_seconds: int, now: float | None = None) -> str:
        expires = int((now or time.time()) + ttl_seconds)
        return f"expires={expires}&signature={_mac(self.secret, 'file', f'{key}|{expires}')}"

    def file_url(self, base_url: str, key: str, ttl_seconds: int) -> str:
        return f"{base_url.rstrip('/')}/v1/files/{quote(key)}?{self.file_query(key, ttl_seconds)}"

    def link_signature(self, purpose: str, message: str) -> str:
        """A signature that never expires, for a link kept where it lives as long as the
        record holding it (Dagster's event log): what it shows must be fit to be seen by
        whoever holds the link. Each purpose is its own domain: no order token or file link
        is ever a valid link signature, nor one purpose's signature another's."""
        return _mac(self.secret, f"link:{purpose}", message)

    def link_signature_valid(self, purpose: str, message: str, signature: str) -> bool:
        return hmac.compare_digest(self.link_signature(purpose, message), signature)

    def file_signature_valid(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        if expires < (now or time.time()):
            return False
        return hmac.compare_digest(_mac(self.secret, "file", f"{key}|{expires}"), signature)
