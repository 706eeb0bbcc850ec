"""Printful's API (the v1 Orders API) behind `PrintProvider`.

Shapes follow Printful's API reference (https://developers.printful.com/docs/, Orders API
and Webhook API): `Authorization: Bearer <token>`, plus `X-PF-Store-Id` for an account-level
token; `POST /orders` (with `?confirm=true` to skip the draft) taking external_id,
shipping, recipient and items; `GET /orders/@{external_id}` reads an order by our id; every
answer is `{"code", "result"}`, errors `{"code", "result": message, "error": {reason,
message}}`; webhooks are `{"type", "data": {"order", "shipment"?}}`.

Printful has no idempotency key, but an external id is unique within a store: submission
first reads `@{our order id}` and only creates the order when there is none, and a create
answered "already exists" reads it again, so a retried submission never makes a second
order. Printful has no sandbox: with `confirm` off (the default) orders stay drafts, which
cost nothing until someone confirms them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from photogen_pipelines.catalog import ProviderProduct
from photogen_pipelines.fulfilment.providers.base import (
    NOT_JSON,
    ProviderError,
    ProviderOrder,
    ProviderRefused,
    ProviderStatus,
    Shipment,
    Submission,
    callback_text,
    optional_text,
)
from photogen_pipelines.fulfilment.providers.http import (
    DEFAULT_TIMEOUT,
    Answer,
    ProviderHttp,
    personal_values,
    raise_if_unusable,
    redact,
    refusal_code,
)
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod

LIVE_URL = "https://api.printful.com"

# Printful's shipping method ids; it has nothing cheaper than STANDARD nor faster than
# EXPRESS for every destination, so budget and overnight map to those
_SHIPPING_METHODS = {
    ShippingMethod.BUDGET: "STANDARD",
    ShippingMethod.STANDARD: "STANDARD",
    ShippingMethod.EXPRESS: "EXPRESS",
    ShippingMethod.OVERNIGHT: "EXPRESS",
}
_STATUSES = {
    "draft": ProviderStatus.SUBMITTED,  # not submitted for fulfilment (confirm off)
    "pending": ProviderStatus.SUBMITTED,
    "inprocess": ProviderStatus.IN_PRODUCTION,
    "onhold": ProviderStatus.IN_PRODUCTION,  # a problem Printful's support is resolving
    "partial": ProviderStatus.SHIPPED,  # some items shipped, the rest will follow
    "fulfilled": ProviderStatus.SHIPPED,
    "canceled": ProviderStatus.CANCELLED,
    "failed": ProviderStatus.FAILED,  # not accepted: address, print files, charging...
}


class PrintfulProvider:
    """Places and reads orders through Printful's API, in one store."""

    name = "printful"

    def __init__(
        self,
        api_key: str,
        api_base: str = LIVE_URL,
        store_id: str | None = None,
        confirm: bool = False,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ):
        if not api_key:
            raise ValueError("the printful provider needs an API token")
        headers = {"Authorization": f"Bearer {api_key}"}
        if store_id:
            headers["X-PF-Store-Id"] = str(store_id)
        self.confirm = confirm
        self._http = ProviderHttp(self.name, api_base, headers, timeout)

    def submit(self, submission: Submission) -> ProviderOrder:
        body = order_body(submission)  # first: a SKU that is no variant id is refused before any call
        existing = self._read(f"@{submission.order_id}", submission.order_id)
        if existing is not None:
            return self._placed(existing, submission)
        action = f"creating order {submission.order_id}"
        answer = self._http.call("POST", "/orders", params={"confirm": "true"} if self.confirm else None, body=body)
        raise_if_unusable(self.name, answer, action)
        if answer.ok:
            return self._placed(_result(answer, action), submission)
        message = _error_message(answer)
        if answer.status in (400, 409) and "already exists" in message.lower():
            # an earlier attempt created it after our lookup (or the lookup lagged): read it
            existing = self._read(f"@{submission.order_id}", submission.order_id)
            if existing is not None:
                return self._placed(existing, submission)
            raise ProviderError(f"printful: order {submission.order_id} exists there but cannot be read back yet")
        raise _refusal(answer, submission)

    def get(self, order_id: str, provider_order_id: str | None = None) -> ProviderOrder | None:
        order = self._read(provider_order_id or f"@{order_id}", order_id)
        return None if order is None else to_provider_order(order, order_id)

    def callback_reference(self, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
        try:
            event = json.loads(body)
        except NOT_JSON:
            raise ProviderError("printful: the webhook body is not JSON", code="provider_callback_invalid") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict):
            raise ProviderError("printful: the webhook is not a Printful event", code="provider_callback_invalid")
        order = event["data"].get("order")
        if not isinstance(order, dict):  # product and stock events name no order
            return None, None
        reference = callback_text(self.name, "external_id", order.get("external_id"))
        return reference, callback_text(self.name, "order id", order.get("id"))

    def _read(self, reference: str, order_id: str) -> dict[str, Any] | None:
        """The order at `reference` (Printful's id, or "@" + our id), None if there is none."""
        action = f"reading order {reference}"
        answer = self._http.call("GET", f"/orders/{quote(reference, safe='@')}")
        if answer.status == 404:
            return None
        raise_if_unusable(self.name, answer, action)
        if not answer.ok:
            raise ProviderError(f"printful: {action} ({order_id}): unexpected HTTP {answer.status}")
        return _result(answer, action)

    def _placed(self, order: dict[str, Any], submission: Submission) -> ProviderOrder:
        if self.confirm and order.get("status") == "draft":
            # a draft left by an earlier attempt (or by a shop that turned confirm on since)
            order = self._confirm(order, submission)
        placed = to_provider_order(order, submission.order_id)
        if placed.status is ProviderStatus.FAILED and _file_failed(order):
            raise ProviderRefused(
                f"printful: order {placed.provider_order_id} ({submission.order_id}) failed: its print file could not be used",
                code="provider_refused_file",
            )
        return placed

    def _confirm(self, order: dict[str, Any], submission: Submission) -> dict[str, Any]:
        action = f"confirming order {order['id']} ({submission.order_id})"
        answer = self._http.call("POST", f"/orders/{quote(str(order['id']), safe='')}/confirm")
        raise_if_unusable(self.name, answer, action)
        if not answer.ok:
            raise _refusal(answer, submission)
        return _result(answer, action)


