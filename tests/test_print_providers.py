"""The Prodigi and Printful adapters against stateful fakes of their APIs on loopback
(tests/fake_print_providers.py: the real sandboxes cannot be reached from here), with the
print file served by a real HTTP file host."""

from __future__ import annotations

import hashlib
import io
import json
import socket

import pytest
from PIL import Image

from photogen_pipelines.catalog import ProviderProduct, load_products
from photogen_pipelines.fulfilment.providers import print_provider
from photogen_pipelines.fulfilment.providers.base import (
    ProviderError,
    ProviderOrder,
    ProviderRefused,
    ProviderStatus,
    Shipment,
    Submission,
)
from photogen_pipelines.fulfilment.providers.printful import PrintfulProvider
from photogen_pipelines.fulfilment.providers.prodigi import ProdigiProvider
from photogen_pipelines.orders.recipients import Address, Recipient, ShippingMethod
from tests.fake_print_providers import FakePrintful, FakeProdigi, FileHost

PRODIGI_KEY = "prodigi-test-key-5f2a9c"
PRINTFUL_TOKEN = "printful-test-token-81d07e"
STORE_ID = "1234567"
# short timeouts: the stalled-provider tests wait for them
TIMEOUT = (2.0, 1.0)

RECIPIENT = Recipient(
    name="Jane Quinn Doe",
    email="jane.doe@example.com",
    phone="+44 20 7946 0000",
    address=Address(
        line1="221B Baker Street",
        line2="Flat 2",
        city="London",
        state="Greater London",
        postal_code="NW1 6XE",
        country_code="GB",
    ),
)
PERSONAL = ["Jane", "Quinn", "Doe", "jane.doe@example.com", "7946", "221B Baker Street", "Baker", "NW1 6XE", "Flat 2"]


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    # 150 DPI over the largest print area these tests order (24 x 36 in): the fakes refuse less
    Image.new("RGB", (3600, 5400), (200, 120, 40)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


JPEG = _jpeg()


@pytest.fixture
def file_host():
    with FileHost({"/print.jpg": JPEG}) as host:
        yield host


@pytest.fixture
def prodigi_api():
    with FakeProdigi(PRODIGI_KEY) as fake:
        yield fake


@pytest.fixture
def printful_api():
    with FakePrintful(PRINTFUL_TOKEN, store_id=STORE_ID) as fake:
        yield fake


def prodigi(api: FakeProdigi, key: str = PRODIGI_KEY) -> ProdigiProvider:
    return ProdigiProvider(key, api.url, timeout=TIMEOUT)


def printful(api: FakePrintful, *, confirm: bool = True, token: str = PRINTFUL_TOKEN) -> PrintfulProvider:
    return PrintfulProvider(token, api.url, store_id=STORE_ID, confirm=confirm, timeout=TIMEOUT)


def submission(
    provider: str,
    file_url: str,
    *,
    order_id: str = "ord_0123456789abcdef",
    product_id: str = "poster_12x18",
    product: ProviderProduct | None = None,
    **overrides,
) -> Submission:
    return Submission(
        order_id=order_id,
        recipient=RECIPIENT,
        shipping_method=overrides.pop("shipping_method", ShippingMethod.EXPRESS),
        product=product or load_products().get(product_id).fulfilment[provider],
        file_url=file_url,
        **overrides,
    )


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_personal_data(message: str) -> None:
    leaked = [value for value in PERSONAL if value.lower() in message.lower()]
    assert not leaked, f"the message names the recipient ({leaked}): {message}"


# -- Prodigi ---------------------------------------------------------------------------------


def test_prodigi_order_carries_the_mapped_recipient_shipping_sku_and_asset(prodigi_api, file_host):
    url = file_host.url("/print.jpg")
    md5 = hashlib.md5(JPEG).hexdigest()  # the fake checks the download against it, as Prodigi does
    placed = prodigi(prodigi_api).submit(
        submission("prodigi", url, file_md5=md5, copies=2, callback_url="https://shop.example/hooks/prodigi")
    )

    [request] = prodigi_api.seen("POST", "/orders")
    assert request.headers["X-API-Key"] == PRODIGI_KEY
    body = request.body
    assert body["merchantReference"] == body["idempotencyKey"] == "ord_0123456789abcdef"
    assert body["shippingMethod"] == "Express"
    assert body["callbackUrl"] == "https://shop.example/hooks/prodigi"
    assert body["recipient"] == {
        "name": "Jane Quinn Doe",
        "email": "jane.doe@example.com",
        "phoneNumber": "+44 20 7946 0000",
        "address": {
            "line1": "221B Baker Street",
            "line2": "Flat 2",
            "postalOrZipCode": "NW1 6XE",
            "countryCode": "GB",
            "townOrCity": "London",
            "stateOrCounty": "Greater London",
        },
    }
    [item] = body["items"]
    assert item["sku"] == "GLOBAL-FAP-12X18" and item["copies"] == 2 and item["sizing"] == "fillPrintArea"
    assert item["assets"] == [{"printArea": "default", "url": url, "md5Hash": md5}]
    assert set(file_host.downloads) == {"/print.jpg"}  # the fake fetched the file (its resolution, then to print)

    [order] = prodigi_api.orders.values()
    assert placed == ProviderOrder(
        provider="prodigi",
        provider_order_id=order["id"],
        merchant_reference="ord_0123456789abcdef",
        status=ProviderStatus.SUBMITTED,
        detail=placed.detail,
    )
    assert placed.detail.startswith("InProgress (downloadAssets Complete")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (ShippingMethod.BUDGET, "Budget"),
        (ShippingMethod.STANDARD, "Standard"),
        (ShippingMethod.EXPRESS, "Express"),
        (ShippingMethod.OVERNIGHT, "Overnight"),
    ],
)
def test_prodigi_shipping_methods(prodigi_api, file_host, ours, theirs):
    prodigi(prodigi_api).submit(submission("prodigi", file_host.url("/print.jpg"), shipping_method=ours))
    assert prodigi_api.seen("POST", "/orders")[0].body["shippingMethod"] == theirs


