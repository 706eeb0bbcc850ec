"""The style and print-product catalogs: data files in this package, typed here."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from photogen_pipelines.errors import BadInput, NotFound, PaymentRequired

MM_PER_INCH = 25.4


class EmbeddedStyleParams(BaseModel):
    """Parameters of the CPU style-transfer engine for one style."""

    builtin: dict[int, float] | None = None
    style_image: str | None = None
    strength: float = Field(0.6, gt=0.0, le=1.0)
    preserve_color: bool = False
    # the "second palette" take blends the style with this one (the same kind of source)
    second_palette: dict[int, float] | str | None = None
    # takes (generation/takes.py) this style does not offer: those that read as another of
    # its takes at thumbnail size. Not an engine parameter, so not in model_dump()
    without_takes: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="after")
    def _one_style_source(self) -> EmbeddedStyleParams:
        if (self.builtin is None) == (self.style_image is None):
            raise ValueError("give exactly one of builtin or style_image")
        if len(set(self.without_takes)) != len(self.without_takes) or "classic" in self.without_takes:
            raise ValueError("without_takes names each take once, and never classic (the style itself)")
        if self.second_palette is not None and isinstance(self.second_palette, str) != (self.style_image is not None):
            raise ValueError("second_palette must be a style picture for a style_image style, a builtin blend otherwise")
        return self


DEFAULT_NEGATIVE_PROMPT = "lowres, low quality, worst quality, watermark, text, deformed, disfigured, cross-eyed, extra faces"


class DiffusionStyleParams(BaseModel):
    """Parameters of the GPU engine (SDXL + InstantID) for one style."""

    prompt: str = Field(min_length=1)
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    # how much of the denoising schedule re-runs over the photo (1.0: from noise); the
    # identity gate retries with strength * retry_decay, keeping more of the photo
    strength: float = Field(0.9, gt=0.0, le=1.0)
    ip_adapter_scale: float = Field(0.8, ge=0.0, le=1.5)
    controlnet_conditioning_scale: float = Field(0.8, ge=0.0, le=1.5)
    guidance_scale: float = Field(5.0, ge=1.0, le=20.0)
    lora: str | None = None  # a file in the models folder's loras/, without .safetensors
    lora_scale: float = Field(0.8, ge=0.0, le=2.0)
    # reference-image engines (flux2-klein, qwen-edit): a picture of the style, a file in the
    # models folder's style-references/; it takes one of the model's reference places
    reference_image: str | None = Field(None, pattern=r"^[\w.-]+\.(png|jpg|jpeg|webp)$")


# what a remote model's inputs can be filled from: our picture, the style's diffusion
# parameters, the call's strength (after the identity gate's decay), seed and outputs
REPLICATE_FIELDS = frozenset(
    {
        "image",
        "prompt",
        "negative_prompt",
        "strength",
        "ip_adapter_scale",
        "controlnet_conditioning_scale",
        "guidance_scale",
        "seed",
        "num_outputs",
        "steps",
        "images",  # a reference model's list of photos (the primary first)
        "aspect_ratio",  # the size asked for, as the nearest of the model's `aspect_ratios`
    }
)


class ReplicateModel(BaseModel):
    """A model on Replicate that renders a style, pinned to one version (or, for an
    official model, run by name without one), and how its inputs are filled from ours
    (`inputs`: our field -> its input name; `fixed`: inputs sent as they are).

    A reference model maps `images` (every photo of the customer, at most `max_images`)
    and `aspect_ratio` (one of its `aspect_ratios`) instead of `image`. `price_per_image`
    is what one output picture costs, for the models Replicate prices per image."""

    model: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")  # owner/name
    version: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # None: an official model
    inputs: dict[str, str]
    fixed: dict[str, str | int | float | bool] = Field(default_factory=dict)
    max_images: int = Field(1, ge=1, le=16)
    aspect_ratios: list[str] = Field(default_factory=list)  # "W:H" choices of the model's schema
    price_per_image: float | None = Field(None, ge=0.0)  # None: the shop's setting

    @model_validator(mode="after")
    def _known_fields(self) -> ReplicateModel:
        unknown = set(self.inputs) - REPLICATE_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} in inputs; ours are {sorted(REPLICATE_FIELDS)}")
        if ("image" in self.inputs) == ("images" in self.inputs):
            raise ValueError("inputs must map exactly one of `image` or `images`: the model needs the customer's picture")
        if "aspect_ratio" in self.inputs and not self.aspect_ratios:
            raise ValueError("a model that maps `aspect_ratio` lists its `aspect_ratios` (W:H)")
        for ratio in self.aspect_ratios:
            width, _, height = ratio.partition(":")
            if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
                raise ValueError(f"aspect ratio {ratio!r} is not W:H")
        return self


class ReplicateStyleParams(DiffusionStyleParams):
    """What the Replicate backend reads for a style: its diffusion parameters and its model."""

    replicate: ReplicateModel


class Style(BaseModel):
    id: str
    name: str
    description: str
    embedded: EmbeddedStyleParams
    diffusion: DiffusionStyleParams | None = None
    replicate: ReplicateModel | None = None  # the serverless backend's model (with `diffusion`'s prompt)
    identity_threshold: float = Field(ge=-1.0, le=1.0)

    def engine_params(self, section: str) -> EmbeddedStyleParams | DiffusionStyleParams:
        """This style's parameters for the engine that reads `section` of the catalog."""
        if section == "replicate":
            if self.diffusion is not None and self.replicate is not None:
                return ReplicateStyleParams(**self.diffusion.model_dump(), replicate=self.replicate)
            params = None
        else:
            params = getattr(self, section, None) if section in ("embedded", "diffusion") else None
        if params is None:
            raise NotFound(
                f"style {self.id!r} has no {section!r} parameters, so this engine cannot render it", code="style_unavailable"
            )
        return params


