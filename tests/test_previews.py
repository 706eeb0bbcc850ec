"""Previews before payment (products.yaml `previews:`): a few free a day per customer, taken
atomically; shown small and watermarked until paid; unlocked by the payment (credits taken
with the approval, once); cancelled, with their pictures deleted, when nobody pays in time.
On SQLite and PostgreSQL, over HTTP, and through a real Dagster instance."""

from __future__ import annotations

import io
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data
from sqlalchemy import select, update

import assets
from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import CreditEntryRow, OrderEventRow, WebhookEventRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.errors import IllegalTransition, LimitReached
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import deliverables, lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.deliverables import Deliverable, Purpose
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.orders.uploads import take_upload
from photogen_pipelines.payments.stripe_payments import apply_stripe_event
from photogen_pipelines.storage.artifacts import OrderKeys, ProofScore, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows import previews
from photogen_pipelines.workflows.approvals import ApprovalPolicy, run_deadlines
from photogen_pipelines.workflows.intake import OrderRequest, PlacementRequest, Terms, place_order
from resources import ArtifactStorage, CatalogResource, OrdersDatabase, StoreConfig
from resources.fulfilment import ApprovalDeadline
from sensors.approvals import approval_deadlines
from sensors.orders import paid_orders
from tests.api_helpers import jpeg_bytes, make_app, make_settings
from tests.dagster_helpers import local_instance

S = OrderState
HOUR = timedelta(hours=1)
STYLES, PRODUCTS = load_styles(), load_products()
POLICY = PRODUCTS.previews  # enabled, 3 free a day, 384 px, 48 h
FAST_CREDITS = PRODUCTS.credits_price(PRODUCTS.get("poster_a3"), "fast")  # 6 of the free plan's 10 welcome credits
WELCOME = PRODUCTS.plan("free").welcome_credits
STRIPE_KEY = "sk_test_photogen"  # the key the `stripe_client` fixture (conftest.py) uses too
PICTURES = ("selfie/selfie.png", "candidates/round_0/variant_0.png", "candidates/round_0/variant_1.png")


def _next_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _proof_png(variant: int) -> bytes:
    """A proof as the pipeline stores it: a PNG at proof size (1024 px on the long side)."""
    picture = Image.fromarray(data.astronaut()).resize((683, 1024), Image.Resampling.LANCZOS)
    return png_bytes(np.asarray(picture.rotate(180) if variant else picture))


def _proofs_ready(book: SqlOrderBook, store: LocalArtifactStore, order_id: str, variants=(0, 1)) -> dict[int, bytes]:
    """What the proof run leaves (proofs that passed the gate, their validation, the
    pictures it worked from), and the order moved to proofs_ready as the run moves it."""
    keys = OrderKeys(order_id)
    lifecycle.start_generation(book, order_id)
    proofs = {v: _proof_png(v) for v in variants}
    for v, png in proofs.items():
        store.put_bytes(keys.proof(v), png)
    for name in PICTURES:
        store.put_bytes(f"{keys.prefix}/{name}", png_bytes(data.astronaut()[:64, :64]))
    scores = [ProofScore(variant=v, round=0, strength=0.5, similarity=0.9 - v / 10, faces=1, passed=True) for v in variants]
    keys.save(
        store,
        Validation(
            order_id=order_id,
            threshold=0.4,
            encoder="sface",
            rounds=1,
            proofs={v: keys.proof(v) for v in variants},
            best_variant=variants[0],
            scores=scores,
            rejected=False,
        ),
    )
    assert lifecycle.proofs_validated(book, store, order_id, variants[0]).state == S.PROOFS_READY
    return proofs


def _request(upload, key_id, ref, *, payment="credits", preview=True, tier="fast") -> PlacementRequest:
    asked = OrderRequest(style_id="ink_etching", product_id="poster_a3", tier=tier)
    terms = Terms(payment=payment, customer_ref=ref, preview=preview)
    return PlacementRequest(asked, upload, key_id, str(uuid.uuid4()), terms=terms)


def _spends(database: Database, order_id: str) -> list[CreditEntryRow]:
    with database.session() as session:
        query = select(CreditEntryRow).where(CreditEntryRow.order_id == order_id, CreditEntryRow.kind == EntryKind.SPEND)
        return list(session.scalars(query).all())


