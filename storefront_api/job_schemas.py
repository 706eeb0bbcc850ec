"""The studio jobs' request and response bodies (POST/GET /v1/jobs), apart from the orders'
schemas.py; the kinds themselves are catalog data (photogen_pipelines/catalog/kinds.yaml)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from photogen_pipelines.jobs.states import JobState, ShotState
from photogen_pipelines.orders.photo_sets import MAX_PHOTOS
from storefront_api.schemas import RequestBody

Id = Annotated[str, Field(max_length=32)]


class JobIn(RequestBody):
    kind: str = Field(max_length=32, description="a job kind: pose_pack, fashion_shoot, try_on, living_portrait")
    tier: str | None = Field(None, max_length=32, description="one of the kind's priced tiers; default standard, else its first")
    upload_ids: list[Id] | None = Field(
        None, min_length=1, max_length=MAX_PHOTOS, description="1-4 photos of the one person (uploads with purpose person)"
    )
    identity_id: str | None = Field(None, max_length=32, description="instead of upload_ids: a saved identity")
    product_upload_id: str | None = Field(
        None, max_length=32, description="the product's or garment's photo: an upload with purpose=product"
    )
    style_id: str | None = Field(None, max_length=64, description="a catalog style (a pose pack's)")
    poses: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None, min_length=1, max_length=20, description="the shots to make, default the kind's poses (GET the kind's list)"
    )
    seconds: float | None = Field(None, description="a living portrait's length, 2-5 s (default 3)")
    portrait_order_id: str | None = Field(
        None, max_length=32, description="a living portrait's order, whose approved proof comes to life"
    )
    payment: Literal["card", "credits"] = Field(
        "card",
        description="credits: the kind's price in credits from the customer's wallet, at once (needs customer_ref); "
        "card: with payments off the job is made at once, unpaid; with Stripe on, jobs are paid in credits only",
    )
    customer_ref: str | None = Field(None, max_length=64, description="the shop's own reference of the customer")


class JobPaymentOut(BaseModel):
    mode: Literal["off", "credits"] = Field(description="off: made unpaid (payments off); credits: from the customer's wallet")
    amount_cents: int = Field(description="the kind's price in this tier")
    credits_price: int
    credits_paid: int
    credits_refunded: int = Field(description="given back when the job will not deliver (cancelled, rejected, failed)")
    customer_ref: str | None


class JobProgressOut(BaseModel):
    shots: int
    settled: int
    passed: int
    rejected: int


class ShotOut(BaseModel):
    name: str = Field(description="the pose, or the kind's named shot")
    position: int
    state: ShotState
    tries: int = Field(description="attempts made, every retry counted")
    reason: str | None = Field(description="why every attempt was rejected (the first gate that failed)")
    scores: dict | None = Field(description="the delivered (or last) attempt's scores, gate by gate")
    url: str | None = Field(None, description="a signed link, valid for minutes, to the passing shot's picture (PNG)")
    video_url: str | None = Field(None, description="a video shot's MP4 (its poster is `url`)")


class JobOut(BaseModel):
    id: str
    kind: str
    tier: str | None
    state: JobState = Field(description="paid → generating → ready; or rejected, failed, cancelled, then refunded")
    reason: str | None
    created_at: datetime
    updated_at: datetime
    payment: JobPaymentOut
    progress: JobProgressOut
    shots: list[ShotOut]
    export_url: str | None = Field(
        None, description="once ready: a signed link, valid for minutes, to the ZIP (also GET /v1/jobs/{id}/export.zip)"
    )


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="newest first")