class StyleCatalog(BaseModel):
    version: int
    encoder: str
    retry_decay: float = Field(0.6, gt=0.0, lt=1.0)
    max_rounds: int = Field(3, ge=1, le=5)
    styles: list[Style]

    def get(self, style_id: str) -> Style:
        for style in self.styles:
            if style.id == style_id:
                return style
        raise NotFound(f"unknown style {style_id!r}; known: {', '.join(self.ids())}", code="unknown_style")

    def ids(self) -> list[str]:
        return [s.id for s in self.styles]


class ProviderProduct(BaseModel):
    """How one print provider knows one of our products (products.yaml, `fulfilment:`)."""

    sku: str = Field(min_length=1, description="Prodigi's SKU, or Printful's catalog variant id")
    print_area: str = "default"  # Prodigi's asset printArea / Printful's file type
    sizing: Literal["fillPrintArea", "fitPrintArea", "stretchToPrintArea"] = "fillPrintArea"
    attributes: dict[str, str] = Field(default_factory=dict)  # e.g. Prodigi's canvas wrap colour


class ExpectedWait(BaseModel):
    """The catalog's estimate of a tier's waits, in seconds: from payment to proofs, and
    from approval to the print file. Stated by the shop for the engine it runs; replaced
    by the median of its own orders once enough have gone through (orders/waits.py)."""

    proofs_seconds: int = Field(60, ge=1)
    print_seconds: int = Field(60, ge=1)


