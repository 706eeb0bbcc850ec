"""The orders database's tables (SQLAlchemy 2). The schema itself is made by the Alembic
migrations in `migrations/`; these classes map it, and a test checks the two agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON}


class ApiKeyRow(Base):
    """A storefront backend's key; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class UploadRow(Base):
    """A checked selfie: decoded, upright, stripped and stored; one face was found."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int]
    height: Mapped[int]
    source_format: Mapped[str] = mapped_column(String(16))
    source_bytes: Mapped[int]
    face_score: Mapped[float] = mapped_column(Float)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    customer_ref: Mapped[str | None] = mapped_column(String(64))  # the shop's own id of the customer
    created_at: Mapped[datetime]
    # when the caller (api_key_id) said the person pictured agreed; None only for uploads
    # taken before consent was asked (migration 0009)
    consented_at: Mapped[datetime | None]
    # person: a photo of one person (the face checked, consent given); product: a product's or
    # garment's photo for a job's product lock (no face, no consent needed) (migration 0011)
    purpose: Mapped[str] = mapped_column(String(16), default="person")


class IdentityRow(Base):
    """A person's photos saved for later jobs (orders/identities.py): the photos and their
    identity live in the artifact store under `identities/<id>/`, deleted with the row."""

    __tablename__ = "identities"
    __table_args__ = (Index("ix_identities_key_customer", "api_key_id", "customer_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    customer_ref: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(64))  # the shop's own name for it ("model A")
    photos: Mapped[int]
    encoder: Mapped[str] = mapped_column(String(64))  # the face encoder that made its identity
    consented_at: Mapped[datetime]
    created_at: Mapped[datetime]


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_orders_idempotency"),
        Index("ix_orders_customer", "api_key_id", "customer_ref", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"))
    upload_key: Mapped[str] = mapped_column(String(300))
    style_id: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    variants: Mapped[int]
    approval: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str | None] = mapped_column(String(32))
    payments: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    approved_proof: Mapped[int | None]
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    paid_cents: Mapped[int] = mapped_column(Integer, default=0)
    refund_id: Mapped[str | None] = mapped_column(String(64))
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str | None] = mapped_column(String(64))
    shipping_method: Mapped[str | None] = mapped_column(String(16))
    approval_reminded_at: Mapped[datetime | None]
    stage_seconds: Mapped[dict] = mapped_column(default=dict)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    proofs_downloaded_at: Mapped[datetime | None]  # the customer's first download of a proof
    cancellation_fee_cents: Mapped[int] = mapped_column(Integer, default=0)  # what a cancel keeps from then on
    customer_ref: Mapped[str | None] = mapped_column(String(64))  # the shop's own id of the customer
    credits_price: Mapped[int] = mapped_column(Integer, default=0)  # what a credit-paid order costs in credits
    credits_paid: Mapped[int] = mapped_column(Integer, default=0)
    credits_refunded: Mapped[int] = mapped_column(Integer, default=0)
    reroll_days: Mapped[int | None]  # the shop's credit policy, pinned when placed: a re-roll instead of a refund
    quote_id: Mapped[str | None] = mapped_column(String(32))
    preview: Mapped[bool] = mapped_column(Boolean, default=False)  # made before it is paid (products.yaml previews)


class OrderEventRow(Base):
    """One state change of one order: the history the API and the sensors read."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(Text)


class PaymentEventRow(Base):
    """One Stripe event, applied once: its id is the primary key, so a repeat cannot insert."""

    __tablename__ = "payment_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # webhook | reconciliation
    outcome: Mapped[str] = mapped_column(Text)
    stripe_created: Mapped[datetime]
    received_at: Mapped[datetime]


class StrayPaymentRow(Base):
    """A successful payment tied to an order that does not pay it (another PaymentIntent,
    a short amount, another currency): kept until Stripe has given the money back."""

    __tablename__ = "stray_payments"

    payment_intent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    amount: Mapped[int]  # in the payment's own currency's minor unit
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(32))  # not_the_orders_payment | amount_short | currency_mismatch
    refund_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    refunded_at: Mapped[datetime | None] = mapped_column(index=True)


class OrderPhotoRow(Base):
    """One photo of an order made from several of one customer (position 0: the primary,
    which is also the order's upload_key). An order from one photo has no rows here."""

    __tablename__ = "order_photos"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(300), index=True)  # retention finds every order using a file


class RecipientRow(Base):
    """Who receives an order's print: personal data, here and nowhere else (not in Dagster's
    metadata, logs or event log); deleted by the retention policy with the order's files."""

    __tablename__ = "recipients"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    details: Mapped[dict]  # recipients.Recipient: name, email, phone, address
    created_at: Mapped[datetime]


