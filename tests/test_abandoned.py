"""What never became a paid order is let go (issue 28, privacy gaps): a photo no order uses
is deleted after the policy's days, and a checkout nobody paid for is cancelled and its
recipient deleted; on SQLite and PostgreSQL, with real uploads (the embedded face check),
a real local store and the real retention sensor on a Dagster instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import func, select, update

from photogen_pipelines.db.tables import OrderRow, RecipientRow, UploadRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import photo_sets
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.recipients import Address, Recipient
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.orders.uploads import get_upload, take_upload
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.abandoned import delete_unordered_upload, let_go_of_leftovers
from photogen_pipelines.workflows.retention import RetentionPolicy
from resources import ArtifactStorage, OrdersDatabase, StoreConfig
from resources.retention import RetentionSettings
from sensors.retention import order_retention
from tests.dagster_helpers import local_instance
from tests.invariants import LEFTOVERS, LeftoverRecords, check_shop

NOW = datetime.now(UTC)
POLICY = RetentionPolicy(unordered_upload_days=7, abandoned_checkout_days=14)
S = OrderState


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def book(orders_db):
    return SqlOrderBook(orders_db)


def _upload(orders_db, store, analyzer, image, days_old: float):
    upload = take_upload(orders_db, store, analyzer, png_bytes(image), consent=True)
    with orders_db.session() as session:
        session.execute(update(UploadRow).where(UploadRow.id == upload.id).values(created_at=NOW - timedelta(days=days_old)))
    return upload


def _order(book, orders_db, order_id, upload, state_path, days_old: float, recipient: bool = False) -> None:
    order = Order(id=order_id, style_id="ink_etching", product_id="poster_a3", upload_key=upload.storage_key, upload_id=upload.id)
    book.add(order, recipient=_recipient() if recipient else None)
    for state in state_path:
        book.transition(order_id, state, reason="test")
    with orders_db.session() as session:
        session.execute(update(OrderRow).where(OrderRow.id == order_id).values(created_at=NOW - timedelta(days=days_old)))


def _recipient() -> Recipient:
    address = Address(line1="1 Test Street", city="Testville", postal_code="12345", country_code="GB")
    return Recipient(name="Ada Example", email="ada@example.com", address=address)


@pytest.fixture
def world(book, orders_db, store, analyzer, face_images):
    """Uploads old and new, used and not, and checkouts paid and not, old and new."""
    astronaut, other = face_images["astronaut"], next(v for k, v in face_images.items() if k != "astronaut")
    uploads = {
        "old_unused": _upload(orders_db, store, analyzer, astronaut, days_old=8),
        "new_unused": _upload(orders_db, store, analyzer, astronaut, days_old=6),
        "old_ordered": _upload(orders_db, store, analyzer, astronaut, days_old=30),
        "old_in_a_set": _upload(orders_db, store, analyzer, other, days_old=30),
        "old_abandoned": _upload(orders_db, store, analyzer, astronaut, days_old=20),
    }
    _order(book, orders_db, "ord_paid", uploads["old_ordered"], [S.PAID], days_old=30, recipient=True)
    with orders_db.session() as session:
        photo_sets.record_in(session, "ord_paid", [uploads["old_ordered"], uploads["old_in_a_set"]])
    _order(book, orders_db, "ord_abandoned", uploads["old_abandoned"], [], days_old=15, recipient=True)
    _order(book, orders_db, "ord_still_open", uploads["old_abandoned"], [], days_old=13, recipient=True)
    return uploads


def _upload_ids(orders_db) -> set[str]:
    with orders_db.session() as session:
        return set(session.scalars(select(UploadRow.id)))


def _recipients(orders_db) -> set[str]:
    with orders_db.session() as session:
        return set(session.scalars(select(RecipientRow.order_id)))


def test_an_unordered_photo_past_its_days_goes_with_its_file_and_everything_used_stays(book, orders_db, store, world):
    result = let_go_of_leftovers(book, store, NOW, POLICY)

    assert result.uploads == [world["old_unused"].id]
    assert _upload_ids(orders_db) == {u.id for name, u in world.items() if name != "old_unused"}
    assert not store.exists(world["old_unused"].storage_key)
    for name in ("new_unused", "old_ordered", "old_in_a_set", "old_abandoned"):
        assert store.exists(world[name].storage_key), name
    with pytest.raises(NotFound) as refused:  # an order placed with it now: the API's clean 404
        get_upload(orders_db, world["old_unused"].id)
    assert refused.value.code == "upload_not_found"
    assert let_go_of_leftovers(book, store, NOW, POLICY).uploads == []  # a second pass finds nothing more


def test_a_checkout_unpaid_past_its_days_is_cancelled_and_its_recipient_deleted(book, orders_db, store, world):
    result = let_go_of_leftovers(book, store, NOW, POLICY)

    assert result.checkouts == ["ord_abandoned"]
    abandoned = book.get("ord_abandoned")
    assert abandoned.state == S.CANCELLED and "checkout abandoned" in abandoned.reason
    assert book.get("ord_still_open").state == S.AWAITING_PAYMENT
    assert book.get("ord_paid").state == S.PAID
    assert _recipients(orders_db) == {"ord_paid", "ord_still_open"}


def test_a_payment_that_came_first_wins_over_the_abandonment(book, orders_db, store, world):
    book.transition("ord_abandoned", S.PAID, reason="paid at the last moment")

    result = let_go_of_leftovers(book, store, NOW, POLICY)

    assert result.checkouts == []
    assert book.get("ord_abandoned").state == S.PAID
    assert "ord_abandoned" in _recipients(orders_db)


def test_an_upload_an_order_took_meanwhile_is_not_deleted(book, orders_db, store, world):
    late = world["old_unused"]
    _order(book, orders_db, "ord_late", late, [S.PAID], days_old=0)  # placed between the query and the delete

    assert not delete_unordered_upload(orders_db, store, late.id)
    assert late.id in _upload_ids(orders_db) and store.exists(late.storage_key)


def test_the_retention_sensor_lets_go_of_leftovers_on_a_real_instance(tmp_path, orders_db, store, world, database_url):
    settings = RetentionSettings(unordered_upload_days=7, abandoned_checkout_days=14)
    with local_instance(tmp_path / "dagster") as instance:
        resources = {
            "orders": OrdersDatabase(url=database_url),
            "storage": ArtifactStorage(settings=StoreConfig(root=str(store.root))),
            "retention": settings,
        }
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = order_retention(context)

    assert "1 unordered upload(s) deleted, 1 abandoned checkout(s) cancelled" in result.skip_reason.skip_message
    assert world["old_unused"].id not in _upload_ids(orders_db)
    assert SqlOrderBook(orders_db).get("ord_abandoned").state == S.CANCELLED
    with orders_db.session() as session:
        assert session.scalar(select(func.count()).select_from(RecipientRow).where(RecipientRow.order_id == "ord_abandoned")) == 0


def test_the_policy_refuses_days_below_one():
    with pytest.raises(ValueError, match="unordered_upload_days"):
        RetentionPolicy(unordered_upload_days=0)


def test_the_shops_invariant_sees_leftovers_kept_and_holds_once_they_are_let_go(book, orders_db, store, world):
    before = check_shop([], pipeline_ran=False, leftovers=LeftoverRecords.read(orders_db), policy=POLICY, now=NOW)
    assert {(v.invariant, v.subject) for v in before.violations} == {
        (LEFTOVERS, world["old_unused"].id),
        (LEFTOVERS, "ord_abandoned"),
    }

    let_go_of_leftovers(book, store, NOW, POLICY)

    after = check_shop([], pipeline_ran=False, leftovers=LeftoverRecords.read(orders_db), policy=POLICY, now=NOW)
    assert after.holds and after.checked[LEFTOVERS] == 4 + 1  # four uploads left, one unpaid order still in its days
