"""Prodigi's Print API v4 behind `PrintProvider`.

Shapes follow Prodigi's v4 reference (https://www.prodigi.com/print-api/docs/reference/):
`X-API-Key` on every call; `POST /orders` with merchantReference, idempotencyKey,
shippingMethod, recipient and items, answered `{"outcome", "order"}`, where the outcome
`AlreadyExists` returns the order an earlier request with the same idempotency key created;
`GET /orders/{id}` and `GET /orders?merchantReferences=` read orders back; a refused request
is HTTP 400 `{"outcome": "ValidationFailed", "failures": {field path: [{code, providedValue}]}}`;
callbacks are CloudEvents whose `data.order` is the order.

Our order id is both the merchantReference and the idempotencyKey, so a retried submission
finds the first order. Asset downloads happen after the order is accepted: an asset Prodigi
could not fetch shows up as the issue `order.items.assets.FailedToDownloaded`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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

SANDBOX_URL = "https://api.sandbox.prodigi.com/v4.0"
LIVE_URL = "https://api.prodigi.com/v4.0"

_SHIPPING_METHODS = {
    ShippingMethod.BUDGET: "Budget",
    ShippingMethod.STANDARD: "Standard",
    ShippingMethod.EXPRESS: "Express",
    ShippingMethod.OVERNIGHT: "Overnight",
}
# the order's production steps (status.details), in the order they happen
_STEPS = ("downloadAssets", "printReadyAssetsPrepared", "allocateProductionLocation", "inProduction", "shipping")
_STARTED = frozenset({"inprogress", "complete"})
# the asset could not be fetched after all of Prodigi's attempts: it will never print
_ASSET_GAVE_UP = "failedtodownload"


class ProdigiProvider:
    """Places and reads orders through Prodigi's v4 API (the sandbox unless `api_base` says otherwise)."""

    name = "prodigi"

    def __init__(self, api_key: str, api_base: str = SANDBOX_URL, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT):
        if not api_key:
            raise ValueError("the prodigi provider needs an API key (X-API-Key)")
        self._http = ProviderHttp(self.name, api_base, {"X-API-Key": api_key}, timeout)

    def submit(self, submission: Submission) -> ProviderOrder:
        action = f"creating order {submission.order_id}"
        answer = self._http.call("POST", "/orders", body=order_body(submission))
        raise_if_unusable(self.name, answer, action)
        if not answer.ok:
            raise _refusal(answer, submission)
        order = _order_in(answer, action)
        placed = to_provider_order(order, submission.order_id)
        if _asset_failed(order):
            # Prodigi accepted the order but cannot fetch the file: it will never print
            raise ProviderRefused(
                f"prodigi: order {placed.provider_order_id} ({submission.order_id}) cannot fetch its print file "
                f"({placed.detail})",
                code="provider_refused_file",
            )
        return placed

    def get(self, order_id: str, provider_order_id: str | None = None) -> ProviderOrder | None:
        if provider_order_id:
            answer = self._http.call("GET", f"/orders/{quote(provider_order_id, safe='')}")
            if answer.status == 404:
                return None
            _raise_unless_ok(answer, f"reading order {provider_order_id} ({order_id})")
            return to_provider_order(_order_in(answer, f"reading order {provider_order_id}"), order_id)
        return self._find_by_reference(order_id)

    def callback_reference(self, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
        try:
            event = json.loads(body)
        except NOT_JSON:
            raise ProviderError("prodigi: the callback body is not JSON", code="provider_callback_invalid") from None
        if not isinstance(event, dict) or not str(event.get("type", "")).startswith("com.prodigi."):
            raise ProviderError("prodigi: the callback is not a Prodigi event", code="provider_callback_invalid")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        # the reference shows the order under data.order; a bare order under data is read too
        order = data.get("order") if isinstance(data.get("order"), dict) else data
        return (
            callback_text(self.name, "merchantReference", order.get("merchantReference")),
            callback_text(self.name, "order id", order.get("id") or event.get("subject")),
        )

    def _find_by_reference(self, order_id: str) -> ProviderOrder | None:
        action = f"looking up order {order_id}"
        answer = self._http.call("GET", "/orders", params={"merchantReferences": order_id, "top": 100})
        _raise_unless_ok(answer, action)
        orders = answer.body.get("orders") if isinstance(answer.body, dict) else None
        if not isinstance(orders, list):
            raise ProviderError(f"prodigi: {action}: the answer has no order list")
        ours = [o for o in orders if isinstance(o, dict) and o.get("merchantReference") == order_id and o.get("id")]
        if not ours:
            return None
        # reprints may reuse a merchant reference; the order our submission placed carries
        # our id as its idempotency key, and the list comes newest first
        placed_by_us = [o for o in ours if o.get("idempotencyKey") == order_id]
        return to_provider_order((placed_by_us or ours)[0], order_id)


def order_body(submission: Submission) -> dict[str, Any]:
    """The `POST /orders` body for a submission."""
    product = submission.product
    asset: dict[str, Any] = {"printArea": product.print_area, "url": submission.file_url}
    if submission.file_md5:
        asset["md5Hash"] = submission.file_md5  # Prodigi checks the downloaded file against it
    body: dict[str, Any] = {
        "merchantReference": submission.order_id,
        "idempotencyKey": submission.order_id,
        "shippingMethod": _SHIPPING_METHODS[submission.shipping_method],
        "recipient": _recipient(submission.recipient),
        "items": [
            {
                "merchantReference": submission.order_id,
                "sku": product.sku,
                "copies": submission.copies,
                "sizing": product.sizing,
                "attributes": dict(product.attributes),
                "assets": [asset],
            }
        ],
    }
    if submission.callback_url:
        body["callbackUrl"] = submission.callback_url
    return body


def to_provider_order(order: Mapping[str, Any], order_id: str) -> ProviderOrder:
    """A Prodigi order object in our terms."""
    status = order.get("status") if isinstance(order.get("status"), dict) else {}
    # an order held in the account's pause window comes back without a status
    stage = str(status.get("stage") or "OnHold")
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    issues = [str(i["errorCode"]) for i in status.get("issues") or [] if isinstance(i, dict) and i.get("errorCode")]
    shipped = tuple(_shipment(s) for s in order.get("shipments") or [] if isinstance(s, dict) and _has_left(s))
    return ProviderOrder(
        provider="prodigi",
        provider_order_id=str(order["id"]),
        merchant_reference=optional_text(order.get("merchantReference")) or order_id,
        status=_our_status(stage, details, issues, shipped),
        detail=_detail(stage, details, issues),
        shipments=shipped,
    )


def _our_status(stage: str, details: Mapping[str, Any], issues: list[str], shipped: tuple[Shipment, ...]) -> ProviderStatus:
    stage = stage.lower()
    if stage == "cancelled":
        return ProviderStatus.CANCELLED
    if any(_ASSET_GAVE_UP in issue.lower() for issue in issues):
        return ProviderStatus.FAILED
    if stage == "complete" or shipped:  # complete: every shipment has been sent
        return ProviderStatus.SHIPPED
    if str(details.get("inProduction", "")).lower() in _STARTED or str(details.get("shipping", "")).lower() in _STARTED:
        return ProviderStatus.IN_PRODUCTION
    return ProviderStatus.SUBMITTED


def _detail(stage: str, details: Mapping[str, Any], issues: list[str]) -> str:
    steps = ", ".join(f"{step} {details[step]}" for step in _STEPS if details.get(step))
    text = f"{stage} ({steps})" if steps else stage
    # issue codes only: their descriptions quote the asset URL, a signed link
    return f"{text}; issues: {', '.join(issues)}" if issues else text


def _has_left(shipment: Mapping[str, Any]) -> bool:
    # shipments appear once a lab is allocated ("Processing"); only sent ones count
    return str(shipment.get("status", "")).lower() == "shipped"


def _shipment(shipment: Mapping[str, Any]) -> Shipment:
    carrier = shipment.get("carrier") if isinstance(shipment.get("carrier"), dict) else {}
    tracking = shipment.get("tracking") if isinstance(shipment.get("tracking"), dict) else {}
    return Shipment(
        carrier=optional_text(carrier.get("name")),
        tracking_number=optional_text(tracking.get("number")),
        tracking_url=optional_text(tracking.get("url")),
        status=optional_text(shipment.get("status")),
    )


def _asset_failed(order: Mapping[str, Any]) -> bool:
    status = order.get("status") if isinstance(order.get("status"), dict) else {}
    issues = status.get("issues") or []
    return any(isinstance(i, dict) and _ASSET_GAVE_UP in str(i.get("errorCode", "")).lower() for i in issues)


def _refusal(answer: Answer, submission: Submission) -> ProviderRefused:
    """A 4xx answer to a new order as a refusal that says which field was refused."""
    body = answer.body if isinstance(answer.body, dict) else {}
    failures = body.get("failures") if isinstance(body.get("failures"), dict) else {}
    personal = personal_values(submission.recipient)
    outcome = redact(str(body.get("outcome") or body.get("statusText") or "refused"), personal)
    # field paths and error codes only: providedValue echoes what we sent, the recipient included
    found = [f"{path} {'/'.join(_codes(problems)) or 'invalid'}" for path, problems in failures.items()]
    what = redact("; ".join(found), personal) if found else "no field named"
    return ProviderRefused(
        f"prodigi: refused order {submission.order_id} (HTTP {answer.status} {outcome}): {what}",
        code=refusal_code(*failures.keys()) if failures else "provider_refused",
    )


def _codes(problems: Any) -> list[str]:
    if not isinstance(problems, list):
        return []
    return [str(p["code"]) for p in problems if isinstance(p, dict) and p.get("code")]


def _raise_unless_ok(answer: Answer, action: str) -> None:
    raise_if_unusable("prodigi", answer, action)
    if not answer.ok:
        raise ProviderError(f"prodigi: {action}: unexpected HTTP {answer.status}")


def _order_in(answer: Answer, action: str) -> dict[str, Any]:
    order = answer.body.get("order") if isinstance(answer.body, dict) else None
    if not isinstance(order, dict) or not order.get("id"):
        raise ProviderError(f"prodigi: {action}: HTTP {answer.status} without an order")
    return order


def _recipient(recipient: Recipient) -> dict[str, Any]:
    address = recipient.address
    return {
        "name": recipient.name,
        "email": recipient.email,
        "phoneNumber": recipient.phone,
        "address": {
            "line1": address.line1,
            "line2": address.line2,
            "postalOrZipCode": address.postal_code,
            "countryCode": address.country_code,
            "townOrCity": address.city,
            "stateOrCounty": address.state,
        },
    }
