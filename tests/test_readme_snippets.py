"""The code the README tells storefronts to copy, run as they would copy it: the webhook
signature verifier (`verify_photogen_signature`), taken from README.md's code block and
executed on its own, checks a real signed delivery from the webhook sender
(photogen_pipelines/webhooks/delivery.py) and refuses a tampered or replayed one; and the
curl walkthrough ("One order with curl"), its shell lines run as printed against a real
`photogen serve` on the home the README's `export PHOTOGEN_HOME=…` names, from the key to
the print file and the bundle."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.db.database import Database
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.webhooks.delivery import SIGNATURE_HEADER, deliver_due, signature_header
from photogen_pipelines.webhooks.endpoints import create_endpoint
from tests.servers import free_port
from tests.test_serve import CHILD_PID, PHOTOGEN, _read, _stop_all, _tail, _wait_until

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


# -- the curl walkthrough ------------------------------------------------------------------

BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
README_API = "API=http://127.0.0.1:8000"  # serve's default --api-port
POLL = re.compile(r"# poll: .*→ (?P<state>\w+)\s*$")
# the test's, not the README's: what a reader does at a `# poll:` line, run it again until the
# order gets there (it fails at once on an order that cannot get there any more)
WAIT_FOR_STATE = r"""
wait_for_state() {
  for _ in $(seq 600); do
    state=$(curl -s -H "$AUTH" "$API/v1/orders/$ID" | jq -r .state)
    [ "$state" = "$1" ] && return 0
    case "$state" in rejected|failed|cancelled|refunded) echo "order $ID is $state" >&2; return 1;; esac
    sleep 1
  done
  echo "order $ID never reached $1" >&2; return 1
}
"""


def readme_bash_block(*containing: str) -> str:
    """The README's one bash block that holds every string in `containing`."""
    blocks = [block for block in BASH_BLOCK.findall(README.read_text()) if all(c in block for c in containing)]
    assert len(blocks) == 1, f"README.md has {len(blocks)} bash blocks with {containing}"
    return blocks[0]