def test_prodigi_canvas_sends_its_wrap_attribute(prodigi_api, file_host):
    placed = prodigi(prodigi_api).submit(submission("prodigi", file_host.url("/print.jpg"), product_id="canvas_24x36"))
    item = prodigi_api.seen("POST", "/orders")[0].body["items"][0]
    assert item["sku"] == "GLOBAL-CAN-24X36" and item["attributes"] == {"wrap": "MirrorWrap"}
    assert placed.status is ProviderStatus.SUBMITTED


def test_prodigi_submitting_twice_returns_the_same_order(prodigi_api, file_host):
    provider = prodigi(prodigi_api)
    first = provider.submit(submission("prodigi", file_host.url("/print.jpg")))
    second = provider.submit(submission("prodigi", file_host.url("/print.jpg")))

    assert second.provider_order_id == first.provider_order_id
    assert len(prodigi_api.orders) == 1
    assert [s.answer["outcome"] for s in prodigi_api.seen("POST", "/orders")] == ["Created", "AlreadyExists"]


def test_prodigi_retry_after_a_lost_answer_makes_no_second_order(prodigi_api, file_host):
    provider = prodigi(prodigi_api)
    # the order is created, then the answer is lost (a 503 from a proxy in front, say)
    prodigi_api.fault(503, after_handling=True, only="POST /orders")
    with pytest.raises(ProviderError) as lost:
        provider.submit(submission("prodigi", file_host.url("/print.jpg")))
    assert lost.value.code == "provider_unavailable" and "503" in str(lost.value)
    assert len(prodigi_api.orders) == 1

    retried = provider.submit(submission("prodigi", file_host.url("/print.jpg")))
    assert len(prodigi_api.orders) == 1
    assert retried.provider_order_id == next(iter(prodigi_api.orders))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_prodigi_rate_limits_and_server_errors_are_retryable(prodigi_api, file_host, status):
    provider = prodigi(prodigi_api)
    prodigi_api.fault(status)
    with pytest.raises(ProviderError) as failed:
        provider.submit(submission("prodigi", file_host.url("/print.jpg")))
    assert failed.value.code == "provider_unavailable"
    assert "prodigi" in str(failed.value) and str(status) in str(failed.value)
    assert not prodigi_api.orders  # refused before anything was made

    placed = provider.submit(submission("prodigi", file_host.url("/print.jpg")))  # the retry goes through
    assert placed.status is ProviderStatus.SUBMITTED and len(prodigi_api.orders) == 1