class Tier(BaseModel):
    """A quality tier: which engine paints the proofs, how many, how carefully, and which
    model upscales the print. Each product prices its tiers (Product.tier_prices).

    A tier's price buys its `variants` proofs: an order may ask for fewer, at the same
    price, never for more (`proofs`); more proofs is a higher tier."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    description: str
    # default: the shop's engine (PHOTOGEN_ENGINE); embedded: the CPU engine, whatever the shop runs
    engine: Literal[
        "default", "embedded", "diffusers", "flux2-klein", "qwen-edit", "replicate", "runpod", "runpod-qwen-edit", "service"
    ] = "default"
    variants: int = Field(4, ge=1, le=8)  # the proofs the tier's price buys, and the most an order may ask for
    steps: int | None = Field(None, ge=1, le=150)  # diffusion engines' denoising steps
    upscale_model: str | None = None  # the embedded upscaler's model (upscale_ncnn.MODEL_SCALES)
    # mirrored and rotated copies of the proof averaged in each upscaling pass (1, 2, 4 or 8): the model's
    # own fine pattern averages out (imaging/print_detail.py); each copy is one more model pass
    print_ensemble: Literal[1, 2, 4, 8] = 1
    # what the shop tells a customer to expect until its own orders of the tier measure it (orders/waits.py)
    expected_wait: ExpectedWait = Field(default_factory=lambda: ExpectedWait())

    def proofs(self, asked: int | None = None) -> int:
        """How many proofs an order in this tier gets: the tier's own number, or fewer when
        the order asks for fewer; more than the tier gives is BadInput(too_many_variants)."""
        if asked is None:
            return self.variants
        if asked > self.variants:
            raise BadInput(
                f"the {self.id} tier gives at most {self.variants} proofs, and {asked} were asked for; "
                "ask for fewer, or order a tier that gives more (GET /v1/tiers)",
                code="too_many_variants",
            )
        return asked


class CancellationPolicy(BaseModel):
    """What a cancel refunds (products.yaml `cancellation:`). Until the customer has
    downloaded a proof, everything paid; after, the price less `proof_fee_percent` of it,
    which the shop keeps for the proofs it made and delivered. A catalog without the
    section keeps no fee."""

    proof_fee_percent: int = Field(0, ge=0, lt=100)  # below 100: a cancelled order always gets something back

    def fee(self, amount_cents: int) -> int:
        """The fee a cancel keeps of an order of `amount_cents` once its proofs were downloaded."""
        return amount_cents * self.proof_fee_percent // 100


class Pack(BaseModel):
    """Credits sold together for money (products.yaml `packs:`), paid through Stripe."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    credits: int = Field(gt=0)
    price_cents: int = Field(gt=0)
    currency: str = Field("usd", pattern=r"^[a-z]{3}$")


