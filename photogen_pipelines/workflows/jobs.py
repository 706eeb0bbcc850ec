"""Placing a studio job and settling it: the kind's inputs checked against the caller's
uploads, identities and orders; its price taken in credits (or nothing with payments off)
in the transaction that records it; its shots planned; its credits given back, once, when
it will not deliver.

Jobs are sold in credits: a shop's customers buy credit packs through Stripe (payments/packs),
so no job needs a card payment of its own. With Stripe on, a job must be paid in credits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy.exc import IntegrityError

from photogen_pipelines.catalog import ProductCatalog, StyleCatalog
from photogen_pipelines.catalog.kinds import Kind, KindCatalog
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.credits.wallet import EntryKind
from photogen_pipelines.db.database import Database
from photogen_pipelines.engines.base import FaceAnalyzer
from photogen_pipelines.errors import BadInput, Conflict, NotFound
from photogen_pipelines.generation.references import face_embedding, mean_embedding
from photogen_pipelines.imaging.images import decode_upload
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.plan import plan_shots
from photogen_pipelines.jobs.shots import ShotInputs
from photogen_pipelines.jobs.states import OWES_REFUND, Job, JobState, Shot
from photogen_pipelines.orders import identities, photo_sets
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.uploads import Upload, get_upload
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore

MIN_SECONDS, MAX_SECONDS, DEFAULT_SECONDS = 2.0, 5.0, 3.0


@dataclass(frozen=True)
class JobRequest:
    """What a caller asks for (storefront_api's JobIn, `photogen demo --kind`, a catalog's SKU)."""

    kind: str
    tier: str | None = None  # None: the kind's standard tier, else its first
    upload_ids: tuple[str, ...] = ()  # 1-4 photos of the person
    identity_id: str | None = None  # or a saved identity
    product_upload_id: str | None = None  # the product's or garment's photo (an upload with purpose=product)
    style_id: str | None = None
    poses: tuple[str, ...] | None = None
    seconds: float | None = None
    portrait_order_id: str | None = None  # a living portrait's order, with its approved proof
    payment: str = "credits"  # credits | off (only with payments off)
    customer_ref: str | None = None
    catalog: str | None = None  # a merchant catalog's shoot: the catalog and the SKU
    sku: str | None = None
    product_key: str | None = None  # a catalog's product photo, a key in the artifact store
    fingerprint: str | None = None  # a catalog's SKU: what its shots are made from (workflows/merchant_catalogs.py)

    def digest(self) -> str:
        fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Placement:
    """Where the job is placed and what checks it: the shop's catalogs and engine."""

    database: Database
    store: ArtifactStore
    faces: FaceAnalyzer
    kinds: KindCatalog
    styles: StyleCatalog
    products: ProductCatalog
    engine: str  # the style engine this shop runs (PHOTOGEN_ENGINE, or service)
    video_engine: str | None = None  # wan-i2v when its models are configured
    payments_on: bool = False


@dataclass(frozen=True)
class PlacedJob:
    job: Job
    created: bool


def running_engines(settings) -> tuple[str, str | None]:
    """The style engine and the video engine a shop runs, from its settings alone (the API
    need not load them to refuse a kind they cannot make)."""
    return ("service" if settings.engine_url else settings.engine), ("wan-i2v" if settings.video_models_dir else None)


