"""The outbound HTTP layer (photogen_pipelines/http.py) against a real HTTP server on loopback:
what is tried again and what is not, the waits between tries, the one Retry-After rule,
timeouts, redirects, and the engine service's client on top of it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from photogen_pipelines.engines.remote import EngineService, EngineUnavailable
from photogen_pipelines.errors import BadInput
from photogen_pipelines.http import NO_RETRIES, HttpClient, NoAnswer, RetryPolicy, Timeout, retry_after

# what the server does with one request: (status, headers, body), or DROP (close the
# connection without a word), or a number of seconds to stall before answering 200
DROP = "drop"
Step = tuple[int, dict[str, str], bytes] | str | float


class ScriptedServer:
    """Answers each request with the next step of `script` (then 200 "ok" for ever), and
    records what it was asked: (method, path, headers)."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append((self.command, self.path, dict(self.headers.items())))
                step = server.script.pop(0) if server.script else (200, {}, b"ok")
                if step == DROP:
                    self.close_connection = True
                    return
                if isinstance(step, float):
                    time.sleep(step)
                    step = (200, {}, b"late")
                status, headers, body = step
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped waiting
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.seen]


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


class Waits(list):
    """A sleep that records its waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(server: ScriptedServer, retry: RetryPolicy = RetryPolicy(), **options) -> tuple[HttpClient, Waits]:
    waits = Waits()
    return HttpClient(server.url, retry=retry, timeout=Timeout(2.0, 2.0), sleep=waits, **options), waits


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answered(status: int, **headers: str) -> Step:
    return (status, {name.replace("_", "-"): value for name, value in headers.items()}, b"{}")


# -- what is tried again ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_an_idempotent_call_is_tried_again_on_rate_limits_and_gateway_errors(server, status):
    server.script = [answered(status), answered(status)]
    http, waits = client(server)
    assert http.get("/thing").status_code == 200
    assert server.paths() == ["/thing"] * 3 and len(waits) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 500, 501])
def test_other_answers_come_back_at_once(server, status):
    server.script = [answered(status)]
    http, waits = client(server)
    assert http.get("/thing").status_code == status
    assert len(server.seen) == 1 and waits == []


def test_a_post_is_not_tried_again_unless_it_says_it_is_idempotent_or_the_status_is_for_any_method(server):
    server.script = [answered(503)]
    http, _ = client(server)
    assert http.post("/orders", json={"a": 1}).status_code == 503 and len(server.seen) == 1

    server.script = [answered(503)]
    assert http.post("/render", data=b"picture", idempotent=True).status_code == 200 and len(server.seen) == 3

    server.script = [answered(429), answered(503)]
    limited, _ = client(server, RetryPolicy(any_method=frozenset({429})))
    assert limited.post("/predictions").status_code == 503  # the 429 was waited out, the 503 was not
    assert len(server.seen) == 5


def test_when_the_tries_run_out_the_last_answer_comes_back(server):
    server.script = [answered(503, Retry_After="0")] * 5
    http, waits = client(server, RetryPolicy(attempts=3))
    response = http.get("/busy")
    assert response.status_code == 503 and len(server.seen) == 3 and waits == [0.0, 0.0]
    assert client(server, NO_RETRIES)[0].get("/busy").status_code == 503 and len(server.seen) == 4


def test_the_backoff_doubles_is_capped_and_only_ever_lengthened_by_the_jitter(server):
    policy = RetryPolicy(attempts=6, backoff=0.1, max_backoff=0.5, jitter=0.5)
    server.script = [answered(503)] * 5
    http, waits = client(server, policy)
    assert http.get("/flaky").status_code == 200
    bases = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert all(base <= wait <= base * 1.5 for base, wait in zip(bases, waits, strict=True)), waits
    draws = [policy.backoff_before(3) for _ in range(200)]
    assert min(draws) >= 0.4 and max(draws) <= 0.6 and len(set(draws)) > 100  # spread, not one instant

    exact = RetryPolicy(backoff=1.0, jitter=0.0, max_backoff=60.0)
    assert [exact.backoff_before(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_real_waits_stay_within_the_backoff_bound(server):
    server.script = [answered(502), answered(502)]
    http = HttpClient(server.url, retry=RetryPolicy(attempts=3, backoff=0.1, jitter=0.5))
    started = time.monotonic()
    assert http.get("/x").status_code == 200
    assert 0.1 + 0.2 <= time.monotonic() - started < (0.1 + 0.2) * 1.5 + 1.0


def test_a_deadline_bounds_the_tries_instead_of_a_count(server):
    server.script = [answered(503)] * 1000
    http = HttpClient(server.url, retry=RetryPolicy(attempts=None, deadline=0.6, backoff=0.05, max_backoff=0.1))
    started = time.monotonic()
    assert http.get("/warming-up").status_code == 503
    assert 0.6 <= time.monotonic() - started < 2.0 and len(server.seen) > 3
    with pytest.raises(ValueError, match="needs a deadline"):
        RetryPolicy(attempts=None)


# -- Retry-After -----------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_and_capped(server):
    server.script = [answered(429, Retry_After="2"), answered(503, Retry_After="3600")]
    http, waits = client(server, RetryPolicy(max_retry_after=30.0))
    assert http.get("/x").status_code == 200
    assert waits == [2.0, 30.0]  # as the server said (no jitter on it), then cut to the cap


def test_retry_after_as_an_http_date_is_waited_until_then(server):
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=8), usegmt=True)
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    server.script = [answered(429, Retry_After=soon), answered(429, Retry_After=past)]
    http, waits = client(server)
    assert http.get("/x").status_code == 200
    assert 5.0 <= waits[0] <= 8.0 and waits[1] == 0.0


def test_one_retry_after_rule():
    now = datetime(2026, 10, 21, 7, 28, tzinfo=UTC)
    assert retry_after("120", 60.0, now) == 60.0
    assert retry_after(" 1.5 ", 60.0, now) == 1.5
    assert retry_after("-4", 60.0, now) == 0.0
    assert retry_after("Wed, 21 Oct 2026 07:28:30 GMT", 60.0, now) == 30.0
    assert retry_after("Wed, 21 Oct 2026 09:28:30 +0200", 60.0, now) == 30.0
    assert retry_after("Wed, 21 Oct 2026 07:00:00 GMT", 60.0, now) == 0.0  # already past
    assert retry_after("Wed, 21 Oct 2026 12:00:00 GMT", 60.0, now) == 60.0
    for nothing in (None, "", "soon", "nan", "inf"):
        assert retry_after(nothing, 60.0, now) is None


def test_a_retry_after_that_is_not_seconds_nor_a_date_falls_back_to_the_backoff(server):
    server.script = [answered(503, Retry_After="in a while")]
    http, waits = client(server, RetryPolicy(backoff=0.25, jitter=0.0))
    assert http.get("/x").status_code == 200 and waits == [0.25]


# -- no answer -------------------------------------------------------------------------------


def test_a_read_timeout_is_not_tried_again_and_says_so(server):
    server.script = [1.5]
    http, waits = client(server)
    started = time.monotonic()
    with pytest.raises(NoAnswer) as stalled:
        http.get("/slow", timeout=Timeout(1.0, 0.3))  # the call's own timeout, not the client's
    assert time.monotonic() - started < 1.2
    assert stalled.value.timed_out and stalled.value.phase == "waiting" and stalled.value.tries == 1
    assert "GET http://127.0.0.1" in str(stalled.value) and "timed out waiting for an answer" in str(stalled.value)
    assert len(server.seen) == 1 and waits == []


def test_a_connection_that_never_opens_is_tried_again_whatever_the_method():
    url = f"http://127.0.0.1:{closed_port()}"
    waits = Waits()
    http = HttpClient(url, retry=RetryPolicy(attempts=3), sleep=waits)
    with pytest.raises(NoAnswer) as refused:
        http.post("/orders?token=secret", json={})
    assert refused.value.phase == "connecting" and not refused.value.timed_out and refused.value.tries == 3
    assert "Connection refused" in str(refused.value) and "secret" not in str(refused.value)
    assert type(refused.value.error).__name__ == "ConnectionError" and len(waits) == 2

    fewer = HttpClient(url, retry=RetryPolicy(attempts=6, no_answer_attempts=2), sleep=waits)
    with pytest.raises(NoAnswer) as refused_again:
        fewer.get("/status")
    assert refused_again.value.tries == 2 and len(waits) == 3  # its own budget, below the answers'


def test_a_broken_connection_is_tried_again_only_for_an_idempotent_call(server):
    server.script = [DROP]
    http, waits = client(server)
    assert http.get("/x").status_code == 200 and len(server.seen) == 2 and len(waits) == 1

    server.script = [DROP]
    with pytest.raises(NoAnswer) as broke:
        http.post("/orders", json={})
    assert broke.value.phase == "waiting" and not broke.value.timed_out and len(server.seen) == 3


def test_a_request_that_cannot_be_made_is_not_tried_again():
    waits = Waits()
    with pytest.raises(NoAnswer) as bad:
        HttpClient(sleep=waits).get("http://")
    assert bad.value.phase == "request" and waits == []


# -- redirects, headers, sessions ------------------------------------------------------------


def test_redirects_are_not_followed_unless_the_call_asks(server):
    moved = (302, {"Location": "/elsewhere"}, b"")
    server.script = [moved]
    http, _ = client(server)
    response = http.post("/hooks", data=b"order data")
    assert response.status_code == 302 and server.paths() == ["/hooks"]  # nothing went elsewhere

    server.script = [moved]
    assert http.get("/file", follow_redirects=True).status_code == 200
    assert server.paths()[-2:] == ["/file", "/elsewhere"]


def test_headers_of_the_client_and_of_the_call_are_both_sent(server):
    http, _ = client(server, headers={"X-API-Key": "k1"})
    http.get("/a", headers={"Authorization": "Bearer t"})
    http.get(server.url + "/b")  # a full URL goes where it says, with the client's headers only
    (_, _, first), (_, second_path, second) = server.seen
    assert first["X-API-Key"] == "k1" and first["Authorization"] == "Bearer t"
    assert second_path == "/b" and second["X-API-Key"] == "k1" and "Authorization" not in second
    assert http.headers["X-API-Key"] == "k1" and "Authorization" not in http.headers


def test_an_isolated_client_keeps_no_cookies_between_calls(server):
    server.script = [(200, {"Set-Cookie": "session=abc; Path=/"}, b"")] * 2
    plain, _ = client(server)
    isolated, _ = client(server, isolated=True)
    for http in (plain, isolated):
        http.get("/login")
        http.get("/next")
    cookies = [headers.get("Cookie") for _, path, headers in server.seen if path == "/next"]
    assert cookies == ["session=abc", None]
    assert isolated.session.trust_env is False and plain.session.trust_env is True


def test_a_given_session_is_used_and_left_open(server):
    import requests

    given = requests.Session()
    with HttpClient(server.url, session=given) as http:
        assert http.session is given and http.get("/x").status_code == 200
    assert given.get(server.url + "/still-open", timeout=2).status_code == 200
    given.close()


# -- the engine service's client on the layer ------------------------------------------------


def engines_answer() -> Step:
    return (200, {"Content-Type": "application/json"}, json.dumps({"style": {"name": "s"}}).encode())


def test_the_engine_service_client_waits_for_a_service_that_is_starting(server):
    server.script = [DROP, answered(503), engines_answer()]
    assert EngineService(server.url, wait_seconds=30).get_json("/v1/engines") == {"style": {"name": "s"}}
    assert server.paths() == ["/v1/engines"] * 3


def test_the_engine_service_client_gives_up_after_its_wait_and_says_bad_input_as_such(server):
    server.script = [(503, {}, b'{"detail": "no replica ready"}')] * 1000
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="not answering after 1 s .*503 no replica ready"):
        EngineService(server.url, wait_seconds=0.8).get_json("/v1/engines")
    assert 0.8 <= time.monotonic() - started < 3

    server.script = [(400, {}, b'{"code": "bad_engine_message", "detail": "not an npz"}')]
    with pytest.raises(BadInput, match="not an npz") as bad:
        EngineService(server.url).get_json("/v1/stylize")
    assert bad.value.code == "bad_engine_message"


def test_importing_the_engine_service_client_loads_no_http_library():
    code = "import sys, photogen_pipelines.engines.remote; print([m for m in ('requests', 'urllib3') if m in sys.modules])"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert shown.stdout.strip() == "[]"