def _balance(database: Database, key_id: str | None, ref: str) -> int:
    with database.session() as session:
        return wallet.balance(session, customers.get(session, key_id, ref).id)


def _in_parallel(count: int, call) -> list:
    """`call(i)` on `count` threads released at once: each result, or the exception it raised."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # the refusals are what is counted
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _size(jpeg: bytes) -> tuple[int, int]:
    shown = Image.open(io.BytesIO(jpeg))
    assert shown.format == "JPEG"
    return shown.size


def _marked(jpeg: bytes, proof: bytes) -> float:
    """The share of the preview's pixels far from the clean proof brought to its size: the mark."""
    shown = Image.open(io.BytesIO(jpeg)).convert("RGB")
    clean = Image.open(io.BytesIO(proof)).convert("RGB").resize(shown.size, Image.Resampling.LANCZOS)
    return float((np.abs(np.asarray(shown, np.int16) - np.asarray(clean, np.int16)).max(axis=2) > 40).mean())


# -- the core: the orders database and a local store ------------------------------------


@pytest.fixture
def core(orders_db, tmp_path, analyzer, face_images):
    """The orders database, a local store, a storefront key and a checked upload of it."""
    store = LocalArtifactStore(tmp_path / "artifacts")
    key, _ = create_api_key(orders_db, "shop")
    upload = take_upload(orders_db, store, analyzer, jpeg_bytes(face_images["obama"]), key.id, consent=True)
    return SimpleNamespace(database=orders_db, book=SqlOrderBook(orders_db), store=store, key_id=key.id, upload=upload)


