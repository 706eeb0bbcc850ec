"""Request and response bodies (the API's contract; the tables live in the core)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from photogen_pipelines.orders.photo_sets import MAX_PHOTOS
from photogen_pipelines.orders.recipients import MaskedRecipient, Recipient, ShippingMethod, refuse_control_characters
from photogen_pipelines.orders.shipments import FulfilmentStatus
from storefront_api.examples import APPROVE_IN, ORDER_IN, ORDER_OUT


class UploadOut(BaseModel):
    id: str
    width: int
    height: int
    source_format: str
    source_bytes: int
    face_score: float = Field(description="YuNet's confidence in the one face found")
    customer_ref: str | None = Field(None, description="the shop's own reference of the customer, as uploaded")
    created_at: datetime
    consented_at: datetime | None = Field(None, description="when the caller said the person pictured agreed")
    purpose: Literal["person", "product"] = Field(
        "person", description="person: a photo of one person; product: a product's or garment's photo for a job"
    )


class StyleOut(BaseModel):
    id: str
    name: str
    description: str | None = None
    preview_url: str | None = Field(
        None, description="a link (valid for minutes) to the style on the reference faces; null until one is rendered"
    )


class ProductOut(BaseModel):
    id: str
    name: str
    format: str
    pixel_size: tuple[int, int]
    dpi: int
    min_dpi: int
    price_cents: int = Field(description="in the default tier")
    prices: dict[str, int] = Field(description="tier id -> price in cents, for the tiers this product is offered in")
    currency: str = "usd"


class WaitOut(BaseModel):
    proofs_seconds: int = Field(description="from payment to the proofs")
    print_seconds: int = Field(description="from approval to the print file")
    basis: Literal["measured", "catalog"] = Field(
        description="measured: the median of the shop's recent orders of the tier; catalog: the shop's estimate until then"
    )


class TierOut(BaseModel):
    id: str
    name: str
    description: str
    variants: int = Field(description="the proofs the tier's price buys; an order may ask for fewer, never more")
    default: bool
    expected_wait: WaitOut


class RequestBody(BaseModel):
    """Every request body: no coercion ("2", true and 2.0 are not the integer 2: a storefront
    sending them has a bug to hear about), no unknown field (a typo such as "teir" is refused,
    not dropped for a default), and no control character in any string (ids and free text
    alike; a recipient checks its own): each a 422 invalid_request naming the field."""

    model_config = ConfigDict(strict=True, extra="forbid")

    _plain = field_validator("*")(refuse_control_characters)


class OrderIn(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_IN]})

    upload_id: str | None = Field(None, max_length=32, description="the customer's photo; or several in upload_ids")
    upload_ids: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_PHOTOS,
        description="instead of upload_id: 1-4 distinct photos of the one customer, the first the primary the proofs are "
        "painted from; every photo is compared with the others (422 photos_not_same_person names the one that differs)",
    )
    style_id: str = Field(max_length=64)
    product_id: str = Field(max_length=64)
    variants: int | None = Field(
        None, ge=1, le=8, description="proofs to render, default the tier's; fewer at its price, more: 422 too_many_variants"
    )
    approval: Literal["customer", "auto"] = "customer"
    tier: str | None = Field(None, max_length=32, description="a quality tier from GET /v1/tiers; default the catalog's")
    recipient: Recipient | None = Field(
        None, description="who receives the print; with a print provider configured, the order is shipped to them"
    )
    # strict=False: a JSON string is the only way to name an enum member
    shipping_method: ShippingMethod | None = Field(None, strict=False, description="default standard; only with a recipient")
    payment: Literal["card", "credits"] = Field(
        "card",
        description="card: Stripe (or nothing with payments off); credits: the tier's price in credits from the customer's "
        "wallet, at once (402 insufficient_credits or plan_excludes_tier leaves nothing behind)",
    )
    customer_ref: str | None = Field(
        None, max_length=64, description="the shop's own reference of the customer; needed to pay in credits or for a preview"
    )
    quote_id: str | None = Field(
        None, max_length=32, description="a quote from POST /v1/quotes: the order is charged its price while it is valid"
    )
    preview: bool = Field(False, description="make the proofs before payment (the shop's previews policy); needs customer_ref")

    @model_validator(mode="after")
    def _shipping_needs_recipient(self) -> OrderIn:
        if self.shipping_method is not None and self.recipient is None:
            raise ValueError("shipping_method needs a recipient")
        return self

    @model_validator(mode="after")
    def _one_set_of_photos(self) -> OrderIn:
        if (self.upload_id is None) == (self.upload_ids is None):
            raise ValueError("send exactly one of upload_id (one photo) and upload_ids (1-4 photos)")
        if self.upload_ids is not None and len(set(self.upload_ids)) != len(self.upload_ids):
            raise ValueError("upload_ids must be distinct: each photo once")
        return self

    @property
    def photo_ids(self) -> list[str]:
        """The order's uploads, the primary first, whichever field named them."""
        return self.upload_ids if self.upload_ids is not None else [self.upload_id]


