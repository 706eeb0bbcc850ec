"""Quality tiers: the catalog offers them with a price each, the order's tier sets its price
(and the Stripe PaymentIntent's amount, on localstripe), its proofs, its engine and its upscaler."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import dagster as dg
import pytest
import requests

import assets
from photogen_pipelines.catalog import load_products
from photogen_pipelines.definitions import build_defs, register_local_order
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.storage.artifacts import CandidatesInfo, MasterInfo, OrderKeys
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.servers import api_server

ALL_ASSETS = [*assets.proof_assets, *assets.print_assets, *assets.order_checks]


def test_the_catalog_prices_each_tier_and_refuses_a_tier_a_product_is_not_offered_in():
    catalog = load_products()
    poster = catalog.get("poster_a3")
    assert [t.id for t in catalog.tiers] == ["fast", "standard", "premium"] and catalog.default_tier == "standard"
    assert catalog.price(poster, None) == catalog.price(poster, "standard") == poster.price_cents == 3500
    assert catalog.price(poster, "fast") < poster.price_cents < catalog.price(poster, "premium")
    with pytest.raises(NotFound) as unknown:
        catalog.tier("platinum")
    assert unknown.value.code == "unknown_tier"
    limited = poster.model_copy(update={"tier_prices": {}})
    with pytest.raises(NotFound):
        catalog.price(limited, "premium")


def test_a_tier_gives_its_proofs_or_fewer_never_more():
    catalog = load_products()
    fast, standard, premium = (catalog.tier(t) for t in ("fast", "standard", "premium"))
    assert (fast.proofs(), standard.proofs(), premium.proofs()) == (2, 4, 6)
    assert fast.proofs(1) == 1 and premium.proofs(6) == 6
    for tier in (fast, standard):
        with pytest.raises(BadInput) as refused:
            tier.proofs(8)
        assert refused.value.code == "too_many_variants" and f"at most {tier.variants}" in str(refused.value)


def test_the_readme_orders_what_its_tier_sells():
    """The README's curl example is billed as its tier and gets the tier's proofs (it asked
    for 2 at the standard price, which buys 4); its words on tiers are the catalog's."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (body,) = re.findall(r'-d "(\{\\"upload_id\\".*?\})"', readme)
    asked = json.loads(body.replace('\\"', '"').replace("$UPLOAD", "upl_x"))
    catalog = load_products()
    tier = catalog.tier(asked.get("tier"))
    assert asked.get("variants", tier.variants) == tier.proofs(asked.get("variants")) == tier.variants
    sold = ", ".join(f"{t.id} {t.variants}" for t in catalog.tiers)
    assert f"proofs each tier gives ({sold}" in " ".join(readme.split())
    assert "too_many_variants" in readme


def test_an_order_in_a_tier_is_charged_its_price_through_stripe(tmp_path, database_url, stripe_base, stripe_client, face_images):
    settings = make_settings(
        tmp_path, database_url, stripe_api_key="sk_test_photogen", stripe_webhook_secret="whsec_t", stripe_api_base=stripe_base
    )
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        tiers = requests.get(f"{url}/v1/tiers", timeout=10).json()
        assert {t["id"]: t["variants"] for t in tiers} == {"fast": 2, "standard": 4, "premium": 6}
        prices = {p["id"]: p["prices"] for p in requests.get(f"{url}/v1/products", timeout=10).json()}
        assert prices["poster_a3"] == {"fast": 2500, "standard": 3500, "premium": 5500}

        upload = requests.post(
            f"{url}/v1/uploads",
            headers=auth,
            data={"consent": "true"},
            files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))},
        )
        upload_id = upload.json()["id"]

        def place(**fields):
            headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
            body = {k: v for k, v in order_body(upload_id, **fields).items() if v is not None}
            return requests.post(f"{url}/v1/orders", headers=headers, json=body, timeout=30)

        fast = place(tier="fast", variants=None)
        assert fast.status_code == 201, fast.text
        order = fast.json()
        assert order["tier"] == "fast" and order["variants"] == 2  # the tier's proofs
        assert order["payment"]["amount_cents"] == 2500
        intent = stripe_client.v1.payment_intents.retrieve(order["payment"]["payment_intent_id"])
        assert (intent.amount, intent.currency) == (2500, "usd")

        default = place(variants=None).json()
        assert default["tier"] == "standard" and default["payment"]["amount_cents"] == 3500 and default["variants"] == 4
        chosen = place(tier="premium", variants=3).json()
        assert chosen["payment"]["amount_cents"] == 5500 and chosen["variants"] == 3  # fewer than the tier's: its price

        unknown = place(tier="platinum")
        assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_tier"

        # a tier's price buys its proofs, never more: 8 proofs at the fast (or standard) price is refused
        intents = len(stripe_client.v1.payment_intents.list(params={"limit": 100}).data)
        for fields in ({"tier": "fast", "variants": 8}, {"tier": "standard", "variants": 8}, {"variants": 5}):
            refused = place(**fields)
            assert refused.status_code == 422 and refused.json()["code"] == "too_many_variants", (fields, refused.text)
            assert "at most" in refused.json()["message"]
        assert len(stripe_client.v1.payment_intents.list(params={"limit": 100}).data) == intents  # nobody was asked to pay
        premium = place(tier="premium", variants=6).json()
        assert (premium["variants"], premium["payment"]["amount_cents"]) == (6, 5500)


