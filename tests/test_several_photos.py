"""Orders made from several photos of one customer (1–4): placed over HTTP, checked to show
one person with the real face engine (YuNet + SFace), gated against the mean of their
faces, and deleted together by the retention policy. Real portraits only: tests/data/faces
and scikit-image's astronaut, four different people."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageOps
from sqlalchemy import func, select, update

import assets
from photogen_pipelines.catalog import load_products
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import OrderEventRow, OrderPhotoRow, OrderRow
from photogen_pipelines.definitions import build_defs
from photogen_pipelines.engines.base import cosine
from photogen_pipelines.generation.proofs import reference_pictures, set_identity, stored_selfie, validate_proofs
from photogen_pipelines.generation.references import face_embedding, mean_embedding, stranger_in
from photogen_pipelines.generation.stages import prepare_selfie
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import photo_sets
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.storage.artifacts import CandidateParams, CandidatesInfo, OrderKeys, SelfieInfo, Validation
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.retention import RetentionPolicy, ledger_key, purge_expired
from tests.api_helpers import jpeg_bytes, make_app, make_settings, new_key, order_body
from tests.dagster_helpers import local_instance

S = OrderState


def _photos_of(image: np.ndarray) -> list[np.ndarray]:
    """Three photos of one sitting made different, as a customer's own three would be:
    as taken; mirrored and smaller; turned 8° and darker."""
    picture = Image.fromarray(image)
    width, height = picture.size
    return [
        image,
        np.asarray(ImageOps.mirror(picture).resize((width * 3 // 4, height * 3 // 4), Image.LANCZOS)),
        np.asarray(ImageEnhance.Brightness(picture.rotate(8, resample=Image.BICUBIC)).enhance(0.7)),
    ]


@pytest.fixture(scope="module")
def photos(face_images) -> dict[str, list[np.ndarray]]:
    return {name: _photos_of(image) for name, image in face_images.items()}


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(settings, client):
    return new_key(settings)


def _upload(client, auth, image: np.ndarray) -> str:
    response = client.post(
        "/v1/uploads", headers=auth, data={"consent": "true"}, files={"file": ("photo.jpg", jpeg_bytes(image), "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _place(client, auth, upload_ids, key=None, **fields):
    body = {k: v for k, v in order_body(None, **fields).items() if k != "upload_id"}
    if upload_ids is not None:
        body["upload_ids"] = upload_ids
    return client.post("/v1/orders", headers={**auth, "Idempotency-Key": key or str(uuid.uuid4())}, json=body)


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def _recorded(settings) -> tuple[int, int]:
    """Orders and set rows in the orders database."""
    database = open_database(settings.resolved_database_url)
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(OrderRow)), session.scalar(
            select(func.count()).select_from(OrderPhotoRow)
        )


# -- placing an order over HTTP -----------------------------------------------------------------


def test_three_photos_of_one_person_make_one_order_whose_primary_is_the_first(client, auth, settings, photos):
    ids = [_upload(client, auth, photo) for photo in photos["ardern"]]
    key = str(uuid.uuid4())
    placed = _place(client, auth, ids, key=key)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["state"] == "paid" and order["upload_ids"] == ids

    database = open_database(settings.resolved_database_url)
    stored = SqlOrderBook(database).get(order["id"])
    # the primary is the order's upload, so every engine and stage reads it as before
    assert (stored.upload_id, stored.upload_key) == (ids[0], f"uploads/{ids[0]}.png")
    assert photo_sets.photos_of(database, stored) == [photo_sets.Photo(i, f"uploads/{i}.png") for i in ids]
    # a retry is the same order; the same key with another set is another request
    again = _place(client, auth, ids, key=key)
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    _assert_error(_place(client, auth, ids[:2], key=key), 409, "idempotency_key_reused")
    assert client.get(f"/v1/orders/{order['id']}", headers=auth).json()["upload_ids"] == ids

    # one photo, either way it is named, is an order as before: no set recorded
    single = client.post("/v1/orders", headers={**auth, "Idempotency-Key": "one"}, json=order_body(ids[1])).json()
    listed = _place(client, auth, [ids[1]]).json()
    assert single["upload_ids"] == listed["upload_ids"] == [ids[1]]
    assert _recorded(settings) == (3, 3)


@pytest.mark.parametrize(("people", "odd"), [(["ardern", "ardern", "macron"], 2), (["obama", "astronaut"], 1)])
def test_a_set_with_another_person_is_refused_naming_that_photo_and_nothing_is_kept(client, auth, settings, photos, people, odd):
    ids = [_upload(client, auth, photos[person][i]) for i, person in enumerate(people)]
    key = str(uuid.uuid4())
    body = _assert_error(_place(client, auth, ids, key=key), 422, "photos_not_same_person")
    assert body["details"] == {"upload_id": ids[odd], "position": odd}
    assert f"photo {odd + 1} ({ids[odd]})" in body["message"]
    assert _recorded(settings) == (0, 0)
    assert LocalArtifactStore(settings.paths.artifacts).list("orders/") == []
    # nothing was recorded under the key either: the customer's corrected set goes through with it
    same = [_upload(client, auth, photo) for photo in photos[people[0]][:2]]
    assert _place(client, auth, same, key=key).status_code == 201


def test_a_set_must_be_one_to_four_distinct_photos_of_this_key(client, auth, settings, photos):
    ids = [_upload(client, auth, photo) for photo in photos["macron"]]
    other_shop = new_key(settings, "another shop")
    theirs = _upload(client, other_shop, photos["macron"][0])
    five = [*ids, _upload(client, auth, photos["macron"][0]), _upload(client, auth, photos["macron"][1])]

    for wrong in (five, [], [ids[0], ids[1], ids[0]], None):
        body = _assert_error(_place(client, auth, wrong), 422, "invalid_request")
        assert body["details"]["problems"], body
    both = {**order_body(ids[0]), "upload_ids": ids}
    _assert_error(client.post("/v1/orders", headers={**auth, "Idempotency-Key": "both"}, json=both), 422, "invalid_request")
    # another shop's photo is none of this key's, whatever else the set holds
    _assert_error(_place(client, auth, [ids[0], theirs]), 422, "upload_not_found")
    _assert_error(_place(client, auth, [ids[0], "upl_missing"]), 422, "upload_not_found")
    assert _recorded(settings) == (0, 0)


# -- the identity gate against the set's mean, with real embeddings ------------------------------


def test_one_photo_keeps_its_embedding_and_several_give_the_normalised_mean(analyzer, photos):
    embeddings = [face_embedding(photo, analyzer) for photo in photos["astronaut"]]
    assert mean_embedding(embeddings[:1]) is embeddings[0]  # an order from one photo is gated exactly as before
    mean = mean_embedding(embeddings)
    assert np.linalg.norm(mean) == pytest.approx(1.0, abs=1e-5)
    # the mean is nearer each photo than the photos are to each other: no one photo decides
    worst_pair = min(cosine(a, b) for i, a in enumerate(embeddings) for b in embeddings[i + 1 :])
    assert all(cosine(mean, e) > worst_pair for e in embeddings)
    units = np.mean([e / np.linalg.norm(e) for e in embeddings], axis=0)
    assert np.allclose(mean, units / np.linalg.norm(units), atol=1e-6)
    assert stranger_in(embeddings, analyzer.default_threshold) is None


def _stored_order(store, keys, analyzer, photos: list[np.ndarray], product, proofs: list[np.ndarray]):
    """What `selfie` and `styled_candidates` store for an order from `photos`, with
    `proofs` as its first round of candidates."""
    selfie = prepare_selfie(png_bytes(photos[0]), product, analyzer, 512)
    mean = set_identity(selfie.embedding, [png_bytes(p) for p in photos[1:]], analyzer)
    for i, photo in enumerate(photos):
        store.put_bytes(f"uploads/upl_{i}.png", png_bytes(photo))
    store.put_bytes(keys.portrait, png_bytes(selfie.portrait))
    keys.save(
        store,
        SelfieInfo(
            face=selfie.face.to_json(),
            portrait_face=selfie.portrait_face.to_json(),
            embedding=[float(v) for v in selfie.embedding],
            encoder=analyzer.version,
            photos=[f"uploads/upl_{i}.png" for i in range(len(photos))],
            mean_embedding=[float(v) for v in mean],
        ),
    )
    for variant, proof in enumerate(proofs):
        store.put_bytes(keys.candidate(0, variant), png_bytes(proof))
    params = [CandidateParams(variant=v, round=0, seed=v, strength=0.5) for v in range(len(proofs))]
    keys.save(store, CandidatesInfo(style="ink_etching", engine="test", candidates=params))
    return selfie, mean


def test_the_identity_gate_compares_each_proof_with_the_mean_of_the_set(tmp_path, analyzer, photos):
    store, keys = LocalArtifactStore(tmp_path), OrderKeys("ord_set")
    product = load_products().get("poster_a3")
    # proofs: another photo of the customer, and a stranger
    customer_again = np.asarray(Image.fromarray(photos["obama"][0]).resize((400, 460), Image.LANCZOS))
    selfie, mean = _stored_order(store, keys, analyzer, photos["obama"], product, [customer_again, photos["macron"][0]])

    stored = stored_selfie(store, keys)
    assert np.allclose(stored.embedding, mean) and not np.allclose(stored.embedding, selfie.embedding)
    assert stored.references == tuple(f"uploads/upl_{i}.png" for i in range(3))
    assert [p.shape for p in reference_pictures(store, stored)] == [p.shape for p in photos["obama"]]

    def no_more_rounds(variants, round_no):
        raise AssertionError("one round only")

    validated = validate_proofs(store, keys, stored, 0.363, analyzer, 1, no_more_rounds)
    scores = validated.validation.final_scores()
    for variant, proof in enumerate([customer_again, photos["macron"][0]]):
        embedding = analyzer.embed(proof, analyzer.detect(proof, min_score=0.5)[0])
        assert scores[variant].similarity == round(cosine(mean, embedding), 4)
        assert scores[variant].similarity != round(cosine(selfie.embedding, embedding), 4)  # not the primary's alone
    assert scores[0].passed and not scores[1].passed
    assert keys.load(store, Validation).proofs == {0: keys.proof(0)}


# -- one proof run through Dagster --------------------------------------------------------------


@pytest.mark.slow
def test_a_proof_run_frames_the_primary_and_gates_against_the_set(
    client, auth, settings, photos, analyzer, tmp_path, monkeypatch
):
    ids = [_upload(client, auth, photo) for photo in photos["astronaut"]]
    order = _place(client, auth, ids, variants=1).json()

    monkeypatch.setenv("PHOTOGEN_DATABASE_URL", settings.resolved_database_url)
    defs = build_defs(settings.home)
    with local_instance(tmp_path / "dagster") as instance:
        instance.add_dynamic_partitions("orders", [order["id"]])
        result = dg.materialize(
            [*assets.proof_assets, *assets.order_checks], partition_key=order["id"], instance=instance, resources=defs.resources
        )
        assert result.success
        selfie_events = result.asset_materializations_for_node("selfie")
    # the set's size reaches Dagster, never a face's numbers
    metadata = selfie_events[0].metadata
    assert metadata["photos"].value == 3
    assert not any(isinstance(v.value, list | dict) for v in metadata.values())

    store, keys = LocalArtifactStore(settings.paths.artifacts), OrderKeys(order["id"])
    info = keys.load(store, SelfieInfo)
    assert info.photos == [f"uploads/{i}.png" for i in ids]
    # the primary's framed portrait and the other two photos as stored (the JPEGs sent, cleaned)
    stored_photos = [np.asarray(Image.open(io.BytesIO(store.get_bytes(k))).convert("RGB")) for k in info.photos[1:]]
    embeddings = [np.asarray(info.embedding)] + [face_embedding(p, analyzer) for p in stored_photos]
    assert np.allclose(info.mean_embedding, mean_embedding(embeddings), atol=1e-4)
    assert not np.allclose(info.mean_embedding, info.embedding, atol=1e-2)
    validation = keys.load(store, Validation)
    proof = np.asarray(Image.open(io.BytesIO(store.get_bytes(validation.proofs[0]))).convert("RGB"))
    found = analyzer.detect(proof, min_score=0.5)[0]
    assert validation.final_scores()[0].similarity == pytest.approx(
        cosine(info.mean_embedding, analyzer.embed(proof, found)), abs=2e-4
    )
    seen = client.get(f"/v1/orders/{order['id']}", headers=auth).json()
    assert seen["state"] == "proofs_ready" and seen["upload_ids"] == ids


# -- retention ----------------------------------------------------------------------------------


def _deliver_long_ago(database, order_id: str, at: datetime) -> None:
    book = SqlOrderBook(database)
    for state in (S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY):
        book.transition(order_id, state, reason="test")
    with database.session() as session:
        session.execute(update(OrderEventRow).where(OrderEventRow.order_id == order_id).values(at=at))


def test_retention_deletes_every_photo_of_the_set_and_keeps_one_a_live_order_uses(client, auth, settings, photos):
    ids = [_upload(client, auth, photo) for photo in photos["ardern"]]
    done = _place(client, auth, ids).json()["id"]
    live = _place(client, auth, [ids[2], _upload(client, auth, photos["ardern"][0])]).json()["id"]  # shares the third
    alone = _place(client, auth, [_upload(client, auth, p) for p in photos["macron"]]).json()["id"]
    store = LocalArtifactStore(settings.paths.artifacts)
    for order_id in (done, live, alone):
        store.put_bytes(OrderKeys(order_id).selfie_info, b"{}")
        store.put_bytes(OrderKeys(order_id).portrait, b"png")

    database = open_database(settings.resolved_database_url)
    old = (datetime.now(UTC) - timedelta(days=45)).replace(hour=12)
    for order_id in (done, alone):
        _deliver_long_ago(database, order_id, old)
    ledger = io.BytesIO()
    pd.DataFrame({"order_id": [done, alone]}).to_parquet(ledger)
    store.put_bytes(ledger_key(old.date()), ledger.getvalue())
    before = set(store.list("uploads/"))

    result = purge_expired(SqlOrderBook(database), store, datetime.now(UTC), RetentionPolicy(days=30))

    assert set(result.purged) == {done, alone}
    left = set(store.list("uploads/"))
    alone_keys = {p.key for p in photo_sets.photos_of(database, SqlOrderBook(database).get(alone))}
    assert not alone_keys & left and len(alone_keys) == 3  # every photo of the set, not the primary alone
    assert {f"uploads/{i}.png" for i in ids[:2]}.isdisjoint(left)
    assert f"uploads/{ids[2]}.png" in left  # the live order still paints from it
    assert before - left == alone_keys | {f"uploads/{i}.png" for i in ids[:2]}
    assert store.list(f"orders/{done}/") == store.list(f"orders/{alone}/") == []
    assert store.list(f"orders/{live}/")
