"""Merchant catalogs (workflows/merchant_catalogs.py): a shop's CSV or Parquet catalog in the
artifact store becomes one fashion shoot per SKU, and again only for a SKU whose photo, name,
category, poses or model changed. Real parts: the orders database on SQLite and PostgreSQL,
a store on disk, garment photos drawn in three colours, the shop's model saved as an identity
from a real face upload."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from sqlalchemy import func, select

from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.catalog.kinds import load_kinds
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import JobRow
from photogen_pipelines.errors import BadInput
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs.states import JobState, ShotState
from photogen_pipelines.orders.identities import save_identity
from photogen_pipelines.orders.uploads import take_upload
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.jobs import Placement
from photogen_pipelines.workflows.merchant_catalogs import (
    catalog_ids,
    catalog_template_csv,
    fingerprint,
    place_catalog_shoots,
    read_catalog,
    stale_skus,
)
from tests.product_photos import NAVY, RUST, garment_photo

GREEN = (40, 120, 70)
FASHION_POSES = load_kinds().get("fashion_shoot").poses
ROWS = [
    {"sku": "tee-navy", "name": "Navy tee", "category": "t-shirts", "product_photo": "photos/tee-navy.png", "poses": ""},
    {"sku": "tee-rust", "name": "Rust tee", "category": "t-shirts", "product_photo": "photos/tee-rust.png", "poses": ""},
]


def _garment_png(colour: tuple) -> bytes:
    return png_bytes(garment_photo(colour)[0])


@pytest.fixture(scope="module")
def garments() -> dict[str, bytes]:
    return {"navy": _garment_png(NAVY), "rust": _garment_png(RUST), "green": _garment_png(GREEN)}


def _write_catalog(store, catalog_id: str, rows: list[dict], *, model: str | None = None, fmt: str = "csv") -> None:
    table = pd.DataFrame(rows)
    buffer = io.BytesIO()
    if fmt == "csv":
        table.to_csv(buffer, index=False)
    else:
        table.to_parquet(buffer, index=False)
    store.put_bytes(f"catalogs/{catalog_id}/catalog.{fmt}", buffer.getvalue())
    if model is not None:
        store.put_bytes(f"catalogs/{catalog_id}/model.json", json.dumps({"identity_id": model}).encode())


def _store_with_photos(tmp_path, garments, catalog_id: str = "spring") -> LocalArtifactStore:
    store = LocalArtifactStore(tmp_path / "store")
    store.put_bytes(f"catalogs/{catalog_id}/photos/tee-navy.png", garments["navy"])
    store.put_bytes(f"catalogs/{catalog_id}/photos/tee-rust.png", garments["rust"])
    return store


def _shop_model(database, store, analyzer, face) -> str:
    """A saved identity of the shop's model (the shop's own: no API key), from a consented upload."""
    upload = take_upload(database, store, analyzer, png_bytes(face), consent=True)
    return save_identity(database, store, analyzer, None, [upload.id], consent=True, label="shop model").id


@pytest.fixture
def shop(database_url, tmp_path, analyzer, face_images, garments):
    database = open_database(database_url)
    database.migrate()
    store = _store_with_photos(tmp_path, garments)
    model = _shop_model(database, store, analyzer, face_images["astronaut"])
    place = Placement(
        database=database,
        store=store,
        faces=analyzer,
        kinds=load_kinds(),
        styles=load_styles(),
        products=load_products(),
        engine="embedded",
    )
    return place, model


def _jobs_of(database, catalog_id: str) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(JobRow).where(JobRow.catalog == catalog_id))


def test_a_catalog_becomes_a_shoot_per_sku_and_a_changed_photo_one_more_shoot(shop, garments):
    place, model = shop
    store, database = place.store, place.database
    _write_catalog(store, "spring", ROWS, model=model)

    check = stale_skus(database, store, "spring")
    assert [(s.sku, s.reasons, s.previous_job_id) for s in check.stale] == [
        ("tee-navy", ("new SKU",), None),
        ("tee-rust", ("new SKU",), None),
    ]
    assert check.removed == []
    jobs = place_catalog_shoots(place, "spring", check.stale)

    assert [(j.kind, j.catalog, j.sku, j.state, j.payments, j.api_key_id) for j in jobs] == [
        ("fashion_shoot", "spring", "tee-navy", JobState.PAID, "off", None),
        ("fashion_shoot", "spring", "tee-rust", JobState.PAID, "off", None),
    ]
    for job, stale in zip(jobs, check.stale, strict=True):
        assert [s.name for s in job.shots] == FASHION_POSES and {s.state for s in job.shots} == {ShotState.PENDING}
        assert job.inputs["fingerprint"] == stale.fingerprint and job.inputs["identity_id"] == model
        assert job.inputs["catalog_photo"] == f"catalogs/spring/photos/{job.sku}.png"
        # the job shoots its own copy of the photo: the merchant may overwrite theirs meanwhile
        assert store.get_bytes(job.inputs["product_key"]) == store.get_bytes(job.inputs["catalog_photo"])
        assert job.inputs["product_key"] == f"jobs/{job.id}/product.png"
    assert stale_skus(database, store, "spring").stale == []

    # the merchant points the navy tee at a new photo (another colour): only it is shot again
    store.put_bytes("catalogs/spring/photos/tee-navy-v2.png", garments["green"])
    edited = [dict(ROWS[0], product_photo="photos/tee-navy-v2.png"), ROWS[1]]
    _write_catalog(store, "spring", edited)
    check = stale_skus(database, store, "spring")
    assert [(s.sku, s.reason, s.previous_job_id) for s in check.stale] == [("tee-navy", "photo changed", jobs[0].id)]
    again = place_catalog_shoots(place, "spring", check.stale)
    assert len(again) == 1 and again[0].id not in {j.id for j in jobs}
    assert again[0].inputs["catalog_photo"] == "catalogs/spring/photos/tee-navy-v2.png"

    # the same tick repeated (the sensor ran twice before it saw the new job): no second job
    repeated = place_catalog_shoots(place, "spring", check.stale)
    assert [j.id for j in repeated] == [again[0].id]
    assert _jobs_of(database, "spring") == 3
    assert stale_skus(database, store, "spring").stale == []


def test_each_change_is_named_and_a_removed_sku_is_reported_apart(shop, garments, analyzer, face_images):
    place, model = shop
    store, database = place.store, place.database
    _write_catalog(store, "spring", ROWS, model=model)
    placed = place_catalog_shoots(place, "spring", stale_skus(database, store, "spring").stale)

    def reasons() -> dict[str, tuple[str, ...]]:
        return {s.sku: s.reasons for s in stale_skus(database, store, "spring").stale}

    store.put_bytes("catalogs/spring/photos/tee-rust.png", garments["green"])  # the same key, new bytes
    assert reasons() == {"tee-rust": ("photo changed",)}
    store.put_bytes("catalogs/spring/photos/tee-rust.png", garments["rust"])  # back as it was
    assert reasons() == {}

    renamed = [dict(ROWS[0], name="Navy tee, organic"), dict(ROWS[1], poses="front;back;close_up")]
    _write_catalog(store, "spring", renamed)
    assert reasons() == {"tee-navy": ("name or category changed",), "tee-rust": ("poses changed",)}

    other = _shop_model(database, store, analyzer, face_images["obama"])
    _write_catalog(store, "spring", ROWS, model=other)  # a new model for the whole catalog
    assert reasons() == {"tee-navy": ("model changed",), "tee-rust": ("model changed",)}

    # the rust tee leaves the catalog: not stale, its job stays, and it is reported apart
    _write_catalog(store, "spring", [ROWS[0]], model=model)
    check = stale_skus(database, store, "spring")
    assert check.stale == [] and check.removed == ["tee-rust"]
    assert _jobs_of(database, "spring") == len(placed) == 2

    # a SKU's own identity_id wins over model.json's; an identity that is not the shop's is refused
    _write_catalog(store, "spring", [dict(ROWS[0], identity_id=other)], model=model)
    assert reasons() == {"tee-navy": ("model changed",)}
    _write_catalog(store, "spring", [dict(ROWS[0], identity_id="idn_0000000000000000")], model=model)
    with pytest.raises(BadInput) as refused:
        stale_skus(database, store, "spring")
    assert refused.value.code == "identity_not_found" and refused.value.details["rows"] == [1]


def test_a_parquet_catalog_reads_as_its_csv_does(tmp_path, garments):
    store = _store_with_photos(tmp_path, garments, "csv-shop")
    _store_with_photos(tmp_path, garments, "parquet-shop")
    rows = [ROWS[0], dict(ROWS[1], poses="front; seated", identity_id="idn_rowmodel")]
    _write_catalog(store, "csv-shop", rows, model="idn_catalogmodel")
    _write_catalog(store, "parquet-shop", rows, model="idn_catalogmodel", fmt="parquet")

    from_csv, from_parquet = read_catalog(store, "csv-shop"), read_catalog(store, "parquet-shop")
    assert from_parquet.source_key == "catalogs/parquet-shop/catalog.parquet"
    assert [(r.sku, r.poses, r.identity_id) for r in from_parquet.rows] == [
        ("tee-navy", FASHION_POSES, "idn_catalogmodel"),
        ("tee-rust", ["front", "seated"], "idn_rowmodel"),
    ]
    for csv_row, parquet_row in zip(from_csv.rows, from_parquet.rows, strict=True):
        assert csv_row.model_dump(exclude={"product_key"}) == parquet_row.model_dump(exclude={"product_key"})
        assert fingerprint(store, csv_row) == fingerprint(store, parquet_row)  # the same photo bytes, the same row
    assert catalog_ids(store) == ["csv-shop", "parquet-shop"]


def test_the_template_is_a_catalog_that_reads(tmp_path, garments):
    store = _store_with_photos(tmp_path, garments)
    store.put_bytes("catalogs/spring/catalog.csv", catalog_template_csv().encode())
    store.put_bytes("catalogs/spring/model.json", b'{"identity_id": "idn_shopmodel"}')
    catalog = read_catalog(store, "spring")
    assert [(r.sku, len(r.poses)) for r in catalog.rows] == [("tee-navy", 9), ("tee-rust", 3)]


def _refused(store, catalog_id: str = "spring") -> BadInput:
    with pytest.raises(BadInput) as refused:
        read_catalog(store, catalog_id)
    return refused.value


def test_each_bad_catalog_is_refused_with_its_code(tmp_path, garments):
    store = _store_with_photos(tmp_path, garments)
    model = "idn_shopmodel"

    assert _refused(store).code == "catalog_not_found"
    assert _refused(store, "../etc").code == "catalog_invalid"

    cases = [
        ([{k: v for k, v in ROWS[0].items() if k != "category"}], "catalog_invalid", {"column": "category"}),
        ([ROWS[0], dict(ROWS[1], sku="tee rust")], "catalog_invalid", {"row": 2, "column": "sku"}),
        ([ROWS[0], dict(ROWS[1], name="")], "catalog_invalid", {"row": 2, "column": "name"}),
        ([ROWS[0], dict(ROWS[1], product_photo="../../secrets.png")], "catalog_invalid", {"row": 2, "column": "product_photo"}),
        ([ROWS[0], ROWS[1], dict(ROWS[0], name="again")], "duplicate_sku", {"row": 3, "first_row": 1}),
        ([ROWS[0], dict(ROWS[1], product_photo="photos/tee-teal.png")], "product_photo_missing", {"row": 2}),
        ([dict(ROWS[0], poses="front;cartwheel")], "unknown_pose", {"row": 1, "column": "poses"}),
        ([dict(ROWS[0], poses="front;front")], "unknown_pose", {"row": 1, "column": "poses"}),
    ]
    for rows, code, details in cases:
        _write_catalog(store, "spring", rows, model=model)
        refusal = _refused(store)
        assert refusal.code == code, (rows, refusal)
        assert details.items() <= refusal.details.items(), (code, refusal.details)

    store.delete("catalogs/spring/model.json")
    _write_catalog(store, "spring", [dict(ROWS[0], identity_id=model), ROWS[1]])
    refusal = _refused(store)
    assert (refusal.code, refusal.details["row"], refusal.details["sku"]) == ("model_required", 2, "tee-rust")

    store.put_bytes("catalogs/spring/model.json", b'{"identity": "idn_x"}')
    assert _refused(store).code == "catalog_invalid"

    _write_catalog(store, "spring", ROWS, model=model)
    store.put_bytes("catalogs/spring/catalog.parquet", b"PAR1 not really")
    assert _refused(store).code == "catalog_invalid"  # both files: which one is meant?
    store.delete("catalogs/spring/catalog.csv")
    assert _refused(store).code == "catalog_invalid"  # a damaged Parquet file