def order_body(submission: Submission) -> dict[str, Any]:
    """The `POST /orders` body for a submission."""
    product = submission.product
    item: dict[str, Any] = {
        "variant_id": _variant_id(product, submission.order_id),
        "quantity": submission.copies,
        "files": [{"type": product.print_area, "url": submission.file_url}],
    }
    if product.attributes:
        item["options"] = [{"id": key, "value": value} for key, value in product.attributes.items()]
    return {
        "external_id": submission.order_id,
        "shipping": _SHIPPING_METHODS[submission.shipping_method],
        "recipient": _recipient(submission.recipient),
        "items": [item],
    }


def to_provider_order(order: Mapping[str, Any], order_id: str) -> ProviderOrder:
    """A Printful order object in our terms."""
    status = str(order.get("status") or "unknown")
    shipments = tuple(_shipment(s) for s in order.get("shipments") or [] if isinstance(s, dict))
    ours = _STATUSES.get(status, ProviderStatus.SUBMITTED)
    if shipments and ours in (ProviderStatus.SUBMITTED, ProviderStatus.IN_PRODUCTION):
        ours = ProviderStatus.SHIPPED  # `shipments` lists only what has already shipped
    return ProviderOrder(
        provider="printful",
        provider_order_id=str(order["id"]),
        merchant_reference=optional_text(order.get("external_id")) or order_id,
        status=ours,
        detail=status,
        shipments=shipments,
    )


def _variant_id(product: ProviderProduct, order_id: str) -> int:
    try:
        return int(product.sku)
    except ValueError:
        raise ProviderRefused(
            f"printful: order {order_id}: the catalog's printful SKU {product.sku!r} is not a catalog variant id",
            code="provider_refused_product",
        ) from None


def _shipment(shipment: Mapping[str, Any]) -> Shipment:
    return Shipment(
        carrier=optional_text(shipment.get("carrier")),
        tracking_number=optional_text(shipment.get("tracking_number")),
        tracking_url=optional_text(shipment.get("tracking_url")),
        status="reshipped" if shipment.get("reshipment") else "shipped",
    )


def _file_failed(order: Mapping[str, Any]) -> bool:
    files = [f for item in order.get("items") or [] if isinstance(item, dict) for f in item.get("files") or []]
    return any(isinstance(f, dict) and f.get("status") == "failed" for f in files)


def _result(answer: Answer, action: str) -> dict[str, Any]:
    result = answer.body.get("result") if isinstance(answer.body, dict) else None
    if not isinstance(result, dict) or result.get("id") is None:
        raise ProviderError(f"printful: {action}: HTTP {answer.status} without an order")
    return result


def _refusal(answer: Answer, submission: Submission) -> ProviderRefused:
    """A 4xx answer to a new order as a refusal; Printful says what was wrong in words only,
    so the words decide which kind, and the recipient's data is taken out of them."""
    message = _error_message(answer)
    return ProviderRefused(
        f"printful: refused order {submission.order_id} (HTTP {answer.status}): "
        f"{redact(message, personal_values(submission.recipient))}",
        code=refusal_code(message),
    )


def _error_message(answer: Answer) -> str:
    body = answer.body if isinstance(answer.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    message = error.get("message") or body.get("result")
    return str(message) if message else f"HTTP {answer.status}"


def _recipient(recipient: Recipient) -> dict[str, Any]:
    address = recipient.address
    fields = {
        "name": recipient.name,
        "address1": address.line1,
        "address2": address.line2,
        "city": address.city,
        "state_code": address.state,
        "country_code": address.country_code,
        "zip": address.postal_code,
        "phone": recipient.phone,
        "email": recipient.email,
    }
    return {key: value for key, value in fields.items() if value is not None}