class Plan(BaseModel):
    """What a customer may order (products.yaml `plans:`): the tiers open to them, and the
    credits granted once when the shop first names them on the plan."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    tiers: list[str] = Field(min_length=1)
    welcome_credits: int = Field(0, ge=0)


class CreditPolicy(BaseModel):
    """How the shop sells in credits (products.yaml `credits:`). A credit-paid order that
    fails, is rejected or cancelled gets its credits back (`on_failure: refund`), or
    instead one free re-roll: the same credits, to be spent within `reroll_days`."""

    on_failure: Literal["refund", "reroll"] = "refund"
    reroll_days: int = Field(7, ge=1, le=365)
    default_plan: str = "free"


class PreviewPolicy(BaseModel):
    """Proofs before payment (products.yaml `previews:`): with `enabled`, an order may ask
    for a preview, made before it is paid, at most `free_per_day` per customer per UTC day.
    Until paid its proofs are shown small (`long_side` px) and watermarked; an unpaid preview
    is cancelled after `expire_hours` and its files retired."""

    enabled: bool = False
    free_per_day: int = Field(3, ge=0)
    long_side: int = Field(384, ge=128, le=1024)
    expire_hours: int = Field(48, ge=1)


class Product(BaseModel):
    id: str
    name: str
    width_in: float | None = None
    height_in: float | None = None
    width_mm: float | None = None
    height_mm: float | None = None
    dpi: int = 300
    bleed_mm: float = 0.0
    min_dpi: int = 150
    format: str = Field("jpeg", pattern="^(jpeg|tiff|png)$")
    price_cents: int
    # tier id -> price; the default tier's price is price_cents (ProductCatalog.price)
    tier_prices: dict[str, int] = Field(default_factory=dict)
    # tier id -> price in credits; a tier without one cannot be paid in credits (ProductCatalog.credits_price)
    tier_credits: dict[str, int] = Field(default_factory=dict)
    # provider name (prodigi, printful) -> that provider's product; a product without an
    # entry for the shop's provider cannot be fulfilled by it
    fulfilment: dict[str, ProviderProduct] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_unit(self) -> Product:
        inches = self.width_in is not None and self.height_in is not None
        mm = self.width_mm is not None and self.height_mm is not None
        if inches == mm:
            raise ValueError(f"{self.id}: give width/height in inches or in mm, not both or neither")
        return self

    @property
    def trim_inches(self) -> tuple[float, float]:
        if self.width_in is not None:
            return self.width_in, self.height_in
        return self.width_mm / MM_PER_INCH, self.height_mm / MM_PER_INCH

    @property
    def canvas_inches(self) -> tuple[float, float]:
        """Trim size plus bleed on every side: the area the print file covers."""
        bleed = 2 * self.bleed_mm / MM_PER_INCH
        w, h = self.trim_inches
        return w + bleed, h + bleed

    @property
    def pixel_size(self) -> tuple[int, int]:
        w, h = self.canvas_inches
        return round(w * self.dpi), round(h * self.dpi)

    @property
    def bleed_px(self) -> int:
        return round(self.bleed_mm / MM_PER_INCH * self.dpi)


class ProductCatalog(BaseModel):
    version: int
    tiers: list[Tier] = Field(default_factory=lambda: [Tier(id="standard", name="Standard", description="")])
    default_tier: str = "standard"
    cancellation: CancellationPolicy = Field(default_factory=CancellationPolicy)
    credits: CreditPolicy = Field(default_factory=CreditPolicy)
    previews: PreviewPolicy = Field(default_factory=PreviewPolicy)
    packs: list[Pack] = Field(default_factory=list)
    # a catalog without plans has one: every tier open to every customer
    plans: list[Plan] = Field(default_factory=list)
    products: list[Product]

    @model_validator(mode="after")
    def _tiers_known(self) -> ProductCatalog:
        known = {tier.id for tier in self.tiers}
        if self.default_tier not in known:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers {sorted(known)}")
        for product in self.products:
            unknown = (set(product.tier_prices) | set(product.tier_credits)) - known
            if unknown:
                raise ValueError(f"{product.id}: prices for unknown tiers {sorted(unknown)}")
        for plan in self.plans:
            if set(plan.tiers) - known:
                raise ValueError(f"plan {plan.id}: unknown tiers {sorted(set(plan.tiers) - known)}")
        if self.plans and self.credits.default_plan not in {plan.id for plan in self.plans}:
            raise ValueError(f"credits.default_plan {self.credits.default_plan!r} is not one of the plans")
        return self

    def credits_price(self, product: Product, tier_id: str | None) -> int:
        """What `product` costs in credits in a tier (the only kind so far: a portrait print);
        a tier without a credit price is not sold for credits."""
        tier = self.tier(tier_id)
        if tier.id not in product.tier_credits:
            raise NotFound(f"product {product.id} is not sold for credits in the {tier.id} tier", code="not_sold_for_credits")
        return product.tier_credits[tier.id]

    def pack(self, pack_id: str) -> Pack:
        for pack in self.packs:
            if pack.id == pack_id:
                return pack
        raise NotFound(f"unknown pack {pack_id!r}; known: {', '.join(p.id for p in self.packs) or 'none'}", code="unknown_pack")

    def plan(self, plan_id: str | None) -> Plan:
        """A plan by id (None: the default plan); a catalog without plans opens every tier."""
        if not self.plans:
            return Plan(id=self.credits.default_plan, name="Every tier", tiers=[t.id for t in self.tiers])
        wanted = plan_id or self.credits.default_plan
        for plan in self.plans:
            if plan.id == wanted:
                return plan
        raise NotFound(f"unknown plan {wanted!r}; known: {', '.join(p.id for p in self.plans)}", code="unknown_plan")

    def check_plan_allows(self, plan_id: str | None, tier_id: str | None) -> None:
        """PaymentRequired(plan_excludes_tier) when the customer's plan does not open the tier."""
        plan, tier = self.plan(plan_id), self.tier(tier_id)
        if tier.id not in plan.tiers:
            raise PaymentRequired(
                f"the {plan.id} plan does not include the {tier.id} tier (it includes {', '.join(plan.tiers)})",
                code="plan_excludes_tier",
            )

    def tier(self, tier_id: str | None) -> Tier:
        wanted = tier_id or self.default_tier
        for tier in self.tiers:
            if tier.id == wanted:
                return tier
        raise NotFound(f"unknown tier {wanted!r}; known: {', '.join(t.id for t in self.tiers)}", code="unknown_tier")

    def price(self, product: Product, tier_id: str | None) -> int:
        """What `product` costs in a tier: its price for the tier, else (the default tier)
        its price_cents; a tier the product is not offered in is unknown."""
        tier = self.tier(tier_id)
        if tier.id in product.tier_prices:
            return product.tier_prices[tier.id]
        if tier.id == self.default_tier:
            return product.price_cents
        raise NotFound(f"product {product.id} is not offered in the {tier.id} tier", code="unknown_tier")

    def get(self, product_id: str) -> Product:
        for product in self.products:
            if product.id == product_id:
                return product
        raise NotFound(
            f"unknown product {product_id!r}; known: {', '.join(p.id for p in self.products)}",
            code="unknown_product",
        )


