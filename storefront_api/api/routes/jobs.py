"""Studio jobs: a kind of catalog/kinds.yaml (a pose pack, a fashion shoot, a try-on, a living
portrait) placed for the caller's photos, paid in credits (or made unpaid with payments off),
made shot by shot by the pipelines and delivered as one ZIP. The core checks and places a job
(workflows/jobs.py) and is the one writer of its state (jobs/lifecycle.py); this module reads
and words it."""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from photogen_pipelines.credits.customers import check_ref
from photogen_pipelines.db.tables import JobRow
from photogen_pipelines.errors import IllegalTransition, NotFound
from photogen_pipelines.jobs import lifecycle
from photogen_pipelines.jobs.keys import JobKeys
from photogen_pipelines.jobs.states import Job, JobState, ShotState
from photogen_pipelines.workflows.jobs import JobRequest, cancel_job, place_job
from storefront_api.api.deps import BaseUrlDep, ServicesDep, StorefrontDep
from storefront_api.api.routes.orders import IDEMPOTENCY_KEY_DOC, IdempotencyKey
from storefront_api.errors import ApiError
from storefront_api.job_schemas import JobIn, JobList, JobOut, JobPaymentOut, JobProgressOut, ShotOut
from storefront_api.schemas import CancelIn

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(max_length=64)]
JOB_NOT_FOUND = {404: {"description": "job_not_found: no job of this API key has this id"}}
JOB_IDEMPOTENCY_KEY_DOC = {
    **IDEMPOTENCY_KEY_DOC,
    "description": "a retry with the same key and body returns the same job, never a second one (nor a second charge); "
    "without it: 400 idempotency_key_required",
}
# ids a job's body names that the core looks up as resources: a wrong one is a wrong request
# (422), not a wrong URL (404), as an order's upload_id is
BODY_REFERENCES = {"identity_not_found", "order_not_found"}
REFUSALS = (
    "the kind: unknown_kind, kind_is_an_order (a portrait_print: POST /v1/orders), kind_needs_engine (this shop's "
    "engines cannot make the kind; details.engines names those that can), unknown_tier, not_sold_for_credits; "
    "the inputs: person_required, style_required, product_required, portrait_required, unknown_pose, invalid_seconds, "
    "upload_not_found, upload_expired, identity_not_found, order_not_found, unknown_style, "
    "not_a_person_photo (a product upload among upload_ids), not_a_product_photo (a person's upload as the product), "
    "photos_not_same_person (details name the photo), portrait_not_approved; the payment: customer_ref_required "
    "(payment credits without a customer_ref, or any other payment with Stripe on), invalid_customer_ref; "
    "invalid_request"
)


def _request(body: JobIn) -> JobRequest:
    return JobRequest(
        kind=body.kind,
        tier=body.tier,
        upload_ids=tuple(body.upload_ids or ()),
        identity_id=body.identity_id,
        product_upload_id=body.product_upload_id,
        style_id=body.style_id,
        poses=tuple(body.poses) if body.poses else None,
        seconds=body.seconds,
        portrait_order_id=body.portrait_order_id,
        # jobs are sold in credits; "card" is a job made at once while payments are off
        # (with Stripe on the core refuses it: customer_ref_required)
        payment="credits" if body.payment == "credits" else "off",
        customer_ref=body.customer_ref,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobOut,
    openapi_extra={"parameters": [JOB_IDEMPOTENCY_KEY_DOC]},
    responses={
        200: {"model": JobOut, "description": "a replay: the job this Idempotency-Key placed with the same body"},
        400: {"description": "idempotency_key_required: no Idempotency-Key header"},
        402: {"description": "insufficient_credits (details: balance, needed) or plan_excludes_tier: paying in credits"},
        409: {"description": "idempotency_key_reused: the Idempotency-Key placed a job with another body"},
        422: {"description": REFUSALS},
    },
)
def create_job(
    body: Annotated[JobIn, Body()],
    base_url: BaseUrlDep,
    response: Response,
    caller: StorefrontDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Place a job of a kind (catalog/kinds.yaml): its inputs are checked now (a stranger's
    photo, an unknown pose, a kind this shop's engines cannot make are refused before
    anything is paid), its price is taken in credits from the customer's wallet in the same
    transaction (with payments off and no credits asked, it is made unpaid), and its shots are
    planned, all pending. The pipelines make each shot and deliver the ZIP."""
    if not idempotency_key:
        raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header (e.g. a UUID per job)")
    if body.customer_ref is not None:
        check_ref(body.customer_ref)
    if body.payment == "credits" and body.customer_ref is None:
        raise ApiError(422, "customer_ref_required", "a job paid in credits needs the customer's customer_ref")
    try:
        placed = place_job(services.placement(), _request(body), caller.api_key_id, idempotency_key)
    except NotFound as exc:
        if exc.code in BODY_REFERENCES:
            raise ApiError(422, exc.code, str(exc)) from None
        raise
    if not placed.created:
        response.status_code = status.HTTP_200_OK
    return job_view(services, placed.job, base_url)


@router.get("", response_model=JobList, responses={422: {"description": "invalid_customer_ref, invalid_request"}})
def list_jobs(
    caller: StorefrontDep,
    services: ServicesDep,
    base_url: BaseUrlDep,
    customer_ref: Annotated[str | None, Query(max_length=64, description="only this customer's")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="at most this many, the newest")] = 20,
) -> JobList:
    """The key's jobs, newest first."""
    if customer_ref is not None:
        check_ref(customer_ref)
    return JobList(jobs=[job_view(services, job, base_url) for job in _jobs_of(services, caller.api_key_id, customer_ref, limit)])


def _jobs_of(services, api_key_id: str | None, customer_ref: str | None, limit: int) -> list[Job]:
    query = select(JobRow).where(JobRow.api_key_id == api_key_id)
    if customer_ref is not None:
        query = query.where(JobRow.customer_ref == customer_ref)
    with services.database.session() as session:
        rows = session.scalars(query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)).all()
        return lifecycle.jobs_of(session, list(rows))


