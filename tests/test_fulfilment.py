"""Fulfilment: a ready order with a recipient goes to the print provider once, ships, and
the storefront sees it; the recipient stays in the orders database only.

The print providers are the loopback fakes of tests/fake_print_providers.py (their
sandboxes cannot be reached from here); everything else is real: the API over HTTP, the
Dagster assets and sensors on a real instance, the orders database."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources as package_files
from urllib.parse import unquote, urlsplit

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from PIL import Image
from sqlalchemy import func, select

import assets
from photogen_pipelines.catalog import load_products
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import FulfilmentRow, OrderRow, RecipientRow, WebhookEventRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.fulfilment.providers import print_provider
from photogen_pipelines.fulfilment.providers.base import ProviderError
from photogen_pipelines.fulfilment.submission import fulfilment_of, recipient_of, submit
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.artifacts import EngineVersions, Manifest, OrderKeys
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.retention import Retention, RetentionPolicy, ledger_key
from resources import ArtifactStorage, CatalogResource, OrdersDatabase, StoreConfig
from resources.fulfilment import PrintProviderResource
from sensors.fulfilment import print_provider_orders
from storefront_api.main import create_app
from tests.api_helpers import make_settings, new_key
from tests.fake_print_providers import FakePrintful, FakeProdigi, LoopbackServer
from tests.servers import api_server, wait_until

S = OrderState
API_KEY = "prodigi-test-key"
RECIPIENT = {
    "name": "Wangari Muta Maathai",
    "email": "wangari.maathai@example.org",
    "phone": "+254 20 765 4321",
    "address": {"line1": "14 Kirichwa Road", "city": "Nairobi", "postal_code": "00100", "country_code": "ke"},
}
PERSONAL = ["Wangari", "Maathai", "wangari.maathai@example.org", "765 4321", "Kirichwa"]
ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]


def _small_products(tmp_path) -> str:
    """The packaged catalog plus a 2 x 3 in print, so a test's print run takes a second."""
    catalog = yaml.safe_load((package_files.files("photogen_pipelines.catalog") / "products.yaml").read_text())
    catalog["products"].append(
        {
            "id": "print_2x3",
            "name": "Print 2 x 3 in",
            "width_in": 2,
            "height_in": 3,
            "dpi": 300,
            "min_dpi": 150,
            "format": "jpeg",
            "price_cents": 900,
            "fulfilment": {"prodigi": {"sku": "TEST-PRINT-2X3"}},  # the fake's own small print
        }
    )
    catalog["products"].append({**catalog["products"][-1], "id": "unshippable_2x3", "fulfilment": {}})
    path = tmp_path / "products.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


def _personal_data_in(text: str) -> list[str]:
    return [word for word in PERSONAL if word.lower() in text.lower()]


# -- end to end ----------------------------------------------------------------------------