class ApproveIn(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [APPROVE_IN]})

    proof: int = Field(ge=0, le=7, description="the variant number of a proof that passed the identity gate")


class CancelIn(RequestBody):
    reason: str | None = Field(None, max_length=500)


class PaymentOut(BaseModel):
    mode: Literal["off", "stripe", "credits"]
    label: str
    amount_cents: int
    currency: str
    paid_cents: int
    refunded_cents: int
    refund_id: str | None
    cancellation_fee_cents: int = Field(
        0, description="what a cancel keeps of the payment: set when a proof is first downloaded (the shop's cancellation policy)"
    )
    payment_intent_id: str | None
    client_secret: str | None = Field(
        None,
        description="for Stripe.js: in the response that created the order, and to the shop's key while it awaits payment",
    )
    credits_price: int = Field(0, description="what the order costs in credits; 0 unless paid in credits")
    credits_paid: int = Field(0, description="taken from the customer's wallet")
    credits_refunded: int = Field(0, description="given back to the wallet (a failed, rejected or cancelled order)")
    customer_ref: str | None = Field(None, description="the customer the order was placed for")
    quote_id: str | None = Field(None, description="the quote whose price the order was charged")
    preview: bool = Field(False, description="made before it was paid")


class StageOut(BaseModel):
    name: str
    status: Literal["pending", "running", "done"]
    seconds: float | None


class ProofOut(BaseModel):
    variant: int
    take: str | None = Field(
        None,
        description="what sets this proof apart on the embedded engine (classic, palette, close, close_palette, "
        "full_palette, face, bold, fine; backdrop on older orders); null for a diffusion engine",
    )
    label: str | None = Field(None, description="the take's name for the customer, e.g. 'Bold strokes'")
    url: str | None = Field(description="a signed URL, valid for minutes, and only while the order allows the file")
    preview: bool = Field(
        False,
        description="true: `url` is a watermarked preview, at proof size once the order is paid and small (the shop's "
        "previews.long_side) for a preview not paid yet; the approved proof comes clean once approved",
    )
    identity_score: float | None
    passed: bool
    round: int


class EventOut(BaseModel):
    at: datetime
    from_state: str | None
    to_state: str
    reason: str | None


class ConsentOut(BaseModel):
    upload_id: str
    consented_at: datetime | None = Field(
        description="when the caller said the person pictured agreed (null: uploaded before consent was asked)"
    )
    api_key_id: str | None = Field(description="the key of the caller that said so: the upload's own")


class FulfilmentOut(BaseModel):
    provider: str
    provider_order_id: str | None
    status: FulfilmentStatus = Field(description="pending until the provider accepts the order, then the provider's status")
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    submitted_at: datetime | None


class OrderOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_OUT]})

    id: str
    state: str
    reason: str | None = Field(description="why the order is in its state: the rejection or failure reason")
    style_id: str
    product_id: str
    variants: int
    approval: str
    tier: str | None
    payment: PaymentOut
    stage: str | None
    stages: list[StageOut]
    identity_threshold: float | None
    proofs: list[ProofOut]
    approved_proof: int | None
    upload_ids: list[str] = Field(
        default_factory=list, description="the customer's photos the order was made from, the primary first"
    )
    proofs_downloaded_at: datetime | None = Field(
        None, description="when the customer first downloaded a proof (a preview or the bundle); a cancel after it keeps a fee"
    )
    print_file_ready: bool
    expected_wait: WaitOut = Field(description="the order's tier's waits, as GET /v1/tiers gives them")
    expected_at: datetime | None = Field(
        description="when the proofs (while they are made) or the print file (while it is) should be ready; "
        "null while the order waits for the customer, or is done"
    )
    shipping_method: str | None
    recipient: MaskedRecipient | None = Field(description="masked: the full details stay in the orders database")
    fulfilment: FulfilmentOut | None = Field(description="the print provider's order, once submitted")
    events: list[EventOut]
    consent: list[ConsentOut] = Field(
        default_factory=list,
        description="the audit trail's consent records: for each photo of the order, when and by which key consent was given",
    )
    created_at: datetime
    updated_at: datetime
    customer_token: str | None = Field(
        None,
        description="lets the customer read and approve this one order (its page: /shop/orders/<id>#t=<token>); "
        "given to the shop's key, never in an answer to the token itself",
    )


class PrintFileOut(BaseModel):
    order_id: str
    url: str
    expires_in: int
    format: str
    bytes: int
    pixel_size: tuple[int, int]
    effective_dpi: float


class WebhookOut(BaseModel):
    received: bool
    outcome: str


# -- customers and quotes


