"""Where outbound webhooks may go: public addresses only, checked at registration and again
when each delivery connects, at the address it connects to (no DNS rebinding around it);
PHOTOGEN_WEBHOOK_ALLOW_PRIVATE for development, PHOTOGEN_WEBHOOK_ALLOWED_HOSTS for named
internal receivers; and a delivery log that says how an attempt ended in a few coarse words,
never the HTTP library's (no port-scan oracle). All traffic stays on loopback: the names
under `.rebind.test` resolve through a fake resolver, and a public answer is only ever
resolved, never connected to."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import WebhookAttemptRow
from photogen_pipelines.errors import BadInput
from photogen_pipelines.http import NO_RETRIES, Destinations, HttpClient, NoAnswer
from photogen_pipelines.settings import PhotoGenSettings
from photogen_pipelines.webhooks.delivery import deliver_due
from photogen_pipelines.webhooks.endpoints import create_endpoint, valid_url, webhook_destinations
from photogen_pipelines.webhooks.events import get_event, list_events
from tests.api_helpers import make_app, make_settings
from tests.servers import api_server, free_port
from tests.test_outbound_webhooks import Receiver, _aware, _deliveries, _paid_order, _shop

REPO = Path(__file__).parents[1]
PUBLIC = "93.184.215.14"  # a public address: only ever a resolver's answer here, never connected to
SETTINGS = ("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "PHOTOGEN_WEBHOOK_ALLOWED_HOSTS", "PHOTOGEN_WEBHOOK_ALLOW_HTTP")
# what the HTTP library says and a storefront must never read: addresses, ports, its exceptions
LIBRARY_WORDS = ("127.0.0.1", "HTTPConnectionPool", "Errno", "Max retries", "NewConnectionError", "aborted", "establish")


@pytest.fixture(autouse=True)
def shipped_settings(monkeypatch):
    """The defaults, whatever the environment running the tests says."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


class FakeDns:
    """Answers for the names it is given, in turn (the last answer ever after); every other
    name goes to the real resolver. Counts the questions."""

    def __init__(self, monkeypatch, answers: dict[str, list[list[str]]]):
        self.answers, self.asked = answers, Counter()
        real = socket.getaddrinfo

        def getaddrinfo(host, *args, **kwargs):
            name = host.rstrip(".").lower() if isinstance(host, str) else host
            if name not in self.answers:
                return real(host, *args, **kwargs)
            self.asked[name] += 1
            turns = self.answers[name]
            return [info for address in turns[min(self.asked[name], len(turns)) - 1] for info in real(address, *args, **kwargs)]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _closed_port() -> int:
    return free_port()  # bound once and let go: nothing listens there