@pytest.mark.slow
def test_prodigi_timeouts_and_unreachable_api_are_retryable(prodigi_api, file_host):
    prodigi_api.fault(delay=TIMEOUT[1] + 1.5)  # stalls past the read timeout
    with pytest.raises(ProviderError, match="prodigi: timed out waiting for an answer"):
        prodigi(prodigi_api).submit(submission("prodigi", file_host.url("/print.jpg")))

    nowhere = ProdigiProvider(PRODIGI_KEY, f"http://127.0.0.1:{free_closed_port()}/v4.0", timeout=TIMEOUT)
    with pytest.raises(ProviderError, match="prodigi: could not connect") as unreachable:
        nowhere.submit(submission("prodigi", file_host.url("/print.jpg")))
    assert unreachable.value.code == "provider_unavailable"


def test_prodigi_file_it_cannot_fetch_is_refused_and_reads_back_failed(prodigi_api, file_host):
    provider = prodigi(prodigi_api)
    expired = file_host.url("/expired-link.jpg")
    with pytest.raises(ProviderRefused) as refused:
        provider.submit(submission("prodigi", expired))
    assert refused.value.code == "provider_refused_file"
    assert "FailedToDownloaded" in str(refused.value) and expired not in str(refused.value)

    [order] = prodigi_api.orders.values()
    read = provider.get("ord_0123456789abcdef", order["id"])
    assert read.status is ProviderStatus.FAILED and "order.items.assets.FailedToDownloaded" in read.detail


@pytest.mark.parametrize(
    ("field_path", "code", "ours"),
    [
        ("items[0].assets[0].url", "CouldNotBeDownloaded", "provider_refused_file"),
        ("recipient.address.line1", "MustBeAValidAddress", "provider_refused_address"),
        ("recipient.address.postalOrZipCode", "MustBeAValidUKPostcode", "provider_refused_address"),
        ("items[0].sku", "SkuNotRecognised", "provider_refused_product"),
        ("merchantReference", "TooLong", "provider_refused"),
    ],
)
def test_prodigi_validation_refusals_say_what_without_personal_data(prodigi_api, file_host, field_path, code, ours):
    prodigi_api.refuse_next(field_path, code)
    with pytest.raises(ProviderRefused) as refused:
        prodigi(prodigi_api).submit(submission("prodigi", file_host.url("/print.jpg")))

    assert refused.value.code == ours
    assert field_path in str(refused.value) and code in str(refused.value)
    assert_no_personal_data(str(refused.value))
    # the fake echoed the value it refused, as Prodigi does; the message must not
    assert prodigi_api.seen("POST", "/orders")[0].answer["failures"][field_path][0]["providedValue"]
    assert not prodigi_api.orders


def test_prodigi_unknown_sku_is_refused_as_a_product_problem(prodigi_api, file_host):
    unknown = ProviderProduct(sku="GLOBAL-NOPE-1X1")
    with pytest.raises(ProviderRefused) as refused:
        prodigi(prodigi_api).submit(submission("prodigi", file_host.url("/print.jpg"), product=unknown))
    assert refused.value.code == "provider_refused_product" and "items[0].sku" in str(refused.value)


def test_prodigi_rejected_key_is_an_operator_problem(prodigi_api, file_host):
    wrong_key = "prodigi-wrong-key-000"
    with pytest.raises(ProviderError) as failed:
        prodigi(prodigi_api, key=wrong_key).submit(submission("prodigi", file_host.url("/print.jpg")))
    assert failed.value.code == "provider_auth_failed"
    assert not isinstance(failed.value, ProviderRefused)  # not the customer's fault: no refund
    assert wrong_key not in str(failed.value) and PRODIGI_KEY not in str(failed.value)
    assert_no_personal_data(str(failed.value))


