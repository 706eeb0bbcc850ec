"""What a customer may take of an order, and when (hardening round 3, §3 "free art by
cancelling"): watermarked previews before approval, the approved proof and the print after,
nothing once the order is cancelled; the first proof download recorded on the order with the
fee a cancel keeps; the refund owed is what was paid less that fee, for a cancel only."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from photogen_pipelines.catalog import CancellationPolicy, load_products
from photogen_pipelines.imaging import watermark
from photogen_pipelines.imaging.images import png_bytes
from photogen_pipelines.orders import deliverables
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.deliverables import Deliverable, Purpose
from photogen_pipelines.orders.states import Order, OrderState

S = OrderState


def _proof() -> bytes:
    """A proof as the pipeline stores it: a PNG at proof size (1024 px on the long side)."""
    return png_bytes(np.asarray(Image.fromarray(data.astronaut()).resize((683, 1024), Image.Resampling.LANCZOS)))


def _banding(mask: np.ndarray, angle: float) -> float:
    """How strongly the mask, turned by `angle`, falls into horizontal bands (its centre's row profile)."""
    turned = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).rotate(angle)) > 127
    height, width = turned.shape
    half = min(height, width) // 3
    return float(turned[height // 2 - half : height // 2 + half, width // 2 - half : width // 2 + half].mean(axis=1).std())


def test_a_preview_is_the_proof_at_proof_size_with_a_visible_mark_over_all_of_it():
    proof = _proof()
    preview = watermark.preview(proof)
    shown = Image.open(io.BytesIO(preview))
    assert shown.format == "JPEG" and shown.size == (683, 1024)  # proof size, not larger, not a thumbnail
    clean = np.asarray(Image.open(io.BytesIO(proof)).convert("RGB"), dtype=np.int16)
    marked = np.abs(np.asarray(shown.convert("RGB"), dtype=np.int16) - clean).max(axis=2) > 40
    # a mark, not JPEG noise: a fair share of the pixels moved far, in every part of the picture
    assert 0.04 < marked.mean() < 0.5, marked.mean()
    for rows in np.array_split(marked, 4, axis=0):
        for cell in np.array_split(rows, 3, axis=1):
            assert cell.mean() > 0.01, "a corner of the proof is left clean"
    # on a diagonal: turned back by its angle the mark falls into level rows of text, as it does not unturned
    assert _banding(marked, -watermark.ANGLE) > 2.5 * _banding(marked, 0)
    # a larger picture is brought down to proof size
    big = png_bytes(np.asarray(Image.fromarray(data.astronaut()).resize((1536, 2048))))
    assert Image.open(io.BytesIO(watermark.preview(big))).size == (768, 1024)
    # and a tiny one still gets its mark
    assert Image.open(io.BytesIO(watermark.preview(png_bytes(np.zeros((24, 16, 3), np.uint8))))).size == (16, 24)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("orders/ord_1/previews/proof_2.jpg", Deliverable("ord_1", Purpose.PREVIEW, 2)),
        ("orders/ord_1/proofs/proof_2.png", Deliverable("ord_1", Purpose.PROOF, 2)),
        ("orders/ord_1/print/print_file.tif", Deliverable("ord_1", Purpose.PRINT, extension="tif")),
        ("orders/ord_1/selfie/selfie.png", None),  # the customer's own selfie, as stored: never handed out
        ("orders/ord_1/upload", None),
        ("orders/ord_1/candidates/round_0/variant_1.png", None),
        ("orders/ord_1/proofs/validation.json", None),
        ("orders/ord_1/print/master.png", None),
    ],
)
def test_a_links_key_names_its_order_and_purpose_and_nothing_else_is_handed_out(key, expected):
    found = deliverables.parse(key)
    assert found == expected
    if found is not None:
        assert found.key == key


def _order(state: OrderState, approved: int | None = None) -> Order:
    return Order(id="ord_1", style_id="s", product_id="poster_a3", upload_key="k", state=state, approved_proof=approved)


