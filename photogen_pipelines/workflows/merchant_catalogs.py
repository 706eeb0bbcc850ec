"""Merchant catalogs: a shop's product list in the artifact store becomes fashion shoots, one
job per SKU, made again only when what its shots show has changed.

A catalog lives under `catalogs/<catalog_id>/`: `catalog.csv` or `catalog.parquet` with the
columns sku, name, category, product_photo (a key relative to the catalog's folder, or a
store key starting with `catalogs/`), optional poses (`;`-separated, default the
fashion_shoot kind's) and optional identity_id (the shop's model for that SKU); and an
optional `model.json` {"identity_id": ...} naming the model for every other SKU.

Each SKU's fingerprint records what its shots depend on: the photo's bytes, the name and
category, the poses and the model. The job placed for a SKU keeps it in its inputs, so a
later check compares fingerprints (and says which part changed) instead of re-reading old
shots. The Dagster sensor and schedule call `stale_skus`, then `place_catalog_shoots`; a
repeated tick places nothing twice (the idempotency key carries the fingerprint).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from photogen_pipelines.catalog.kinds import KindCatalog, load_kinds
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import JobRow
from photogen_pipelines.errors import BadInput, NotFound
from photogen_pipelines.jobs.states import Job
from photogen_pipelines.orders import identities
from photogen_pipelines.storage.artifacts import load_json
from photogen_pipelines.storage.stores import ArtifactStore, valid_key
from photogen_pipelines.workflows.jobs import JobRequest, Placement, place_job

KIND = "fashion_shoot"
ROOT = "catalogs/"
FILES = {"csv": "catalog.csv", "parquet": "catalog.parquet"}
MODEL_FILE = "model.json"
REQUIRED_COLUMNS = ("sku", "name", "category", "product_photo")
OPTIONAL_COLUMNS = ("poses", "identity_id")
SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# 62, not the column's 64: `catalog:<id>:<sku>:<fingerprint>` must fit the jobs' 200-character idempotency key
CATALOG_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,61}")
# the fingerprint is four 16-hex-digit parts, each a truncated sha256, so a check can say which one changed
FINGERPRINT_PARTS = ("photo", "name_category", "poses", "model")
_PART = 16
REASONS = {
    "photo": "photo changed",
    "name_category": "name or category changed",
    "poses": "poses changed",
    "model": "model changed",
}
NEW_SKU = "new SKU"


class CatalogRow(BaseModel):
    row: int  # the SKU's row in the file, 1 for the first under the header
    sku: str
    name: str
    category: str
    product_key: str  # the product photo's key in the artifact store
    poses: list[str]  # the row's, or the kind's default
    identity_id: str  # the row's model, or model.json's


class MerchantCatalog(BaseModel):
    catalog_id: str
    source_key: str  # the catalog file it was read from
    identity_id: str | None  # model.json's: the model of every SKU without its own
    rows: list[CatalogRow]

    def row(self, sku: str) -> CatalogRow:
        for row in self.rows:
            if row.sku == sku:
                return row
        raise KeyError(sku)


@dataclass(frozen=True)
class StaleSku:
    """A SKU whose shots are missing or out of date, with everything its new job needs."""

    sku: str
    product_key: str
    poses: tuple[str, ...]
    identity_id: str
    fingerprint: str
    reasons: tuple[str, ...]  # "new SKU", or the parts that changed: "photo changed", "poses changed", ...
    previous_job_id: str | None  # the newest job of the SKU, None for a new one

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


@dataclass(frozen=True)
class CatalogCheck:
    """What `stale_skus` found: the SKUs to shoot, and SKUs with jobs that left the catalog
    (their jobs stay; the sensor logs them)."""

    catalog: MerchantCatalog
    stale: list[StaleSku]
    removed: list[str]


def folder(catalog_id: str) -> str:
    return f"{ROOT}{check_catalog_id(catalog_id)}/"


def check_catalog_id(catalog_id: str) -> str:
    if not CATALOG_ID_PATTERN.fullmatch(catalog_id or ""):
        raise BadInput(
            f"a catalog id is 1-62 letters, digits, '.', '_' or '-', starting with a letter or digit: {catalog_id!r}",
            code="catalog_invalid",
            details={"column": "catalog_id"},
        )
    return catalog_id


def catalog_ids(store: ArtifactStore) -> list[str]:
    """Every catalog in the store: the folders under `catalogs/` holding a catalog file."""
    found = set()
    for key in store.list(ROOT):
        parts = key[len(ROOT) :].split("/")
        if len(parts) == 2 and parts[1] in FILES.values() and CATALOG_ID_PATTERN.fullmatch(parts[0]):
            found.add(parts[0])
    return sorted(found)


def catalog_template_csv() -> str:
    """A catalog a merchant can start from: the header and two example SKUs."""
    return (
        "sku,name,category,product_photo,poses,identity_id\n"
        "tee-navy,Navy tee,t-shirts,photos/tee-navy.png,,\n"
        "tee-rust,Rust tee,t-shirts,photos/tee-rust.png,front;back;close_up,\n"
    )


def _invalid(message: str, **details) -> BadInput:
    return BadInput(message, code="catalog_invalid", details=details)


def _read_table(store: ArtifactStore, key: str, file_format: str) -> pd.DataFrame:
    data = store.get_bytes(key)
    try:
        if file_format == "csv":
            # every cell as text: a SKU "007" or "NA" stays itself
            return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pandas and pyarrow raise many kinds for a damaged file
        raise _invalid(f"{key} cannot be read as {file_format}: {exc}", file=key) from None


def _cell(value) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):  # an empty Parquet cell
        return ""
    return str(value).strip()


class CatalogModel(BaseModel):
    """`catalogs/<id>/model.json`: the shop's model for every SKU that names none."""

    identity_id: str = Field(pattern=r"^\s*\S{1,32}\s*$")


