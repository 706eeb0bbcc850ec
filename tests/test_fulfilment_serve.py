"""One order through `photogen serve` to the print provider and back: submitted, then shipped
from the provider's callback, while the storefront's webhook receiver fails for a while and
still sees every event; and the recipient is nowhere in Dagster's storage or the logs.

The print provider is the loopback fake of tests/fake_print_providers.py (Prodigi's sandbox
cannot be reached from here); the receiver is a plain HTTP server in this test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from photogen_pipelines.webhooks.delivery import verify_signature
from tests.fake_print_providers import FakeProdigi
from tests.servers import free_port
from tests.test_fulfilment import PERSONAL, RECIPIENT, _personal_data_in, _small_products
from tests.test_serve import _read, _tail, _wait_until, new_api_key, serving

pytestmark = pytest.mark.slow  # photogen serve, an order end to end to the print provider

API_KEY = "prodigi-serve-key"
EXPECTED = ["order.paid", "order.proofs_ready", "order.ready", "order.submitted", "order.shipped"]


class Receiver:
    """A storefront's webhook endpoint: answers 500 until `healthy`, records what it was sent."""

    def __init__(self):
        self.healthy = False
        self.received: list[dict] = []  # every request: event id, type, status answered, signature ok
        self.bodies: dict[str, dict] = {}
        self.secret = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 200 if receiver.healthy else 500
                event = json.loads(body)
                signed = verify_signature(receiver.secret, self.headers.get("PhotoGen-Signature", ""), body)
                receiver.received.append({"id": event["id"], "type": event["type"], "status": status, "signed": signed})
                if status == 200:
                    receiver.bodies[event["id"]] = event
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/photogen"

    def delivered_types(self) -> list[str]:
        """Each event once (deduplicated by id, as a storefront does), in the order it was first accepted."""
        return [event["type"] for event in self.bodies.values()]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _files_containing_personal_data(folder: Path) -> dict[str, list[str]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            if hits := _personal_data_in(text):
                found[str(path.relative_to(folder))] = hits
    return found


@pytest.fixture
def shop(tmp_path):
    """`photogen serve` fulfilling through the fake Prodigi, with its public URL set, on free ports."""
    api_port = free_port()
    with FakeProdigi(API_KEY) as prodigi, Receiver() as receiver:
        env = {
            "PHOTOGEN_PRODUCTS_PATH": _small_products(tmp_path),
            "PHOTOGEN_PRINT_PROVIDER": "prodigi",
            "PHOTOGEN_PRINT_PROVIDER_API_KEY": API_KEY,
            "PHOTOGEN_PRINT_PROVIDER_API_BASE": prodigi.url,
            "PHOTOGEN_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "PHOTOGEN_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on this machine
        }
        with serving(tmp_path, env, api_port) as (process, api, home, log):
            yield process, api, home, log, prodigi, receiver


def test_an_order_is_submitted_shipped_and_every_event_reaches_a_receiver_that_failed_for_a_while(shop, astronaut_png):
    process, api, home, log, prodigi, receiver = shop
    auth = new_api_key(home)
    endpoint = requests.post(f"{api}/v1/webhook-endpoints", headers=auth, json={"url": receiver.url, "events": ["*"]}, timeout=30)
    assert endpoint.status_code == 201, endpoint.text
    receiver.secret = endpoint.json()["secret"]

    upload = requests.post(
        f"{api}/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=30
    )
    body = {
        "upload_id": upload.json()["id"],
        "style_id": "ink_etching",
        "product_id": "print_2x3",
        "variants": 1,
        "approval": "auto",
        "recipient": RECIPIENT,
    }
    order = requests.post(f"{api}/v1/orders", headers={**auth, "Idempotency-Key": "serve-1"}, json=body, timeout=30).json()
    order_id = order["id"]

    def state() -> str:
        current = requests.get(f"{api}/v1/orders/{order_id}", headers=auth, timeout=10).json()
        assert current["state"] not in ("rejected", "failed"), current
        return current["state"]

    _wait_until(lambda: state() == "submitted", 300, "the order to reach the print provider", process, log)
    assert [o["merchantReference"] for o in prodigi.orders.values()] == [order_id]
    # until now the receiver answered 500 to everything: nothing was lost, it is retried
    assert receiver.received and all(r["status"] == 500 for r in receiver.received)
    receiver.healthy = True

    (prodigi_id,) = prodigi.orders
    prodigi.ship(prodigi_id, "DHL", "Express", "JD014600006281230704", "https://www.dhl.com/track?JD014600006281230704")
    answer = requests.post(f"{api}/v1/fulfilment/prodigi/callbacks", data=prodigi.callback(prodigi_id), timeout=30)
    assert answer.status_code == 202, answer.text
    _wait_until(lambda: state() == "shipped", 60, "the order to ship", process, log)

    # the first retry comes ~30 s after a failure; every event arrives, each once after dedupe
    _wait_until(lambda: len(receiver.delivered_types()) >= len(EXPECTED), 120, "every event at the receiver", process, log)
    assert sorted(receiver.delivered_types()) == sorted(EXPECTED), receiver.received
    assert all(r["signed"] for r in receiver.received)
    retried = {r["id"] for r in receiver.received if r["status"] == 500} & set(receiver.bodies)
    assert retried, "no event was delivered after failing first"
    shipped = next(e for e in receiver.bodies.values() if e["type"] == "order.shipped")
    assert shipped["data"]["order"]["fulfilment"]["tracking_number"] == "JD014600006281230704"

    process.terminate()
    assert process.wait(timeout=60) == 0, _tail(log)
    # the recipient was sent to the provider and kept in the orders database, nowhere else:
    # not Dagster's event log, runs, compute logs or metadata, not the services' logs
    assert prodigi.seen("POST", "/orders")[0].body["recipient"]["name"] == RECIPIENT["name"]
    assert _files_containing_personal_data(home / "dagster") == {}
    assert not _personal_data_in(_read(log))
    orders_db = "".join(p.read_bytes().decode("utf-8", errors="replace") for p in home.glob("orders.db*"))
    assert PERSONAL[0] in orders_db  # the same search finds it where it is kept