def test_an_order_with_a_recipient_is_printed_by_prodigi_once_and_ships_with_tracking(tmp_path, monkeypatch, astronaut_png):
    products = _small_products(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'orders.db'}"
    secret = "test-secret-" + uuid.uuid4().hex
    with FakeProdigi(API_KEY) as prodigi:
        settings = make_settings(
            tmp_path,
            database_url,
            secret_key=secret,
            products_path=products,
            print_provider="prodigi",
            print_provider_api_key=API_KEY,
            print_provider_api_base=prodigi.url,
        )
        with api_server(create_app(settings)) as base:
            settings.public_base_url = base  # the provider downloads the print file through the API's signed link
            headers = new_key(settings)
            upload = requests.post(
                f"{base}/v1/uploads",
                headers=headers,
                data={"consent": "true"},
                files={"file": ("me.png", astronaut_png)},
                timeout=60,
            )
            assert upload.status_code == 201, upload.text
            body = {
                "upload_id": upload.json()["id"],
                "style_id": "ink_etching",
                "product_id": "print_2x3",
                "variants": 1,
                "approval": "auto",
                "recipient": RECIPIENT,
                "shipping_method": "express",
            }
            placed = requests.post(f"{base}/v1/orders", json=body, headers={**headers, "Idempotency-Key": "k1"}, timeout=30)
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            shown = placed.json()["recipient"]
            assert shown["city"] == "Nairobi" and shown["country_code"] == "KE"
            assert not _personal_data_in(json.dumps(shown))  # masked, even in the response that created it

            monkeypatch.setenv("PHOTOGEN_PRINT_PROVIDER_API_KEY", API_KEY)
            monkeypatch.setenv("PHOTOGEN_SECRET_KEY", secret)
            defs = build_defs(
                str(tmp_path / "home"),
                database_url=database_url,
                secret_key=secret,
                products_path=products,
                print_provider="prodigi",
                print_provider_api_key=API_KEY,
                print_provider_api_base=prodigi.url,
                public_base_url=base,
            )
            (tmp_path / "dagster").mkdir()
            with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
                instance.add_dynamic_partitions("orders", [order_id])
                for selection in (assets.proof_assets, assets.print_assets):
                    run = dg.materialize(
                        ALL_ASSETS, selection=selection, partition_key=order_id, instance=instance, resources=defs.resources
                    )
                    assert run.success
                checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
                assert checks["provider_accepted"] is True
                metadata = run.asset_materializations_for_node("fulfilment")[0].metadata
                assert metadata["status"].value == "submitted" and metadata["provider"].value == "prodigi"

                # one provider order, with our order id as its merchant reference and idempotency key
                assert len(prodigi.orders) == 1
                ((prodigi_id, provider_order),) = prodigi.orders.items()
                assert provider_order["merchantReference"] == order_id
                sent = prodigi.seen("POST", "/orders")[0].body
                assert sent["idempotencyKey"] == order_id and sent["shippingMethod"] == "Express"
                assert sent["recipient"]["name"] == RECIPIENT["name"]
                assert sent["recipient"]["address"]["countryCode"] == "KE"
                assert sent["items"][0]["sku"] == "TEST-PRINT-2X3"
                assert sent["items"][0]["assets"][0]["url"].startswith(f"{base}/v1/files/")
                assert sent["callbackUrl"] == f"{base}/v1/fulfilment/prodigi/callbacks"
                view = requests.get(f"{base}/v1/orders/{order_id}", headers=headers, timeout=30).json()
                assert view["state"] == "submitted"
                assert view["fulfilment"]["provider_order_id"] == prodigi_id
                assert view["print_file_ready"] is True

                # materialized again (an operator's re-run): no second provider order
                again = dg.materialize(
                    ALL_ASSETS, selection=[assets.fulfilment], partition_key=order_id, instance=instance, resources=defs.resources
                )
                assert again.success and len(prodigi.orders) == 1

                # the lab ships; Prodigi's callback only names the order: it is read back from the API
                prodigi.ship(prodigi_id, "Royal Mail", "Tracked 48", "RM123456785GB", "https://track.example/RM123456785GB")
                answer = requests.post(f"{base}/v1/fulfilment/prodigi/callbacks", data=prodigi.callback(prodigi_id), timeout=30)
                assert answer.status_code == 202, answer.text
                wait_until(
                    lambda: (
                        requests.get(f"{base}/v1/orders/{order_id}", headers=headers, timeout=30).json()["state"] == "shipped"
                    ),
                    30,
                    "the order to ship",
                )
                view = requests.get(f"{base}/v1/orders/{order_id}", headers=headers, timeout=30).json()
                assert view["fulfilment"]["carrier"] == "Royal Mail"
                assert view["fulfilment"]["tracking_number"] == "RM123456785GB"
                assert view["events"][-1]["reason"] == "shipped by Royal Mail, tracking RM123456785GB"
                assert prodigi.seen("GET", f"/orders/{prodigi_id}")  # confirmed by reading it back

                # the recipient never reached Dagster: not its metadata, logs or event log
                logs = "\n".join(
                    str(record.event_log_entry)
                    for stored in instance.get_runs()
                    for record in instance.get_records_for_run(stored.run_id, limit=10_000).records
                )
                assert order_id in logs and not _personal_data_in(logs)

        # the storefront's events, in the outbox with the changes that made them
        with open_database(database_url).session() as session:
            events = session.scalars(select(WebhookEventRow).where(WebhookEventRow.order_id == order_id)).all()
            types = [e.type for e in sorted(events, key=lambda e: e.created_at)]
            shipped = next(e.payload for e in events if e.type == "order.shipped")
        assert types == ["order.paid", "order.proofs_ready", "order.ready", "order.submitted", "order.shipped"]
        assert shipped["data"]["order"]["fulfilment"]["tracking_number"] == "RM123456785GB"
        assert not _personal_data_in(json.dumps(shipped))


# -- the core, against each provider's fake -------------------------------------------------


