"""Outbound HTTP: the one layer every call to another service goes through.

The print providers (`fulfilment/providers/`), the serverless engines
(`engines/stylize_replicate.py`, `engines/runpod.py`), the warm engine service
(`engines/remote.py`) and the storefronts' webhooks (`webhooks/delivery.py`) all call out
through an `HttpClient`, a `requests.Session` with these rules:

- Every call has a (connect, read) `Timeout`: the client's, or the call's own.
- Redirects are followed only where a call asks (downloads): an API that redirects is
  misconfigured, and a webhook's POST of order data must never land somewhere else.
- What is worth another try is tried again, as the client's `RetryPolicy` says:
  a connection that never opened, whatever the method (nothing was sent); a connection
  that broke, and the answers 429, 502, 503 and 504, for idempotent calls only (GET, HEAD,
  PUT, DELETE, OPTIONS, or a call that says it is idempotent); a status in the policy's
  `any_method`, whatever the method (an API whose rate limiter refuses before doing
  anything). A read timeout is never tried again: the timeout is the bound on a slow server.
- Between tries: the answer's Retry-After when it has one (`retry_after`: seconds or an
  HTTP date, never past the policy's cap), else an exponential backoff lengthened at random
  by up to `jitter`, so clients that failed together do not all come back together.

Every HTTP answer comes back as a `requests.Response` (the last one when the tries ran
out: each client turns statuses into its own errors); a call that got no answer at all
raises `NoAnswer`, which says why. requests is imported on first use, so importing this
module (the engine service's client does in every run) loads no HTTP library.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from photogen_pipelines.clock import utc_now
from photogen_pipelines.errors import PhotoGenError

if TYPE_CHECKING:
    import requests

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class Timeout(NamedTuple):
    """Seconds to open the connection, and to wait for each read of the answer."""

    connect: float
    read: float


DEFAULT_TIMEOUT = Timeout(5.0, 30.0)


@dataclass(frozen=True)
class RetryPolicy:
    """When a call is tried again, and how long it waits first."""

    attempts: int | None = 3  # tries in all, the first included; None: as many as `deadline` allows
    no_answer_attempts: int | None = None  # tries in all once a try got no answer (None: `attempts`)
    deadline: float | None = None  # seconds after the call began: no try starts later
    statuses: frozenset[int] = RETRY_STATUSES  # answers tried again, for idempotent calls
    any_method: frozenset[int] = frozenset()  # answers tried again whatever the method (the server did nothing)
    backoff: float = 0.5  # the first wait when the answer names none; doubled for each further try
    max_backoff: float = 10.0  # the doubling stops here
    jitter: float = 0.5  # a backoff is lengthened by up to this fraction, at random (never shortened)
    max_retry_after: float = 60.0  # a longer Retry-After is cut to this

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry policy without a number of attempts needs a deadline")
        if any(n is not None and n < 1 for n in (self.attempts, self.no_answer_attempts)):
            raise ValueError(f"attempts must be at least 1, got {self.attempts}, {self.no_answer_attempts}")

    def backoff_before(self, retry: int) -> float:
        """The wait before the `retry`-th retry (1, 2, ...) when the answer names none."""
        base = min(self.backoff * 2 ** (retry - 1), self.max_backoff)
        return base * (1 + random.uniform(0, self.jitter)) if self.jitter else base

    def retries(self, status: int, idempotent: bool) -> bool:
        """Whether an answer with `status` is worth another try."""
        return status in self.any_method or (idempotent and status in self.statuses)


DEFAULT_RETRY = RetryPolicy()
NO_RETRIES = RetryPolicy(attempts=1)


def retry_after(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """The seconds a Retry-After header asks for: delay-seconds or an HTTP date (RFC 9110
    §10.2.3), at least 0 and at most `cap`; None when there is none or it is neither."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": a date in GMT, as HTTP dates are
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utc_now())).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


# connecting: no connection was made (refused, unknown host, the connect timeout);
# waiting: the request went out and no answer came (the read timeout, a connection that broke);
# request: the request could not be made at all (a malformed URL, too many redirects)
Phase = Literal["connecting", "waiting", "request"]


