"""Structured logs (issue 28): the API's process, started as `photogen serve` starts it
(uvicorn with our log config), and an order's proof run on a real Dagster instance print one
JSON object a line, each naming the order it is about, and no line holds a person's data:
not the recipient's name, e-mail, phone or address, not a customer reference that is an
e-mail, not an embedding, neither while orders are made nor after the customer is erased."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests

import assets
from photogen_pipelines import logs
from photogen_pipelines.cli.serve import api_command
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.storage.artifacts import OrderKeys, SelfieInfo
from photogen_pipelines.storage.stores import LocalArtifactStore
from tests.api_helpers import jpeg_bytes, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance
from tests.servers import free_port, server_process, wait_until

REF = "zelda.q@example.com"  # a shop whose customer references are e-mail addresses
RECIPIENT = {
    "name": "Zelda Quixote",
    "email": "zelda.quixote@example.org",
    "phone": "+44 7700 900461",
    "address": {"line1": "17 Juniper Lane", "city": "Testville", "postal_code": "ZQ1 7JL", "country_code": "GB"},
}
PERSONAL = [REF, RECIPIENT["name"], "Quixote", RECIPIENT["email"], RECIPIENT["phone"], "Juniper Lane", "ZQ1 7JL"]


@pytest.fixture
def api_process(tmp_path, monkeypatch):
    """The API in its own process, as `photogen serve` runs it; yields (settings, url, its log path)."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}")
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", settings.resolved_database_url)  # the run's resources read it
    env = {name: value for name, value in os.environ.items() if not name.startswith("PHOTOGEN_")}
    env |= {
        "PHOTOGEN_HOME": str(settings.home),
        "PHOTOGEN_DATABASE_URL": settings.resolved_database_url,
        "PHOTOGEN_SECRET_KEY": settings.resolved_secret_key,
        "PHOTOGEN_RATE_LIMIT_PER_KEY": "1000/minute",
        "PHOTOGEN_RATE_LIMIT_PER_ADDRESS": "1000/minute",
    }  # no PHOTOGEN_LOG_FORMAT: a log file is no terminal, so JSON
    log_config = tmp_path / "logging.api.json"
    log_config.write_text(json.dumps(logs.dict_config()))
    port, log_path = free_port(), tmp_path / "api.log"
    command = api_command("127.0.0.1", port, log_config)
    assert command[0] == sys.executable
    with server_process(command, log_path, env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: process.poll() is not None or _answers(url + "/healthz"), 120, "the API process")
        assert process.poll() is None, log_path.read_text()
        yield settings, url, log_path


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def run_log():
    """Every line this process logs (the in-process run's), rendered as JSON by our handler."""
    buffer = io.StringIO()
    handler = logs.handler(buffer, "json")
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # raises on any line that is not one JSON object
    assert all(isinstance(line, dict) and {"timestamp", "level", "logger", "event"} <= line.keys() for line in parsed), lines
    return parsed


def _personal_found(lines: list[dict], needles: list[str]) -> list[tuple[str, dict]]:
    return [(needle, line) for line in lines for needle in needles if needle in json.dumps(line)]


@pytest.mark.slow  # the API's own process, a proof run and an erasure
def test_the_api_and_a_run_log_json_lines_naming_the_order_and_no_personal_data(api_process, run_log, face_images, tmp_path):
    settings, url, api_log = api_process
    auth = new_key(settings)
    upload = requests.post(
        f"{url}/v1/uploads",
        headers=auth,
        files={"file": ("me.jpg", jpeg_bytes(face_images["astronaut"]))},
        data={"customer_ref": REF, "consent": "true"},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    body = order_body(upload.json()["id"], variants=1, customer_ref=REF, recipient=RECIPIENT)
    placed = requests.post(f"{url}/v1/orders", headers={**auth, "Idempotency-Key": str(uuid.uuid4())}, json=body, timeout=60)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    assert requests.get(f"{url}/v1/orders/{order_id}", headers=auth, timeout=10).status_code == 200
    # bad requests that carry personal data: a recipient refused, an e-mail where an order id goes, in a query
    refused = {**body, "recipient": {**RECIPIENT, "email": "zelda.quixote@@example.org"}}
    assert requests.post(f"{url}/v1/orders", headers=auth, json=refused, timeout=10).status_code == 422
    assert requests.get(f"{url}/v1/orders/{RECIPIENT['email']}", headers=auth, timeout=10).status_code == 404
    requests.get(f"{url}/v1/orders", headers=auth, params={"email": RECIPIENT["email"]}, timeout=10)
    assert requests.get(f"{url}/v1/customers/{REF}", headers=auth, timeout=10).status_code == 200

    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order_id])
        defs = build_defs(settings.home)
        result = dg.materialize(assets.proof_assets, partition_key=order_id, instance=instance, resources=defs.resources)
        assert result.success
    store = LocalArtifactStore(settings.paths.artifacts)
    embedding = np.asarray(OrderKeys(order_id).load(store, SelfieInfo).embedding)
    erased = requests.delete(f"{url}/v1/customers/{REF}", headers=auth, timeout=60)
    assert erased.status_code == 200, erased.text

    api_lines = _json_lines(api_log.read_text())
    run_lines = _json_lines(run_log.getvalue())

    # the API: every request's access line names it, and where it is about an order, the order
    access = [line for line in api_lines if line["logger"] == "uvicorn.access"]
    assert len(access) >= 9 and all(line["request_id"].startswith("req_") for line in access)
    about_order = [line for line in access if order_id in line["event"]]
    assert about_order and all(line.get("order_id") == order_id for line in about_order)
    placing = [line for line in access if '"POST /v1/orders HTTP/1.1" 201' in line["event"]]
    assert [line.get("order_id") for line in placing] == [order_id]  # from the answer's body
    assert any("/v1/customers/REDACTED" in line["event"] for line in access)  # server.py's redaction, kept
    assert any("/v1/orders/[email]" in line["event"] for line in access)  # an e-mail where an id goes: masked

    # the run: each stage's line names the order, the run and the job, as would any line a core function logs there
    stages = [line for line in run_lines if line["event"] == "stage finished"]
    assert {line["stage"] for line in stages} >= {"selfie", "styled_candidates", "validated_proofs"}
    assert all((line["order_id"], line["run_id"]) == (order_id, result.run_id) and line["job"] for line in stages)
    assert all(line.get("order_id") == order_id for line in run_lines if order_id in json.dumps(line))

    # no line of either holds the customer's data, nor a value of the face's embedding
    needles = [*PERSONAL, *(f"{value:.6f}"[:8] for value in embedding[:4])]
    assert not _personal_found(api_lines + run_lines, needles)
    assert _personal_found([{"event": f"{embedding[0]:.6f}"}], needles)  # the search finds what is there