Severity = Literal["warn", "error"]


class GateConfig(BaseModel):
    severity: Severity


class OneFaceGate(GateConfig):
    min_face_score: float = Field(ge=0.0, le=1.0)


class UpscaleGate(GateConfig):
    min_ssim: float = Field(ge=-1.0, le=1.0)


class PrintDetailGate(GateConfig):
    max_pattern_score: float = Field(gt=0)
    # a stricter (or looser) severity for orders of named tiers: a tier that promises a
    # better print holds back a file that fails the check
    tier_severity: dict[str, Severity] = Field(default_factory=dict)

    def severity_for(self, tier: str | None) -> Severity:
        return self.tier_severity.get(tier or "", self.severity)


class PrintSpecGate(GateConfig):
    max_megabytes: float = Field(gt=0)


class ExplicitScoreLimits(BaseModel):
    upload: float = Field(gt=0.0, le=1.0)  # a customer's photo at or over it is refused (unsafe_content)
    output: float = Field(gt=0.0, le=1.0)  # a generated picture at or over it fails its attempt


class ContentSafeGate(GateConfig):
    max_explicit_score: ExplicitScoreLimits


class QualityGates(BaseModel):
    """Thresholds and severities of the asset checks (quality.yaml)."""

    version: int
    one_face_per_proof: OneFaceGate
    upscale_faithful: UpscaleGate
    print_spec_met: PrintSpecGate
    # a quality file written before this gate existed still loads, with the shipped numbers
    print_detail_clean: PrintDetailGate = PrintDetailGate(severity="warn", max_pattern_score=1.4)
    content_safe: ContentSafeGate = ContentSafeGate(
        severity="error", max_explicit_score=ExplicitScoreLimits(upload=0.8, output=0.8)
    )

    def check_tiers(self, tiers: ProductCatalog) -> QualityGates:
        """ValueError if a gate names a tier the product catalog does not sell: a typo there
        would quietly leave that tier's prints unguarded."""
        known = {tier.id for tier in tiers.tiers}
        for name in type(self).model_fields:
            gate = getattr(self, name)
            unknown = set(getattr(gate, "tier_severity", {})) - known
            if unknown:
                raise ValueError(f"quality gate {name}: tier_severity names unknown tiers {sorted(unknown)}")
        return self


def _read(name: str, path: str | Path | None) -> dict:
    text = Path(path).read_text() if path else resources.files(__name__).joinpath(name).read_text()
    return yaml.safe_load(text)


@functools.cache
def load_styles(path: str | None = None) -> StyleCatalog:
    """The style catalog shipped with the package, or one at `path`."""
    return StyleCatalog.model_validate(_read("styles.yaml", path))


@functools.cache
def load_products(path: str | None = None) -> ProductCatalog:
    """The product catalog shipped with the package, or one at `path`."""
    return ProductCatalog.model_validate(_read("products.yaml", path))


@functools.cache
def load_quality(path: str | None = None) -> QualityGates:
    """The quality gates shipped with the package, or those at `path`."""
    return QualityGates.model_validate(_read("quality.yaml", path))