class NoAnswer(PhotoGenError):
    """A call got no HTTP answer, after every try its policy allowed. `error` is requests'
    own exception; the message names the method and the URL's path, never its query (a
    presigned link carries its signature there)."""

    code = "no_answer"

    def __init__(self, method: str, url: str, error: Exception, phase: Phase, timed_out: bool, tries: int):
        self.error, self.phase, self.timed_out, self.tries = error, phase, timed_out, tries
        what = {
            "connecting": "timed out connecting" if timed_out else f"could not connect ({_os_reason(error)})",
            "waiting": "timed out waiting for an answer" if timed_out else f"the connection broke ({_os_reason(error)})",
            "request": f"could not be sent ({type(error).__name__})",
        }[phase]
        after = f" (after {tries} tries)" if tries > 1 else ""
        super().__init__(f"{method} {_without_query(url)}: {what}{after}")

    def retryable(self, idempotent: bool) -> bool:
        """Whether another try is safe: nothing was sent, or an idempotent call broke."""
        return self.phase == "connecting" or (self.phase == "waiting" and idempotent and not self.timed_out)


class HttpClient:
    """Calls to one service (paths are joined to `base_url`; a full URL goes where it
    says), with default headers, a default timeout and a retry policy, each of which a call
    may override. Thread-safe as requests' sessions are: share one per service.

    `session`: a requests.Session (or one shaped like it) to call through, kept open by
    `close`; by default a new one. `isolated`: the new session takes nothing from the
    environment (proxies, .netrc) and keeps no cookies between calls, for URLs a third
    party chose (webhook endpoints). `sleep`: how the waits between tries are spent."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        session: requests.Session | None = None,
        isolated: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout(*timeout)
        self.retry = retry
        self.sleep = sleep
        self._owns_session = session is None
        self.session = _new_session(isolated) if session is None else session
        if headers:
            self.session.headers.update(headers)

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers every call sends (a call's own `headers` add to them)."""
        return self.session.headers

    def get(self, url: str, **options: Any) -> requests.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> requests.Response:
        return self.request("POST", url, **options)

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: tuple[float, float] | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool | None = None,
        follow_redirects: bool = False,
        **options: Any,
    ) -> requests.Response:
        """The answer to `method url`, tried as the policy says. `options` are requests'
        (params, json, data, files, headers, stream). `idempotent`: whether sending the
        request twice does no harm (default: by its method). A `stream=True` answer is the
        caller's to close."""
        import requests

        method = method.upper()
        policy = retry or self.retry
        idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        target = url if url.startswith(("http://", "https://")) else self.base_url + url
        limits = Timeout(*(timeout or self.timeout))
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                response = self.session.request(method, target, timeout=limits, allow_redirects=follow_redirects, **options)
            except requests.RequestException as error:
                failure = _no_answer(method, target, error, tries)
                wait = self._wait(policy, tries, started, None) if failure.retryable(idempotent) else None
                if wait is None:
                    raise failure from error
            else:
                if not policy.retries(response.status_code, idempotent):
                    return response
                wait = self._wait(policy, tries, started, response)
                if wait is None:
                    return response
                response.close()  # its connection goes back to the pool
            self.sleep(wait)

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _wait(policy: RetryPolicy, tries: int, started: float, response: requests.Response | None) -> float | None:
        """Seconds to wait before the next try, or None when the policy allows no more."""
        limit = policy.attempts if response is not None else policy.no_answer_attempts or policy.attempts
        if limit is not None and tries >= limit:
            return None
        asked = retry_after(response.headers.get("Retry-After"), policy.max_retry_after) if response is not None else None
        wait = policy.backoff_before(tries) if asked is None else asked
        if policy.deadline is not None:
            remaining = policy.deadline - (time.monotonic() - started)
            if remaining <= 0:
                return None
            wait = min(wait, remaining)
        return wait


def _new_session(isolated: bool) -> requests.Session:
    import http.cookiejar

    import requests

    session = requests.Session()
    if isolated:
        session.trust_env = False  # no proxy, .netrc or CA bundle from the worker's environment
        # a receiver's cookies must not ride along on later calls
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def _no_answer(method: str, url: str, error: Exception, tries: int) -> NoAnswer:
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(error, requests.ConnectTimeout):
        return NoAnswer(method, url, error, "connecting", True, tries)
    if isinstance(error, requests.Timeout):
        return NoAnswer(method, url, error, "waiting", True, tries)
    if isinstance(error, requests.ConnectionError):
        # requests wraps urllib3's error: a refused connection or an unknown host never opened
        reason = getattr(error.args[0], "reason", None) if error.args else None
        return NoAnswer(method, url, error, "connecting" if isinstance(reason, NewConnectionError) else "waiting", False, tries)
    if isinstance(error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return NoAnswer(method, url, error, "waiting", False, tries)
    return NoAnswer(method, url, error, "request", False, tries)


def _os_reason(error: BaseException) -> str:
    """The operating system's words for a failed connection ("Connection refused"), found
    through the exceptions requests and urllib3 wrap it in; else the error's type."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = getattr(current, "reason", None) or wrapped or current.__cause__ or current.__context__
    return type(error).__name__


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]