def test_a_tier_needing_an_engine_the_shop_does_not_run_is_refused(tmp_path, face_images):
    products = tmp_path / "products.yaml"
    catalog = load_products().model_dump()
    catalog["tiers"].append({"id": "gpu", "name": "GPU", "description": "SDXL", "engine": "replicate", "variants": 2})
    import yaml

    products.write_text(yaml.safe_dump(catalog))
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'orders.db'}", products_path=str(products))
    with api_server(make_app(settings)) as url:
        auth = new_key(settings)
        upload = requests.post(
            f"{url}/v1/uploads",
            headers=auth,
            data={"consent": "true"},
            files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))},
        )
        headers = {**auth, "Idempotency-Key": "k"}
        refused = requests.post(f"{url}/v1/orders", headers=headers, json=order_body(upload.json()["id"], tier="gpu"), timeout=30)
        assert refused.status_code == 422 and refused.json()["code"] == "tier_unavailable"


@pytest.mark.slow
def test_the_tier_picks_the_proofs_and_the_upscale_model_of_a_run(tmp_path, astronaut_png):
    """`fast` on the packaged catalog: two proofs from the embedded engine, metered; the
    tier's upscale model is the one the print master records."""
    products = tmp_path / "products.yaml"
    catalog = load_products().model_dump()
    for tier in catalog["tiers"]:
        if tier["id"] == "fast":
            tier["upscale_model"] = "REALESRGAN_X4PLUSANIME"  # not the default model, so the test can tell
    catalog["products"].append(
        {"id": "print_2x3", "name": "2 x 3", "width_in": 2, "height_in": 3, "price_cents": 900, "tier_prices": {"fast": 500}}
    )
    import yaml

    products.write_text(yaml.safe_dump(catalog))
    defs = build_defs(str(tmp_path / "home"), products_path=str(products), engine_price_per_second=0.5)
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        order = register_local_order(defs, astronaut_png, "ink_etching", "print_2x3", approval="auto", tier="fast")
        assert (order.tier, order.variants, order.amount_cents) == ("fast", 2, 500)
        instance.add_dynamic_partitions("orders", [order.id])
        for selection in (assets.proof_assets, assets.print_assets):
            run = dg.materialize(
                ALL_ASSETS, selection=selection, partition_key=order.id, instance=instance, resources=defs.resources
            )
            assert run.success
    store = defs.resources["storage"].store()
    candidates = OrderKeys(order.id).load(store, CandidatesInfo)
    assert candidates.tier == "fast" and len(candidates.candidates) == 2
    assert candidates.usage.backend == "embedded" and candidates.usage.seconds > 0
    assert candidates.usage.cost_usd == pytest.approx(candidates.usage.seconds * 0.5, rel=0.01)
    master = OrderKeys(order.id).load(store, MasterInfo)
    assert "REALESRGAN_X4PLUSANIME" in master.upscaler
