"""One interface for the print providers a shop sells through (Prodigi, Printful).

An adapter turns a `Submission` into the provider's order and reads the provider's order
back as a `ProviderOrder`. Submission is idempotent: our order id is the provider's
merchant reference / external id, so submitting the same order twice finds the first
provider order instead of making a second one. A provider's callback is never trusted
as it stands: `callback_reference` only says which order to read back with `get`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from photogen_pipelines.catalog import ProviderProduct
from photogen_pipelines.errors import PhotoGenError
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod, control_character
from photogen_pipelines.orders.shipments import ProviderStatus, Shipment

__all__ = ["ProviderStatus", "Shipment"]  # defined with the order, whose lifecycle follows them


@dataclass(frozen=True)
class Submission:
    """What an adapter needs to place one order: everything already checked."""

    order_id: str  # the merchant reference / external id: what makes submission idempotent
    recipient: Recipient
    shipping_method: ShippingMethod
    product: ProviderProduct
    file_url: str  # a signed or presigned URL the provider fetches the print file from
    file_md5: str | None = None  # Prodigi checks the downloaded asset against it
    copies: int = 1
    callback_url: str | None = None  # where the provider posts status changes (Prodigi)


@dataclass(frozen=True)
class ProviderOrder:
    provider: str
    provider_order_id: str
    merchant_reference: str  # our order id, as the provider keeps it
    status: ProviderStatus
    detail: str | None = None  # the provider's own status words, for people
    shipments: tuple[Shipment, ...] = field(default_factory=tuple)


class ProviderError(PhotoGenError):
    """The provider could not be asked or did not answer usefully; worth retrying."""

    code = "provider_unavailable"


class ProviderRefused(PhotoGenError):
    """The provider refused the order for good (a file it cannot print, an address it
    cannot ship to, a SKU it does not know): the order fails with this reason and is
    refunded. `code` says which (e.g. provider_refused_file, provider_refused_address)."""

    code = "provider_refused"


# what a callback body that is not JSON raises: a parse error, bytes that are not UTF-8, or
# brackets nested past the parser's recursion (the API refuses those sooner, by depth)
NOT_JSON = (ValueError, UnicodeDecodeError, RecursionError)


def callback_text(provider: str, name: str, value: Any) -> str | None:
    """An id a callback names, as text (None when absent). ProviderError when it has a control
    character: no order id of ours or the provider's has one, and the database could not
    even look a NUL up (a 500 for an unauthenticated request)."""
    if value is None or value == "":
        return None
    text = str(value)
    if where := control_character(text):
        message = f"{provider}: the callback's {name} has a control character ({where})"
        raise ProviderError(message, code="provider_callback_invalid")
    return text


class PrintProvider(Protocol):
    name: str  # prodigi | printful: the key of the product's `fulfilment:` entry

    def submit(self, submission: Submission) -> ProviderOrder:
        """Place the order, or find the one an earlier submission of it placed."""
        ...

    def get(self, order_id: str, provider_order_id: str | None = None) -> ProviderOrder | None:
        """Read the provider's order back (by its id when known, else by our reference); None if none."""
        ...

    def callback_reference(self, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
        """(our order id, provider order id) named by a callback, either may be None;
        raises ProviderError on a body that is not one of the provider's callbacks."""
        ...


def optional_text(value: object) -> str | None:
    """A provider's field as text, or None where it sent nothing (null or an empty string)."""
    return None if value is None or value == "" else str(value)