def _model_identity(store: ArtifactStore, catalog_id: str) -> str | None:
    key = folder(catalog_id) + MODEL_FILE
    if not store.exists(key):
        return None
    try:
        document = load_json(store, key, CatalogModel)
    except ValidationError:
        raise _invalid(f'{key} must be {{"identity_id": "..."}}, a saved identity\'s id', file=key) from None
    return document.identity_id.strip()


def _photo_key(catalog_id: str, value: str) -> str | None:
    key = value if value.startswith(ROOT) else folder(catalog_id) + value
    return key if valid_key(key) else None


def _poses(kinds: KindCatalog, value: str, row: int, sku: str) -> list[str]:
    if not value:
        return list(kinds.get(KIND).poses)
    poses = [p.strip() for p in value.split(";") if p.strip()]
    try:
        return kinds.check_poses(poses)
    except BadInput as exc:
        raise BadInput(f"row {row} ({sku}): {exc}", code="unknown_pose", details={"row": row, "column": "poses"}) from None


def read_catalog(store: ArtifactStore, catalog_id: str, kinds: KindCatalog | None = None) -> MerchantCatalog:
    """The catalog's rows, each checked, or BadInput: catalog_not_found, catalog_invalid
    (details: row and column, or the file), duplicate_sku, product_photo_missing,
    unknown_pose, model_required (a SKU with no identity_id and no model.json)."""
    kinds = kinds or load_kinds()
    base = folder(catalog_id)
    present = [(fmt, base + name) for fmt, name in FILES.items() if store.exists(base + name)]
    if not present:
        raise BadInput(
            f"catalog {catalog_id} not found: no {' or '.join(FILES.values())} in {base}",
            code="catalog_not_found",
            details={"catalog_id": catalog_id},
        )
    if len(present) > 1:
        raise _invalid(f"{base} holds both {' and '.join(FILES.values())}: keep one", file=base)
    file_format, source_key = present[0]
    table = _read_table(store, source_key, file_format)
    columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise _invalid(f"{source_key} lacks the column {missing[0]}", column=missing[0])
    table.columns = columns
    model = _model_identity(store, catalog_id)

    rows: list[CatalogRow] = []
    first_row: dict[str, int] = {}
    for number, record in enumerate(table.to_dict("records"), start=1):
        cells = {c: _cell(record.get(c)) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        sku = cells["sku"]
        if not SKU_PATTERN.fullmatch(sku):
            raise _invalid(f"row {number}: a SKU is 1-64 letters, digits, '.', '_' or '-': {sku!r}", row=number, column="sku")
        if sku in first_row:
            raise BadInput(
                f"row {number}: SKU {sku} is already on row {first_row[sku]}",
                code="duplicate_sku",
                details={"row": number, "column": "sku", "sku": sku, "first_row": first_row[sku]},
            )
        first_row[sku] = number
        for column in ("name", "category", "product_photo"):
            if not cells[column]:
                raise _invalid(f"row {number} ({sku}): {column} is empty", row=number, column=column)
        product_key = _photo_key(catalog_id, cells["product_photo"])
        if product_key is None:
            raise _invalid(f"row {number} ({sku}): product_photo is not a store key", row=number, column="product_photo")
        if not store.exists(product_key):
            raise BadInput(
                f"row {number} ({sku}): the product photo {product_key} is not in the store",
                code="product_photo_missing",
                details={"row": number, "column": "product_photo", "sku": sku, "key": product_key},
            )
        identity_id = cells["identity_id"] or model
        if identity_id is None:
            raise BadInput(
                f"row {number} ({sku}): a fashion shoot needs the shop's model: an identity_id column or {base}{MODEL_FILE}",
                code="model_required",
                details={"row": number, "column": "identity_id", "sku": sku},
            )
        rows.append(
            CatalogRow(
                row=number,
                sku=sku,
                name=cells["name"],
                category=cells["category"],
                product_key=product_key,
                poses=_poses(kinds, cells["poses"], number, sku),
                identity_id=identity_id,
            )
        )
    return MerchantCatalog(catalog_id=catalog_id, source_key=source_key, identity_id=model, rows=rows)


def _part(*values: str) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:_PART]


