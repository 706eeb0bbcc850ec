"""A customer's data exported and erased on request.

Export (`GET /v1/customers/{ref}/export`) hands the shop what we hold of the customer, as
ZIP members: `customer.json` (plan, balance, every wallet entry), and per order
`orders/<id>/order.json` (the order as its events carry it, its history and its recipient)
with its photos and everything stored under it: the selfie document (face box and
identity embedding), candidates, proofs, the print file and its manifest; per saved
identity, `identities/<id>/` with its photos and its `identity.json` (the embedding); per
studio job, `jobs/<id>/job.json` and everything under it (its shots, their records, its ZIP).

Erasure (`DELETE /v1/customers/{ref}`, `photogen customers erase REF`) removes, for every
order and upload the shop named with the customer's reference:
- the files: every photo of the order (its upload, or its whole set), the stored selfie
  document with its face box and identity embedding, the candidates, the proofs, the print
  file and its manifest (everything under `orders/<id>/`), and uploads never ordered with;
- the rows that point at a person: the recipient, the order's photo set, the upload rows,
  the tracking number and link (which lead to the address), and the same in the outbox's
  webhook payloads; the reference itself on orders, uploads and quotes;
- the customer's saved identities: their photos, embeddings and rows (orders/identities.py);
- the customer's studio jobs' files (`jobs/<id>/`: every shot of the person and the ZIP), and
  in their rows the reference and the inputs that name the person (uploads, identity, portrait).

What stays is what the books need, anonymised: the order row (state, style, product, money,
timings: the generation ledger and its analytics stay true; it names no file and no
person), the customer's wallet entries (their operator-written reasons blanked) under a
placeholder reference, and one `erasures` row saying that an erasure happened, when and
how much, with the reference only as an HMAC under the server's secret. A second request
for the same customer finds that row and answers the same: erasure is idempotent.

Orders still on their way cannot lose their data: an order that awaits payment, is paid
but not started, or waits for its customer's choice is cancelled first (and refunded, as
any cancel); one being painted, printed or shipped (or ready and about to go to the print
provider) makes the erasure wait, 409 `erasure_waits_for_orders` naming them. So do jobs: one
not started is cancelled (its credits back), one being made makes the erasure wait.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from sqlalchemy import delete, select, update

from photogen_pipelines.access.signing import Signer
from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.credits import customers, wallet
from photogen_pipelines.db.tables import (
    CreditEntryRow,
    ErasureRow,
    FulfilmentRow,
    IdentityRow,
    JobRow,
    OrderPhotoRow,
    OrderRow,
    QuoteRow,
    RecipientRow,
    UploadRow,
    WebhookEventRow,
)
from photogen_pipelines.errors import Conflict, NotFound
from photogen_pipelines.fulfilment.submission import forget_tracking, recipient_of
from photogen_pipelines.jobs import lifecycle as jobs_lifecycle
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.states import JobState
from photogen_pipelines.orders import identities, photo_sets
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.outbox import order_summary
from photogen_pipelines.orders.states import OrderState
from photogen_pipelines.payments.stripe_payments import StripeGateway
from photogen_pipelines.storage.stores import ArtifactStore
from photogen_pipelines.workflows.intake import cancel_order
from photogen_pipelines.workflows.jobs import cancel_job

S = OrderState
# cancelled (and refunded) so that they can be erased; the others in IN_FLIGHT wait
CANCELLED_FOR_ERASURE = frozenset({S.AWAITING_PAYMENT, S.PAID, S.PROOFS_READY})
IN_FLIGHT = frozenset({S.GENERATING, S.APPROVED, S.RENDERING, S.SUBMITTED, S.SHIPPED})
ERASED_REF = "erased:{erasure_id}"  # the customer row's reference once erased
ERASED_KEY = "erased"  # the order's upload_key once its photos are gone
CANCEL_REASON = "cancelled: the customer's data was erased on request"
# a job's inputs that name or picture the person: their uploads, photos, identity, approved portrait
PERSONAL_JOB_INPUTS = frozenset({"upload_ids", "person_keys", "identity_id", "portrait_key", "portrait_order_id"})


@dataclass(frozen=True)
class Erasure:
    id: str
    erased_at: str
    orders: int
    files: int
    repeated: bool  # this request found an earlier erasure of the same customer


def _digest(signer: Signer, api_key_id: str | None, ref: str) -> str:
    return signer.link_signature("erasure", f"{customers.shop_key(api_key_id)}\n{ref}")


def erased_by(database, signer: Signer, ref: str) -> list[str | None]:
    """The storefront keys (None: none) under which `ref` was erased before: the operator's
    command finds a customer it already erased, whose reference is gone from every row."""
    with database.session() as session:
        shops = set(session.scalars(select(ErasureRow.shop_key)))
    keys = [shop or None for shop in sorted(shops)]
    with database.session() as session:
        return [
            key
            for key in keys
            if session.scalar(
                select(ErasureRow.id).where(
                    ErasureRow.shop_key == customers.shop_key(key), ErasureRow.ref_digest == _digest(signer, key, ref)
                )
            )
        ]


def _to_erasure(row: ErasureRow, repeated: bool) -> Erasure:
    return Erasure(row.id, as_utc(row.erased_at).isoformat(), row.orders, row.files, repeated)


def _of_key(column, api_key_id: str | None):
    """Rows of the shop's key (none: the operator's CLI without a storefront key)."""
    return column.is_(None) if api_key_id is None else column == api_key_id


def _identities_of(api_key_id: str | None, ref: str):
    return select(IdentityRow.id).where(_of_key(IdentityRow.api_key_id, api_key_id), IdentityRow.customer_ref == ref)


def _job_ids(database, api_key_id: str | None, ref: str) -> list[str]:
    query = select(JobRow.id).where(_of_key(JobRow.api_key_id, api_key_id), JobRow.customer_ref == ref)
    with database.session() as session:
        return list(session.scalars(query.order_by(JobRow.created_at)))


def _settle_jobs_for_erasure(database, job_ids: list[str]) -> list[str]:
    """Cancel (and refund) the customer's jobs not started yet; the ones being made, named:
    their shots need the photos until they settle."""
    waiting = []
    for job_id in job_ids:
        state = jobs_lifecycle.get(database, job_id, any_caller=True).state
        if state == JobState.PAID:
            cancel_job(database, job_id, CANCEL_REASON)
        elif state == JobState.GENERATING:
            waiting.append(job_id)
    return waiting


def _order_ids(book: SqlOrderBook, api_key_id: str | None, ref: str) -> list[str]:
    query = select(OrderRow.id).where(_of_key(OrderRow.api_key_id, api_key_id), OrderRow.customer_ref == ref)
    with book.database.session() as session:
        return list(session.scalars(query.order_by(OrderRow.created_at)))


def _waiting_on(book: SqlOrderBook, order_ids: list[str]) -> list[str]:
    """Orders whose data is still needed to finish them."""
    waiting = []
    with book.database.session() as session:
        for order_id in order_ids:
            row = session.get(OrderRow, order_id)
            ready_to_ship = row.state == S.READY.value and session.get(RecipientRow, order_id) is not None
            if S(row.state) in IN_FLIGHT or (ready_to_ship and session.get(FulfilmentRow, order_id) is None):
                waiting.append(order_id)
    return waiting


def _delete_files(store: ArtifactStore, keys: set[str]) -> int:
    for key in sorted(keys):
        store.delete(key)
    return len(keys)


def erase_customer(
    book: SqlOrderBook, store: ArtifactStore, gateway: StripeGateway | None, signer: Signer, api_key_id: str | None, ref: str
) -> Erasure:
    """Erase what the shop's key holds of the customer `ref` (see the module's docstring)."""
    customers.check_ref(ref)
    digest = _digest(signer, api_key_id, ref)
    database = book.database
    with database.session() as session:
        done = session.scalars(
            select(ErasureRow).where(ErasureRow.shop_key == customers.shop_key(api_key_id), ErasureRow.ref_digest == digest)
        ).one_or_none()
        known = customers.find(session, api_key_id, ref) is not None
        uploads_of = select(UploadRow.id).where(_of_key(UploadRow.api_key_id, api_key_id), UploadRow.customer_ref == ref)
        has_uploads = session.scalar(uploads_of.limit(1)) is not None
        identity_ids = list(session.scalars(_identities_of(api_key_id, ref)))
    order_ids = _order_ids(book, api_key_id, ref)
    job_ids = _job_ids(database, api_key_id, ref)
    held = bool(order_ids or job_ids or known or has_uploads or identity_ids)
    if done is not None and not held:
        return _to_erasure(done, repeated=True)
    if done is None and not held:
        raise NotFound(f"customer {ref} not found", code="customer_not_found")

    for order_id in order_ids:
        if book.get(order_id).state in CANCELLED_FOR_ERASURE:
            cancel_order(book, gateway, order_id, CANCEL_REASON)
    waiting = _waiting_on(book, order_ids)
    if waiting:
        raise Conflict(
            f"{len(waiting)} order(s) of this customer are being made or shipped: erase once they are delivered",
            code="erasure_waits_for_orders",
            details={"order_ids": waiting},
        )
    making = _settle_jobs_for_erasure(database, job_ids)
    if making:
        raise Conflict(
            f"{len(making)} job(s) of this customer are being made: erase once their shots have settled",
            code="erasure_waits_for_orders",
            details={"job_ids": making},
        )

    keys: set[str] = set()
    for order_id in order_ids:
        order = book.get(order_id)
        keys |= {key for key in store.list(f"orders/{order_id}/") if key.startswith(f"orders/{order_id}/")}
        keys |= {photo.key for photo in photo_sets.photos_of(database, order)}
        if order.upload_key != ERASED_KEY:
            keys.add(order.upload_key)
    with database.session() as session:
        uploads = session.scalars(
            select(UploadRow).where(_of_key(UploadRow.api_key_id, api_key_id), UploadRow.customer_ref == ref)
        ).all()
        keys |= {upload.storage_key for upload in uploads}
    for job_id in job_ids:  # its shots are pictures of the person, its ZIP too
        folder = JobKeys(job_id).folder
        keys |= {key for key in store.list(folder) if key.startswith(folder)}
    files = _delete_files(store, {key for key in keys if store.exists(key)})
    files += sum(identities.delete_files(store, identity_id) for identity_id in identity_ids)

    erasure_id = "era_" + secrets.token_hex(8)
    with database.session() as session:
        upload_ids = {upload.id for upload in uploads}
        if order_ids:
            upload_ids |= set(session.scalars(select(OrderRow.upload_id).where(OrderRow.id.in_(order_ids)))) - {None}
            upload_ids |= set(session.scalars(select(OrderPhotoRow.upload_id).where(OrderPhotoRow.order_id.in_(order_ids)))) - {
                None
            }
            session.execute(
                update(OrderRow)
                .where(OrderRow.id.in_(order_ids))
                .values(customer_ref=None, upload_id=None, upload_key=ERASED_KEY)
            )
            for table in (OrderPhotoRow, RecipientRow):
                session.execute(delete(table).where(table.order_id.in_(order_ids)))
            forget_tracking(session, order_ids)
            for event in session.scalars(select(WebhookEventRow).where(WebhookEventRow.order_id.in_(order_ids))):
                event.payload = _without_tracking(event.payload)
        session.flush()
        # an upload another order still names (one placed without the reference) keeps its
        # row, without the reference; its file is gone with the customer's
        still_named = set(session.scalars(select(OrderRow.upload_id).where(OrderRow.upload_id.in_(upload_ids))))
        still_named |= set(session.scalars(select(OrderPhotoRow.upload_id).where(OrderPhotoRow.upload_id.in_(upload_ids))))
        session.execute(update(UploadRow).where(UploadRow.id.in_(still_named)).values(customer_ref=None))
        session.execute(delete(UploadRow).where(UploadRow.id.in_(upload_ids - still_named)))
        session.execute(update(QuoteRow).where(QuoteRow.customer_ref == ref).values(customer_ref=None))
        for job in session.scalars(select(JobRow).where(JobRow.id.in_(job_ids))):
            # the books keep what was made and paid; nothing that names or pictures the person
            job.customer_ref, job.inputs = None, {k: v for k, v in job.inputs.items() if k not in PERSONAL_JOB_INPUTS}
        session.execute(delete(IdentityRow).where(IdentityRow.id.in_(identity_ids)))
        customer = customers.find(session, api_key_id, ref, lock=True)
        if customer is not None:
            customer.ref, customer.updated_at = ERASED_REF.format(erasure_id=erasure_id), utc_now()
            session.execute(update(CreditEntryRow).where(CreditEntryRow.customer_id == customer.id).values(reason=""))
        if done is None:
            done = ErasureRow(
                id=erasure_id,
                shop_key=customers.shop_key(api_key_id),
                ref_digest=digest,
                erased_at=utc_now(),
                orders=len(order_ids) + len(job_ids),
                files=files,
            )
            session.add(done)
        else:  # data named with the reference after an earlier erasure: counted in
            done = session.merge(done)
            done.orders, done.files = done.orders + len(order_ids) + len(job_ids), done.files + files
        session.flush()
        return _to_erasure(done, repeated=False)


def _without_tracking(payload: dict) -> dict:
    """A webhook event's payload without the parcel's tracking (it leads to the address)."""
    fulfilment = (payload.get("data", {}).get("order") or {}).get("fulfilment")
    if not fulfilment:
        return payload
    order = {**payload["data"]["order"], "fulfilment": {**fulfilment, "tracking_number": None, "tracking_url": None}}
    return {**payload, "data": {**payload["data"], "order": order}}


def export_customer(book: SqlOrderBook, store: ArtifactStore, api_key_id: str | None, ref: str) -> Iterator[tuple[str, bytes]]:
    """(ZIP member name, bytes) of everything held of the customer; NotFound if nothing is.
    The files are read one at a time, so the caller can write them out as they come."""
    customers.check_ref(ref)
    database = book.database
    order_ids = _order_ids(book, api_key_id, ref)
    job_ids = _job_ids(database, api_key_id, ref)
    with database.session() as session:
        customer = customers.find(session, api_key_id, ref)
        entries = wallet.entries(session, customer.id) if customer else []
        uploads = session.scalars(
            select(UploadRow).where(_of_key(UploadRow.api_key_id, api_key_id), UploadRow.customer_ref == ref)
        ).all()
        upload_files = [(upload.id, upload.storage_key) for upload in uploads]
        identity_ids = list(session.scalars(_identities_of(api_key_id, ref)))
    if customer is None and not order_ids and not job_ids and not upload_files and not identity_ids:
        raise NotFound(f"customer {ref} not found", code="customer_not_found")
    yield (
        "customer.json",
        _json(
            {
                "customer_ref": ref,
                "plan": customer.plan if customer else None,
                "created_at": as_utc(customer.created_at).isoformat() if customer else None,
                "balance": sum(entry.amount for entry in entries),
                "entries": [_entry(entry) for entry in entries],
                "uploads": [upload_id for upload_id, _ in upload_files],
                "identities": identity_ids,
            }
        ),
    )
    for upload_id, key in upload_files:
        if store.exists(key):
            yield f"uploads/{upload_id}{_suffix(key)}", store.get_bytes(key)
    for identity_id in identity_ids:  # its photos and the identity embedding the jobs compare with
        for key in sorted(store.list(identities.folder(identity_id))):
            if key.startswith(identities.folder(identity_id)):
                yield key, store.get_bytes(key)
    for order_id in order_ids:
        order = book.get(order_id)
        recipient = recipient_of(database, order_id)
        document = {
            **order_summary(order),
            "events": [
                {"at": event.at.isoformat(), "from": event.from_state, "to": event.to_state, "reason": event.reason}
                for event in order.events
            ],
            "recipient": recipient.model_dump(mode="json") if recipient else None,
        }
        yield f"orders/{order_id}/order.json", _json(document)
        for position, photo in enumerate(photo_sets.photos_of(database, order)):
            if store.exists(photo.key):
                yield f"orders/{order_id}/photos/{position}{_suffix(photo.key)}", store.get_bytes(photo.key)
        for key in sorted(store.list(f"orders/{order_id}/")):
            if key.startswith(f"orders/{order_id}/"):  # the stored documents too: the face's box and embedding
                yield key, store.get_bytes(key)
    for job_id in job_ids:
        job = jobs_lifecycle.get(database, job_id, any_caller=True)
        yield f"jobs/{job_id}/job.json", _json(job.model_dump(mode="json"))
        folder = JobKeys(job_id).folder
        for key in sorted(store.list(folder)):
            if key.startswith(folder):  # its shots, their records and its ZIP
                yield key, store.get_bytes(key)


def _entry(entry) -> dict:
    fields = asdict(entry)
    return {name: value.isoformat() if hasattr(value, "isoformat") else value for name, value in fields.items()}


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=2, default=str).encode()


def _suffix(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""