def _ready_order(
    book: SqlOrderBook, store: LocalArtifactStore, *, recipient: dict | None = RECIPIENT, pixels: tuple[int, int] = (1800, 2700)
) -> Order:
    """An order for a 12 x 18 in poster at ready, with its print file (150 DPI by default) and
    manifest stored, as the print run leaves it."""
    order = Order(style_id="ink_etching", product_id="poster_12x18", upload_key="k", variants=1)
    order = book.add(order, recipient=Recipient.model_validate(recipient, strict=False) if recipient else None)
    if recipient:
        book.update(order.id, lambda o: setattr(o, "shipping_method", ShippingMethod.STANDARD))
    for state in (S.PAID, S.GENERATING, S.PROOFS_READY):
        book.transition(order.id, state)
    book.update(order.id, lambda o: (setattr(o, "approved_proof", 0), o.transition(S.APPROVED)))
    for state in (S.RENDERING, S.READY):
        book.transition(order.id, state)
    keys = OrderKeys(order.id)
    buffer = io.BytesIO()
    Image.fromarray(np.full((pixels[1], pixels[0], 3), 128, np.uint8)).save(buffer, "JPEG")
    store.put_bytes(keys.print_file("jpg"), buffer.getvalue())
    manifest = Manifest(
        order_id=order.id,
        style_id=order.style_id,
        product_id=order.product_id,
        file=keys.print_file("jpg"),
        format="jpeg",
        bytes=len(buffer.getvalue()),
        pixel_size=pixels,
        dpi=300,
        effective_dpi=300.0,
        bleed_px=0,
        trim_inches=(11.69, 16.54),
        color_profile="sRGB",
        approved_proof=0,
        identity_score=0.8,
        identity_threshold=0.4,
        seeds=[1],
        engines=EngineVersions(faces="sface", style="magenta", upscale="ncnn", upscale_passes=[1]),
    )
    keys.save(store, manifest)
    return book.get(order.id)


@pytest.fixture
def store(tmp_path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def file_host(store):
    """Where providers download print files in these tests: a loopback server over the
    store's files at the API's /v1/files/ paths (the signature is the API's to check,
    tested with the API; the end-to-end test above downloads through the API itself)."""
    server = LoopbackServer(lambda method, target, headers, body: _serve_file(store, target))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _serve_file(store: LocalArtifactStore, target: str) -> tuple[int, bytes, dict[str, str]]:
    key = unquote(urlsplit(target).path).split("/v1/files/", 1)[-1]
    if not store.exists(key):
        return 404, b"", {}
    return 200, store.get_bytes(key), {"Content-Type": "image/jpeg"}


@pytest.fixture
def file_links(file_host):
    return lambda key: f"{file_host}/v1/files/{key}"


def test_a_submission_whose_answer_was_lost_finds_the_first_provider_order(orders_db, store, file_links):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book, store)
    product = load_products().get("poster_12x18")
    with FakeProdigi(API_KEY) as prodigi:
        provider = print_provider("prodigi", api_key=API_KEY, api_base=prodigi.url)
        prodigi.fault(503, after_handling=True, only="POST /orders")  # Prodigi made it, the answer never came
        with pytest.raises(ProviderError):
            submit(book, provider, order.id, product, file_url=lambda: file_links(OrderKeys(order.id).print_file("jpg")))
        assert book.get(order.id).state == S.READY and fulfilment_of(orders_db, order.id).status == "pending"
        result = submit(book, provider, order.id, product, file_url=lambda: file_links(OrderKeys(order.id).print_file("jpg")))
        assert result.status == "submitted" and len(prodigi.orders) == 1
        assert book.get(order.id).state == S.SUBMITTED
        assert fulfilment_of(orders_db, order.id).attempts == 2


def test_a_file_the_provider_refuses_fails_the_order_with_its_reason(orders_db, store, file_links):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book, store)
    with FakePrintful("pf-token") as printful:
        provider = print_provider("printful", api_key="pf-token", api_base=printful.url)
        printful.refuse_next("Could not download the file from its URL")
        result = submit(book, provider, order.id, load_products().get("poster_12x18"), file_url=lambda: file_links("missing.jpg"))
    assert result.status == "refused"
    failed = book.get(order.id)
    assert failed.state == S.FAILED and "provider_refused" in failed.reason and "printful" in failed.reason
    assert fulfilment_of(orders_db, order.id).status == "failed"


@pytest.mark.parametrize("fake", [FakeProdigi, FakePrintful])
def test_a_print_file_below_the_providers_dpi_is_refused_and_fails_the_order(orders_db, store, file_links, fake):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book, store, pixels=(600, 900))  # 50 DPI on a 12 x 18 in poster
    with fake(API_KEY) as server:
        provider = print_provider(fake.__name__.removeprefix("Fake").lower(), api_key=API_KEY, api_base=server.url)
        link = file_links(OrderKeys(order.id).print_file("jpg"))
        result = submit(book, provider, order.id, load_products().get("poster_12x18"), file_url=lambda: link)
        assert result.status == "refused" and not server.orders
    failed = book.get(order.id)
    assert failed.state == S.FAILED and failed.reason.startswith("provider_refused_file:"), failed.reason