def fingerprint(store: ArtifactStore, row: CatalogRow) -> str:
    """What the SKU's shots are made from, as 64 hex digits: four parts (FINGERPRINT_PARTS),
    each the first 16 of a sha256: of the photo's bytes, of name and category, of the pose
    list (in order: the shots' order), of the model identity."""
    photo = hashlib.sha256(store.get_bytes(row.product_key)).hexdigest()[:_PART]
    return photo + _part(row.name, row.category) + _part(*row.poses) + _part(row.identity_id)


def changed_parts(old: str | None, new: str) -> list[str]:
    """The reasons two fingerprints differ, part by part (a missing or foreign one: all of them)."""
    if old == new:
        return []
    if not isinstance(old, str) or len(old) != len(new):
        return [REASONS[part] for part in FINGERPRINT_PARTS]
    return [
        REASONS[part]
        for position, part in enumerate(FINGERPRINT_PARTS)
        if old[position * _PART : (position + 1) * _PART] != new[position * _PART : (position + 1) * _PART]
    ]


def _newest_jobs(database: Database, catalog_id: str) -> dict[str, tuple[str, dict]]:
    """Each SKU's newest job of the catalog: its id and inputs."""
    with database.session() as session:
        found = session.execute(
            select(JobRow.sku, JobRow.id, JobRow.inputs).where(JobRow.catalog == catalog_id).order_by(JobRow.created_at)
        ).all()
    return {sku: (job_id, inputs) for sku, job_id, inputs in found}  # later rows overwrite: the newest stays


def _check_models(database: Database, catalog: MerchantCatalog) -> None:
    """Every model the catalog names is a saved identity (the catalog is the operator's: the
    model may have been saved through any of the shop's keys)."""
    for identity_id in sorted({row.identity_id for row in catalog.rows}):
        try:
            identities.get_identity(database, identity_id, None, any_owner=True)
        except NotFound:
            rows = [row.row for row in catalog.rows if row.identity_id == identity_id]
            raise BadInput(
                f"catalog {catalog.catalog_id}: the model identity {identity_id} is not a saved identity (rows {rows})",
                code="identity_not_found",
                details={"identity_id": identity_id, "rows": rows},
            ) from None


def stale_skus(database: Database, store: ArtifactStore, catalog_id: str, kinds: KindCatalog | None = None) -> CatalogCheck:
    """The catalog's SKUs whose shots are missing or out of date, in the catalog's order,
    and the SKUs with jobs no longer in it. Refuses (BadInput) as read_catalog does, and
    with identity_not_found for a model that is not a saved identity of the shop."""
    catalog = read_catalog(store, catalog_id, kinds)
    _check_models(database, catalog)
    newest = _newest_jobs(database, catalog_id)
    stale = []
    for row in catalog.rows:
        now = fingerprint(store, row)
        job_id, inputs = newest.get(row.sku, (None, None))
        reasons = [NEW_SKU] if job_id is None else changed_parts((inputs or {}).get("fingerprint"), now)
        if reasons:
            stale.append(StaleSku(row.sku, row.product_key, tuple(row.poses), row.identity_id, now, tuple(reasons), job_id))
    listed = {row.sku for row in catalog.rows}
    return CatalogCheck(catalog=catalog, stale=stale, removed=sorted(set(newest) - listed))


def idempotency_key(catalog_id: str, sku: str, fingerprint: str) -> str:
    """One job per SKU and fingerprint: a repeated tick finds the job it placed."""
    return f"catalog:{catalog_id}:{sku}:{fingerprint}"


def place_catalog_shoots(place: Placement, catalog_id: str, stale: list[StaleSku]) -> list[Job]:
    """One fashion_shoot job per stale SKU, the shop's own (no API key, payments off), in
    the order given; a SKU placed already for the same fingerprint gives its earlier job."""
    check_catalog_id(catalog_id)
    jobs = []
    for sku in stale:
        request = JobRequest(
            kind=KIND,
            identity_id=sku.identity_id,
            product_key=sku.product_key,
            poses=sku.poses,
            payment="off",
            catalog=catalog_id,
            sku=sku.sku,
            fingerprint=sku.fingerprint,
        )
        placed = place_job(place, request, api_key_id=None, idempotency_key=idempotency_key(catalog_id, sku.sku, sku.fingerprint))
        jobs.append(placed.job)
    return jobs
