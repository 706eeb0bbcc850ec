"""The style and print-product catalogs: data files in this package, typed here."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from photogen_pipelines.errors import NotFound

MM_PER_INCH = 25.4


class EmbeddedStyleParams(BaseModel):
    """Parameters of the CPU style-transfer engine for one style."""

    builtin: dict[int, float] | None = None
    style_image: str | None = None
    strength: float = Field(0.6, gt=0.0, le=1.0)
    preserve_color: bool = False

    @model_validator(mode="after")
    def _one_style_source(self) -> EmbeddedStyleParams:
        if (self.builtin is None) == (self.style_image is None):
            raise ValueError("give exactly one of builtin or style_image")
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


class Style(BaseModel):
    id: str
    name: str
    description: str
    embedded: EmbeddedStyleParams
    diffusion: DiffusionStyleParams | None = None
    identity_threshold: float = Field(ge=-1.0, le=1.0)

    def engine_params(self, section: str) -> EmbeddedStyleParams | DiffusionStyleParams:
        """This style's parameters for the engine that reads `section` of the catalog."""
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
    products: list[Product]

    def get(self, product_id: str) -> Product:
        for product in self.products:
            if product.id == product_id:
                return product
        raise NotFound(
            f"unknown product {product_id!r}; known: {', '.join(p.id for p in self.products)}",
            code="unknown_product",
        )


class GateConfig(BaseModel):
    severity: Literal["warn", "error"]


class OneFaceGate(GateConfig):
    min_face_score: float = Field(ge=0.0, le=1.0)


class UpscaleGate(GateConfig):
    min_ssim: float = Field(ge=-1.0, le=1.0)


class PrintSpecGate(GateConfig):
    max_megabytes: float = Field(gt=0)


class QualityGates(BaseModel):
    """Thresholds and severities of the asset checks (quality.yaml)."""

    version: int
    one_face_per_proof: OneFaceGate
    upscale_faithful: UpscaleGate
    print_spec_met: PrintSpecGate


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
