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

A client for URLs a third party chose (webhook endpoints) is given `Destinations`: where
it may connect. Its connections resolve the host once, check every address it resolves to
(`address_kind`: only public addresses by default; loopback and private ones only where
allowed; link-local, cloud metadata and the like never), and connect to the address that
was checked, so a name that resolves elsewhere a moment later (DNS rebinding) changes
nothing. The Host header, TLS's SNI and the certificate check still use the host name.
Such a client also bounds each call's whole time (connect + read timeout), so a receiver
that drips its answer a byte at a time cannot hold it longer.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as LookupTimeout
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


# -- where a client may connect ---------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_net = ipaddress.ip_network

# the cloud's metadata services (credentials!): never a destination, whatever is allowed
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, …
        "169.254.170.2",  # ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure's wire server
        "192.0.0.192",  # Oracle Cloud
    )
)
# what `allow_private` opens besides loopback: RFC 1918, carrier-grade NAT, IPv6 unique local
PRIVATE_NETWORKS = tuple(map(_net, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")))
# never public, whatever `ipaddress.is_global` says in this Python version
NOT_PUBLIC_NETWORKS = tuple(
    map(
        _net,
        (
            "0.0.0.0/8",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/96",  # IPv4-compatible (deprecated), with :: and ::1
            "64:ff9b:1::/48",  # NAT64 for local use
            "100::/64",
            "2001::/23",  # IETF protocols, Teredo among them
            "2001:db8::/32",
            "3fff::/20",
            "5f00::/16",
            "fec0::/10",
            "ff00::/8",
        ),
    )
)
NAT64_PREFIX = _net("64:ff9b::/96")  # the well-known prefix: the last 32 bits are the IPv4 address reached


def address_kind(address: Address) -> str:
    """What `address` is: public, loopback, private, link-local, metadata or "not public" (the
    unspecified address, multicast, reserved and documentation ranges). An IPv6 address
    that carries an IPv4 one (v4-mapped, NAT64, 6to4) is the kind of the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_kind(address.ipv4_mapped)
        if address in NAT64_PREFIX:
            return address_kind(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return address_kind(address.sixtofour)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast:
        return "not public"
    if any(address in network for network in PRIVATE_NETWORKS):
        return "private"
    if not address.is_global or any(address in network for network in NOT_PUBLIC_NETWORKS):
        return "not public"
    return "public"


class DestinationNotAllowed(PhotoGenError):
    """A host the client's `Destinations` do not allow (the message names the host and
    the kind of address, never the address)."""

    code = "destination_not_allowed"


def _host_name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


_lookups: ThreadPoolExecutor | None = None
_lookups_lock = threading.Lock()


def resolve(host: str, timeout: float | None = None) -> list[Address]:
    """The addresses `host` resolves to (an address literal, also the old forms such as `0`
    or `127.1`: itself), each once; [] when it does not resolve (within `timeout` seconds)."""
    global _lookups

    def lookup() -> list[Address]:
        try:
            found = socket.getaddrinfo(_host_name(host), None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, ValueError):
            return []
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))

    if timeout is None:
        return lookup()
    with _lookups_lock:
        # a few threads for lookups that must not wait on a slow resolver: a stuck one is left behind
        _lookups = _lookups or ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")
        future = _lookups.submit(lookup)
    try:
        return future.result(timeout=timeout)
    except LookupTimeout:
        return []


@dataclass(frozen=True)
class Destinations:
    """Where a client may connect: public addresses; loopback and private ones too with
    `allow_private` (development and tests), or for the hosts `allowed_hosts` names (exact
    names; ".example.internal" names its subdomains). Link-local addresses, the cloud's
    metadata services and what is not an address of a host (unspecified, multicast,
    reserved) never. Plain http:// only to loopback, unless `allow_http`."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allow_http: bool = False

    def named(self, host: str) -> bool:
        """Whether the operator allowed `host` by name."""
        name = _host_name(host)
        return any(name == allowed or (allowed.startswith(".") and name.endswith(allowed)) for allowed in self.allowed_hosts)

    def problem(self, host: str, addresses: list[Address], *, plain_http: bool = False) -> str | None:
        """Why `host`, resolved to `addresses`, is not a destination; None when it is."""
        if _host_name(host) in METADATA_HOSTS:
            return f"{host} is a cloud metadata service"
        private_ok = self.allow_private or self.named(host)
        for address in addresses:
            kind = address_kind(address)
            if kind != "public" and not (private_ok and kind in ("loopback", "private")):
                return f"{host} is not a public address ({kind})"
        if plain_http and not self.allow_http and not all(address_kind(a) == "loopback" for a in addresses):
            return f"{host}: plain http:// only to this machine"
        return None

    def connect_to(self, host: str, *, plain_http: bool) -> list[Address]:
        """What a connection to `host` may use: every address it resolves to now, each one
        checked (socket.gaierror when it does not resolve; DestinationNotAllowed when one of
        them is not allowed, so a name that mixes public and private addresses is refused)."""
        name = _host_name(host)
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
        if not addresses or (problem := self.problem(name, addresses, plain_http=plain_http)):
            raise DestinationNotAllowed(problem or f"{host} has no address", code="destination_not_allowed")
        return addresses


class _AttemptExpired(TimeoutError):
    """A guarded call ran past its whole time; its connection was shut."""


# the monotonic time by which the guarded call this thread is making must be over
_call_deadline = threading.local()


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    _call_deadline.at = None if seconds is None else time.monotonic() + seconds
    try:
        yield
    finally:
        _call_deadline.at = None


def _guarded_adapter(destinations: Destinations) -> Any:
    """A requests transport adapter whose connections go only where `destinations` allow,
    to the very address that was checked, within the call's deadline (`_deadline`)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    from urllib3.util.connection import create_connection

    class GuardedConnection:
        _timer: threading.Timer | None = None
        _expired = False

        def _new_conn(self) -> socket.socket:
            try:
                addresses = destinations.connect_to(self._dns_host, plain_http=not isinstance(self, HTTPSConnection))
            except socket.gaierror as error:
                raise NameResolutionError(self.host, self, error) from error
            except DestinationNotAllowed as refused:
                raise NewConnectionError(self, "destination not allowed") from refused
            failure: Exception | None = None
            for address in addresses[:3]:
                try:  # the checked address itself: nothing is resolved again
                    return create_connection(
                        (str(address), self.port),
                        self.timeout,
                        source_address=self.source_address,
                        socket_options=self.socket_options,
                    )
                except TimeoutError as error:
                    failure = ConnectTimeoutError(self, f"connection to {self.host} timed out")
                    failure.__cause__ = error
                except OSError as error:
                    failure = NewConnectionError(self, f"failed to establish a new connection: {error}")
                    failure.__cause__ = error
            assert failure is not None
            raise failure

        # the whole call's bound: armed when a request starts, disarmed once its answer's head is in
        def _arm(self) -> None:
            at = getattr(_call_deadline, "at", None)
            if at is None or self._timer is not None:
                return
            self._expired = False
            self._timer = threading.Timer(max(at - time.monotonic(), 0.0), self._expire)
            self._timer.daemon = True
            self._timer.start()

        def _disarm(self) -> bool:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return self._expired

        def _expire(self) -> None:
            self._expired = True
            sock = self.sock
            if sock is not None:  # the blocked read returns at once; TLS's too (the plain socket's own shutdown)
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

        def connect(self) -> None:
            self._arm()
            try:
                super().connect()
            except BaseException:
                self._disarm()
                raise

        def request(self, *args: Any, **kwargs: Any) -> None:
            self._arm()
            try:
                super().request(*args, **kwargs)
            except BaseException as error:
                if self._disarm():
                    raise _AttemptExpired("the call's time ran out") from error
                raise

        def getresponse(self) -> Any:
            try:
                return super().getresponse()
            except BaseException as error:
                if self._disarm():
                    raise _AttemptExpired("the call's time ran out") from error
                raise
            finally:
                self._disarm()

    connection = type("GuardedHTTPConnection", (GuardedConnection, HTTPConnection), {})
    tls_connection = type("GuardedHTTPSConnection", (GuardedConnection, HTTPSConnection), {})
    pools = {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": connection}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": tls_connection}),
    }

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            # through a proxy the proxy would connect, unchecked
            raise DestinationNotAllowed("a guarded client connects directly, never through a proxy")

    return GuardedAdapter()


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
            "connecting": "timed out connecting" if timed_out else f"could not connect ({self._reason()})",
            "waiting": "timed out waiting for an answer" if timed_out else f"the connection broke ({_os_reason(error)})",
            "request": f"could not be sent ({type(error).__name__})",
        }[phase]
        after = f" (after {tries} tries)" if tries > 1 else ""
        super().__init__(f"{method} {_without_query(url)}: {what}{after}")

    def _reason(self) -> str:
        return "destination not allowed" if self.outcome == "destination not allowed" else _os_reason(self.error)

    def retryable(self, idempotent: bool) -> bool:
        """Whether another try is safe: nothing was sent, or an idempotent call broke."""
        if self.outcome == "destination not allowed":
            return False
        return self.phase == "connecting" or (self.phase == "waiting" and idempotent and not self.timed_out)

    @property
    def outcome(self) -> str:
        """How it ended, in a few fixed words, for logs a third party reads (a webhook's
        delivery log): "timed out", "connection refused", "host not found", "destination not
        allowed", "TLS failed", "could not connect", "connection closed without an answer" or
        "request not sent". Never the library's own text, which names addresses and tells an
        open port from a closed one."""
        chain = _chain(self.error)
        if any(isinstance(e, DestinationNotAllowed) for e in chain):
            return "destination not allowed"
        if self.timed_out:
            return "timed out"
        if any(isinstance(e, ConnectionRefusedError) for e in chain):
            return "connection refused"
        if any(isinstance(e, socket.gaierror) for e in chain):
            return "host not found"
        if any(type(e).__name__ in ("SSLError", "CertificateError", "SSLCertVerificationError") for e in chain):
            return "TLS failed"
        return {
            "connecting": "could not connect",
            "waiting": "connection closed without an answer",
            "request": "request not sent",
        }[self.phase]


class HttpClient:
    """Calls to one service (paths are joined to `base_url`; a full URL goes where it
    says), with default headers, a default timeout and a retry policy, each of which a call
    may override. Thread-safe as requests' sessions are: share one per service.

    `session`: a requests.Session (or one shaped like it) to call through, kept open by
    `close`; by default a new one. `isolated`: the new session takes nothing from the
    environment (proxies, .netrc) and keeps no cookies between calls, for URLs a third
    party chose (webhook endpoints). `destinations`: connect only where they allow, to the
    address that was checked, each call within its connect + read timeout in all (the
    session's http and https adapters are replaced). `sleep`: how the waits between tries
    are spent."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        session: requests.Session | None = None,
        isolated: bool = False,
        destinations: Destinations | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout(*timeout)
        self.retry = retry
        self.sleep = sleep
        self.destinations = destinations
        self._owns_session = session is None
        self.session = _new_session(isolated) if session is None else session
        if destinations is not None:
            adapter = _guarded_adapter(destinations)
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, adapter)
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
                with _deadline(limits.connect + limits.read if self.destinations is not None else None):
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


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and every exception it wraps (requests wraps urllib3's, which wraps the socket's)."""
    seen: list[BaseException] = []
    pending = [error]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        pending += [a for a in current.args if isinstance(a, BaseException)]
        wrapped = (getattr(current, "reason", None), current.__cause__, current.__context__)
        pending += [e for e in wrapped if isinstance(e, BaseException)]
    return seen


def _no_answer(method: str, url: str, error: Exception, tries: int) -> NoAnswer:
    import requests
    from urllib3.exceptions import NewConnectionError

    if any(isinstance(e, _AttemptExpired) for e in _chain(error)):
        return NoAnswer(method, url, error, "waiting", True, tries)
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