class Hangup:
    """A port that accepts a connection and closes it without a word (a database, say)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopped:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            connection.close()

    def __enter__(self) -> Hangup:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped = True
        self.sock.close()
        self.thread.join(timeout=5)


# -- registration --------------------------------------------------------------------------


REFUSED = [
    "http://127.0.0.1:5432/",  # the shop's PostgreSQL
    "http://127.0.0.1:3000/graphql",  # the Dagster UI
    "https://127.0.0.1/hooks",
    "http://localhost:8000/hooks",
    "https://[::1]/hooks",
    "https://10.0.0.5/hooks",
    "https://172.16.3.4/hooks",
    "https://192.168.1.10/hooks",
    "https://100.64.0.1/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://[fd00::1]/hooks",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://[::ffff:a00:5]/hooks",
    "https://[64:ff9b::7f00:1]/hooks",
    "https://[2002:7f00:1::]/hooks",
    "https://[fe80::1]/hooks",
    "https://0/hooks",
    "https://0.0.0.0/hooks",
    "https://127.1/hooks",
    "https://2130706433/hooks",
    "https://0x7f000001/hooks",
    "https://224.0.0.1/hooks",
    "https://internal.rebind.test/hooks",  # a name that resolves inside
    "https://mixed.rebind.test/hooks",  # public and private answers at once
]


@pytest.mark.parametrize("url", REFUSED)
def test_registration_refuses_every_destination_that_is_not_public(monkeypatch, url):
    FakeDns(monkeypatch, {"internal.rebind.test": [["10.1.2.3"]], "mixed.rebind.test": [[PUBLIC, "127.0.0.1"]]})
    with pytest.raises(BadInput) as refused:
        valid_url(url)
    assert refused.value.code in ("webhook_url_not_public", "webhook_url_not_https"), refused.value
    assert "127.0.0.1" not in str(refused.value) and "10.1.2.3" not in str(refused.value)  # no probe of the network


def test_public_hosts_and_names_that_do_not_resolve_yet_are_registered(monkeypatch):
    FakeDns(monkeypatch, {"shop.rebind.test": [[PUBLIC]]})
    for url in ("https://shop.rebind.test/hooks", f"https://{PUBLIC}/hooks", "https://shop.example/hooks"):
        assert valid_url(url) == url  # shop.example resolves nowhere: the delivery checks when it connects


def test_the_development_setting_allows_this_machine_and_private_networks_but_never_metadata(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")
    for url in ("http://127.0.0.1:9000/hooks", "http://localhost:9000/hooks", "https://10.0.0.5/h", "https://[fd00::1]/h"):
        assert valid_url(url) == url
    for url in (
        "https://169.254.169.254/latest/meta-data/",
        "https://metadata.google.internal/",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/h",
        "https://0.0.0.0/h",
        "http://10.0.0.5/hooks",  # plain http:// only to this machine
    ):
        with pytest.raises(BadInput):
            valid_url(url)


def test_an_operator_may_allow_named_internal_hosts(monkeypatch):
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOWED_HOSTS", "hooks.rebind.test, .corp.rebind.test")
    FakeDns(
        monkeypatch,
        {"hooks.rebind.test": [["10.0.0.7"]], "erp.corp.rebind.test": [["192.168.1.2"]], "other.rebind.test": [["10.0.0.8"]]},
    )
    assert webhook_destinations().allowed_hosts == {"hooks.rebind.test", ".corp.rebind.test"}
    assert valid_url("https://hooks.rebind.test/h") and valid_url("https://erp.corp.rebind.test/h")
    with pytest.raises(BadInput) as refused:
        valid_url("https://other.rebind.test/h")
    assert refused.value.code == "webhook_url_not_public"


def test_the_api_refuses_internal_targets_with_the_shipped_settings(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url)
    assert settings.webhook_allow_private is False
    database = open_database(settings.resolved_database_url)
    database.migrate()
    from photogen_pipelines.access.api_keys import create_api_key

    _, secret = create_api_key(database, "shop")
    auth = {"Authorization": f"Bearer {secret}"}
    with api_server(make_app(settings)) as base:
        for url in ("http://127.0.0.1:5432/", "http://127.0.0.1:3000/graphql", "https://169.254.169.254/latest/"):
            answer = requests.post(f"{base}/v1/webhook-endpoints", headers=auth, json={"url": url}, timeout=10)
            assert answer.status_code == 422 and answer.json()["code"] == "webhook_url_not_public", answer.text
        created = requests.post(f"{base}/v1/webhook-endpoints", headers=auth, json={"url": "https://shop.example/h"}, timeout=10)
        assert created.status_code == 201, created.text
        patched = requests.patch(
            f"{base}/v1/webhook-endpoints/{created.json()['id']}", headers=auth, json={"url": "http://[::1]:5432/"}, timeout=10
        )
        assert patched.status_code == 422 and patched.json()["code"] == "webhook_url_not_public", patched.text
    database.dispose()


# -- connect time --------------------------------------------------------------------------


def test_every_delivery_checks_again_when_it_connects(orders_db, monkeypatch):
    """An endpoint registered while the development setting was on (or before this check
    existed) gets nothing once it is off; its log says so, the same for every port."""
    key = _shop(orders_db)
    with Receiver() as receiver:
        monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")
        create_endpoint(orders_db, key, receiver.url, ["*"])
        monkeypatch.delenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE")
        _paid_order(orders_db, key)
        report = deliver_due(orders_db)
        assert (report.delivered, report.retrying) == (0, 1)
    assert receiver.received == []
    (delivery,) = get_event(orders_db, key, list_events(orders_db, key).events[0].id).deliveries
    assert delivery.status == "pending" and [(a.status_code, a.error) for a in delivery.log] == [
        (None, "destination not allowed")
    ]


@pytest.mark.slow
def test_the_delivery_log_is_no_port_scanner(orders_db, monkeypatch):
    """A closed port, an open one that is not HTTP, and a live service: with the shipped
    settings nothing is even connected to and every log reads the same; with the development
    setting each reads as a coarse outcome, never the library's words."""
    key = _shop(orders_db)
    with Receiver() as service, Hangup() as hangup:
        service.status = 400
        targets = {
            "closed": f"http://127.0.0.1:{_closed_port()}/",
            "open": f"http://127.0.0.1:{hangup.port}/",
            "service": service.url,
        }
        endpoints = {
            name: create_endpoint(orders_db, key, url, ["*"], destinations=Destinations(allow_private=True))[0]
            for name, url in targets.items()
        }
        _paid_order(orders_db, key)
        deliver_due(orders_db, timeout=2)
        assert service.received == []
        event_id = list_events(orders_db, key).events[0].id
        logged = {d.endpoint_id: d.log for d in get_event(orders_db, key, event_id).deliveries}
        assert {name: [a.error for a in logged[e.id]] for name, e in endpoints.items()} == dict.fromkeys(
            targets, ["destination not allowed"]
        )

        later = max(_aware(d.next_attempt_at) for d in _deliveries(orders_db))
        deliver_due(orders_db, now=later, timeout=2, destinations=Destinations(allow_private=True))
        logged = {d.endpoint_id: d.log[-1] for d in get_event(orders_db, key, event_id).deliveries}
    errors = {name: logged[e.id].error for name, e in endpoints.items()}
    assert errors == {"closed": "connection refused", "open": "connection closed without an answer", "service": "HTTP 400"}
    assert logged[endpoints["service"].id].status_code == 400 and len(service.received) == 1
    with orders_db.session() as session:
        written = [row.error or "" for row in session.query(WebhookAttemptRow)]
    assert written and not [e for e in written if any(word in e for word in LIBRARY_WORDS)]


