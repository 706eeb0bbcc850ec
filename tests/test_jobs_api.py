"""Studio jobs over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL: placed once per
Idempotency-Key, refused with a stable code before anything is kept or charged, paid in
credits exactly once however many requests race, refunded once when cancelled, and, once the
core has made and settled the shots, delivered as signed links and a ZIP that validates.
Real photos (tests/data/faces, the drawn garment of tests/product_photos.py), the embedded
engines, the real core driving the shots."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from photogen_pipelines.access.api_keys import create_api_key
from photogen_pipelines.catalog.kinds import load_kinds
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import open_database
from photogen_pipelines.db.tables import JobRow
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.export import RESOLUTIONS, ModelVersion, read_metadata
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.plan import plan_shots
from photogen_pipelines.jobs.results import assemble_export, save_shot
from photogen_pipelines.jobs.shots import ShotEngines, make_shot
from photogen_pipelines.workflows.jobs import shot_inputs
from tests.api_helpers import jpeg_bytes
from tests.product_photos import garment_photo

KINDS = load_kinds()
STYLE = "ink_etching"


@pytest.fixture
def shop(api_client, api_settings):
    """The API and one shop's key (its id, for the wallet's ledger)."""
    database = open_database(api_settings.resolved_database_url)
    database.migrate()
    key, secret = create_api_key(database, "test shop")
    return Shop(api_client, api_settings, database, key.id, {"Authorization": f"Bearer {secret}"})


class Shop:
    def __init__(self, client, settings, database, key_id, auth):
        self.client, self.settings, self.database, self.key_id, self.auth = client, settings, database, key_id, auth

    def upload(self, image: np.ndarray, purpose: str | None = None, auth: dict | None = None):
        form = {"consent": "true", **({"purpose": purpose} if purpose else {})}
        data, name, media = (
            (png_bytes(image), "p.png", "image/png") if purpose == "product" else (jpeg_bytes(image), "p.jpg", "image/jpeg")
        )
        return self.client.post("/v1/uploads", headers=auth or self.auth, data=form, files={"file": (name, data, media)})

    def upload_id(self, image: np.ndarray, purpose: str | None = None, auth: dict | None = None) -> str:
        response = self.upload(image, purpose, auth)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def place(self, body: dict, key: str | None = "new", auth: dict | None = None):
        key = str(uuid.uuid4()) if key == "new" else key
        headers = {**(auth or self.auth), **({"Idempotency-Key": key} if key else {})}
        return self.client.post("/v1/jobs", headers=headers, json=body)

    def get(self, path: str, auth: dict | None = None, **params):
        return self.client.get(path, headers=auth or self.auth, params=params)

    def grant(self, ref: str, credits: int) -> None:
        with self.database.session() as session:
            customer = customers.get(session, self.key_id, ref, lock=True)
            wallet.post(session, customer, EntryKind.GRANT, credits, key=f"test:{uuid.uuid4()}", reason="a test's grant")

    def balance(self, ref: str) -> int:
        with self.database.session() as session:
            return wallet.balance(session, customers.get(session, self.key_id, ref).id)

    def spends(self, ref: str) -> list[wallet.Entry]:
        with self.database.session() as session:
            entries = wallet.entries(session, customers.get(session, self.key_id, ref).id)
        return [e for e in entries if e.kind == EntryKind.SPEND]

    def jobs_kept(self) -> int:
        with self.database.session() as session:
            return session.scalar(select(func.count()).select_from(JobRow))


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and "Traceback" not in response.text, body
    return body


def _garment() -> np.ndarray:
    return garment_photo()[0]


def _pose_pack(person: str, **fields) -> dict:
    return {"kind": "pose_pack", "upload_ids": [person], "style_id": STYLE, **fields}


def _fashion_shoot(person: str, product: str, **fields) -> dict:
    return {"kind": "fashion_shoot", "upload_ids": [person], "product_upload_id": product, **fields}


def test_jobs_are_placed_once_per_key_with_their_shots_pending(shop, face_images):
    person = shop.upload_id(face_images["ardern"])
    product_upload = shop.upload(_garment(), "product")
    assert product_upload.status_code == 201, product_upload.text
    assert product_upload.json()["purpose"] == "product" and product_upload.json()["face_score"] == 0.0
    product = product_upload.json()["id"]

    first = shop.place(_pose_pack(person, poses=["headshot", "smiling"]), key="pack-1")
    assert first.status_code == 201, first.text
    job = first.json()
    assert job["id"].startswith("job_") and (job["kind"], job["tier"], job["state"]) == ("pose_pack", "standard", "paid")
    assert [(s["name"], s["position"], s["state"], s["url"]) for s in job["shots"]] == [
        ("headshot", 0, "pending", None),
        ("smiling", 1, "pending", None),
    ]
    assert job["progress"] == {"shots": 2, "settled": 0, "passed": 0, "rejected": 0} and job["export_url"] is None
    assert job["payment"] == {
        "mode": "off",
        "amount_cents": KINDS.get("pose_pack").price["standard"].cents,
        "credits_price": 0,
        "credits_paid": 0,
        "credits_refunded": 0,
        "customer_ref": None,
    }

    replay = shop.place(_pose_pack(person, poses=["headshot", "smiling"]), key="pack-1")
    assert replay.status_code == 200 and replay.json() == job
    _error(shop.place(_pose_pack(person, poses=["headshot"]), key="pack-1"), 409, "idempotency_key_reused")
    _error(shop.place(_pose_pack(person), key=None), 400, "idempotency_key_required")

    default_poses = shop.place(_pose_pack(person))  # the kind's own eight
    assert [s["name"] for s in default_poses.json()["shots"]] == KINDS.get("pose_pack").poses

    shoot = shop.place(_fashion_shoot(person, product, poses=["front", "back", "seated"], tier="premium"))
    assert shoot.status_code == 201, shoot.text
    shoot = shoot.json()
    assert [s["name"] for s in shoot["shots"]] == ["front", "back", "seated"]
    assert {s["state"] for s in shoot["shots"]} == {"pending"} and shoot["tier"] == "premium"
    assert shoot["payment"]["amount_cents"] == KINDS.get("fashion_shoot").price["premium"].cents

    listed = shop.get("/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [shoot["id"], default_poses.json()["id"], job["id"]]
    assert shop.get(f"/v1/jobs/{shoot['id']}").json() == shoot
    _error(shop.get(f"/v1/jobs/{shoot['id']}/export.zip"), 409, "job_not_ready")

    other = _other_key(shop)
    _error(shop.get(f"/v1/jobs/{job['id']}", auth=other), 404, "job_not_found")
    _error(shop.get(f"/v1/jobs/{job['id']}/export.zip", auth=other), 404, "job_not_found")
    _error(shop.client.post(f"/v1/jobs/{job['id']}/cancel", headers=other), 404, "job_not_found")
    assert shop.get("/v1/jobs", auth=other).json() == {"jobs": []}
    # the same Idempotency-Key is another shop's own
    assert shop.place(_pose_pack(shop.upload_id(face_images["ardern"], auth=other)), key="pack-1", auth=other).status_code == 201


def _other_key(shop: Shop) -> dict[str, str]:
    _, secret = create_api_key(shop.database, "another shop")
    return {"Authorization": f"Bearer {secret}"}


def test_every_refusal_is_a_coded_answer_that_keeps_nothing(shop, face_images):
    ardern, macron = shop.upload_id(face_images["ardern"]), shop.upload_id(face_images["macron"])
    product = shop.upload_id(_garment(), "product")
    engines_of = {k.id: k.engines for k in KINDS.kinds}
    for body, status, code in (
        ({"kind": "selfie_sticker", "upload_ids": [ardern]}, 422, "unknown_kind"),
        (_pose_pack(ardern, kind="portrait_print"), 422, "kind_is_an_order"),
        ({"kind": "try_on", "upload_ids": [ardern], "product_upload_id": product}, 422, "kind_needs_engine"),
        ({"kind": "living_portrait", "portrait_order_id": "ord_x"}, 422, "kind_needs_engine"),
        (_pose_pack(ardern, poses=["headshot", "moonwalk"]), 422, "unknown_pose"),
        (_pose_pack(ardern, poses=["headshot", "headshot"]), 422, "unknown_pose"),
        (_fashion_shoot(ardern, product, poses=["cartwheel"]), 422, "unknown_pose"),
        ({"kind": "pose_pack", "style_id": STYLE}, 422, "person_required"),
        ({"kind": "fashion_shoot", "product_upload_id": product}, 422, "person_required"),
        (_pose_pack(ardern, style_id=None), 422, "style_required"),
        (_pose_pack(ardern, style_id="crayon_scribble"), 422, "unknown_style"),
        ({"kind": "fashion_shoot", "upload_ids": [ardern]}, 422, "product_required"),
        (_fashion_shoot(ardern, macron), 422, "not_a_product_photo"),
        (_fashion_shoot(product, product), 422, "not_a_person_photo"),
        (_pose_pack(ardern, upload_ids=[ardern, macron]), 422, "photos_not_same_person"),
        (_pose_pack(ardern, upload_ids=["upl_0000000000000000"]), 422, "upload_not_found"),
        (_pose_pack(ardern, upload_ids=None, identity_id="idn_0000000000000000"), 422, "identity_not_found"),
        (_pose_pack(ardern, tier="platinum"), 422, "unknown_tier"),
        (_pose_pack(ardern, payment="credits"), 422, "customer_ref_required"),
        (_pose_pack(ardern, payment="credits", customer_ref="not a ref"), 422, "invalid_customer_ref"),
        (_pose_pack(ardern, teir="fast"), 422, "invalid_request"),
        (_pose_pack(ardern, payment="cash"), 422, "invalid_request"),
    ):
        body_of = _error(shop.place(body), status, code)
        if code == "kind_needs_engine":
            assert body_of["details"]["engines"] == engines_of[body["kind"]] and body["kind"] in body_of["message"]
        if code == "photos_not_same_person":
            assert body_of["details"]["upload_id"] == macron
    assert shop.jobs_kept() == 0

    # uploads: an unknown purpose, and a product photo with no product in it
    _error(shop.upload(_garment(), "garment"), 422, "invalid_request")
    _error(shop.upload(np.full((320, 320, 3), 236, np.uint8), "product"), 422, "no_product_found")
    assert shop.upload(face_images["obama"], "person").json()["purpose"] == "person"


def test_credits_are_spent_once_under_races_and_refunded_once(shop, face_images):
    person = shop.upload_id(face_images["obama"])
    assert shop.client.put("/v1/customers/ann", headers=shop.auth, json={"plan": "free"}).status_code == 200
    shop.grant("ann", 100)
    start = shop.balance("ann")
    price = KINDS.get("pose_pack").price["fast"].credits
    assert start == 110 and price == 40  # the free plan's welcome credits and the grant; the fast tier's price
    body = _pose_pack(person, poses=["headshot"], tier="fast", payment="credits", customer_ref="ann")

    with ThreadPoolExecutor(6) as pool:  # one checkout retried at once: one job, one spend
        same_key = list(pool.map(lambda _: shop.place(body, key="checkout-ann"), range(6)))
    assert Counter(r.status_code for r in same_key) == {201: 1, 200: 5}, [r.text for r in same_key]
    (job_id,) = {r.json()["id"] for r in same_key}
    assert shop.balance("ann") == start - price and len(shop.spends("ann")) == 1
    payment = same_key[0].json()["payment"]
    assert (payment["mode"], payment["credits_price"], payment["credits_paid"], payment["customer_ref"]) == (
        "credits",
        price,
        price,
        "ann",
    )

    with ThreadPoolExecutor(6) as pool:  # six checkouts at once: as many as the wallet pays for
        many = list(pool.map(lambda _: shop.place(body), range(6)))
    assert Counter(r.status_code for r in many) == {201: 1, 402: 5}, [r.text for r in many]
    short = _error(next(r for r in many if r.status_code == 402), 402, "insufficient_credits")
    assert short["details"] == {"balance": start - 2 * price, "needed": price}
    assert shop.balance("ann") == start - 2 * price >= 0 and len(shop.spends("ann")) == 2
    assert len(shop.get("/v1/jobs", customer_ref="ann").json()["jobs"]) == 2

    cancelled = shop.client.post(f"/v1/jobs/{job_id}/cancel", headers=shop.auth, json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "refunded" and cancelled.json()["payment"]["credits_refunded"] == price
    assert shop.balance("ann") == start - price
    _error(shop.client.post(f"/v1/jobs/{job_id}/cancel", headers=shop.auth), 409, "cannot_cancel")
    assert shop.balance("ann") == start - price

    (second,) = [r.json()["id"] for r in many if r.status_code == 201]
    with ThreadPoolExecutor(4) as pool:  # cancels racing: the credits come back once
        cancels = list(pool.map(lambda _: shop.client.post(f"/v1/jobs/{second}/cancel", headers=shop.auth), range(4)))
    assert {r.status_code for r in cancels} <= {200, 409} and 200 in {r.status_code for r in cancels}
    assert shop.balance("ann") == start and shop.get(f"/v1/jobs/{second}").json()["state"] == "refunded"


def _make_shots(services, job_id: str, analyzer, stylizer) -> None:
    """What the pipelines' shot and export runs do, with the core's own parts."""
    database, store = services.database, services.store
    job = lifecycle.start_generating(database, job_id)
    kind = services.kinds.get(job.kind)
    inputs = shot_inputs(database, store, services.faces, services.styles, job)
    engines = ShotEngines(stylizer=stylizer, faces=analyzer, safety=services.safety)
    models = [ModelVersion(role="faces", name=analyzer.name, version=analyzer.version)]
    for planned in plan_shots(services.kinds, kind, job.seed, job.inputs.get("poses")):
        outcome = make_shot(kind, planned, inputs, engines, embedded=True)
        save_shot(store, job_id, outcome, models)
        last = outcome.record.attempts[-1]
        lifecycle.settle_shot(
            database, job_id, planned.name, outcome.passed, len(outcome.record.attempts), last.scores, outcome.record.reason
        )


# what the embedded engine makes of each kind (kinds.yaml's `embedded`), the gate each shot
# passed, and its picture's long side (jobs/shots.py)
MADE_ON_THE_CPU = {
    "pose_pack": (["headshot", "smiling"], "identity", 1024),  # style-transfer takes of the person's photo
    "fashion_shoot": (["front", "back"], "product_ssim", 2048),  # packshots of the product, no model
}


@pytest.mark.parametrize("kind", list(MADE_ON_THE_CPU))
def test_a_ready_job_delivers_signed_pictures_and_a_zip(shop, face_images, analyzer, stylizer, kind):
    poses, gate, long_side = MADE_ON_THE_CPU[kind]
    person = shop.upload_id(face_images["macron"])
    if kind == "fashion_shoot":
        body = _fashion_shoot(person, shop.upload_id(_garment(), "product"), poses=poses)
    else:
        body = _pose_pack(person, poses=poses)
    placed = shop.place(body)
    assert placed.status_code == 201, placed.text
    job_id = placed.json()["id"]
    services = shop.client.app.state.services

    _make_shots(services, job_id, analyzer, stylizer)
    settled = shop.get(f"/v1/jobs/{job_id}").json()
    assert settled["state"] == "generating" and settled["progress"] == {"shots": 2, "settled": 2, "passed": 2, "rejected": 0}
    assert settled["export_url"] is None
    _error(shop.get(f"/v1/jobs/{job_id}/export.zip"), 409, "job_not_ready")
    _error(shop.client.post(f"/v1/jobs/{job_id}/cancel", headers=shop.auth), 409, "cannot_cancel")

    assemble_export(services.store, lifecycle.get(services.database, job_id, any_caller=True))
    lifecycle.finish(services.database, job_id)
    job = shop.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "ready" and job["reason"] == "2 of 2 shots passed"
    sizes = {}
    lock = KINDS.get(kind).product_lock
    threshold = lock.min_ssim if lock is not None else services.styles.get(STYLE).identity_threshold
    for shot in job["shots"]:
        assert shot["state"] == "passed" and shot["tries"] >= 1 and shot["scores"][gate] >= threshold, shot
        picture = shop.client.get(shot["url"])  # signed: no API key
        assert picture.status_code == 200, picture.text
        sizes[shot["name"]] = Image.open(io.BytesIO(picture.content)).size
        assert Image.open(io.BytesIO(picture.content)).format == "PNG" and max(sizes[shot["name"]]) == long_side
    tampered = job["shots"][0]["url"].replace("signature=", "signature=0")
    assert shop.client.get(tampered).status_code == 403
    shot_record = services.link("http://testserver/", JobKeys(job_id).shot_record(poses[0]))  # seeds, scores: not for customers
    _error(shop.client.get(shot_record), 404, "file_not_found")

    downloaded = shop.get(f"/v1/jobs/{job_id}/export.zip")
    assert downloaded.status_code == 200 and downloaded.headers["content-type"] == "application/zip"
    assert shop.client.get(job["export_url"]).content == downloaded.content
    metadata = read_metadata(downloaded.content)
    assert metadata.job_id == job_id and [s.name for s in metadata.shots] == poses
    archive = zipfile.ZipFile(io.BytesIO(downloaded.content))
    for record in metadata.shots:
        assert record.outcome == "passed" and set(record.files) == set(RESOLUTIONS) and record.size == sizes[record.name]
        for label, member in record.files.items():
            wanted = min(RESOLUTIONS[label][0] or long_side, long_side)  # never enlarged
            assert max(Image.open(io.BytesIO(archive.read(member))).size) == wanted, member
    _error(shop.get(f"/v1/jobs/{job_id}/export.zip", auth=_other_key(shop)), 404, "job_not_found")
