"""The code the README tells storefronts to copy, run as they would copy it: the webhook
signature verifier (`verify_photogen_signature`), taken from README.md's code block and
executed on its own, checks a real signed delivery from the webhook sender
(photogen_pipelines/webhooks/delivery.py) and refuses a tampered or replayed one."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.webhooks.delivery import SIGNATURE_HEADER, deliver_due, signature_header
from photogen_pipelines.webhooks.endpoints import create_endpoint

README = Path(__file__).parents[1] / "README.md"
CODE_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_snippet(name: str) -> str:
    """The README's one Python code block that defines `name`."""
    blocks = [block for block in CODE_BLOCK.findall(README.read_text()) if f"def {name}(" in block]
    assert len(blocks) == 1, f"README.md has {len(blocks)} python blocks defining {name}"
    return blocks[0]


@pytest.fixture(scope="module")
def snippet() -> dict:
    """The verifier's block executed alone, as a storefront's module: whatever it needs it
    imports itself."""
    namespace: dict = {"__name__": "storefront_webhooks"}
    exec(compile(readme_snippet("verify_photogen_signature"), "README.md", "exec"), namespace)
    return namespace


@contextmanager
def storefront():
    """A storefront's webhook endpoint on loopback: yields its URL and the requests it got
    (headers, raw body), answering 200."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/photogen", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def delivered(tmp_path, monkeypatch):
    """A real delivery of an `order.paid` event to a receiver on loopback: (secret, header, raw body)."""
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")  # the development setting that allows loopback
    database = Database(f"sqlite:///{tmp_path / 'orders.db'}")
    database.migrate()
    try:
        key, _ = create_api_key(database, "shop")
        with storefront() as (url, received):
            _, secret = create_endpoint(database, key.id, url, ["*"])
            book = SqlOrderBook(database)
            order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="u.png", api_key_id=key.id))
            book.transition(order.id, OrderState.PAID)
            assert deliver_due(database).delivered == 1
        ((headers, body),) = received
        yield secret, headers[SIGNATURE_HEADER], body
    finally:
        database.dispose()


def test_the_readme_verifier_accepts_a_real_delivery(snippet, delivered):
    verify = snippet["verify_photogen_signature"]
    secret, header, body = delivered
    assert verify(secret, header, body) is True
    assert verify(secret, f"{header},v1={'0' * 64}", body)  # several v1 values (a rotated secret): one must match


def test_the_readme_verifier_refuses_a_tampered_or_foreign_delivery(snippet, delivered):
    verify = snippet["verify_photogen_signature"]
    secret, header, body = delivered
    assert b'"paid"' in body
    assert not verify(secret, header, body.replace(b'"paid"', b'"refunded"'))  # the body changed
    assert not verify(secret, header, body + b" ")  # one byte more
    assert not verify("whsec_someone_else", header, body)  # another endpoint's secret
    signed_at = header.split(",")[0].removeprefix("t=")
    assert not verify(secret, f"t={int(signed_at) + 1},{header.split(',', 1)[1]}", body)  # the timestamp changed
    assert not verify(secret, f"t={signed_at},v1={'0' * 64}", body)
    assert not verify(secret, "", body) and not verify(secret, None, body) and not verify(secret, "v1=abc", body)


def test_the_readme_verifier_refuses_an_old_delivery(snippet, delivered):
    verify = snippet["verify_photogen_signature"]
    secret, header, body = delivered
    signed_at = int(header.split(",")[0].removeprefix("t="))
    replayed: dict = {"__name__": "storefront_webhooks"}
    exec(compile(readme_snippet("verify_photogen_signature"), "README.md", "exec"), replayed)
    clock = SimpleNamespace(time=lambda: signed_at + 299)
    replayed["time"] = clock  # the snippet's own `time`, its clock moved on
    assert replayed["verify_photogen_signature"](secret, header, body)  # within the 5 minutes
    clock.time = lambda: signed_at + 301
    assert not replayed["verify_photogen_signature"](secret, header, body)  # replayed later
    assert replayed["verify_photogen_signature"](secret, header, body, tolerance=600)

    # signed by the sender's own signing long ago, checked now: refused
    old = signature_header(secret, body, timestamp=int(time.time()) - 3600)
    assert not verify(secret, old, body)
    assert verify(secret, signature_header(secret, body), body)  # and the same signing now: accepted