def test_a_name_rebound_to_this_machine_after_registration_gets_nothing(orders_db, monkeypatch):
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_HTTP", "1")  # a public receiver without TLS: plain http:// to follow
    key = _shop(orders_db)
    with Receiver() as receiver:
        dns = FakeDns(monkeypatch, {"shop.rebind.test": [[PUBLIC], ["127.0.0.1"]]})
        url = f"http://shop.rebind.test:{receiver.port}/hooks"
        create_endpoint(orders_db, key, url, ["*"])  # public when registered
        assert dns.asked["shop.rebind.test"] == 1
        _paid_order(orders_db, key)
        deliver_due(orders_db, timeout=2)
    assert receiver.received == []  # this machine, when it connects: refused
    assert [d.last_error for d in _deliveries(orders_db)] == ["destination not allowed"]


def test_a_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """The name is looked up once per connection, and that very address is connected to:
    a resolver that answers differently a moment later (DNS rebinding) is not asked again."""
    with Receiver() as receiver:
        dns = FakeDns(monkeypatch, {"pin.rebind.test": [["127.0.0.1"], ["127.0.0.3"]]})  # nothing listens on .3
        with HttpClient(retry=NO_RETRIES, isolated=True, destinations=Destinations(allow_private=True)) as client:
            answer = client.post(f"http://pin.rebind.test:{receiver.port}/hooks", data=b"{}")
        assert answer.status_code == 200 and dns.asked["pin.rebind.test"] == 1
    assert receiver.received[0].headers["Host"] == f"pin.rebind.test:{receiver.port}"  # the name, not the address


