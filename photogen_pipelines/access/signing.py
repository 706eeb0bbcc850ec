"""HMAC tokens: the per-order customer token and short-lived signed file URLs.

Both are derived from one server secret, so nothing has to be stored to check them;
the order token carries no expiry (it is the customer's link to their order), file
URLs expire after minutes. A link signature (`link_signature`) signs one operator link
for good, such as the rejection chart's in Dagster's metadata, under a purpose of its own.
An expiring token (`expiring_token`) carries a few fields and its expiry, signed under a
purpose of its own: the shop's browser sessions and operators' links (storefront_api/shop/).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

# the purposes of expiring tokens (`Signer.expiring_token`): each is its own signing domain
SHOP_SESSION = "shop-session"  # a customer's browser session on the shop's pages (POST /v1/shop-sessions)
OPERATOR = "operator"  # an operator's browser, shown links into Dagster (photogen shop operator-link)


def _mac(secret: str, purpose: str, message: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\n{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SignedFields:
    """What a genuine expiring token says; `expired` once its time has passed."""

    fields: tuple[str, ...]
    expires: int
    expired: bool


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

    def expiring_token(self, purpose: str, fields: list[str], ttl_seconds: int, now: float | None = None) -> str:
        """`fields` and an expiry, readable by anyone who holds the token (put no secret in
        them) and signed under `purpose`: one purpose's token is never another's, nor an
        order token, file link or link signature (each MACs under its own domain)."""
        expires = int((now or time.time()) + ttl_seconds)
        body = _b64(json.dumps([*fields, expires], separators=(",", ":")).encode())
        return f"{body}.{_mac(self.secret, f'token:{purpose}', body)}"

    def read_token(self, purpose: str, token: str, now: float | None = None) -> SignedFields | None:
        """The fields of a token this secret signed for `purpose`; None for anything else."""
        body, _, mac = token.partition(".")
        if not body or not token.isascii() or not hmac.compare_digest(_mac(self.secret, f"token:{purpose}", body), mac):
            return None
        try:
            *fields, expires = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:  # signed by us, so never; still no exception for a caller to meet
            return None
        if not isinstance(expires, int) or not all(isinstance(field, str) for field in fields):
            return None
        return SignedFields(tuple(fields), expires, expires < (now or time.time()))