class FulfilmentRow(Base):
    """An order's submission to the shop's print provider, and what the provider said since."""

    __tablename__ = "fulfilments"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_order_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32), index=True)  # pending, or a providers.ProviderStatus
    detail: Mapped[str | None] = mapped_column(Text)
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(String(2000))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime | None]
    checked_at: Mapped[datetime | None] = mapped_column(index=True)  # the provider was last read
    updated_at: Mapped[datetime]


class WebhookEndpointRow(Base):
    """A storefront's URL for our outbound events; its secret signs every delivery."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list] = mapped_column(JSON)  # event types, or ["*"]
    secret: Mapped[str] = mapped_column(String(100))  # kept to sign with; shown to the storefront once
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class WebhookEventRow(Base):
    """The outbox: one event, written in the same transaction as the change it tells of."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    payload: Mapped[dict]


class WebhookDeliveryRow(Base):
    """One event owed to one endpoint: retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WebhookAttemptRow(Base):
    """The delivery log: every POST to an endpoint and how it ended."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int]


class PredictionRow(Base):
    """A remote prediction (Replicate, RunPod) by the request it answers: a retried step
    finds the one it already paid for (engines/predictions.py)."""

    __tablename__ = "predictions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    prediction_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    predict_seconds: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CustomerRow(Base):
    """A customer as the shop knows them: the shop's own reference (not a login of ours),
    scoped to the storefront key that named them ("" for the operator's CLI without one)."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("shop_key", "ref", name="uq_customers_shop_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_key: Mapped[str] = mapped_column(String(32))  # an api_keys.id, or "" (no storefront key)
    ref: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CreditEntryRow(Base):
    """One movement of a customer's credits: the wallet's leg (`amount`, signed) against the
    shop's account it moved from or to (`counter_account`), so every entry balances. A
    customer's balance is the sum of their entries; the key makes each movement happen once."""

    __tablename__ = "credit_entries"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key", name="uq_credit_entries_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # credits.wallet.EntryKind
    amount: Mapped[int]
    counter_account: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(String(32), index=True)
    pack_purchase_id: Mapped[str | None] = mapped_column(String(32), index=True)
    lot_id: Mapped[int | None]  # an expiry or clawback: the entry whose credits it takes back; a refund: the spend
    expires_at: Mapped[datetime | None]  # a grant's credits expire then
    created_at: Mapped[datetime] = mapped_column(index=True)


class PackPurchaseRow(Base):
    """A customer buying a pack of credits through a Stripe PaymentIntent."""

    __tablename__ = "pack_purchases"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key", name="uq_pack_purchases_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    pack_id: Mapped[str] = mapped_column(String(32))
    credits: Mapped[int]
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # awaiting_payment | paid | refunded
    paid_cents: Mapped[int] = mapped_column(Integer, default=0)
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class QuoteRow(Base):
    """A price and a wait promised before ordering; an order naming it is charged its price."""

    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    customer_ref: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    credits: Mapped[int | None]
    proofs_seconds: Mapped[int]
    print_seconds: Mapped[int]
    basis: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class ErasureRow(Base):
    """That a customer's data was erased (workflows/erasure.py): when, and how much. Not who:
    the shop's reference is kept only as an HMAC under the server's secret, so a repeated
    request is recognised and the reference cannot be read back."""

    __tablename__ = "erasures"
    __table_args__ = (UniqueConstraint("shop_key", "ref_digest", name="uq_erasures_shop_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shop_key: Mapped[str] = mapped_column(String(32))
    ref_digest: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime]
    orders: Mapped[int]
    files: Mapped[int]


class JobRow(Base):
    """A studio job (jobs/): a kind of catalog/kinds.yaml made for one caller, as shots. Its
    state has one writer, jobs/lifecycle.py."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_idempotency"),
        Index("ix_jobs_catalog_sku", "catalog", "sku"),
        Index(
            "ux_jobs_keyless_idempotency",
            "idempotency_key",
            unique=True,
            sqlite_where=text("api_key_id IS NULL"),
            postgresql_where=text("api_key_id IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(24), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[dict]  # what the job was given (jobs/requests.py JobInputs): upload ids, identity, product, poses
    seed: Mapped[int] = mapped_column(BigInteger)
    engine: Mapped[str] = mapped_column(String(32))  # the style engine that makes it (PHOTOGEN_ENGINE when placed)
    payments: Mapped[str] = mapped_column(String(16))  # off | credits
    amount_cents: Mapped[int]
    credits_price: Mapped[int] = mapped_column(Integer, default=0)
    credits_paid: Mapped[int] = mapped_column(Integer, default=0)
    credits_refunded: Mapped[int] = mapped_column(Integer, default=0)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    customer_ref: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    catalog: Mapped[str | None] = mapped_column(String(64))  # a merchant catalog's shoot: the catalog and its SKU
    sku: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JobShotRow(Base):
    """One shot of a job: its own Dagster partition (job x shot), its state and last scores."""

    __tablename__ = "job_shots"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int]
    state: Mapped[str] = mapped_column(String(16))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict | None]
    updated_at: Mapped[datetime]
