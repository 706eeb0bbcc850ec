"""Stateful fakes of the Prodigi Print API v4 and of Printful's v1 Orders API: real HTTP
servers on loopback (ThreadingHTTPServer on port 0, in a thread), started and stopped by
the test that uses them.

These are fakes because the providers' sandboxes cannot be reached from this machine (it
has no outbound network; Printful has no sandbox at all). They implement the documented
shapes (Prodigi: https://www.prodigi.com/print-api/docs/reference/, Printful:
https://developers.printful.com/docs/) and the behaviour the adapters rely on: Prodigi's
idempotency key (Created, then AlreadyExists with the same order), Printful's unique
external id and its `@external_id` lookup, API-key checks, validation refusals, and orders
that advance to shipped with a carrier and tracking. Like the real providers they fetch the
print file from its URL when an order arrives, so an unreachable or expired link fails the
order. Error codes and messages that the references do not spell out are the fakes' own.

Both refuse a print file below 150 DPI over the product's print area, as the providers'
file guidelines ask (the fakes' own error codes: Prodigi `ImageResolutionTooLow` on the
asset's URL, Printful a BadRequest naming the resolution).

Switches for failure tests: `fault` (answer a status, or stall, once; before or after
handling the request), `refuse_next` (a validation refusal), and per-fake ones below.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from PIL import Image

Response = tuple[int, Any]  # HTTP status and JSON body


@dataclass
class Seen:
    """One request a fake received, and what it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    answer: Any = None


@dataclass
class Fault:
    status: int | None = None  # answer this instead (with an error body); None: answer normally
    delay: float = 0.0  # seconds to stall first: longer than the client's read timeout is a timeout
    after_handling: bool = False  # handle the request (e.g. create the order), then fail: a lost answer
    only: str | None = None  # "METHOD /path" prefix the fault waits for, e.g. "POST /orders"


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port), serving `respond` in a thread."""

    def __init__(self, respond: Callable[[str, str, dict[str, str], bytes], tuple[int, bytes, dict[str, str]]]):
        respond_to = respond

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, headers = respond_to(method, self.path, dict(self.headers.items()), raw)
                try:
                    self.send_response(status)
                    for name, value in {"Content-Length": str(len(payload)), **headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests' output stays readable

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a short poll interval: stopping waits for the loop to notice
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class FileHost:
    """Where print files live (a stand-in for the signed S3 links): `files` maps a path to
    its bytes; any other path is 404, as an expired or wrong link would be."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.downloads: list[str] = []
        self._server = LoopbackServer(self._respond)

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        path = urlsplit(target).path
        self.downloads.append(path)
        if path in self.files:
            return 200, self.files[path], {"Content-Type": "image/jpeg"}
        return 404, b"not found", {"Content-Type": "text/plain"}

    def url(self, path: str) -> str:
        return self._server.url + path

    def __enter__(self) -> FileHost:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


