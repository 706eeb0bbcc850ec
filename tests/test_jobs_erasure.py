"""A customer's studio jobs in their data export and gone with their erasure: the shots (their
pictures), the ZIP and the inputs that name them; the job's books stay, anonymised. A job not
started yet is cancelled and its credits come back. Real photos, the embedded engines, the
orders database on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import zipfile

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.catalog import load_products, load_styles
from photogen_pipelines.catalog.kinds import load_kinds
from photogen_pipelines.credits import wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import open_database
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.plan import plan_shots
from photogen_pipelines.jobs.results import assemble_export, save_shot
from photogen_pipelines.jobs.shots import ShotEngines, make_shot
from photogen_pipelines.jobs.states import JobState
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.uploads import take_upload
from photogen_pipelines.storage.stores import LocalArtifactStore
from photogen_pipelines.workflows.erasure import erase_customer, export_customer
from photogen_pipelines.workflows.jobs import JobRequest, Placement, place_job, shot_inputs


def test_a_customers_jobs_are_exported_and_then_erased_with_them(database_url, tmp_path, face_images, analyzer, stylizer):
    database = open_database(database_url)
    database.migrate()
    store = LocalArtifactStore(tmp_path / "artifacts")
    kinds, styles, products = load_kinds(), load_styles(), load_products()
    place = Placement(database, store, analyzer, kinds, styles, products, engine="embedded")
    with database.session() as session:  # the shop grants the customer enough for two packs
        customer = wallet.open_wallet(session, products, None, "cust-9")
        wallet.post(session, customer, EntryKind.GRANT, 200, key="grant-1", reason="two packs")
    photo = take_upload(database, store, analyzer, png_bytes(face_images["astronaut"]), customer_ref="cust-9", consent=True)

    def pack(key: str) -> str:
        request = JobRequest(kind="pose_pack", upload_ids=(photo.id,), style_id="sepia_oil", poses=("headshot",),
                             payment="credits", customer_ref="cust-9")  # fmt: skip
        return place_job(place, request, None, key).job.id

    made, waiting = pack("made"), pack("not-started")
    job = lifecycle.get(database, made, any_caller=True)
    kind = kinds.get("pose_pack")
    inputs = shot_inputs(database, store, analyzer, styles, job)
    [headshot] = plan_shots(kinds, kind, job.seed, ["headshot"])
    lifecycle.start_generating(database, made)
    outcome = make_shot(kind, headshot, inputs, ShotEngines(stylizer, analyzer, None), embedded=True)
    save_shot(store, made, outcome, [])
    lifecycle.settle_shot(database, made, "headshot", outcome.passed, 1, outcome.record.attempts[-1].scores, None)
    assemble_export(store, lifecycle.get(database, made, any_caller=True))
    lifecycle.finish(database, made)
    folder = JobKeys(made).folder
    assert sorted(k.removeprefix(folder) for k in store.list(folder)) == [
        "export.zip",
        "shots/headshot.json",
        "shots/headshot.png",
    ]

    book, signer = SqlOrderBook(database), Signer("test-secret-of-16-chars-or-more")
    exported = dict(export_customer(book, store, None, "cust-9"))
    assert {f"jobs/{made}/job.json", f"{folder}shots/headshot.png", f"{folder}export.zip"} <= set(exported)
    with zipfile.ZipFile(io.BytesIO(exported[f"{folder}export.zip"])) as archive:
        assert "metadata.json" in archive.namelist()

    erased = erase_customer(book, store, None, signer, None, "cust-9")
    assert erased.orders == 2  # both jobs counted
    assert store.list(folder) == [] and not store.exists(photo.storage_key)
    for job_id in (made, waiting):
        kept = lifecycle.get(database, job_id, any_caller=True)
        assert kept.customer_ref is None and not {"upload_ids", "person_keys", "identity_id"} & set(kept.inputs)
        assert kept.inputs["style_id"] == "sepia_oil"  # what was made stays for the books
    assert lifecycle.get(database, made, any_caller=True).state == JobState.READY
    # the job nothing was made for yet was cancelled and its credits came back
    cancelled = lifecycle.get(database, waiting, any_caller=True)
    assert cancelled.state == JobState.REFUNDED and cancelled.credits_refunded == cancelled.credits_paid > 0
