"""The HTTP protocol the API is served with: `uvicorn --http storefront_api.server:HttpProtocol`
(`photogen serve` passes it).

uvicorn's httptools protocol holds a request's head in memory however long it grows, and
what it refuses itself (a URL over 64 KiB, which httptools cannot parse, or bytes that are
not HTTP) gets a plain-text 400. This one stops reading a head that is already over the
API's limits and answers every refusal with the API's JSON errors. A head within reach
of the limits goes on to the app, whose middleware (limits.py) applies them exactly.

Its access log never holds a credential: the values of query parameters that carry one
(a signed file link's `signature`, which the print provider's link keeps valid for days;
any token, key, secret or presigned-URL signature) are written as `REDACTED`, and so is a
customer's reference in a path (`/v1/customers/REDACTED/export`): the shop's own id of a
person, which may be an email address, is never logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from storefront_api.config import Settings, get_settings
from storefront_api.limits import Refusal, headers_too_large, uri_too_long

# the request line around the URL: method, version, line breaks
REQUEST_LINE_SLACK = 1024
# after refusing, drop what the client still sends for this long before closing: closing on
# unread bytes resets the connection, and the client may lose the answer with it
LINGER_SECONDS = 5.0

NOT_HTTP = Refusal(400, "bad_request", "the request is not valid HTTP")

# query parameters whose values are credentials: our signed links' `signature`, and by name
# anything of the kind (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, token, api_key, …)
SECRET_WORDS = ("signature", "token", "secret", "password", "passwd", "credential", "apikey")  # anywhere in the name
SECRET_PARTS = frozenset({"sig", "key", "auth", "code", "session"})  # a whole part of it (x-amz-…, api_key)
REDACTED = "REDACTED"
_PARAMETER = re.compile(r"(^|[&;])([^&;=]*)=([^&;]*)")
_CUSTOMER_REF = re.compile(r"(/customers/)[^/?#]+")


def redacted(target: str) -> str:
    """A request's path and query string with every credential's value and customer
    reference replaced."""
    path, mark, query = target.partition("?")
    path = _CUSTOMER_REF.sub(rf"\1{REDACTED}", path)
    if not mark:
        return path

    def hide(match: re.Match[str]) -> str:
        name = match[2]
        plain = re.sub(r"%[0-9a-fA-F]{2}", lambda m: chr(int(m[0][1:], 16)), name).replace("+", " ")
        return f"{match[1]}{name}={REDACTED}" if _secret(plain) else match[0]

    return f"{path}?{_PARAMETER.sub(hide, query)}"


def _secret(name: str) -> bool:
    name = name.strip().lower()
    return any(word in name for word in SECRET_WORDS) or bool(SECRET_PARTS & set(re.split(r"[-_. ]+", name)))


class _RedactingAccessLog(logging.LoggerAdapter):
    """uvicorn's access logger, with the URL of each line `redacted`."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # uvicorn: '%s - "%s %s HTTP/%s" %d' % (client, method, path with query, version, status)
        if len(args) == 5 and isinstance(args[2], str):
            args = (*args[:2], redacted(args[2]), *args[3:])
        super().log(level, msg, *args, **kwargs)


class HttpProtocol(HttpToolsProtocol):
    settings: ClassVar[Settings | None] = None  # None: this process's PHOTOGEN_* settings, as storefront_api.main:app

    @classmethod
    def for_settings(cls, settings: Settings) -> type[HttpProtocol]:
        """The protocol for an app made with other settings (`uvicorn.Config(app, http=...)`)."""
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.access_logger = _RedactingAccessLog(self.access_logger, {})  # handed to each request's cycle
        self.limits = self.settings or get_settings()
        self.url = b""
        self.head_open = False  # between the first byte of a request and the end of its headers
        self.head_bytes = 0
        self.counting = False
        self.refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # the chunk this request began in may end the previous one: counting starts with the next
        self.head_open, self.head_bytes, self.counting = True, 0, False

    def on_headers_complete(self) -> None:
        self.head_open = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        super().data_received(data)
        if self.refused or not self.head_open:
            return
        if self.counting:
            self.head_bytes += len(data)
        self.counting = True
        if len(self.url) > self.limits.max_url_bytes:
            self.refuse(uri_too_long(self.limits))
        elif self.head_bytes > self.limits.max_url_bytes + self.limits.max_header_bytes + REQUEST_LINE_SLACK:
            self.refuse(headers_too_large(self.limits))

    def send_400_response(self, msg: str) -> None:
        # httptools gave up on the request; a URL it cannot parse is one over our limit
        self.refuse(uri_too_long(self.limits) if len(self.url) > self.limits.max_url_bytes else NOT_HTTP)

    def refuse(self, refusal: Refusal) -> None:
        self.refused = True
        self._unset_keepalive_if_required()
        body = refusal.response().body
        head = [STATUS_LINE[refusal.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