@pytest.mark.parametrize(
    ("logged", "shown"),
    [
        ({"event": "mail zelda.q@example.com now"}, {"event": "mail [email] now"}),
        (
            {"event": "x", "email": "a@b.co", "recipient_email": "c@d.co"},
            {"event": "x", "email": "[redacted]", "recipient_email": "[redacted]"},
        ),
        ({"event": "x", "recipient": {"name": "Zelda"}}, {"event": "x", "recipient": "[redacted]"}),
        (
            {"event": "x", "details": {"name": "Zelda", "order": "ord_1"}},
            {"event": "x", "details": {"name": "[redacted]", "order": "ord_1"}},
        ),
        ({"event": "x", "values": list(range(512))}, {"event": "x", "values": "[512 numbers]"}),
        ({"event": "x", "picture": b"\x89PNG"}, {"event": "x", "picture": "[4 bytes]"}),
        ({"event": "x", "pixels": np.zeros((2, 2))}, {"event": "x", "pixels": "[redacted]"}),
        ({"event": "x", "vector": np.zeros(512)}, {"event": "x", "vector": "[array (512,)]"}),
        ({"event": "x", "job": "proof_job", "seconds": 1.5}, {"event": "x", "job": "proof_job", "seconds": 1.5}),
    ],
)
def test_the_redaction_masks_what_names_a_person_and_keeps_the_rest(logged, shown):
    assert logs.redact_personal_data(None, "info", dict(logged)) == shown


def test_the_standard_librarys_lines_and_structlogs_render_alike_with_their_context():
    buffer = io.StringIO()
    handler = logs.handler(buffer, "json")
    logger = logging.getLogger("photogen.test_structured_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with logs.log_context(order_id="ord_0123456789abcdef", run_id=None):
            logger.info("order %s refunded for %s", "ord_0123456789abcdef", "zelda.q@example.com")
            logs.get_logger("photogen.test_structured_logs").info("stage finished", seconds=1.25)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second, third = _json_lines(buffer.getvalue())
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["event"] == "order ord_0123456789abcdef refunded for [email]" and first["level"] == "info"
    assert first["order_id"] == second["order_id"] == "ord_0123456789abcdef" and "run_id" not in first
    assert second["seconds"] == 1.25 and first["timestamp"].endswith("Z")
    assert "order_id" not in third and third["level"] == "warning"


def test_the_format_follows_photogen_log_format_and_a_bad_one_is_one_line_exit_2(tmp_path):
    photogen = str(Path(sys.executable).with_name("photogen"))
    bad = subprocess.run([photogen, "styles"], env={**os.environ, "PHOTOGEN_LOG_FORMAT": "xml"}, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr == "photogen: error: PHOTOGEN_LOG_FORMAT must be json or console, not 'xml'\n"
    script = "import logging; from photogen_pipelines import logs; logs.configure_logging(); logging.getLogger('x').info('hello')"
    shown = {}
    for chosen in ("json", "console"):
        run = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PHOTOGEN_LOG_FORMAT": chosen}, capture_output=True, text=True
        )
        shown[chosen] = run.stderr.strip()
    assert json.loads(shown["json"])["event"] == "hello"
    assert "hello" in shown["console"] and not shown["console"].startswith("{")