def place_job(place: Placement, request: JobRequest, api_key_id: str | None, idempotency_key: str | None) -> PlacedJob:
    """A paid job, its shots planned (BadInput, NotFound, PaymentRequired before anything is
    kept). The same idempotency key and body finds the same job; another body is a Conflict."""
    digest = request.digest()
    if idempotency_key is not None:
        earlier = lifecycle.find_idempotent(place.database, api_key_id, idempotency_key)
        if earlier is not None:
            return _replay(earlier, digest, idempotency_key)
    job = _new_job(place, request, api_key_id)
    try:
        with place.database.session() as session:
            if job.payments == "credits":
                _charge(session, place.products, job)
            lifecycle.add_in(session, job, idempotency_key, digest)
    except IntegrityError:  # the same key raced in from a parallel retry
        earlier = lifecycle.find_idempotent(place.database, api_key_id, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _replay(earlier, digest, idempotency_key)
    return PlacedJob(lifecycle.get(place.database, job.id, any_caller=True), created=True)


def _replay(earlier: tuple[Job, str | None], digest: str, key: str) -> PlacedJob:
    job, earlier_digest = earlier
    if earlier_digest != digest:
        raise Conflict(f"Idempotency-Key {key!r} was used for a different job request ({job.id})", code="idempotency_key_reused")
    return PlacedJob(job, created=False)


def kind_of(kinds: KindCatalog, kind_id: str) -> Kind:
    try:
        return kinds.get(kind_id)
    except NotFound as exc:  # a name in the request's body: bad input, not a missing resource
        raise BadInput(str(exc), code="unknown_kind") from None


def _new_job(place: Placement, request: JobRequest, api_key_id: str | None) -> Job:
    kind = kind_of(place.kinds, request.kind)
    if kind.id == "portrait_print":
        raise BadInput("a portrait print is an order: POST /v1/orders", code="kind_is_an_order")
    engine = place.video_engine if "mp4" in kind.outputs else place.engine
    if engine is None:  # a video kind on a shop without its engine's models
        raise BadInput(
            f"this shop runs no image-to-video engine (PHOTOGEN_VIDEO_MODELS_DIR); "
            f"a {kind.id} is made by: {', '.join(kind.engines)}",
            code="kind_needs_engine",
            details={"engines": kind.engines},
        )
    kind.check_engine(engine)
    tier = request.tier or ("standard" if "standard" in kind.price else next(iter(kind.price)))
    price = kind.price_for(tier)
    inputs = _checked_inputs(place, kind, request, api_key_id)
    payments = _payments(place, request, price.credits)
    seed = int.from_bytes(hashlib.sha256(f"{api_key_id}:{request.digest()}".encode()).digest()[:4], "big")
    planned = plan_shots(place.kinds, kind, seed, list(request.poses) if request.poses else None)
    job = Job(
        kind=kind.id,
        tier=tier,
        inputs=inputs,
        seed=seed,
        engine=engine,
        payments=payments,
        amount_cents=price.cents,
        credits_price=(price.credits or 0) if payments == "credits" else 0,
        api_key_id=api_key_id,
        customer_ref=request.customer_ref,
        catalog=request.catalog,
        sku=request.sku,
        shots=[Shot(name=p.name, position=p.position) for p in planned],
    )
    if request.product_key is not None:
        # the shots compare with the photo as it was when the job was placed, whatever the
        # merchant's catalog holds by then (a copy a race leaves orphaned costs one file)
        copy = JobKeys(job.id).product
        place.store.put_bytes(copy, place.store.get_bytes(request.product_key))
        job.inputs.update(product_key=copy, catalog_photo=request.product_key)
    return job


def _payments(place: Placement, request: JobRequest, credits: int | None) -> str:
    if request.catalog is not None:
        return "off"  # the shop's own catalog, shot for the shop: nobody is charged
    if request.payment == "credits" and request.customer_ref is not None:
        if credits is None:
            raise BadInput(f"the {request.kind} kind is not sold for credits in this tier", code="not_sold_for_credits")
        return "credits"
    if place.payments_on:
        raise BadInput(
            "jobs are paid in credits: send payment credits and the customer's customer_ref", code="customer_ref_required"
        )
    return "off"


def _checked_inputs(place: Placement, kind: Kind, request: JobRequest, api_key_id: str | None) -> dict:
    """The request's inputs for `kind`, each checked now (the caller hears of a stranger's
    photo or an unknown pose before paying), as the job's row keeps them."""
    asked = {i.type for i in kind.inputs}
    required = {i.type for i in kind.inputs if i.required}
    inputs: dict = {}
    if "person" in asked:
        inputs.update(_person(place, request, api_key_id))
    if asked & {"product_photo", "garment_photo"}:
        inputs["product_key"] = _product(place, request, api_key_id)
    if "style" in asked:
        if request.style_id is None:
            raise BadInput(f"a {kind.id} needs a style_id", code="style_required")
        place.styles.get(request.style_id)
        inputs["style_id"] = request.style_id
    if "poses" in asked and request.poses:
        inputs["poses"] = place.kinds.check_poses(list(request.poses))
    if "approved_portrait" in asked:
        inputs.update(_portrait(place, request, api_key_id))
    if "seconds" in asked:
        seconds = DEFAULT_SECONDS if request.seconds is None else float(request.seconds)
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise BadInput(f"seconds must be {MIN_SECONDS:g}-{MAX_SECONDS:g}, got {seconds:g}", code="invalid_seconds")
        inputs["seconds"] = seconds
    if request.fingerprint is not None:  # kept so the catalog sensor sees when the SKU's shots go stale
        inputs["fingerprint"] = request.fingerprint
    if "person" in required and not inputs.get("person_keys"):
        raise BadInput(f"a {kind.id} needs photos of the person (upload_ids) or an identity_id", code="person_required")
    return inputs


def _person(place: Placement, request: JobRequest, api_key_id: str | None) -> dict:
    if request.identity_id and request.upload_ids:
        raise BadInput("send upload_ids or identity_id, not both", code="invalid_request")
    if request.identity_id:
        # a merchant catalog is the operator's: its model may be saved through any of the shop's keys
        operator = request.catalog is not None and api_key_id is None
        identity = identities.get_identity(place.database, request.identity_id, api_key_id, any_owner=operator)
        keys = [identities.photo_key(identity.id, n) for n in range(identity.photos)]
        return {"identity_id": identity.id, "person_keys": keys}
    if not request.upload_ids:
        raise BadInput("send photos of the person (upload_ids) or an identity_id", code="person_required")
    if len(request.upload_ids) > photo_sets.MAX_PHOTOS or len(set(request.upload_ids)) != len(request.upload_ids):
        raise BadInput(f"1-{photo_sets.MAX_PHOTOS} distinct upload_ids", code="invalid_request")
    uploads = [_person_upload(place, upload_id, api_key_id) for upload_id in request.upload_ids]
    if len(uploads) > 1:
        photo_sets.check_same_person(place.store, place.faces, uploads)
    return {"upload_ids": [u.id for u in uploads], "person_keys": [u.storage_key for u in uploads]}


def _person_upload(place: Placement, upload_id: str, api_key_id: str | None) -> Upload:
    upload = get_upload(place.database, upload_id, api_key_id)
    if upload.purpose != "person":
        raise BadInput(f"upload {upload_id} is a product photo, not a photo of the person", code="not_a_person_photo")
    if not place.store.exists(upload.storage_key):
        raise BadInput(f"upload {upload_id} has expired; upload the photo again", code="upload_expired")
    return upload


def _product(place: Placement, request: JobRequest, api_key_id: str | None) -> str:
    if request.product_key is not None:  # a merchant catalog's photo: the job's own copy, the merchant may overwrite theirs
        if not place.store.exists(request.product_key):
            raise BadInput(f"the product photo {request.product_key} is not in the store", code="product_photo_missing")
        return request.product_key
    if request.product_upload_id is None:
        raise BadInput(f"a {request.kind} needs the product's photo: product_upload_id", code="product_required")
    upload = get_upload(place.database, request.product_upload_id, api_key_id)
    if upload.purpose != "product":
        raise BadInput(
            f"upload {upload.id} is a photo of a person; upload the product's photo with purpose=product",
            code="not_a_product_photo",
        )
    return upload.storage_key


def _portrait(place: Placement, request: JobRequest, api_key_id: str | None) -> dict:
    if request.portrait_order_id is None:
        raise BadInput("a living portrait needs portrait_order_id: an order whose proof was approved", code="portrait_required")
    order = SqlOrderBook(place.database).get(request.portrait_order_id)
    if order.api_key_id != api_key_id:
        raise NotFound(f"order {order.id} not found", code="order_not_found")
    if order.approved_proof is None:
        raise BadInput(f"order {order.id} has no approved proof yet", code="portrait_not_approved")
    return {"portrait_order_id": order.id, "portrait_key": OrderKeys(order.id).proof(order.approved_proof)}


def _charge(session, products: ProductCatalog, job: Job) -> None:
    """The job's credits, taken in the transaction that records it (PaymentRequired leaves nothing)."""
    customer = wallet.open_wallet(session, products, job.api_key_id, job.customer_ref)
    products.check_plan_allows(customer.plan, job.tier)
    wallet.post(
        session,
        customer,
        EntryKind.SPEND,
        -job.credits_price,
        key=f"spend:{job.id}",
        reason=f"job {job.id}: {job.kind}, {job.tier} tier",
    )
    job.credits_paid = job.credits_price


def refund_job(database: Database, job_id: str) -> Job:
    """Give a job that will not deliver its credits back, once (the failure sensor and a
    cancel asking at once refund once: the job's row lock and the entry's key)."""
    with database.session() as session:
        job = lifecycle.locked_in(session, job_id)
        owed = job.credits_paid - job.credits_refunded
        if job.state not in OWES_REFUND or owed <= 0:
            return job
        customer = customers.get(session, job.api_key_id, job.customer_ref, lock=True)
        wallet.post(session, customer, EntryKind.REFUND, owed, key=f"refund:{job.id}", reason=f"job {job.id} {job.state.value}")
        return lifecycle.credits_refunded_in(session, job_id, owed)


def cancel_job(database: Database, job_id: str, reason: str) -> Job:
    """Cancel a job nothing was made for yet (IllegalTransition after), then refund it."""
    lifecycle.cancel(database, job_id, reason)
    return refund_job(database, job_id)


def shot_inputs(database: Database, store: ArtifactStore, faces: FaceAnalyzer, styles: StyleCatalog, job: Job) -> ShotInputs:
    """What the job's shots are made from, read back from the store once per run."""
    inputs = job.inputs
    person = [np.asarray(decode_upload(store.get_bytes(key)).convert("RGB")) for key in inputs.get("person_keys", [])]
    identity = None
    if inputs.get("identity_id"):
        identity = identities.identity_embedding(store, inputs["identity_id"])
    elif person:
        identity = mean_embedding([face_embedding(photo, faces) for photo in person])
    portrait = None
    if inputs.get("portrait_key"):
        portrait = np.asarray(decode_upload(store.get_bytes(inputs["portrait_key"])).convert("RGB"))
        identity = face_embedding(portrait, faces)
    product = (
        np.asarray(decode_upload(store.get_bytes(inputs["product_key"])).convert("RGB")) if inputs.get("product_key") else None
    )
    return ShotInputs(
        person=person,
        identity=identity,
        product=product,
        portrait=portrait,
        style=styles.get(inputs["style_id"]) if inputs.get("style_id") else None,
        seconds=inputs.get("seconds", DEFAULT_SECONDS),
    )


def job_state(database: Database, job_id: str) -> JobState:
    return lifecycle.get(database, job_id, any_caller=True).state
