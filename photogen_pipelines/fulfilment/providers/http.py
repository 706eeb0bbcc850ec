"""What both print-provider adapters share: one HTTP client per provider on the outbound
layer (photogen_pipelines/http.py: timeouts, retries), and the provider's failures turned
into our errors.

Messages built here end up in Dagster logs and in the order's failure reason, so they name
the provider and what happened, never the API key (it only travels in a header) and never
the recipient: provider text that may echo the request goes through `redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from photogen_pipelines.fulfilment.providers.base import ProviderError
from photogen_pipelines.http import HttpClient, NoAnswer, Timeout
from photogen_pipelines.orders.recipients import Recipient

if TYPE_CHECKING:
    import requests

# (connect, read) seconds: a provider that does not answer within them is "unavailable"
# and the submission is retried, rather than holding a Dagster step for minutes. Within a
# call the layer's default policy applies: a connection that never opened, and a read
# answered 429/502/503/504, are tried twice more; a POST that reached the provider is not
# (the submission's own retry finds the order it may have made).
DEFAULT_TIMEOUT = Timeout(5.0, 30.0)

# answers worth trying again later: rate limited, timed out at their end, or broken there
RETRYABLE_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})

# how a refusal's subject is recognised in a provider's field path or message; the first
# topic that matches wins, so the most specific words come first
_REFUSAL_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("provider_refused_file", ("asset", "file", "image", "md5", "dpi", "resolution")),
    ("provider_refused_product", ("sku", "variant", "product", "attribute", "sizing", "copies", "quantity")),
    (
        "provider_refused_address",
        ("recipient", "address", "zip", "postal", "state", "country", "city", "town", "phone", "email"),
    ),
)

_MAX_PROVIDER_TEXT = 200  # enough to say what was wrong, short enough for a log line


@dataclass(frozen=True)
class Answer:
    """A provider's HTTP answer: its status and its JSON body (None when it sent none)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ProviderHttp:
    """One provider's API: an HttpClient carrying its auth headers, with timeouts on every
    call; a call that gets no answer becomes ProviderError, every HTTP answer is returned."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ):
        self.provider = provider
        self.http = HttpClient(base_url, headers={"Accept": "application/json", **headers}, timeout=timeout)

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Answer:
        try:
            response = self.http.request(method, path, params=params, json=body)
        except NoAnswer as failure:
            # our own words: requests' exception text carries the URL
            raise ProviderError(f"{self.provider}: {_no_answer(failure)} ({method} {_route(path)})") from None
        return Answer(response.status_code, _json_or_none(response))

    def close(self) -> None:
        self.http.close()


def raise_if_unusable(provider: str, answer: Answer, action: str) -> None:
    """Raise for the answers that say nothing about the order itself: a key the provider
    does not accept (an operator must fix it; not the customer's fault, so no refund) and a
    provider that is overloaded or broken (worth retrying)."""
    if answer.status in AUTH_STATUSES:
        raise ProviderError(
            f"{provider}: {action} was refused with HTTP {answer.status}: the API key (or store) is not accepted; "
            "an operator must fix the provider settings",
            code="provider_auth_failed",
        )
    if answer.status in (404, 405):
        # the paths we call are fixed: a wrong base URL, not anything about the customer's order
        # (a refusal would fail and refund a good order)
        raise ProviderError(
            f"{provider}: {action} found no such endpoint (HTTP {answer.status}); check PHOTOGEN_PRINT_PROVIDER_API_BASE",
            code="provider_endpoint_not_found",
        )
    if answer.status in RETRYABLE_STATUSES:
        raise ProviderError(f"{provider}: {action} was rate limited or timed out there (HTTP {answer.status}); will retry")
    if answer.status >= 500:
        raise ProviderError(f"{provider}: {action} failed on the provider's side (HTTP {answer.status}); will retry")


def refusal_code(*clues: str) -> str:
    """The ProviderRefused code for a refusal whose field paths or messages are `clues`:
    the file, the address or the product, else a plain refusal."""
    for clue in clues:
        words = clue.lower()
        for code, keywords in _REFUSAL_TOPICS:
            if any(keyword in words for keyword in keywords):
                return code
    return "provider_refused"


def personal_values(recipient: Recipient | None) -> list[str]:
    """The recipient's personal data as a provider's message may echo it back: whole
    fields, and the words of the name and street lines (a message may quote just one)."""
    if recipient is None:
        return []
    address = recipient.address
    values = [recipient.name, recipient.email, recipient.phone, address.line1, address.line2, address.city, address.postal_code]
    values += recipient.name.split()
    for line in (address.line1, address.line2):
        values += [word for word in (line or "").split() if len(word) >= 4]
    if recipient.phone:
        digits = "".join(c for c in recipient.phone if c.isdigit())
        values += [digits, digits[-7:]]  # the subscriber number, whatever prefix is written
    return [value for value in values if value and len(value) >= 3]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without any of `secrets` (case-insensitive), shortened for a log line."""
    # longest first, so that "Jane Doe" goes as a whole before "Jane" could split it
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = re.sub(re.escape(secret), "[redacted]", text, flags=re.IGNORECASE)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_PROVIDER_TEXT else text[: _MAX_PROVIDER_TEXT - 1] + "…"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # requests' JSONDecodeError is one
        return None


def _no_answer(failure: NoAnswer) -> str:
    if failure.timed_out:
        # which phase timed out helps an operator
        return f"timed out {'connecting' if failure.phase == 'connecting' else 'waiting for an answer'}"
    if failure.phase == "request":
        return f"the request failed ({type(failure.error).__name__})"
    return "could not connect to its API"


def _route(path: str) -> str:
    # the path without query parameters: those can carry our order reference, which is fine,
    # but nothing else from a request belongs in a message
    return path.split("?", 1)[0]