def test_prodigi_reads_back_production_and_shipment_with_tracking(prodigi_api, file_host):
    provider = prodigi(prodigi_api)
    placed = provider.submit(submission("prodigi", file_host.url("/print.jpg")))

    prodigi_api.start_production(placed.provider_order_id)
    assert provider.get("ord_0123456789abcdef", placed.provider_order_id).status is ProviderStatus.IN_PRODUCTION

    prodigi_api.ship(placed.provider_order_id, "Royal Mail", "Tracked 48", "RM123456785GB", "https://track.example/RM123456785GB")
    by_id = provider.get("ord_0123456789abcdef", placed.provider_order_id)
    by_reference = provider.get("ord_0123456789abcdef")  # the provider id was never stored
    for read in (by_id, by_reference):
        assert read.status is ProviderStatus.SHIPPED
        assert read.provider_order_id == placed.provider_order_id
        assert read.merchant_reference == "ord_0123456789abcdef"
        assert read.shipments == (Shipment("Royal Mail", "RM123456785GB", "https://track.example/RM123456785GB", "Shipped"),)
    assert prodigi_api.seen("GET", "/orders")[-1].query["merchantReferences"] == ["ord_0123456789abcdef"]

    prodigi_api.cancel(placed.provider_order_id)
    assert provider.get("ord_0123456789abcdef", placed.provider_order_id).status is ProviderStatus.CANCELLED


def test_prodigi_get_of_an_order_it_does_not_have_is_none(prodigi_api):
    provider = prodigi(prodigi_api)
    assert provider.get("ord_ffffffffffffffff", "ord_999") is None
    assert provider.get("ord_ffffffffffffffff") is None


def test_prodigi_callback_names_our_order_and_theirs(prodigi_api, file_host):
    provider = prodigi(prodigi_api)
    placed = provider.submit(submission("prodigi", file_host.url("/print.jpg")))
    prodigi_api.ship(placed.provider_order_id, "DHL", "Express", "JD0001", "https://track.example/JD0001")

    body = prodigi_api.callback(placed.provider_order_id)
    assert json.loads(body)["type"] == "com.prodigi.order.status.stage.changed#Complete"
    assert provider.callback_reference({"Content-Type": "application/json"}, body) == (
        "ord_0123456789abcdef",
        placed.provider_order_id,
    )
    for junk in (b"not json", b'{"type": "com.example.other", "data": {}}', b"[]"):
        with pytest.raises(ProviderError) as bad:
            provider.callback_reference({}, junk)
        assert bad.value.code == "provider_callback_invalid"


# -- Printful --------------------------------------------------------------------------------


def test_printful_order_carries_the_mapped_recipient_shipping_variant_and_file(printful_api, file_host):
    url = file_host.url("/print.jpg")
    placed = printful(printful_api).submit(submission("printful", url, copies=3))

    [lookup] = printful_api.seen("GET", "/orders/@ord_0123456789abcdef")  # idempotency: looked first
    [request] = printful_api.seen("POST", "/orders")
    for sent in (lookup, request):
        assert sent.headers["Authorization"] == f"Bearer {PRINTFUL_TOKEN}"
        assert sent.headers["X-PF-Store-Id"] == STORE_ID
    assert request.query == {"confirm": ["true"]}
    assert request.body == {
        "external_id": "ord_0123456789abcdef",
        "shipping": "EXPRESS",
        "recipient": {
            "name": "Jane Quinn Doe",
            "address1": "221B Baker Street",
            "address2": "Flat 2",
            "city": "London",
            "state_code": "Greater London",
            "country_code": "GB",
            "zip": "NW1 6XE",
            "phone": "+44 20 7946 0000",
            "email": "jane.doe@example.com",
        },
        "items": [{"variant_id": 3876, "quantity": 3, "files": [{"type": "default", "url": url}]}],
    }
    assert set(file_host.downloads) == {"/print.jpg"}

    [order] = printful_api.orders.values()
    assert placed == ProviderOrder(
        provider="printful",
        provider_order_id=str(order["id"]),
        merchant_reference="ord_0123456789abcdef",
        status=ProviderStatus.SUBMITTED,
        detail="pending",
    )


def test_printful_without_confirm_leaves_a_draft(printful_api, file_host):
    placed = printful(printful_api, confirm=False).submit(submission("printful", file_host.url("/print.jpg")))
    assert printful_api.seen("POST", "/orders")[0].query == {}
    assert placed.status is ProviderStatus.SUBMITTED and placed.detail == "draft"


def test_printful_confirms_a_draft_an_earlier_submission_left(printful_api, file_host):
    draft = printful(printful_api, confirm=False).submit(submission("printful", file_host.url("/print.jpg")))
    confirmed = printful(printful_api, confirm=True).submit(submission("printful", file_host.url("/print.jpg")))

    assert confirmed.provider_order_id == draft.provider_order_id and confirmed.detail == "pending"
    assert len(printful_api.orders) == 1
    assert len(printful_api.seen("POST", f"/orders/{draft.provider_order_id}/confirm")) == 1


