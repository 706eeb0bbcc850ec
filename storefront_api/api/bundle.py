"""An order's files in one ZIP for the customer (`GET /v1/orders/{id}/bundle.zip`).

What the customer may take away, by the rules of `orders/deliverables.py`: before approval,
the watermarked previews of the proofs that passed the identity gate (`previews/proof_<n>.jpg`;
small while the order is a preview not paid yet);
after it, the approved proof itself (`proofs/proof_<n>.png`), and the print file and its
manifest once they are made; always a small `order.json`: the order's ids, state and
choices, never the recipient or payment details. A cancelled, failed or refunded order has
nothing to bundle.

The ZIP is written to a spooled temporary file (the first MiB in memory, the rest on local
disk) and sent from there in chunks. A print file is 10-60 MB: memory stays bounded per
download (a local store's files are copied in chunks; an S3 store's `get_bytes` holds one file
at a time), the response has a Content-Length (the browser shows progress), a file that
vanished is an error before the first byte instead of a truncated download, and the ZIP's
local headers carry sizes and CRCs (written seekably, no data descriptors), so every unzip
tool and streaming reader opens it. Images are stored as they are (ZIP_STORED: PNG, JPEG and
LZW TIFF are compressed already); the JSON documents are deflated.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from photogen_pipelines.catalog import PreviewPolicy
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import deliverables
from photogen_pipelines.orders.deliverables import SERVED_IN, Deliverable, Purpose
from photogen_pipelines.orders.states import Order
from photogen_pipelines.storage.artifacts import Manifest, OrderKeys, Validation
from photogen_pipelines.storage.stores import ArtifactStore

SPOOL_IN_MEMORY_BYTES = 1024 * 1024
CHUNK_BYTES = 1024 * 1024
ALREADY_COMPRESSED = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Member:
    """One file of the bundle: a stored file (`key`) or a document made here (`data`)."""

    name: str
    key: str | None = None
    data: bytes | None = None

    @property
    def compress_type(self) -> int:
        return zipfile.ZIP_STORED if PurePosixPath(self.name).suffix.lower() in ALREADY_COMPRESSED else zipfile.ZIP_DEFLATED


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=2).encode() + b"\n"


def members(store: ArtifactStore, order: Order, previews: PreviewPolicy | None = None) -> list[Member]:
    """What the customer may take away now; empty before the proofs are visible and once
    the order has ended without a print. `previews`: the shop's preview policy (the size of
    an unpaid preview's previews; without it, the catalog's default)."""
    keys = OrderKeys(order.id)
    files: list[Member] = []
    approved = deliverables.proof_for(order, order.approved_proof) if order.approved_proof is not None else None
    if approved is not None and approved.purpose == Purpose.PROOF:  # approved: the proof itself, clean
        if store.exists(approved.source):
            files.append(Member(f"proofs/proof_{approved.variant}.png", approved.source))
    elif order.state in SERVED_IN[Purpose.PREVIEW]:  # before approval: the watermarked previews
        validation = keys.load_if_present(store, Validation)
        long_side = deliverables.preview_long_side(order, previews)
        for variant in sorted(validation.proofs if validation else {}):  # only proofs that passed the gate
            preview = Deliverable(order.id, Purpose.PREVIEW, variant)
            if store.exists(preview.source):
                files.append(Member(f"previews/proof_{variant}.jpg", data=deliverables.render_preview(store, preview, long_side)))
    manifest = keys.load_if_present(store, Manifest) if order.state in SERVED_IN[Purpose.PRINT] else None
    if manifest is not None and store.exists(manifest.file):
        files.append(Member("print_file" + PurePosixPath(manifest.file).suffix.lower(), manifest.file))
        # the declared fields only: keys a newer writer adds are not vetted for the customer
        files.append(Member("manifest.json", data=_json(manifest.model_dump(mode="json", include=set(Manifest.model_fields)))))
    if not files:
        return []
    summary = {
        "order_id": order.id,
        "state": order.state.value,
        "style_id": order.style_id,
        "product_id": order.product_id,
        "variants": order.variants,
        "approved_proof": order.approved_proof,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "files": [member.name for member in files],
    }
    return [Member("order.json", data=_json(summary)), *files]


def hands_out_proofs(files: list[Member]) -> bool:
    """Does the bundle give the customer a proof's pixels (a preview or the approved proof)?"""
    return any(member.name.startswith(("previews/", "proofs/")) for member in files)


def write_zip(store: ArtifactStore, order: Order, files: list[Member]) -> tuple[tempfile.SpooledTemporaryFile, int]:
    """The ZIP of `files`, rewound, and its size. NotFound if a stored file went meanwhile."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
    stamp = order.updated_at.utctimetuple()[:6]
    local_path = getattr(store, "path", None)  # a local store: copy its files in chunks
    try:
        with zipfile.ZipFile(spool, "w") as archive:
            for member in files:
                info = zipfile.ZipInfo(member.name, date_time=stamp)
                info.compress_type = member.compress_type
                info.external_attr = 0o644 << 16
                if member.data is not None:
                    archive.writestr(info, member.data)
                elif local_path is not None:
                    path = local_path(member.key)
                    info.file_size = os.path.getsize(path)
                    with open(path, "rb") as source, archive.open(info, "w") as target:
                        shutil.copyfileobj(source, target, CHUNK_BYTES)
                else:
                    archive.writestr(info, store.get_bytes(member.key))
    except FileNotFoundError:
        spool.close()
        raise NotFound(f"a file of order {order.id} is no longer kept", code="file_not_found") from None
    except BaseException:
        spool.close()
        raise
    size = spool.tell()
    spool.seek(0)
    return spool, size


def chunks(spool: tempfile.SpooledTemporaryFile) -> Iterator[bytes]:
    """The spooled ZIP in chunks, closing (and so deleting) it at the end."""
    try:
        while chunk := spool.read(CHUNK_BYTES):
            yield chunk
    finally:
        spool.close()