@pytest.mark.parametrize(
    ("state", "preview", "approved_proof", "other_proof", "print_file"),
    [
        (S.PAID, False, False, False, False),
        (S.GENERATING, False, False, False, False),
        (S.PROOFS_READY, True, False, False, False),  # before approval: previews only
        (S.APPROVED, True, True, False, False),
        (S.RENDERING, True, True, False, False),
        (S.READY, True, True, False, True),
        (S.DELIVERED, True, True, False, True),
        (S.CANCELLED, False, False, False, False),  # links die with the order
        (S.REFUNDED, False, False, False, False),
        (S.FAILED, False, False, False, False),
        (S.REJECTED, False, False, False, False),
    ],
)
def test_what_each_state_hands_out(state, preview, approved_proof, other_proof, print_file):
    approved = 2 if state in deliverables.SERVED_IN[Purpose.PROOF] else None
    order = _order(state, approved)
    assert Deliverable("ord_1", Purpose.PREVIEW, 0).served_to(order) == preview
    assert Deliverable("ord_1", Purpose.PROOF, 2).served_to(order) == approved_proof
    assert Deliverable("ord_1", Purpose.PROOF, 0).served_to(order) == other_proof
    assert Deliverable("ord_1", Purpose.PRINT, extension="jpg").served_to(order) == print_file
    assert not Deliverable("ord_2", Purpose.PREVIEW, 0).served_to(order)  # another order's key
    shown = deliverables.proof_for(order, 2)
    assert shown.purpose == (Purpose.PROOF if approved_proof else Purpose.PREVIEW)


def test_the_catalog_writes_the_cancellation_policy():
    policy = load_products().cancellation
    assert policy.proof_fee_percent == 25 and policy.fee(3500) == 875
    assert CancellationPolicy().fee(3500) == 0  # a catalog without the section keeps nothing
    with pytest.raises(ValueError):
        CancellationPolicy(proof_fee_percent=100)  # a cancel always gives something back


def test_the_first_download_is_recorded_once_with_the_fee_and_never_after_a_cancel(orders_db):
    book = SqlOrderBook(orders_db)
    policy = CancellationPolicy(proof_fee_percent=25)
    order = book.add(Order(style_id="s", product_id="poster_a3", upload_key="k", amount_cents=3500, payments="stripe"))
    for state in (S.PAID, S.GENERATING):
        book.transition(order.id, state)
    early = deliverables.record_proofs_download(book, order.id, policy)
    assert early.proofs_downloaded_at is None and early.cancellation_fee_cents == 0  # nothing to download yet

    book.transition(order.id, S.PROOFS_READY)
    first = deliverables.record_proofs_download(book, order.id, policy)
    assert first.proofs_downloaded_at is not None and first.cancellation_fee_cents == 875
    again = deliverables.record_proofs_download(book, order.id, CancellationPolicy(proof_fee_percent=50))
    assert (again.proofs_downloaded_at, again.cancellation_fee_cents) == (first.proofs_downloaded_at, 875)  # pinned

    other = book.add(Order(style_id="s", product_id="poster_a3", upload_key="k", amount_cents=3500, payments="stripe"))
    for state in (S.PAID, S.GENERATING, S.PROOFS_READY, S.CANCELLED):
        book.transition(other.id, state)
    late = deliverables.record_proofs_download(book, other.id, policy)
    assert late.proofs_downloaded_at is None and late.cancellation_fee_cents == 0
    assert not Deliverable(other.id, Purpose.PREVIEW, 0).served_to(late)

    free = book.add(Order(style_id="s", product_id="poster_a3", upload_key="k", amount_cents=3500))  # payments off
    for state in (S.PAID, S.GENERATING, S.PROOFS_READY):
        book.transition(free.id, state)
    recorded = deliverables.record_proofs_download(book, free.id, policy)
    assert recorded.proofs_downloaded_at is not None and recorded.cancellation_fee_cents == 0  # nobody paid: nothing kept


@pytest.mark.parametrize(
    ("path", "fee", "kept"),
    [
        ([S.PAID, S.GENERATING, S.PROOFS_READY, S.CANCELLED], 875, 875),  # cancelled after a download
        ([S.PAID, S.GENERATING, S.PROOFS_READY, S.CANCELLED], 0, 0),  # cancelled before any
        ([S.PAID, S.GENERATING, S.PROOFS_READY, S.CANCELLED, S.REFUNDED], 875, 875),
        ([S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.FAILED], 875, 0),  # our failure: all back
        ([S.PAID, S.GENERATING, S.REJECTED], 0, 0),
    ],
)
def test_only_a_cancel_after_a_download_keeps_the_fee(path, fee, kept):
    order = Order(style_id="s", product_id="poster_a3", upload_key="k", amount_cents=3500, cancellation_fee_cents=fee)
    for state in path:
        if state == S.APPROVED:
            order.approved_proof = 0
        order.transition(state)
        if state == S.PAID:
            order.paid_cents = 3500
    assert order.kept_cents == kept and order.refund_due_cents == 3500 - kept
    assert order.refund_owed == (order.state != S.REFUNDED)
