"""The operators' console (issue 28): the Dagster UI never listens beyond loopback without a
login in front of it, and the login shipped in deploy/operators/ really asks for one.

The nginx test runs the shipped server block as it is (only its port, upstream port and
file paths are rewritten to the test's own) in Debian's nginx, which .ci/run installs, in
front of a real Dagster webserver on this code location; a self-signed certificate and an
htpasswd made by `openssl passwd -apr1`, as the file's own comment says. Locally the nginx
test skips where nginx is missing; with CI=true it fails instead."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port, server_process, wait_until

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "deploy" / "operators" / "dagster-ui.nginx.conf"
PHOTOGEN = str(Path(sys.executable).with_name("photogen"))


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--ui-host", "0.0.0.0"],
        ["ui", "--host", "192.168.1.20"],
    ],
)
def test_the_ui_is_not_opened_to_the_network_without_a_login_in_front(tmp_path, command):
    env = {**os.environ, "PHOTOGEN_HOME": str(tmp_path / "home")}
    answer = subprocess.run([PHOTOGEN, *command], env=env, capture_output=True, text=True, timeout=120)

    assert answer.returncode == 2
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no login" in lines[0] and "deploy/operators/dagster-ui.nginx.conf" in lines[0]
    assert not (tmp_path / "home").exists()  # refused before anything was made


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing on CI: .ci/run installs Debian's nginx package")
        pytest.skip("nginx is not installed (apt-get install nginx); CI runs this")
    return found


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _htpasswd(path: Path, user: str, password: str) -> None:
    hashed = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True, text=True, check=True)
    path.write_text(f"{user}:{hashed.stdout.strip()}\n")


def _server_block(tmp_path: Path, port: int, ui_port: int, cert: Path, key: Path) -> Path:
    """The shipped block, with only its listening port, upstream and files made the test's."""
    _htpasswd(tmp_path / "operators.htpasswd", "ops", "correct horse")
    text = SHIPPED.read_text()
    text = re.sub(r"^\s*listen \[::\]:443 ssl;\n", "", text, flags=re.M)  # loopback IPv4 only here
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/photogen/tls/fullchain.pem": str(cert),
        "/etc/photogen/tls/privkey.pem": str(key),
        "/etc/photogen/operators.htpasswd": str(tmp_path / "operators.htpasswd"),
        "http://127.0.0.1:3000": f"http://127.0.0.1:{ui_port}",
    }
    for shipped, ours in replacements.items():
        assert shipped in text, f"the shipped block no longer has {shipped!r}: update this test with it"
        text = text.replace(shipped, ours)
    block = tmp_path / "dagster-ui.conf"
    block.write_text(text)
    return block


def _nginx_conf(tmp_path: Path, block: Path) -> Path:
    """A whole nginx.conf around the block: one process of this user, its files in tmp_path."""
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "nginx-error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    include {block};
}}
"""
    )
    return conf


def test_the_shipped_proxy_asks_operators_for_a_login_before_the_dagster_ui(tmp_path):
    nginx = _nginx()
    ui_port, port = free_port(), free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    webserver = [str(Path(sys.executable).with_name("dagster-webserver")), "-m", "photogen_pipelines.definitions"]
    cert, key = _self_signed(tmp_path)
    conf = _nginx_conf(tmp_path, _server_block(tmp_path, port, ui_port, cert, key))
    checked = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr

    with (
        server_process([*webserver, "-h", "127.0.0.1", "-p", str(ui_port)], tmp_path / "webserver.log", env=env, cwd=REPO),
        server_process([nginx, "-c", str(conf)], tmp_path / "nginx.log"),
    ):
        base = f"https://127.0.0.1:{port}"
        session = requests.Session()
        session.trust_env = False  # the test's own certificate, not a CA bundle from the environment
        session.verify = str(cert)
        wait_until(lambda: _answers(session, f"http://127.0.0.1:{ui_port}/server_info"), 180, "the Dagster UI")

        anonymous = session.get(f"{base}/server_info", timeout=10)
        wrong = session.get(f"{base}/server_info", auth=("ops", "wrong"), timeout=10)
        signed_in = session.get(f"{base}/server_info", auth=("ops", "correct horse"), timeout=10)
        graphql = session.post(f"{base}/graphql", json={"query": "{ version }"}, auth=("ops", "correct horse"), timeout=30)

    assert anonymous.status_code == 401 and 'Basic realm="PhotoGen operators"' in anonymous.headers["WWW-Authenticate"]
    assert wrong.status_code == 401
    assert signed_in.status_code == 200 and "dagster_webserver_version" in signed_in.json()
    assert graphql.status_code == 200 and graphql.json()["data"]["version"]


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