def _age(orders_db, order_id: str, hours: float = 1.0) -> None:
    """Make the order (and its provider record) look untouched for `hours`."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    with orders_db.session() as session:
        session.get(OrderRow, order_id).updated_at = then
        record = session.get(FulfilmentRow, order_id)
        if record is not None:
            record.checked_at = record.updated_at = then


def test_the_reconciliation_sensor_follows_the_provider_and_submits_what_never_reached_it(orders_db, store, file_host):
    book = SqlOrderBook(orders_db)
    shipped, never_sent, for_download, before_the_provider = (
        _ready_order(book, store),
        _ready_order(book, store),
        _ready_order(book, store, recipient=None),
        _ready_order(book, store),
    )
    with FakePrintful("pf-token") as printful:
        resource = PrintProviderResource(
            provider="printful",
            api_key="pf-token",
            api_base=printful.url,
            confirm=True,
            public_base_url=file_host,
            secret_key="s" * 32,
        )
        resource.submit(book, store, load_products(), shipped.id)
        assert book.get(shipped.id).state == S.SUBMITTED
        printful.ship(shipped.id, "USPS", "First Class", "9400100000000000000000", "https://tools.usps.com/t/94001")
        for order_id in (shipped.id, never_sent.id, for_download.id):  # no callback came; the print run of never_sent died
            _age(orders_db, order_id)
        _age(orders_db, before_the_provider.id, hours=72)  # ready before the shop turned its provider on
        context = dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            resources={
                "orders": OrdersDatabase(url=orders_db.url),
                "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
                "catalog": CatalogResource(),
                "print_provider": resource,
            },
        )
        result = print_provider_orders(context)
        assert "1 moved" in result.skip_message and "1 submitted" in result.skip_message, result.skip_message
        assert len(printful.orders) == 2  # the shipped one was read, not submitted again
    after = book.get(shipped.id)
    assert after.state == S.SHIPPED and fulfilment_of(orders_db, shipped.id).tracking_number == "9400100000000000000000"
    assert book.get(never_sent.id).state == S.SUBMITTED
    assert book.get(for_download.id).state == S.READY and fulfilment_of(orders_db, for_download.id) is None
    assert fulfilment_of(orders_db, before_the_provider.id) is None  # the back catalogue is not printed


def test_retention_deletes_the_recipient_with_the_files(orders_db, store):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book, store)
    assert recipient_of(orders_db, order.id).name == RECIPIENT["name"]
    later = datetime.now(UTC) + timedelta(days=31)
    buffer = io.BytesIO()
    pd.DataFrame({"order_id": [order.id]}).to_parquet(buffer)
    store.put_bytes(ledger_key(book.get(order.id).events[-1].at.astimezone(UTC).date()), buffer.getvalue())
    retention = Retention(book, store, RetentionPolicy(days=30), later)
    assert retention.retire(book.get(order.id)), retention.result
    assert recipient_of(orders_db, order.id) is None


# -- the API --------------------------------------------------------------------------------


def test_the_api_refuses_a_bad_recipient_and_an_unshippable_product_with_stable_codes(tmp_path, astronaut_png):
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'orders.db'}",
        products_path=_small_products(tmp_path),
        print_provider="prodigi",
        print_provider_api_key=API_KEY,
    )
    with api_server(create_app(settings)) as base:
        headers = new_key(settings)
        upload = requests.post(
            f"{base}/v1/uploads", headers=headers, data={"consent": "true"}, files={"file": ("me.png", astronaut_png)}, timeout=60
        ).json()
        body = {"upload_id": upload["id"], "style_id": "ink_etching", "product_id": "print_2x3", "variants": 1}

        def place(key: str, **fields):
            return requests.post(
                f"{base}/v1/orders", json={**body, **fields}, headers={**headers, "Idempotency-Key": key}, timeout=30
            )

        bad_country = place("a", recipient={**RECIPIENT, "address": {**RECIPIENT["address"], "country_code": "Kenya"}})
        assert bad_country.status_code == 422 and bad_country.json()["code"] == "invalid_request"
        assert "country" in bad_country.text
        bad_email = place("b", recipient={**RECIPIENT, "email": "not an address"})
        assert bad_email.status_code == 422 and bad_email.json()["code"] == "invalid_request"
        no_recipient = place("c", shipping_method="express")
        assert no_recipient.status_code == 422 and "needs a recipient" in no_recipient.text
        unshippable = place("d", product_id="unshippable_2x3", recipient=RECIPIENT)
        assert unshippable.status_code == 422 and unshippable.json()["code"] == "product_not_shippable"
        # nothing was kept of the refused requests; a good one is placed, and its retry with another recipient conflicts
        assert place("e", recipient=RECIPIENT).status_code == 201
        other = place("e", recipient={**RECIPIENT, "name": "Someone Else"})
        assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    with open_database(settings.resolved_database_url).session() as session:
        assert session.scalar(select(func.count()).select_from(RecipientRow)) == 1