def _command(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _with_waits(walkthrough: str) -> str:
    """The walkthrough's lines as printed, each `# poll:` line followed by a wait for the
    state it names last."""
    lines = []
    for line in walkthrough.splitlines():
        lines.append(line)
        if poll := POLL.search(line):
            lines.append(f"wait_for_state {poll['state']}")
    return "\n".join(lines)


@pytest.mark.slow
def test_the_readme_curl_walkthrough_runs_as_printed_on_one_home(tmp_path):
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's walkthrough needs {tool}")
    start = readme_bash_block("photogen serve", "export PHOTOGEN_HOME=")
    walkthrough = readme_bash_block("api-key create", "$API/v1/uploads")
    # one home throughout: the block that starts serve and the walkthrough export the same one
    exports = [_command(line) for block in (start, walkthrough) for line in block.splitlines() if line.startswith("export ")]
    assert len(exports) == 2 and exports[0] == exports[1] and exports[0].startswith("export PHOTOGEN_HOME="), exports
    assert walkthrough.count(README_API) == 1
    assert "api-key create" in walkthrough and "--home" not in walkthrough  # the key's home is the export's

    # the reader's folder: the repository's .venv and test photo where the README's paths expect them
    folder = tmp_path / "reader"
    folder.mkdir()
    (folder / ".venv").symlink_to(PHOTOGEN.parents[1])
    (folder / "tests").symlink_to(README.parent / "tests")
    shell_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
    shell_env["PWD"] = str(folder)
    home = subprocess.run(
        ["bash", "-c", f'{exports[0]}; printf %s "$PHOTOGEN_HOME"'], cwd=folder, env=shell_env, capture_output=True, text=True
    ).stdout
    assert home == str(folder / ".photogen-shop"), home

    api_port, ui_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [str(PHOTOGEN), "serve", "--home", home, "--api-port", str(api_port), "--ui-port", str(ui_port)],
            env=shell_env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child_pgids: list[int] = []
    try:
        _wait_until(lambda: "[photogen] ready" in _read(log), 180, "the ready line", serve, log)
        child_pgids.extend(int(pid) for _name, pid in CHILD_PID.findall(_read(log)))
        assert f"[photogen] home {home} (from --home)" in _read(log)

        script = "set -eo pipefail\n" + WAIT_FOR_STATE + _with_waits(walkthrough)
        script = script.replace(README_API, f"API=http://127.0.0.1:{api_port}")  # the only change: a free port
        done = subprocess.run(["bash", "-c", script], cwd=folder, env=shell_env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{_tail(log)}"
        assert f"[photogen] home {home} (from PHOTOGEN_HOME)" in done.stderr  # the key's home: serve's
        assert "invalid_api_key" not in done.stdout

        with Image.open(folder / "print_file.jpg") as printed:
            assert (printed.format, printed.size) == ("JPEG", (3508, 4961))  # poster_a3
        (bundle,) = folder.glob("ord_*.zip")
        with zipfile.ZipFile(io.BytesIO(bundle.read_bytes())) as archive:
            names = set(archive.namelist())
        assert {"order.json", "manifest.json"} <= names and any(re.fullmatch(r"proofs/proof_\d+\.png", n) for n in names), names
        assert any(n.startswith("print_file.") for n in names), names

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, _tail(log)
    finally:
        _stop_all(serve, log, child_pgids)


# -- the jobs' curl lines ------------------------------------------------------------------

WAIT_FOR_JOB = r"""
wait_for_job() {
  for _ in $(seq 600); do
    state=$(curl -s -H "$AUTH" "$API/v1/jobs/$2" | jq -r .state)
    [ "$state" = "$1" ] && return 0
    case "$state" in rejected|failed|cancelled|refunded) echo "job $2 is $state" >&2; return 1;; esac
    sleep 1
  done
  echo "job $2 never reached $1" >&2; return 1
}
"""
JOB_POLL = re.compile(r"\$API/v1/jobs/\$(?P<job>\w+) .*# poll: .*→ (?P<state>\w+)\s*$")


@pytest.mark.slow
def test_the_readmes_job_lines_run_as_printed_one_kind_after_another(tmp_path):
    """Every kind's curl lines of "Jobs over HTTP" against a real `photogen serve` on the
    embedded engine: a pose pack and a fashion shoot made (the ZIP downloaded), a try-on and a
    living portrait refused with kind_needs_engine, as the comments say."""
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's walkthrough needs {tool}")
    from photogen_pipelines.imaging.images import png_bytes
    from photogen_pipelines.jobs.export import read_metadata
    from tests.product_photos import garment_photo

    walkthrough = readme_bash_block("api-key create", "$API/v1/uploads")
    setup = walkthrough.split("ORDER=$(", 1)[0]  # the key and the person's upload, as printed
    jobs = readme_bash_block("$API/v1/jobs", "kind_needs_engine")
    folder = tmp_path / "reader"
    folder.mkdir()
    (folder / ".venv").symlink_to(PHOTOGEN.parents[1])
    (folder / "tests").symlink_to(README.parent / "tests")
    (folder / "garment.png").write_bytes(png_bytes(garment_photo()[0]))
    shell_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOGEN_", "DAGSTER_"))}
    shell_env["PWD"] = str(folder)
    home = str(folder / ".photogen-shop")
    api_port, ui_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [str(PHOTOGEN), "serve", "--home", home, "--api-port", str(api_port), "--ui-port", str(ui_port)],
            env=shell_env, cwd=folder, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    child_pgids: list[int] = []
    try:
        _wait_until(lambda: "[photogen] ready" in _read(log), 180, "the ready line", serve, log)
        child_pgids.extend(int(pid) for _name, pid in CHILD_PID.findall(_read(log)))
        lines = []
        for line in jobs.splitlines():
            lines.append(line)
            if poll := JOB_POLL.search(line):
                lines.append(f'wait_for_job {poll["state"]} "${poll["job"]}"')
        script = "set -eo pipefail\n" + WAIT_FOR_JOB + setup + "\n".join(lines)
        script = script.replace(README_API, f"API=http://127.0.0.1:{api_port}")
        done = subprocess.run(["bash", "-c", script], cwd=folder, env=shell_env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{_tail(log)}"
        assert done.stdout.count('"kind_needs_engine"') == 2, done.stdout  # the try-on and the living portrait
        (archive,) = folder.glob("job_*.zip")
        metadata = read_metadata(archive.read_bytes())
        assert metadata.kind == "fashion_shoot" and [s.outcome for s in metadata.shots] == ["passed"] * 3
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, _tail(log)
    finally:
        _stop_all(serve, log, child_pgids)