class FakeApi:
    """What both fakes share: the server, the request log and the scripted faults."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix  # the API's base path, e.g. /v4.0
        self.requests: list[Seen] = []
        self._faults: list[Fault] = []
        self._lock = threading.RLock()  # one request changes the state at a time
        self._server = LoopbackServer(self._respond)

    @property
    def url(self) -> str:
        return self._server.url + self.prefix

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def fault(self, status: int | None = None, *, times: int = 1, **kwargs: Any) -> None:
        self._faults += [Fault(status, **kwargs) for _ in range(times)]

    def seen(self, method: str, path_prefix: str = "") -> list[Seen]:
        return [s for s in self.requests if s.method == method and s.path.startswith(path_prefix)]

    # -- to implement -------------------------------------------------------------------
    def handle(self, seen: Seen) -> Response:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        raise NotImplementedError

    # -- plumbing -------------------------------------------------------------------------
    def _respond(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        path = path[len(self.prefix) :] if path.startswith(self.prefix) else path
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = Seen(method, path, parse_qs(parts.query), headers, body)
        self.requests.append(seen)
        fault = self._take_fault(f"{method} {path}")
        if fault and not fault.after_handling:
            time.sleep(fault.delay)
        if fault and fault.status and not fault.after_handling:
            status, answer = fault.status, self.error_body(fault.status)
        else:
            with self._lock:
                status, answer = self.handle(seen)
            if fault and fault.after_handling:
                time.sleep(fault.delay)
                if fault.status:
                    status, answer = fault.status, self.error_body(fault.status)
        seen.status, seen.answer = status, answer
        headers_out = {"Content-Type": "application/json"}
        if status == 429:
            headers_out["Retry-After"] = "1"
        return status, json.dumps(answer).encode(), headers_out

    def _take_fault(self, request: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.only is None or request.startswith(fault.only):
                    return self._faults.pop(index)
        return None


def fetch_print_file(url: str, md5: str | None = None) -> bool:
    """What a provider does with an order's file URL: download it, and check it is an image."""
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return False
    content = response.content
    is_image = content.startswith(b"\xff\xd8\xff") or content.startswith(b"\x89PNG")
    return response.status_code == 200 and is_image and (md5 is None or hashlib.md5(content).hexdigest() == md5)


# Both providers print from 150 DPI at the print area's size and refuse files below it (the
# fakes check at order creation; the real ones may do it while preparing the assets).
MIN_DPI = 150


def file_dpi(url: str, area_inches: tuple[float, float]) -> float | None:
    """The DPI a downloadable image reaches over a print area (either orientation); None
    when it cannot be downloaded or decoded (a download failure is reported on its own)."""
    try:
        response = requests.get(url, timeout=5)
        with Image.open(io.BytesIO(response.content)) as image:
            pixels = sorted(image.size)
    except (requests.RequestException, OSError):
        return None
    if response.status_code != 200:
        return None
    inches = sorted(area_inches)
    return min(pixels[0] / inches[0], pixels[1] / inches[1])