def test_printful_submitting_twice_returns_the_same_order(printful_api, file_host):
    provider = printful(printful_api)
    first = provider.submit(submission("printful", file_host.url("/print.jpg")))
    second = provider.submit(submission("printful", file_host.url("/print.jpg")))

    assert second.provider_order_id == first.provider_order_id
    assert len(printful_api.orders) == 1
    assert len(printful_api.seen("POST", "/orders")) == 1  # the second found it by @external_id


def test_printful_retry_after_a_lost_answer_makes_no_second_order(printful_api, file_host):
    provider = printful(printful_api)
    printful_api.fault(503, after_handling=True, only="POST /orders")
    with pytest.raises(ProviderError) as lost:
        provider.submit(submission("printful", file_host.url("/print.jpg")))
    assert lost.value.code == "provider_unavailable"
    assert len(printful_api.orders) == 1

    retried = provider.submit(submission("printful", file_host.url("/print.jpg")))
    assert len(printful_api.orders) == 1
    assert retried.provider_order_id == str(next(iter(printful_api.orders)))


def test_printful_already_exists_answer_reads_the_existing_order(printful_api, file_host):
    provider = printful(printful_api)
    first = provider.submit(submission("printful", file_host.url("/print.jpg")))
    printful_api.lookup_misses = 1  # the next lookup misses it, so the create collides

    again = provider.submit(submission("printful", file_host.url("/print.jpg")))
    collided = printful_api.seen("POST", "/orders")[-1]
    assert collided.status == 400 and "already exists" in collided.answer["result"]
    assert again.provider_order_id == first.provider_order_id
    assert len(printful_api.orders) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_printful_rate_limits_and_server_errors_are_retryable(printful_api, file_host, status):
    provider = printful(printful_api)
    printful_api.fault(status, only="POST /orders")
    with pytest.raises(ProviderError) as failed:
        provider.submit(submission("printful", file_host.url("/print.jpg")))
    assert failed.value.code == "provider_unavailable" and "printful" in str(failed.value)
    assert not printful_api.orders

    provider.submit(submission("printful", file_host.url("/print.jpg")))
    assert len(printful_api.orders) == 1


@pytest.mark.slow
def test_printful_timeouts_and_unreachable_api_are_retryable(printful_api, file_host):
    printful_api.fault(delay=TIMEOUT[1] + 1.5)
    with pytest.raises(ProviderError, match="printful: timed out waiting for an answer"):
        printful(printful_api).submit(submission("printful", file_host.url("/print.jpg")))

    nowhere = PrintfulProvider(PRINTFUL_TOKEN, f"http://127.0.0.1:{free_closed_port()}", timeout=TIMEOUT)
    with pytest.raises(ProviderError, match="printful: could not connect"):
        nowhere.submit(submission("printful", file_host.url("/print.jpg")))


def test_printful_file_it_cannot_fetch_is_refused_and_reads_back_failed(printful_api, file_host):
    provider = printful(printful_api)
    with pytest.raises(ProviderRefused) as refused:
        provider.submit(submission("printful", file_host.url("/gone.jpg")))
    assert refused.value.code == "provider_refused_file"

    read = provider.get("ord_0123456789abcdef")
    assert read.status is ProviderStatus.FAILED and read.detail == "failed"


@pytest.mark.parametrize(
    ("message", "ours"),
    [
        ("Item 0: Could not download the print file from the given URL", "provider_refused_file"),
        ("Recipient: address 221B Baker Street, NW1 6XE for Jane Quinn Doe is not valid", "provider_refused_address"),
        ("Recipient: jane.doe@example.com is not a valid email", "provider_refused_address"),
        ("Recipient: phone 02079460000 is not valid (Baker St)", "provider_refused_address"),
        ("Item 0: This variant is discontinued", "provider_refused_product"),
        ("Order cannot be processed", "provider_refused"),
    ],
)
def test_printful_refusals_say_what_without_personal_data(printful_api, file_host, message, ours):
    printful_api.refuse_next(message)
    with pytest.raises(ProviderRefused) as refused:
        printful(printful_api).submit(submission("printful", file_host.url("/print.jpg")))
    assert refused.value.code == ours
    assert "printful: refused order ord_0123456789abcdef (HTTP 400)" in str(refused.value)
    assert_no_personal_data(str(refused.value))
    assert not printful_api.orders


