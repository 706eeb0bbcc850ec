"""The faults the soak injects between the parts, on loopback: Stripe unreachable, and Stripe's
webhooks duplicated, delayed and out of order. Both are small servers the soak starts and stops."""

from __future__ import annotations

import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SwitchableProxy:
    """A TCP proxy to `target` on a free loopback port; `down()` refuses and cuts every
    connection (Stripe unreachable), `up()` lets them through again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="stripe-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        self._up.clear()
        with self._lock:
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def up(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.down()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class WebhookRelay:
    """Receives Stripe's webhooks (localstripe posts them here) and passes them on to `target`,
    signature and body untouched, but not as sent: each one may be sent twice, held back for
    `max_delay` seconds, or held until the next one has gone (out of order), as a seeded coin
    says. Stripe does all three; the shop must not care. A webhook the target refuses (it is
    down, restarting) is tried again until it answers, as Stripe retries."""

    def __init__(self, target: str, seed: int, duplicate: float = 0.15, delay: float = 0.15, reorder: float = 0.15,
                 max_delay: float = 8.0):  # fmt: skip
        self.target = target
        self.odds = {"duplicated": duplicate, "delayed": delay, "out of order": reorder}
        self.max_delay = max_delay
        self.faults: Counter[str] = Counter()
        self.received = 0
        self._random = random.Random(seed)
        self._held: tuple[bytes, dict] | None = None
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "stripe-signature")}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                relay._received(body, headers)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="webhook-relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stripe"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            held, self._held = self._held, None
        if held:
            self._send(*held)

    def _received(self, body: bytes, headers: dict) -> None:
        with self._lock:
            self.received += 1
            roll = self._random.random()
            duplicate, delay, reorder = self.odds.values()
            previous_held, release = self._held, []
            if roll < duplicate:
                self.faults["duplicated"] += 1
                release = [(body, headers, 0.0), (body, headers, self._random.uniform(0.5, 3.0))]
            elif roll < duplicate + delay:
                self.faults["delayed"] += 1
                release = [(body, headers, self._random.uniform(1.0, self.max_delay))]
            elif roll < duplicate + delay + reorder and previous_held is None:
                self.faults["out of order"] += 1
                self._held = (body, headers)
                return
            else:
                release = [(body, headers, 0.0)]
            self._held = None
        if previous_held:  # it goes after the one that came after it
            release.append((*previous_held, 0.2))
        for item_body, item_headers, wait in release:
            threading.Thread(target=self._send_later, args=(item_body, item_headers, wait), daemon=True).start()

    def _send_later(self, body: bytes, headers: dict, wait: float) -> None:
        time.sleep(wait)
        self._send(body, headers)

    def _send(self, body: bytes, headers: dict, patience: float = 300.0) -> None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            request = urllib.request.Request(self.target, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30):
                    return
            except urllib.error.HTTPError as error:
                if error.code < 500 and error.code != 429:
                    return  # refused for good (a bad signature would be): Stripe gives up too
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(2.0)
