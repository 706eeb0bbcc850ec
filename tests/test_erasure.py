"""A customer's data exported and erased on request (issue 28): over real HTTP against the
API on SQLite and PostgreSQL, after a real proof run on a real Dagster instance; then every
stored file, every row of every table, the Dagster event log and every log line are
searched for what the customer gave us (photos, the face's embedding, the recipient)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
import zipfile

import dagster as dg
import pytest
import requests
from sqlalchemy import select

import assets
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import Base, RecipientRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.recipients import Address, Recipient
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import OrderKeys, SelfieInfo
from photogen_pipelines.storage.stores import LocalArtifactStore
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance
from tests.servers import api_server

REF, OTHER = "cust-erase-1", "cust-keep-2"
RECIPIENT = {"name": "Zelda Quixote", "email": "zelda.q@example.com", "line1": "17 Juniper Lane", "postal_code": "ZQ1 7JL"}


@pytest.fixture
def shop(tmp_path, database_url, monkeypatch):
    settings = make_settings(tmp_path, database_url)
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", settings.resolved_database_url)
    with api_server(make_app(settings)) as url:
        yield settings, url, new_key(settings)


def _upload(url, auth, image, ref) -> dict:
    answer = requests.post(
        f"{url}/v1/uploads",
        headers=auth,
        files={"file": ("me.jpg", jpeg_bytes(image))},
        data={"customer_ref": ref, "consent": "true"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _order(url, auth, upload_id, ref) -> dict:
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    answer = requests.post(
        f"{url}/v1/orders", headers=headers, json=order_body(upload_id, variants=1, customer_ref=ref), timeout=30
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _recipient_details() -> dict:
    address = {"line1": RECIPIENT["line1"], "city": "Testville", "postal_code": RECIPIENT["postal_code"], "country_code": "GB"}
    return Recipient(name=RECIPIENT["name"], email=RECIPIENT["email"], address=Address(**address)).model_dump(mode="json")


def _every_row(database) -> str:
    """Every row of every table of the orders database, as one text to search."""
    with database.session() as session:
        return "\n".join(repr(row) for table in Base.metadata.sorted_tables for row in session.execute(select(table)).all())


@pytest.fixture
def rendered_logs():
    """Every line logged in this process as photogen_pipelines/logs.py renders it: JSON,
    with the context the API and the run bind (order, run, request), searched too."""
    from photogen_pipelines.logs import handler

    buffer = io.StringIO()
    rendering, root = handler(buffer, "json"), logging.getLogger()
    root.addHandler(rendering)
    yield buffer
    root.removeHandler(rendering)


def test_export_hands_over_what_is_held_and_erasure_leaves_none_of_it_anywhere(
    shop, face_images, tmp_path, caplog, rendered_logs
):
    settings, url, auth = shop
    caplog.set_level(logging.DEBUG)  # every logger, every level: searched at the end
    database = open_database(settings.resolved_database_url)
    store = LocalArtifactStore(settings.paths.artifacts)

    kept_upload = _upload(url, auth, face_images["obama"], OTHER)
    kept = _order(url, auth, kept_upload["id"], OTHER)
    unordered = _upload(url, auth, face_images["astronaut"], REF)
    photo = _upload(url, auth, face_images["astronaut"], REF)
    order = _order(url, auth, photo["id"], REF)
    with database.session() as session:  # who receives the print (the pages and the API take it with a print provider)
        session.add(
            RecipientRow(
                order_id=order["id"], details=_recipient_details(), created_at=SqlOrderBook(database).get(order["id"]).created_at
            )
        )
    photo_sha = {hashlib.sha256(store.get_bytes(f"uploads/{u['id']}.png")).hexdigest() for u in (unordered, photo)}

    defs = build_defs(settings.home)
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order["id"]])
        result = dg.materialize(assets.proof_assets, partition_key=order["id"], instance=instance, resources=defs.resources)
        assert result.success
        embedding = OrderKeys(order["id"]).load(store, SelfieInfo).embedding
        assert SqlOrderBook(database).get(order["id"]).state == OrderState.PROOFS_READY

        exported = requests.get(f"{url}/v1/customers/{REF}/export", headers=auth, timeout=60)
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(exported.content))
        names = set(archive.namelist())
        assert {"customer.json", f"orders/{order['id']}/order.json", f"orders/{order['id']}/selfie/face.json"} <= names
        assert f"uploads/{unordered['id']}.png" in names and any(n.startswith(f"orders/{order['id']}/proofs/") for n in names)
        assert json.loads(archive.read(f"orders/{order['id']}/order.json"))["recipient"]["name"] == RECIPIENT["name"]
        assert not any(kept["id"] in name or kept_upload["id"] in name for name in names)  # another customer's: not theirs

        erased = requests.delete(f"{url}/v1/customers/{REF}", headers=auth, timeout=60)
        assert erased.status_code == 200, erased.text
        assert (erased.json()["orders"], erased.json()["repeated"]) == (1, False) and erased.json()["files"] >= 4
        again = requests.delete(f"{url}/v1/customers/{REF}", headers=auth, timeout=60)
        assert again.status_code == 200 and again.json()["id"] == erased.json()["id"] and again.json()["repeated"]

        events = [repr(entry) for entry in instance.all_logs(result.run_id)]  # materializations and their metadata too

    # the order was waiting for its customer's choice: cancelled, and what the books need stays
    gone = SqlOrderBook(database).get(order["id"])
    assert gone.state in (OrderState.CANCELLED, OrderState.REFUNDED) and gone.customer_ref is None
    assert requests.get(f"{url}/v1/customers/{REF}", headers=auth, timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/customers/{REF}/export", headers=auth, timeout=10).json()["code"] == "customer_not_found"

    # files: nothing under the order, no photo of theirs anywhere (by content), the other customer's intact
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert not [p for p in files if order["id"] in str(p) or unordered["id"] in str(p) or photo["id"] in str(p)]
    assert not {hashlib.sha256(p.read_bytes()).hexdigest() for p in files} & photo_sha
    assert store.exists(f"uploads/{kept_upload['id']}.png")
    assert SqlOrderBook(database).get(kept["id"]).customer_ref == OTHER

    # rows, Dagster's event log and every log line: no reference, recipient or embedding
    needles = [REF, *RECIPIENT.values(), photo["id"], unordered["id"], f"{embedding[0]:.6f}"[:8]]
    rows = _every_row(database)
    # urllib3's lines are this test's own client logging its requests, not PhotoGen's
    log_lines = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("urllib3"))
    rendered = "\n".join(line for line in rendered_logs.getvalue().splitlines() if '"logger": "urllib3' not in line)
    assert '"logger": "photogen.assets"' in rendered  # the run's lines were rendered, and are searched
    haystacks = (("rows", rows), ("event log", "\n".join(events)), ("logs", log_lines), ("rendered logs", rendered))
    for haystack_name, haystack in haystacks:
        found = [needle for needle in needles if needle in haystack]
        assert not found, f"{haystack_name} still hold {found}"
    assert OTHER in rows  # the search can find what is there


def test_orders_being_made_make_the_erasure_wait_and_name_them(shop, face_images):
    settings, url, auth = shop
    order = _order(url, auth, _upload(url, auth, face_images["astronaut"], REF)["id"], REF)
    SqlOrderBook(open_database(settings.resolved_database_url)).transition(order["id"], OrderState.GENERATING)

    refused = requests.delete(f"{url}/v1/customers/{REF}", headers=auth, timeout=30)

    assert refused.status_code == 409
    assert refused.json()["code"] == "erasure_waits_for_orders" and refused.json()["details"]["order_ids"] == [order["id"]]
    assert requests.get(f"{url}/v1/customers/{REF}/export", headers=auth, timeout=30).status_code == 200  # nothing erased


def test_a_customer_the_key_never_named_is_a_404_and_a_bad_ref_a_422(shop):
    _, url, auth = shop
    missing = requests.delete(f"{url}/v1/customers/nobody-here", headers=auth, timeout=10)
    bad = requests.delete(f"{url}/v1/customers/{'x' * 65}", headers=auth, timeout=10)
    assert (missing.status_code, missing.json()["code"]) == (404, "customer_not_found")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_customer_ref")


def test_another_shops_key_cannot_erase_or_export_the_customer(shop, face_images):
    settings, url, auth = shop
    _upload(url, auth, face_images["astronaut"], REF)
    other_shop = new_key(settings, "another shop")
    assert requests.delete(f"{url}/v1/customers/{REF}", headers=other_shop, timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/customers/{REF}/export", headers=other_shop, timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/customers/{REF}/export", headers=auth, timeout=10).status_code == 200


def test_an_operator_erases_a_customer_from_the_command_line(tmp_path, database_url, face_images, analyzer):
    """`photogen customers erase REF`: the same erasure as the API's, one line when refused."""
    from click.testing import CliRunner

    from photogen_pipelines.cli import main as cli_main
    from photogen_pipelines.imaging.images import png_bytes
    from photogen_pipelines.orders.uploads import take_upload

    env = {"PHOTOGEN_DATABASE_URL": database_url, "PHOTOGEN_HOME": str(tmp_path / "home"), "PHOTOGEN_SECRET_KEY": "s" * 32}

    def photogen(*args: str):
        return CliRunner().invoke(cli_main.cli, list(args), env=env)

    assert photogen("credits", "grant", REF, "5", "--reason", "welcome gift").exit_code == 0
    database = open_database(database_url)
    store = LocalArtifactStore(tmp_path / "home" / "artifacts")  # the home's store, which the command opens
    upload = take_upload(database, store, analyzer, png_bytes(face_images["astronaut"]), customer_ref=REF, consent=True)

    erased = photogen("customers", "erase", REF, "--json")
    again = photogen("customers", "erase", REF, "--json")
    unknown = photogen("customers", "erase", "nobody-here")

    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["files"] == 1 and not json.loads(erased.stdout)["repeated"]
    assert not store.exists(upload.storage_key)
    errors = [line for line in unknown.stderr.splitlines() if line.startswith("photogen: error:")]
    assert unknown.exit_code == 2 and errors == ["photogen: error: customer nobody-here not found [customer_not_found]"]
    # the reference is gone from every row: the second request finds the recorded erasure by its HMAC
    assert again.exit_code == 0 and json.loads(again.stdout)["repeated"]
    assert json.loads(again.stdout)["id"] == json.loads(erased.stdout)["id"]
    assert REF not in _every_row(database)