def _at(document: Any, path: str) -> Any:
    """The value at a Prodigi-style field path such as items[0].assets[0].url."""
    for name, index in re.findall(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?", path):
        document = document.get(name) if isinstance(document, dict) else None
        if index and isinstance(document, list):
            document = document[int(index)] if int(index) < len(document) else None
    return document


# -- Prodigi -------------------------------------------------------------------------------

PRODIGI_SKUS = {  # sku (upper case) -> attributes it requires
    "GLOBAL-FAP-12X18": (),
    "GLOBAL-FAP-18X24": (),
    "GLOBAL-FAP-A3": (),
    "GLOBAL-FAP-A2": (),
    "GLOBAL-CAN-24X36": ("wrap",),
    "GLOBAL-CFPM-16X20": ("color",),
    "TEST-PRINT-2X3": (),  # the tests' own small print (a print run of a second), not Prodigi's
}
PRODIGI_PRINT_AREAS = {  # sku -> the print area in inches
    "GLOBAL-FAP-12X18": (12, 18),
    "GLOBAL-FAP-18X24": (18, 24),
    "GLOBAL-FAP-A3": (11.69, 16.54),
    "GLOBAL-FAP-A2": (16.54, 23.39),
    "GLOBAL-CAN-24X36": (24, 36),
    "GLOBAL-CFPM-16X20": (16, 20),
    "TEST-PRINT-2X3": (2, 3),
}
_SHIPPING_METHODS = {"Budget", "Standard", "Express", "Overnight"}
_NOT_STARTED = {
    "downloadAssets": "NotStarted",
    "printReadyAssetsPrepared": "NotStarted",
    "allocateProductionLocation": "NotStarted",
    "inProduction": "NotStarted",
    "shipping": "NotStarted",
}


class FakeProdigi(FakeApi):
    """Prodigi's v4 orders API: POST /orders (idempotent on idempotencyKey), GET /orders/{id},
    GET /orders?merchantReferences=, with X-API-Key checked on every call."""

    def __init__(self, api_key: str):
        super().__init__(prefix="/v4.0")
        self.api_key = api_key
        self.orders: dict[str, dict[str, Any]] = {}
        self.skus = dict(PRODIGI_SKUS)
        self._refusals: list[tuple[str, str]] = []
        self._ids = itertools.count(840_800)

    def refuse_next(self, field_path: str, code: str) -> None:
        """The next order is refused: HTTP 400 ValidationFailed naming `field_path`."""
        self._refusals.append((field_path, code))

    def error_body(self, status: int) -> Any:
        outcomes = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}
        return {"outcome": outcomes.get(status, "Error"), "traceParent": "00-fake"}

    def handle(self, seen: Seen) -> Response:
        if seen.headers.get("X-API-Key") != self.api_key:
            return 401, {"statusText": "Unauthorised", "statusCode": 401, "data": {}, "traceParent": "00-fake"}
        route = seen.path.lower().rstrip("/")
        if seen.method == "POST" and route == "/orders":
            return self._create(seen.body)
        if seen.method == "GET" and route == "/orders":
            return self._list(seen.query)
        if seen.method == "GET" and route.startswith("/orders/"):
            order = self.orders.get(seen.path.rstrip("/").rsplit("/", 1)[1])
            return (200, {"outcome": "Ok", "order": order}) if order else (404, {"outcome": "EntityNotFound"})
        return 404, {"outcome": "EndpointDoesNotExist"}

    # -- advancing orders, as Prodigi's labs would ----------------------------------------
    def start_production(self, order_id: str) -> None:
        with self._lock:
            details = self.orders[order_id]["status"]["details"]
            details.update(allocateProductionLocation="Complete", printReadyAssetsPrepared="Complete", inProduction="InProgress")

    def ship(self, order_id: str, carrier: str, service: str, tracking_number: str, tracking_url: str) -> None:
        with self._lock:
            order = self.orders[order_id]
            order["status"]["stage"] = "Complete"
            order["status"]["details"] = dict.fromkeys(_NOT_STARTED, "Complete")
            order["shipments"].append(
                {
                    "id": f"shp_{next(self._ids)}",
                    "status": "Shipped",
                    "carrier": {"name": carrier, "service": service},
                    "tracking": {"number": tracking_number, "url": tracking_url},
                    "dispatchDate": "2026-01-05T10:00:00Z",
                    "items": [{"itemId": item["id"]} for item in order["items"]],
                    "fulfillmentLocation": {"countryCode": "GB", "labCode": "uk1"},
                }
            )

    def cancel(self, order_id: str) -> None:
        with self._lock:
            self.orders[order_id]["status"]["stage"] = "Cancelled"

    def callback(self, order_id: str) -> bytes:
        """The CloudEvent Prodigi posts to the callback URL when the order's stage changes."""
        order = self.orders[order_id]
        event = {
            "specversion": "1.0",
            "type": f"com.prodigi.order.status.stage.changed#{order['status']['stage']}",
            "source": "http://api.prodigi.com/v4.0/Orders/",
            "id": f"evt_{next(self._ids)}",
            "time": "2026-01-05T10:00:00Z",
            "datacontenttype": "application/json",
            "data": {"order": order},
            "subject": order_id,
        }
        return json.dumps(event).encode()

    # -- the endpoints ------------------------------------------------------------------
    def _create(self, body: Any) -> Response:
        failures = self._validate(body)
        if failures:
            return 400, {"outcome": "ValidationFailed", "failures": failures, "traceParent": "00-fake"}
        key = body.get("idempotencyKey")
        existing = next((o for o in self.orders.values() if key and o["idempotencyKey"] == key), None)
        if existing:
            return 200, {"outcome": "AlreadyExists", "order": existing, "traceParent": "00-fake"}
        order = self._new_order(body)
        self.orders[order["id"]] = order
        outcome = "CreatedWithIssues" if order["status"]["issues"] else "Created"
        return 200, {"outcome": outcome, "order": order, "traceParent": "00-fake"}

    def _validate(self, body: Any) -> dict[str, list[dict[str, Any]]]:
        if not isinstance(body, dict):
            return {"body": [{"code": "MustBeAJsonObject", "providedValue": None}]}
        required = ["shippingMethod", "recipient.name", "recipient.address.line1", "recipient.address.postalOrZipCode"]
        required += ["recipient.address.countryCode", "recipient.address.townOrCity", "items"]
        failures = {
            path: [{"code": "MustNotBeEmptyOrWhitespace", "providedValue": None}] for path in required if not _at(body, path)
        }
        if body.get("shippingMethod") and body["shippingMethod"] not in _SHIPPING_METHODS:
            failures["shippingMethod"] = [{"code": "NotAValidShippingMethod", "providedValue": body["shippingMethod"]}]
        for index, item in enumerate(body.get("items") or []):
            sku = str(item.get("sku", "")).upper()
            if sku not in self.skus:
                failures[f"items[{index}].sku"] = [{"code": "SkuNotRecognised", "providedValue": item.get("sku")}]
            for attribute in self.skus.get(sku, ()):
                if not (item.get("attributes") or {}).get(attribute):
                    failures[f"items[{index}].attributes.{attribute}"] = [{"code": "MustBeProvided", "providedValue": None}]
            if not item.get("assets") or not all(asset.get("url") for asset in item["assets"]):
                failures[f"items[{index}].assets"] = [{"code": "MustNotBeEmpty", "providedValue": None}]
                continue
            for number, asset in enumerate(item["assets"]):
                dpi = file_dpi(asset["url"], PRODIGI_PRINT_AREAS.get(sku, (1, 1))) if sku in self.skus else None
                if dpi is not None and dpi < MIN_DPI:
                    failures[f"items[{index}].assets[{number}].url"] = [
                        {"code": "ImageResolutionTooLow", "providedValue": f"{dpi:.0f} dpi"}
                    ]
        if self._refusals and not failures:
            path, code = self._refusals.pop(0)
            # like Prodigi, the refusal echoes what was sent, personal data included
            failures[path] = [{"code": code, "providedValue": _at(body, path)}]
        return failures

    def _new_order(self, body: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        items, issues = [], []
        for index, item in enumerate(body["items"]):
            item_id = f"ori_{number}{index}"
            fetched = all(fetch_print_file(a["url"], a.get("md5Hash")) for a in item["assets"])
            if not fetched:  # Prodigi retries ten times; the fake gives up at once
                issues.append(
                    {
                        "objectId": item_id,
                        "errorCode": "order.items.assets.FailedToDownloaded",
                        "description": f"Failed all download attempts for 'default' asset on item '{item_id}'",
                    }
                )
            assets = [{**a, "id": f"ast_{number}{index}", "status": "Complete" if fetched else "Error"} for a in item["assets"]]
            items.append({**item, "id": item_id, "status": "Ok" if fetched else "Invalid", "assets": assets})
        details = dict(_NOT_STARTED, downloadAssets="Error" if issues else "Complete")
        return {
            "id": f"ord_{number}",
            "created": "2026-01-02T12:00:00Z",
            "lastUpdated": "2026-01-02T12:00:00Z",
            "callbackUrl": body.get("callbackUrl"),
            "merchantReference": body.get("merchantReference"),
            "shippingMethod": body["shippingMethod"],
            "idempotencyKey": body.get("idempotencyKey"),
            "status": {"stage": "InProgress", "issues": issues, "details": details},
            "charges": [],
            "shipments": [],
            "recipient": body["recipient"],
            "items": items,
            "packingSlip": None,
            "metadata": body.get("metadata") or {},
        }

    def _list(self, query: dict[str, list[str]]) -> Response:
        references = set(query.get("merchantReferences", []))
        top = int(query.get("top", ["10"])[0])
        found = [o for o in self.orders.values() if not references or o["merchantReference"] in references]
        found.sort(key=lambda o: int(o["id"].split("_")[1]), reverse=True)  # newest first, as documented
        return 200, {"outcome": "Ok", "orders": found[:top], "hasMore": len(found) > top, "nextUrl": None}


# -- Printful ------------------------------------------------------------------------------

PRINTFUL_VARIANTS = {1: "18″×24″", 2: "24″×36″", 3876: "12″×18″", 19516: "A2 (42×59.4 cm)"}
PRINTFUL_PRINT_AREAS = {1: (18, 24), 2: (24, 36), 3876: (12, 18), 19516: (16.54, 23.39)}
_REQUIRED_RECIPIENT = ("name", "address1", "city", "country_code", "zip")


class FakePrintful(FakeApi):
    """Printful's v1 orders API: POST /orders (?confirm), GET /orders/{id | @external_id},
    POST /orders/{id}/confirm; a Bearer token on every call; external ids unique in the store."""

    def __init__(self, token: str, store_id: str | None = None):
        super().__init__()
        self.token = token
        self.store_id = store_id
        self.orders: dict[int, dict[str, Any]] = {}
        self.variants = dict(PRINTFUL_VARIANTS)
        self.lookup_misses = 0  # @external_id lookups to answer 404 although the order exists
        self._refusals: list[str] = []
        self._ids = itertools.count(91_000_001)

    def refuse_next(self, message: str) -> None:
        """The next order is refused: HTTP 400 with `message`, as Printful words its errors."""
        self._refusals.append(message)

    def error_body(self, status: int) -> Any:
        reasons = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}
        message = {429: "Too Many Requests", 503: "Service temporarily unavailable"}.get(status, "Server error")
        return {"code": status, "result": message, "error": {"reason": reasons.get(status, "Error"), "message": message}}

    def handle(self, seen: Seen) -> Response:
        if seen.headers.get("Authorization") != f"Bearer {self.token}":
            return _printful_error(401, "Unauthorized", "The access token provided is invalid.")
        route = seen.path.rstrip("/")
        if seen.method == "POST" and route == "/orders":
            confirm = seen.query.get("confirm", ["false"])[0].lower() in ("true", "1")
            return self._create(seen.body, confirm)
        match = re.fullmatch(r"/orders/(@?[\w-]+)(/confirm)?", route)
        if match is None:
            return _printful_error(404, "NotFound", "Not found")
        order = self._find(match.group(1))
        if order is None:
            return _printful_error(404, "NotFound", "Not found")
        if seen.method == "POST" and match.group(2):
            return self._confirm(order)
        if seen.method == "GET" and not match.group(2):
            return 200, {"code": 200, "result": order}
        return _printful_error(405, "MethodNotAllowed", "Method not allowed")

    # -- advancing orders, as Printful's fulfilment would ---------------------------------
    def order(self, external_id: str) -> dict[str, Any]:
        return next(o for o in self.orders.values() if o["external_id"] == external_id)

    def ship(self, external_id: str, carrier: str, service: str, tracking_number: str, tracking_url: str) -> None:
        with self._lock:
            order = self.order(external_id)
            order["status"] = "fulfilled"
            order["shipments"].append(
                {
                    "id": next(self._ids),
                    "carrier": carrier,
                    "service": service,
                    "tracking_number": tracking_number,
                    "tracking_url": tracking_url,
                    "created": 1767600000,
                    "ship_date": "2026-01-05",
                    "shipped_at": 1767600000,
                    "reshipment": False,
                    "items": [{"item_id": item["id"], "quantity": item["quantity"]} for item in order["items"]],
                }
            )

    def webhook(self, event_type: str, external_id: str | None = None) -> bytes:
        """A webhook body as Printful posts it; `external_id` names the order, if any."""
        data: dict[str, Any] = {}
        if external_id is not None:
            order = self.order(external_id)
            data["order"] = order
            if event_type == "package_shipped" and order["shipments"]:
                data["shipment"] = order["shipments"][-1]
        else:
            data = {"product_id": 1, "variant_stock": {}}  # e.g. stock_updated names no order
        return json.dumps({"type": event_type, "created": 1767600000, "retries": 0, "store": 1, "data": data}).encode()

    # -- the endpoints ------------------------------------------------------------------
    def _find(self, reference: str) -> dict[str, Any] | None:
        if reference.startswith("@"):
            order = next((o for o in self.orders.values() if o["external_id"] == reference[1:]), None)
            if order is not None and self.lookup_misses > 0:
                self.lookup_misses -= 1
                return None
            return order
        return self.orders.get(int(reference)) if reference.isdigit() else None

    def _create(self, body: Any, confirm: bool) -> Response:
        if not isinstance(body, dict) or not body.get("items"):
            return _printful_error(400, "BadRequest", "Missing required parameters")
        recipient = body.get("recipient") or {}
        missing = [name for name in _REQUIRED_RECIPIENT if not recipient.get(name)]
        if missing:
            return _printful_error(400, "BadRequest", f"Recipient: {missing[0]} is required")
        external_id = body.get("external_id")
        if external_id and any(o["external_id"] == external_id for o in self.orders.values()):
            return _printful_error(400, "BadRequest", f"Order with External ID {external_id} already exists")
        for index, item in enumerate(body["items"]):
            if item.get("variant_id") not in self.variants:
                return _printful_error(400, "BadRequest", f"Item {index}: Variant {item.get('variant_id')} not found")
            if not item.get("files"):
                return _printful_error(400, "BadRequest", f"Item {index}: a print file is required")
            for file in item["files"]:
                dpi = file_dpi(file.get("url") or "", PRINTFUL_PRINT_AREAS[item["variant_id"]])
                if dpi is not None and dpi < MIN_DPI:
                    message = f"Item {index}: print file resolution too low ({dpi:.0f} DPI, at least {MIN_DPI} needed)"
                    return _printful_error(400, "BadRequest", message)
        if self._refusals:
            return _printful_error(400, "BadRequest", self._refusals.pop(0))
        order = self._new_order(body, confirm)
        self.orders[order["id"]] = order
        return 200, {"code": 200, "result": order}

    def _new_order(self, body: dict[str, Any], confirm: bool) -> dict[str, Any]:
        items = []
        for item in body["items"]:
            files = [
                {
                    **f,
                    "type": f.get("type", "default"),
                    "id": next(self._ids),
                    "status": "ok" if fetch_print_file(f["url"]) else "failed",
                }
                for f in item["files"]
            ]
            items.append({**item, "id": next(self._ids), "files": files, "name": self.variants[item["variant_id"]]})
        order = {
            "id": next(self._ids),
            "external_id": body.get("external_id"),
            "store": 1,
            "status": "draft",
            "shipping": body.get("shipping") or "STANDARD",
            "shipping_service_name": "Flat Rate",
            "created": 1767355200,
            "updated": 1767355200,
            "recipient": body["recipient"],
            "items": items,
            "costs": {"currency": "USD", "subtotal": "10.00", "shipping": "4.99", "total": "14.99"},
            "shipments": [],
        }
        if confirm:
            self._submit(order)
        return order

    def _confirm(self, order: dict[str, Any]) -> Response:
        if order["status"] != "draft":
            return _printful_error(400, "BadRequest", "Only draft orders can be confirmed")
        self._submit(order)
        return 200, {"code": 200, "result": order}

    @staticmethod
    def _submit(order: dict[str, Any]) -> None:
        # a confirmed order whose print file could not be downloaded fails (webhook order_failed)
        failed = any(f["status"] == "failed" for item in order["items"] for f in item["files"])
        order["status"] = "failed" if failed else "pending"


def _printful_error(status: int, reason: str, message: str) -> Response:
    return status, {"code": status, "result": message, "error": {"reason": reason, "message": message}}