class CustomerIn(RequestBody):
    plan: str = Field(max_length=32, description="a plan of the shop's catalog (products.yaml plans)")


class CustomerOrderOut(BaseModel):
    id: str
    state: str
    product_id: str
    tier: str | None
    payment: Literal["off", "stripe", "credits"]
    amount_cents: int
    currency: str
    credits_price: int
    credits_paid: int
    credits_refunded: int
    quote_id: str | None
    preview: bool
    created_at: datetime


class CreditEntryOut(BaseModel):
    id: int
    kind: Literal["grant", "purchase", "spend", "refund", "expiry", "adjustment", "clawback"]
    amount: int = Field(description="credits into (+) or out of (-) the wallet")
    balance_after: int = Field(description="the wallet's balance once this entry was written")
    counter_account: str = Field(description="the shop's account on the other side, e.g. shop:earned for a spend")
    reason: str
    order_id: str | None
    pack_purchase_id: str | None
    expires_at: datetime | None = Field(description="a grant's credits expire then")
    created_at: datetime


class CustomerOrdersOut(BaseModel):
    items: list[CustomerOrderOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as orders_cursor for the next page; null on the last")


class CreditEntriesOut(BaseModel):
    items: list[CreditEntryOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as entries_cursor for the next page; null on the last")


class CustomerOut(BaseModel):
    ref: str
    plan: str
    balance: int = Field(description="credits that can be spent now: the sum of the wallet's entries")
    created_at: datetime
    orders: CustomerOrdersOut
    entries: CreditEntriesOut


class ErasureOut(BaseModel):
    id: str
    erased_at: datetime
    orders: int = Field(description="the customer's orders whose photos, proofs, files and recipient were erased")
    files: int = Field(description="stored files deleted")
    repeated: bool = Field(description="true: this customer had been erased before, and nothing was left to erase")


class IdentityIn(RequestBody):
    upload_ids: list[Annotated[str, Field(max_length=32)]] = Field(
        min_length=1,
        max_length=MAX_PHOTOS,
        description="1-4 distinct uploads of one person; every photo is compared with the others "
        "(422 photos_not_same_person names the one that differs)",
    )
    consent: bool | None = Field(
        None, description="required, true: the person pictured agreed to being kept for later jobs (else 422 consent_required)"
    )
    label: str | None = Field(None, min_length=1, max_length=64, description='the shop\'s own name for it, e.g. "model A"')
    customer_ref: str | None = Field(
        None, max_length=64, description="the customer it belongs to: erasing the customer deletes it"
    )

    @model_validator(mode="after")
    def _distinct_photos(self) -> IdentityIn:
        if len(set(self.upload_ids)) != len(self.upload_ids):
            raise ValueError("upload_ids must be distinct: each photo once")
        return self


class IdentityOut(BaseModel):
    id: str
    label: str | None
    customer_ref: str | None
    photos: int = Field(description="how many photos it keeps")
    encoder: str = Field(description="the face encoder whose identity the jobs compare their shots with")
    consented_at: datetime = Field(description="when the caller said the person pictured agreed")
    created_at: datetime


class IdentityList(BaseModel):
    identities: list[IdentityOut]


class QuoteIn(RequestBody):
    product_id: str = Field(max_length=64)
    tier: str | None = Field(None, max_length=32, description="default the catalog's")
    kind: str = Field("portrait_print", max_length=32, description="what is quoted; so far only portrait_print")
    customer_ref: str | None = Field(None, max_length=64, description="a quote for one customer is honoured for them alone")


class PriceOut(BaseModel):
    amount_cents: int
    currency: str
    credits: int | None = Field(description="the price in credits; null: not sold for credits in this tier")


class QuoteOut(BaseModel):
    id: str
    kind: str
    product_id: str
    tier: str
    customer_ref: str | None
    price: PriceOut
    expected_wait: WaitOut
    expires_at: datetime
    valid_seconds: int = Field(description="how long the quote was made valid for")


# -- packs


class PackOut(BaseModel):
    id: str
    name: str
    credits: int
    amount_cents: int = Field(description="the price, in the currency's minor unit")
    currency: str


class PackPurchaseIn(RequestBody):
    pack_id: str = Field(max_length=64, description="a pack from GET /v1/packs")


class PackPurchaseOut(BaseModel):
    id: str
    customer_ref: str
    pack_id: str
    credits: int = Field(description="added to the customer's wallet once the payment succeeds in full")
    amount_cents: int
    currency: str
    state: Literal["awaiting_payment", "paid", "refunded"]
    paid_cents: int
    refunded_cents: int = Field(description="a refund takes back the refunded share of the pack's credits that is left unspent")
    payment_intent_id: str | None
    client_secret: str | None = Field(
        None, description="for Stripe.js to confirm the payment in the customer's browser; only in the answers to POST"
    )
    created_at: datetime
    updated_at: datetime