@router.get("/{job_id}", response_model=JobOut, responses=JOB_NOT_FOUND)
def read_job(job_id: JobId, caller: StorefrontDep, services: ServicesDep, base_url: BaseUrlDep) -> JobOut:
    """The job's state and payment, its shots as they settle (each with its tries, its gates'
    scores and why it was rejected), signed links to each passing shot's picture, and once
    `ready` a signed link to the ZIP."""
    return job_view(services, lifecycle.get(services.database, job_id, caller.api_key_id), base_url)


@router.get(
    "/{job_id}/export.zip",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}, "description": "the ZIP"},
        409: {"description": "job_not_ready: the ZIP comes when the job is ready"},
        **JOB_NOT_FOUND,
    },
)
def export_zip(job_id: JobId, caller: StorefrontDep, services: ServicesDep) -> Response:
    """The job's delivery: every passing shot at full size (PNG), 2048 px and 1024 px (JPEG),
    and `metadata.json` (each shot's seeds, scores and retries, the models, the cost)."""
    job = lifecycle.get(services.database, job_id, caller.api_key_id)
    key = JobKeys(job.id).export
    if job.state != JobState.READY or not services.store.exists(key):
        raise ApiError(409, "job_not_ready", f"job {job.id} is {job.state.value}; its ZIP comes when it is ready")
    headers = {"Cache-Control": "private, no-store"}  # a person's pictures: no shared or lingering caches
    filename = f"{job.id}.zip"
    local_path = getattr(services.store, "path", None)
    if local_path is None:  # an S3 store: read whole (its presigned export_url streams from S3 itself)
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(services.store.get_bytes(key), media_type="application/zip", headers=headers)
    return FileResponse(local_path(key), media_type="application/zip", filename=filename, headers=headers)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={409: {"description": "cannot_cancel: the job's shots are being made (or it ended)"}, **JOB_NOT_FOUND},
)
def cancel(
    job_id: JobId, caller: StorefrontDep, services: ServicesDep, base_url: BaseUrlDep, body: CancelIn | None = None
) -> JobOut:
    """Cancel a job whose shots have not started; its credits come back to the wallet, once."""
    job = lifecycle.get(services.database, job_id, caller.api_key_id)
    try:
        updated = cancel_job(services.database, job.id, (body and body.reason) or "cancelled by request")
    except IllegalTransition:
        now = lifecycle.get(services.database, job.id, caller.api_key_id).state.value
        raise ApiError(409, "cannot_cancel", f"job {job.id} is {now}; a job is cancelled before its shots are made") from None
    return job_view(services, updated, base_url)


def job_view(services, job: Job, base_url: str) -> JobOut:
    keys, store = JobKeys(job.id), services.store
    # a kind a later catalog dropped still shows its jobs
    video = any(kind.id == job.kind and "mp4" in kind.outputs for kind in services.kinds.kinds)
    shots = []
    for shot in job.shots:
        url = video_url = None
        if shot.state == ShotState.PASSED and store.exists(keys.shot_picture(shot.name)):
            url = services.link(base_url, keys.shot_picture(shot.name))
            if video and store.exists(keys.shot_video(shot.name)):
                video_url = services.link(base_url, keys.shot_video(shot.name))
        shots.append(
            ShotOut(
                name=shot.name,
                position=shot.position,
                state=shot.state,
                tries=shot.tries,
                reason=shot.reason,
                scores=shot.scores,
                url=url,
                video_url=video_url,
            )
        )
    ready = job.state == JobState.READY and store.exists(keys.export)
    return JobOut(
        id=job.id,
        kind=job.kind,
        tier=job.tier,
        state=job.state,
        reason=job.reason,
        created_at=job.created_at,
        updated_at=job.updated_at,
        payment=JobPaymentOut(
            mode=job.payments,
            amount_cents=job.amount_cents,
            credits_price=job.credits_price,
            credits_paid=job.credits_paid,
            credits_refunded=job.credits_refunded,
            customer_ref=job.customer_ref,
        ),
        progress=JobProgressOut(
            shots=len(job.shots),
            settled=len(job.settled_shots),
            passed=sum(s.state == ShotState.PASSED for s in job.shots),
            rejected=sum(s.state == ShotState.REJECTED for s in job.shots),
        ),
        shots=shots,
        export_url=services.link(base_url, keys.export) if ready else None,
    )
