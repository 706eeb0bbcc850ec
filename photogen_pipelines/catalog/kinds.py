"""The studio's job kinds as catalog data (kinds.yaml): each kind's inputs, its shots with the
gates on each, what it delivers, its price per tier and the engines that can make it.

A kind is data, so a shop changes its poses, gates or prices without a code change; the
loader refuses a catalog whose kinds name a pose, gate or input type nobody knows.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from photogen_pipelines.errors import BadInput, NotFound

InputType = Literal["person", "style", "print_product", "poses", "product_photo", "garment_photo", "approved_portrait", "seconds"]
Gate = Literal["identity", "content_safe", "product_lock", "frames_identity"]
AcrossCheck = Literal["consistency"]
Output = Literal["proofs", "print_file", "shots_zip", "mp4", "poster"]


class KindInput(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: InputType
    required: bool = True
    description: str | None = None


class Price(BaseModel):
    cents: int = Field(ge=0)
    credits: int | None = Field(None, ge=1)  # None: not sold for credits


class ProductLock(BaseModel):
    min_ssim: float = Field(gt=0.0, le=1.0)


class Kind(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    description: str
    inputs: list[KindInput] = Field(min_length=1)
    # proofs: as many as the tier gives (portrait_print); poses: one shot per pose of the job
    # (default `poses`); a list: these named shots, always
    shots: Literal["proofs", "poses"] | list[str]
    poses: list[str] = Field(default_factory=list)
    gates: list[Gate] = Field(min_length=1)
    across: list[AcrossCheck] = Field(default_factory=list)
    seeds: Literal["per_shot", "locked"] = "per_shot"
    max_retries: int = Field(0, ge=0, le=5)
    product_lock: ProductLock | None = None
    outputs: list[Output] = Field(min_length=1)
    price: dict[str, Price] = Field(default_factory=dict)  # per tier; empty: priced by its print product
    engines: list[str] = Field(min_length=1)
    embedded: str | None = None  # what the CPU engine makes of it; None: it refuses the kind

    @model_validator(mode="after")
    def _consistent(self) -> Kind:
        if (self.shots == "poses") != bool(self.poses):
            raise ValueError(f"kind {self.id}: shots 'poses' needs the kind's default poses, and only then")
        if ("product_lock" in self.gates) != (self.product_lock is not None):
            raise ValueError(f"kind {self.id}: the product_lock gate and its product_lock settings go together")
        if "product_lock" in self.gates and not any(i.type in ("product_photo", "garment_photo") for i in self.inputs):
            raise ValueError(f"kind {self.id}: a product lock needs a product or garment photo among the inputs")
        if ("embedded" in self.engines) != (self.embedded is not None):
            raise ValueError(f"kind {self.id}: say what the embedded engine makes exactly when it is one of the engines")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"kind {self.id}: each input is named once")
        return self

    def shot_names(self, poses: list[str] | None = None) -> list[str] | None:
        """The job's shots: the poses asked (default the kind's), its named shots, or None
        for proofs (as many as the tier gives)."""
        if self.shots == "proofs":
            return None
        if self.shots == "poses":
            return list(poses or self.poses)
        return list(self.shots)

    def price_for(self, tier: str) -> Price:
        if tier not in self.price:
            sold = ", ".join(sorted(self.price)) or "its print product's tiers"
            raise BadInput(f"the {self.id} kind is not sold in the {tier} tier; it is sold in: {sold}", code="unknown_tier")
        return self.price[tier]

    def check_engine(self, engine: str) -> None:
        """BadInput(kind_needs_engine) naming the engines that can, when `engine` cannot."""
        if engine not in self.engines:
            raise BadInput(
                f"the {engine} engine cannot make a {self.id}; these can: {', '.join(self.engines)}",
                code="kind_needs_engine",
                details={"engines": self.engines},
            )


class KindCatalog(BaseModel):
    version: int = 1
    poses: dict[str, str]  # every pose a job may ask for, with the words the engines are given
    kinds: list[Kind] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_poses(self) -> KindCatalog:
        ids = [k.id for k in self.kinds]
        if len(set(ids)) != len(ids):
            raise ValueError("each kind is listed once")
        for kind in self.kinds:
            unknown = set(kind.poses) - set(self.poses)
            if unknown:
                raise ValueError(f"kind {kind.id}: unknown poses {sorted(unknown)}; known: {sorted(self.poses)}")
        return self

    def get(self, kind_id: str) -> Kind:
        for kind in self.kinds:
            if kind.id == kind_id:
                return kind
        raise NotFound(f"unknown kind {kind_id!r}; known: {', '.join(k.id for k in self.kinds)}", code="unknown_kind")

    def check_poses(self, poses: list[str]) -> list[str]:
        """The poses a job asks for, each known and named once."""
        unknown = [p for p in poses if p not in self.poses]
        if unknown or not poses or len(set(poses)) != len(poses):
            named = f" (unknown: {', '.join(unknown)})" if unknown else ""
            raise BadInput(f"poses must be distinct names from: {', '.join(self.poses)}{named}", code="unknown_pose")
        return poses


@functools.cache
def load_kinds(path: str | None = None) -> KindCatalog:
    """The job kinds shipped with the package, or those at `path`."""
    text = Path(path).read_text() if path else resources.files("photogen_pipelines.catalog").joinpath("kinds.yaml").read_text()
    return KindCatalog.model_validate(yaml.safe_load(text))