def test_parallel_previews_take_exactly_the_days_free_allowance(core):
    allowed = POLICY.free_per_day
    book = core.book

    def place(_i: int):
        return place_order(book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann")).order

    before = datetime.now(UTC)
    results = _in_parallel(allowed + 5, place)
    placed = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if not isinstance(r, Order)]
    assert len(placed) == allowed and len(refused) == 5, results
    assert all(isinstance(r, LimitReached) and r.code == "free_previews_exhausted" for r in refused), refused
    for refusal in refused:
        resets_at = datetime.fromisoformat(refusal.details["resets_at"])
        assert resets_at == _next_midnight(before) and resets_at.tzinfo is not None
        assert 0 < refusal.details["retry_after"] <= 24 * 3600
        assert abs(refusal.details["retry_after"] - (resets_at - before).total_seconds()) < 60
    # each made before it was paid: cleared to generate, nothing charged, counted 1..N
    orders = [book.get(o.id) for o in placed]
    assert all(o.state == S.PAID and o.preview and o.credits_paid == 0 and not o.settled_payment for o in orders)
    assert sorted(o.reason.split(" of ")[0] for o in orders) == [f"free preview {n}" for n in range(1, allowed + 1)]
    assert all(_spends(core.database, o.id) == [] for o in orders)
    assert _balance(core.database, core.key_id, "ann") == WELCOME

    # another customer, and the same reference at another shop (another customer), are unaffected
    assert place_order(book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "bob")).order.preview
    other_key, _ = create_api_key(core.database, "another shop")
    assert place_order(book, STYLES, PRODUCTS, None, _request(core.upload, other_key.id, "ann")).order.preview
    # ann may still order without a preview: paid in credits at once
    paid = place_order(book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann", preview=False)).order
    assert paid.state == S.PAID and paid.credits_paid == FAST_CREDITS and not paid.preview
    with pytest.raises(LimitReached):
        place_order(book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann"))


def test_two_approvals_at_once_charge_a_credit_preview_once(core):
    order = place_order(core.book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann")).order
    _proofs_ready(core.book, core.store, order.id)

    results = _in_parallel(
        2, lambda i: previews.approve(core.book, core.store, PRODUCTS, order.id, i, reason=f"proof {i} approved")
    )
    approved = [r for r in results if isinstance(r, Order)]
    assert len(approved) == 1 and isinstance(next(r for r in results if r not in approved), IllegalTransition), results
    after = core.book.get(order.id)
    assert after.state == S.APPROVED and after.approved_proof == approved[0].approved_proof
    assert after.credits_paid == FAST_CREDITS and after.settled_payment
    assert f"paid with {FAST_CREDITS} credits" in after.reason
    (spend,) = _spends(core.database, order.id)
    assert spend.amount == -FAST_CREDITS and spend.idempotency_key == f"spend:{order.id}"
    assert _balance(core.database, core.key_id, "ann") == WELCOME - FAST_CREDITS
    # unlocked, not paid twice over: no paid move after the proofs
    assert [e.to_state for e in after.events].count(S.PAID) == 1


def _paid_by_card(book: SqlOrderBook, order: Order) -> None:
    """Stripe's payment_intent.succeeded for the order's intent, as the webhook applies it."""
    intent = {
        "object": "payment_intent",
        "id": order.payment_intent_id,
        "amount": order.amount_cents,
        "amount_received": order.amount_cents,
        "currency": order.currency,
        "metadata": {"order_id": order.id},
    }
    event = {"id": "evt_" + uuid.uuid4().hex[:12], "type": "payment_intent.succeeded", "created": int(time.time())}
    apply_stripe_event(book, {**event, "data": {"object": intent}}, "webhook")


def _card_preview(core) -> Order:
    """A preview to be paid by card, as intake records one with its PaymentIntent attached."""
    order = Order(
        style_id="ink_etching",
        product_id="poster_a3",
        variants=2,
        tier="fast",
        upload_id=core.upload.id,
        upload_key=core.upload.storage_key,
        payments="stripe",
        amount_cents=PRODUCTS.price(PRODUCTS.get("poster_a3"), "fast"),
        api_key_id=core.key_id,
        customer_ref="cat",
        preview=True,
        payment_intent_id="pi_" + uuid.uuid4().hex[:16],
    )
    lifecycle.preview_started(order, 1, POLICY.free_per_day)
    return core.book.add(order)


def test_an_unpaid_preview_expires_with_its_pictures_and_a_paid_one_meets_the_approval_deadline(core):
    book, store = core.book, core.store
    unpaid = place_order(book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann")).order
    _proofs_ready(book, store, unpaid.id)
    now = datetime.now(UTC)
    # without the preview policy an unpaid preview waits: it is never approved unpaid
    waited = run_deadlines(book, store, ApprovalPolicy(deadline=HOUR, reminder_before=timedelta(0)), now + 49 * HOUR)
    assert (waited.approved, waited.cancelled, waited.expired) == ([], [], [])
    assert book.get(unpaid.id).state == S.PROOFS_READY

    paid = _card_preview(core)
    _proofs_ready(book, store, paid.id)
    _paid_by_card(book, book.get(paid.id))
    assert book.get(paid.id).state == S.PROOFS_READY and book.get(paid.id).paid_cents == paid.amount_cents

    policy = ApprovalPolicy(deadline=72 * HOUR, reminder_before=12 * HOUR, action="auto_approve")
    assert run_deadlines(book, store, policy, now + 30 * HOUR, previews=POLICY).reminded == []
    # reminded of the expiry 12 h before it, as of an approval: the storefront hears when and what happens
    reminded = run_deadlines(book, store, policy, now + 37 * HOUR, previews=POLICY)
    assert reminded.reminded == [unpaid.id] and reminded.expired == []
    with core.database.session() as session:
        events = session.scalars(select(WebhookEventRow).where(WebhookEventRow.order_id == unpaid.id)).all()
        (reminder,) = [e for e in events if e.type == "order.approval_reminder"]
        approval = reminder.payload["data"]["approval"]
    assert approval["action_at_deadline"] == "cancel"
    since = max(e.at for e in book.get(unpaid.id).events if e.to_state == S.PROOFS_READY)
    assert abs(datetime.fromisoformat(approval["deadline"]) - (since + 48 * HOUR)) < timedelta(seconds=1)

    expired = run_deadlines(book, store, policy, now + 49 * HOUR, previews=POLICY)
    assert expired.expired == [unpaid.id] and expired.approved == [] and expired.cancelled == []
    gone = book.get(unpaid.id)
    assert gone.state == S.CANCELLED and "not paid within 48 h" in gone.reason
    assert not gone.refund_owed and gone.credits_paid == 0 and _spends(core.database, unpaid.id) == []
    prefix = OrderKeys(unpaid.id).prefix
    left = sorted(k.removeprefix(prefix + "/") for k in store.list(prefix + "/"))
    # the pictures go now; the documents stay for the ledger (retention takes them later), the upload for the next order
    assert left == ["proofs/validation.json"], left
    assert sorted(expired.retired[unpaid.id]) == sorted(
        [f"{prefix}/{p}" for p in (*PICTURES, "proofs/proof_0.png", "proofs/proof_1.png")]
    )
    assert store.exists(core.upload.storage_key)
    # the paid preview is left to the shop's approval deadline, with its files
    assert book.get(paid.id).state == S.PROOFS_READY and store.exists(OrderKeys(paid.id).proof(1))
    assert run_deadlines(book, store, policy, now + 73 * HOUR, previews=POLICY).approved == [paid.id]
    assert book.get(paid.id).state == S.APPROVED


def test_the_deadline_sensor_expires_an_unpaid_preview(core):
    order = place_order(core.book, STYLES, PRODUCTS, None, _request(core.upload, core.key_id, "ann")).order
    _proofs_ready(core.book, core.store, order.id)
    with core.database.session() as session:  # its proofs came 49 hours ago
        for event in core.book.get(order.id).events:
            session.execute(update(OrderEventRow).where(OrderEventRow.id == event.id).values(at=event.at - 49 * HOUR))
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "orders": OrdersDatabase(url=core.database.url),
            "storage": ArtifactStorage(settings=StoreConfig(root=str(core.store.root))),
            "approval_deadline": ApprovalDeadline(deadline_hours=72, reminder_hours=0),
            "catalog": CatalogResource(),
        },
    )
    assert "1 unpaid preview(s) expired" in approval_deadlines(context).skip_message
    assert core.book.get(order.id).state == S.CANCELLED
    assert not core.store.exists(OrderKeys(order.id).proof(0))


# -- over HTTP: the storefront API on the same database and store -----------------------


@pytest.fixture
def shop(tmp_path, database_url, face_images):
    """The API (payments off) with a storefront key, a customer's upload, and the book."""
    settings = make_settings(tmp_path, database_url)
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield _shop(settings, client, face_images)


def _shop(settings, client, face_images) -> SimpleNamespace:
    database = Database(settings.resolved_database_url)
    key, secret = create_api_key(database, "shop")
    auth = {"Authorization": f"Bearer {secret}"}
    upload = client.post(
        "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("me.jpg", jpeg_bytes(face_images["obama"]))}
    )
    assert upload.status_code == 201, upload.text
    services = client.app.state.services
    return SimpleNamespace(
        client=client,
        auth=auth,
        key_id=key.id,
        upload_id=upload.json()["id"],
        database=database,
        book=SqlOrderBook(database),
        store=services.store,
        services=services,
    )


def _place(shop, ref: str, **fields):
    body = {"upload_id": shop.upload_id, "style_id": "ink_etching", "product_id": "poster_a3", "tier": "fast"}
    body |= {"customer_ref": ref, "preview": True, "payment": "credits", **fields}
    return shop.client.post("/v1/orders", headers={**shop.auth, "Idempotency-Key": str(uuid.uuid4())}, json=body)


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"] and "Traceback" not in response.text
    return body


def _approve(shop, order_id: str, proof: int):
    return shop.client.post(f"/v1/orders/{order_id}/approve", headers=shop.auth, json={"proof": proof})


def _shown(shop, order_id: str) -> dict[int, dict]:
    seen = shop.client.get(f"/v1/orders/{order_id}", headers=shop.auth)
    assert seen.status_code == 200, seen.text
    return {p["variant"]: p for p in seen.json()["proofs"]}


def _fetch(shop, url: str) -> bytes:
    response = shop.client.get(url)
    assert response.status_code == 200, response.text
    return response.content


def test_the_api_answers_429_with_retry_after_once_the_days_previews_are_spent(shop):
    for _ in range(POLICY.free_per_day):
        placed = _place(shop, "ann")
        assert placed.status_code == 201, placed.text
        assert placed.json()["state"] == "paid" and shop.book.get(placed.json()["id"]).preview
    before = datetime.now(UTC)
    refused = _place(shop, "ann")
    body = _error(refused, 429, "free_previews_exhausted")
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == body["details"]["retry_after"] and 0 < retry_after <= 24 * 3600
    assert datetime.fromisoformat(body["details"]["resets_at"]) == _next_midnight(before)
    assert _place(shop, "bob").status_code == 201  # another customer's allowance
    assert _place(shop, "ann", preview=False).status_code == 201  # an order paid at once still goes


def test_an_unpaid_preview_is_small_and_marked_and_grows_to_proof_size_once_unlocked(shop):
    placed = _place(shop, "ann")
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    proofs = _proofs_ready(shop.book, shop.store, order_id)

    shown = _shown(shop, order_id)
    assert all(p["preview"] and p["url"] for p in shown.values())
    for variant, proof in proofs.items():
        small = _fetch(shop, shown[variant]["url"])
        assert max(_size(small)) == POLICY.long_side  # 256 x 384 of a 683 x 1024 proof
        assert _marked(small, proof) > 0.04  # visibly marked, not the proof brought down
    # the clean proof is not served, whatever link is signed for it
    clean_link = shop.services.signer.file_url("http://testserver", OrderKeys(order_id).proof(0), 60)
    _error(shop.client.get(clean_link), 410, "file_withdrawn")
    # the bundle holds only the small previews
    bundle = shop.client.get(f"/v1/orders/{order_id}/bundle.zip", headers=shop.auth)
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["order.json", "previews/proof_0.jpg", "previews/proof_1.jpg"]
        assert all(max(_size(archive.read(n))) == POLICY.long_side for n in names[1:])
    # the free look is not a download the cancellation fee counts
    assert shop.book.get(order_id).proofs_downloaded_at is None

    approved = _approve(shop, order_id, 1)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["approved_proof"] == 1
    assert _balance(shop.database, shop.key_id, "ann") == WELCOME - FAST_CREDITS
    shown = _shown(shop, order_id)
    assert not shown[1]["preview"] and _fetch(shop, shown[1]["url"]) == proofs[1]  # the approved proof, clean
    grown = _fetch(shop, shown[0]["url"])  # the other one: a preview at proof size now
    assert shown[0]["preview"] and _size(grown) == (683, 1024) and _marked(grown, proofs[0]) > 0.04


def test_too_few_credits_leave_a_preview_unapproved_and_uncharged(shop):
    first, second = (_place(shop, "ann").json()["id"] for _ in range(2))
    for order_id in (first, second):
        _proofs_ready(shop.book, shop.store, order_id)
    assert _approve(shop, first, 0).status_code == 200
    body = _error(_approve(shop, second, 0), 402, "insufficient_credits")
    assert body["details"] == {"balance": WELCOME - FAST_CREDITS, "needed": FAST_CREDITS}
    after = shop.book.get(second)
    assert after.state == S.PROOFS_READY and after.credits_paid == 0 and _spends(shop.database, second) == []
    assert _balance(shop.database, shop.key_id, "ann") == WELCOME - FAST_CREDITS
    assert max(_size(_fetch(shop, _shown(shop, second)[0]["url"]))) == POLICY.long_side  # still small
    _error(_approve(shop, second, 5), 422, "unknown_proof")  # a proof it does not have: nothing moves either
    with shop.database.session() as session:
        customer = customers.get(session, shop.key_id, "ann", lock=True)
        wallet.post(session, customer, EntryKind.GRANT, 10, key="top-up", reason="a test top-up")
    assert _approve(shop, second, 0).json()["state"] == "approved"
    assert len(_spends(shop.database, second)) == 1


@pytest.fixture
def card_shop(tmp_path, database_url, face_images, stripe_base, stripe_client):
    """The API with payments on (localstripe), a storefront key and an upload."""
    settings = make_settings(tmp_path, database_url, stripe_api_key=STRIPE_KEY, stripe_api_base=stripe_base)
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield _shop(settings, client, face_images)


def test_a_card_preview_is_approved_only_after_its_payment(card_shop, stripe_base, stripe_client):
    shop = card_shop
    placed = _place(shop, "cat", payment="card")
    assert placed.status_code == 201, placed.text
    order = placed.json()
    intent_id = order["payment"]["payment_intent_id"]
    assert order["state"] == "paid" and order["payment"]["paid_cents"] == 0 and intent_id
    proofs = _proofs_ready(shop.book, shop.store, order["id"])

    refused = _error(_approve(shop, order["id"], 0), 402, "payment_required")
    assert intent_id in refused["message"] and refused["details"]["payment_intent_id"] == intent_id
    assert shop.book.get(order["id"]).state == S.PROOFS_READY
    assert max(_size(_fetch(shop, _shown(shop, order["id"])[0]["url"]))) == POLICY.long_side

    # the customer pays with the client secret (Stripe.js), and Stripe's event reaches the order
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    method = stripe_client.v1.payment_methods.create(params={"type": "card", "card": card})
    stripe_client.v1.payment_intents.update(intent_id, params={"payment_method": method.id})
    assert stripe_client.v1.payment_intents.confirm(intent_id).status == "succeeded"
    intent = requests.get(f"{stripe_base}/v1/payment_intents/{intent_id}", auth=(STRIPE_KEY, ""), timeout=10).json()
    event = {"id": "evt_" + uuid.uuid4().hex[:12], "type": "payment_intent.succeeded", "created": int(time.time())}
    apply_stripe_event(shop.book, {**event, "data": {"object": intent}}, "webhook")
    paid = shop.book.get(order["id"])
    assert paid.state == S.PROOFS_READY and paid.paid_cents == order["payment"]["amount_cents"]

    assert _size(_fetch(shop, _shown(shop, order["id"])[0]["url"])) == (683, 1024)  # proof size once paid
    approved = _approve(shop, order["id"], 0)
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    assert _fetch(shop, _shown(shop, order["id"])[0]["url"]) == proofs[0]


# -- end to end: a preview's proof run on a real Dagster instance -----------------------


def test_a_preview_gets_its_proofs_through_dagster_before_it_is_paid(tmp_path, monkeypatch, analyzer, astronaut_png):
    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", f"sqlite:///{tmp_path / 'orders.db'}")
    defs = build_defs(str(tmp_path / "home"))
    orders, store = defs.resources["orders"], defs.resources["storage"].store()
    orders.database().migrate()
    book = orders.book()
    upload = take_upload(orders.database(), store, analyzer, astronaut_png, None, "ann", consent=True)
    order = place_order(book, STYLES, PRODUCTS, None, _request(upload, None, "ann")).order
    assert order.state == S.PAID and not order.settled_payment

    with local_instance(tmp_path / "dagster") as instance:
        # the paid_orders sensor launches it like any order cleared to generate
        tick = paid_orders(dg.build_sensor_context(instance=instance, resources={"orders": orders}))
        assert [r.partition_key for r in tick.run_requests] == [order.id]
        instance.add_dynamic_partitions("orders", [order.id])
        result = dg.materialize(
            [*assets.proof_assets, *assets.order_checks], partition_key=order.id, instance=instance, resources=defs.resources
        )
    assert result.success
    made = book.get(order.id)
    assert made.state == S.PROOFS_READY and made.credits_paid == 0 and made.approved_proof is None
    validation = OrderKeys(order.id).load(store, Validation)
    assert validation.proofs
    variant = sorted(validation.proofs)[0]
    proof = store.get_bytes(OrderKeys(order.id).proof(variant))
    small = deliverables.render_preview(
        store, Deliverable(order.id, Purpose.PREVIEW, variant), deliverables.preview_long_side(made, POLICY)
    )
    assert max(_size(small)) == POLICY.long_side < max(Image.open(io.BytesIO(proof)).size)

    unlocked = previews.approve(book, store, PRODUCTS, order.id, variant, reason=f"proof {variant} approved")
    assert unlocked.state == S.APPROVED and unlocked.credits_paid == FAST_CREDITS
    assert _balance(orders.database(), None, "ann") == WELCOME - FAST_CREDITS