def _tls_files(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for `host` it signed: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("PhotoGen test CA", ca_key, "PhotoGen test CA", ca_key, True)
    leaf = certificate(host, leaf_key, "PhotoGen test CA", ca_key, False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_https_to_the_checked_address_still_sends_the_name_and_checks_its_certificate(tmp_path, monkeypatch):
    ca, cert, key = _tls_files(tmp_path, "tls.rebind.test")
    names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeDns(monkeypatch, {"tls.rebind.test": [["127.0.0.1"]], "other.rebind.test": [["127.0.0.1"]]})
    try:
        with HttpClient(retry=NO_RETRIES, isolated=True, destinations=Destinations(allow_private=True)) as client:
            answer = client.post(f"https://tls.rebind.test:{port}/hooks", data=b"{}", verify=str(ca))
            assert answer.status_code == 204 and names[-1] == "tls.rebind.test"  # SNI: the name
            with pytest.raises(NoAnswer) as wrong_name:  # the same address under a name its certificate lacks
                client.post(f"https://other.rebind.test:{port}/hooks", data=b"{}", verify=str(ca))
            assert wrong_name.value.outcome == "TLS failed"
            with pytest.raises(NoAnswer) as private:
                HttpClient(retry=NO_RETRIES, isolated=True, destinations=Destinations()).post(
                    f"https://tls.rebind.test:{port}/hooks", data=b"{}", verify=str(ca)
                )
            assert private.value.outcome == "destination not allowed" and names.count("tls.rebind.test") == 1
    finally:
        server.shutdown()
        server.server_close()


def test_an_older_log_with_the_librarys_words_is_shown_coarsely(orders_db):
    key = _shop(orders_db)
    create_endpoint(orders_db, key, "https://shop.example/h", ["*"])
    _paid_order(orders_db, key)
    (delivery,) = _deliveries(orders_db)
    old = (
        "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=5432): Max retries exceeded with url: / "
        "(Caused by ProtocolError('Connection aborted.', RemoteDisconnected('Remote end closed connection')))"
    )
    with orders_db.session() as session:
        session.add(
            WebhookAttemptRow(delivery_id=delivery.id, at=delivery.created_at, status_code=None, error=old, duration_ms=3)
        )
        session.add(
            WebhookAttemptRow(
                delivery_id=delivery.id, at=delivery.created_at, status_code=400, error="HTTP 400 Bad Request", duration_ms=3
            )
        )
    (shown,) = get_event(orders_db, key, list_events(orders_db, key).events[0].id).deliveries
    assert [a.error for a in shown.log] == ["could not connect", "HTTP 400"]


# -- the settings, serve and the deploy ----------------------------------------------------


def test_the_settings_read_the_allow_private_switch_and_the_named_hosts(monkeypatch):
    assert PhotoGenSettings().webhook_allow_private is False and webhook_destinations() == Destinations()
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOWED_HOSTS", "Hooks.Corp.Example., .intra.example")
    assert webhook_destinations() == Destinations(
        allow_private=True, allowed_hosts=frozenset({"hooks.corp.example", ".intra.example"})
    )
    monkeypatch.setenv("PHOTOGEN_WEBHOOK_ALLOWED_HOSTS", "http://hooks.corp.example/")
    with pytest.raises(ValueError):
        PhotoGenSettings()


def test_the_deploy_never_allows_private_targets():
    environment = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]
    for service in ("code", "api"):  # the code server runs the sensor that delivers; the API registers
        assert environment[service]["environment"]["PHOTOGEN_WEBHOOK_ALLOW_PRIVATE"] == "false", service
    readme = (REPO / "README.md").read_text()
    assert "PHOTOGEN_WEBHOOK_ALLOW_PRIVATE=1" in readme  # the local receiver walkthrough turns it on
