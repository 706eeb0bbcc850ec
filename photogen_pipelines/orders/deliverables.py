"""What a customer may take of an order's files, and when.

Three kinds of file leave an order, each behind a link to its key; the key names the order
and the purpose, and the API signs it, so a link says what it is for:

- a preview, `orders/<id>/previews/proof_<n>.jpg`: a proof that passed the identity gate,
  watermarked at proof size (`imaging/watermark.py`), made from the stored proof when asked
  for; from `proofs_ready` on. An unpaid preview order's (one made before payment) are
  smaller, the catalog's `previews.long_side`, until it is paid (`preview_long_side`);
- the approved proof, `orders/<id>/proofs/proof_<n>.png`, clean: once approved, and only
  the approved one;
- the print file, `orders/<id>/print/print_file.<ext>`: once it is made.

None of them once the order has left those states: a cancelled, failed, rejected or
refunded order hands out nothing, whatever link was signed before. No other file of an
order (the selfie, the candidates, the clean proofs nobody approved) is handed out at all.

The first time a proof's pixels are handed out (a preview or the approved proof through its
link, or in the bundle) is recorded on the order, under its row lock, with the fee a cancel
keeps from then on (the catalog's cancellation policy): a cancel that comes after finds it,
and after a cancel nothing is handed out. An unpaid preview's small previews are the free look
before paying and are not recorded: the fee counts from the first download once it is paid.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from photogen_pipelines.catalog import CancellationPolicy, PreviewPolicy
from photogen_pipelines.clock import utc_now
from photogen_pipelines.imaging import watermark
from photogen_pipelines.orders.book import OrderBook
from photogen_pipelines.orders.states import PRINT_FILE_MADE, PROOFS_VISIBLE, Order, OrderState
from photogen_pipelines.storage.artifacts import OrderKeys
from photogen_pipelines.storage.stores import ArtifactStore


class Purpose(enum.StrEnum):
    PREVIEW = "preview"  # a watermarked proof, to choose from
    PROOF = "proof"  # the approved proof itself
    PRINT = "print"  # the print file


SERVED_IN: dict[Purpose, frozenset[OrderState]] = {
    Purpose.PREVIEW: PROOFS_VISIBLE,
    Purpose.PROOF: PROOFS_VISIBLE - {OrderState.PROOFS_READY},
    Purpose.PRINT: PRINT_FILE_MADE,
}
# what is handed out of a proof: a download the cancellation policy counts
PROOF_PIXELS = frozenset({Purpose.PREVIEW, Purpose.PROOF})

_KEY = re.compile(
    r"^orders/(?P<order>[A-Za-z0-9_-]+)/(?:previews/proof_(?P<preview>\d{1,2})\.jpg"
    r"|proofs/proof_(?P<proof>\d{1,2})\.png|print/print_file\.(?P<extension>[a-z0-9]{1,5}))$"
)


@dataclass(frozen=True)
class Deliverable:
    """One file of an order as a customer gets it: its link's key and what it is for."""

    order_id: str
    purpose: Purpose
    variant: int | None = None  # the proof's (a preview, the approved proof)
    extension: str | None = None  # the print file's

    @property
    def key(self) -> str:
        """The key its link names."""
        if self.purpose == Purpose.PREVIEW:
            return f"{OrderKeys(self.order_id).prefix}/previews/proof_{self.variant}.jpg"
        return self.source

    @property
    def source(self) -> str:
        """The stored file it is made from (a preview) or is (the others)."""
        keys = OrderKeys(self.order_id)
        if self.purpose == Purpose.PRINT:
            return keys.print_file(self.extension)
        return keys.proof(self.variant)

    @property
    def media_type(self) -> str | None:
        return "image/jpeg" if self.purpose == Purpose.PREVIEW else None

    def served_to(self, order: Order) -> bool:
        """May the order hand this file out now?"""
        if order.id != self.order_id or order.state not in SERVED_IN[self.purpose]:
            return False
        return self.purpose != Purpose.PROOF or self.variant == order.approved_proof


def parse(key: str) -> Deliverable | None:
    """The deliverable a link's key names; None for any other key under `orders/`."""
    match = _KEY.match(key)
    if match is None:
        return None
    order_id = match["order"]
    if match["preview"] is not None:
        return Deliverable(order_id, Purpose.PREVIEW, int(match["preview"]))
    if match["proof"] is not None:
        return Deliverable(order_id, Purpose.PROOF, int(match["proof"]))
    return Deliverable(order_id, Purpose.PRINT, extension=match["extension"])


def proof_for(order: Order, variant: int) -> Deliverable:
    """What the customer is given of one proof: the proof itself once it is the approved
    one, a watermarked preview until then (and of the proofs not chosen)."""
    clean = Deliverable(order.id, Purpose.PROOF, variant)
    return clean if clean.served_to(order) else Deliverable(order.id, Purpose.PREVIEW, variant)


def unpaid_preview(order: Order) -> bool:
    """Made before payment (a preview) and its money or credits are not in yet."""
    return order.preview and not order.settled_payment


def preview_long_side(order: Order, policy: PreviewPolicy | None = None) -> int:
    """How large the order's previews are shown: an unpaid preview's at the catalog's
    `previews.long_side` (enough to choose from, too small to keep), any other at proof
    size. Without the shop's policy, the catalog's default size: never the full one."""
    if unpaid_preview(order):
        return min((policy or PreviewPolicy()).long_side, watermark.PREVIEW_LONG_SIDE)
    return watermark.PREVIEW_LONG_SIDE


def render_preview(store: ArtifactStore, preview: Deliverable, long_side: int = watermark.PREVIEW_LONG_SIDE) -> bytes:
    """The watermarked preview's JPEG, at most `long_side` px on its long side, made from
    the stored proof (NotFound if it is gone)."""
    return watermark.preview(store.get_bytes(preview.source), long_side)


def record_proofs_download(book: OrderBook, order_id: str, policy: CancellationPolicy) -> Order:
    """The order as it is now, under its row lock; if it may hand out its proofs and has
    not before, this first download is recorded on it with the fee a cancel keeps from now
    on. The caller hands out what the returned order still allows, so a download and a
    cancel are ordered by the lock: a cancel after it keeps the fee, and a cancel before it
    means nothing is handed out."""

    def mark(order: Order) -> None:
        if unpaid_preview(order):  # only its small previews are handed out: nothing to keep a fee for
            return
        if order.state in SERVED_IN[Purpose.PREVIEW] and order.proofs_downloaded_at is None:
            order.proofs_downloaded_at = utc_now()
            # payments off: nobody paid, nothing to keep
            order.cancellation_fee_cents = policy.fee(order.amount_cents) if order.payments == "stripe" else 0

    return book.update(order_id, mark)