def test_printful_unknown_variant_is_refused_as_a_product_problem(printful_api, file_host):
    with pytest.raises(ProviderRefused) as refused:
        printful(printful_api).submit(submission("printful", file_host.url("/print.jpg"), product=ProviderProduct(sku="999999")))
    assert refused.value.code == "provider_refused_product"

    before = len(printful_api.requests)
    with pytest.raises(ProviderRefused) as not_a_variant:
        printful(printful_api).submit(
            submission("printful", file_host.url("/print.jpg"), product=ProviderProduct(sku="GLOBAL-FAP-A3"))
        )
    assert not_a_variant.value.code == "provider_refused_product"
    assert len(printful_api.requests) == before  # refused before asking Printful anything


def test_printful_rejected_token_is_an_operator_problem(printful_api, file_host):
    with pytest.raises(ProviderError) as failed:
        printful(printful_api, token="printful-wrong-token").submit(submission("printful", file_host.url("/print.jpg")))
    assert failed.value.code == "provider_auth_failed" and not isinstance(failed.value, ProviderRefused)
    assert "printful-wrong-token" not in str(failed.value) and PRINTFUL_TOKEN not in str(failed.value)
    assert not printful_api.orders


def test_printful_reads_back_a_shipped_order_with_tracking(printful_api, file_host):
    provider = printful(printful_api)
    placed = provider.submit(submission("printful", file_host.url("/print.jpg")))
    printful_api.ship(
        "ord_0123456789abcdef", "USPS", "USPS Priority Mail", "9400111899223817612345", "https://track.example/94001"
    )

    for read in (provider.get("ord_0123456789abcdef", placed.provider_order_id), provider.get("ord_0123456789abcdef")):
        assert read.status is ProviderStatus.SHIPPED and read.detail == "fulfilled"
        assert read.provider_order_id == placed.provider_order_id
        assert read.shipments == (Shipment("USPS", "9400111899223817612345", "https://track.example/94001", "shipped"),)
    assert provider.get("ord_ffffffffffffffff") is None
    assert provider.get("ord_ffffffffffffffff", "12345") is None


def test_printful_webhook_names_our_order_and_theirs(printful_api, file_host):
    provider = printful(printful_api)
    placed = provider.submit(submission("printful", file_host.url("/print.jpg")))
    printful_api.ship("ord_0123456789abcdef", "DHL", "DHL Express", "JD0002", "https://track.example/JD0002")

    shipped = printful_api.webhook("package_shipped", "ord_0123456789abcdef")
    assert provider.callback_reference({}, shipped) == ("ord_0123456789abcdef", placed.provider_order_id)
    assert provider.callback_reference({}, printful_api.webhook("stock_updated")) == (None, None)
    for junk in (b"<html>", b'{"type": "package_shipped"}', b'"package_shipped"'):
        with pytest.raises(ProviderError) as bad:
            provider.callback_reference({}, junk)
        assert bad.value.code == "provider_callback_invalid"


# -- the factory and the catalog -------------------------------------------------------------


def test_print_provider_factory():
    assert print_provider("none") is None
    made = print_provider("prodigi", api_key="k")
    assert isinstance(made, ProdigiProvider) and made.name == "prodigi"
    made = print_provider("Printful", api_key="k", store_id="42", confirm=True)
    assert isinstance(made, PrintfulProvider) and made.name == "printful" and made.confirm
    with pytest.raises(ValueError, match="unknown print provider"):
        print_provider("gelato", api_key="k")
    with pytest.raises(ValueError, match="needs an API key"):
        print_provider("prodigi")


def test_catalog_fulfilment_entries_fit_each_provider():
    products = load_products().products
    for product in products:
        for provider, entry in product.fulfilment.items():
            assert provider in ("prodigi", "printful"), product.id
            if provider == "printful":
                assert int(entry.sku) > 0, product.id  # a catalog variant id
            else:
                assert entry.sku.startswith("GLOBAL-"), product.id
    assert all("prodigi" in product.fulfilment for product in products)
