"""Only the lifecycle module moves an order between states: everyone else says what
happened through its named moves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from photogen_pipelines.db.database import open_database
from photogen_pipelines.errors import BadInput, IllegalTransition
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.states import Order, OrderState
from photogen_pipelines.storage.stores import LocalArtifactStore

REPO = Path(__file__).parents[1]
PRODUCTION = ["photogen_pipelines", "assets", "sensors", "resources", "storefront_api"]
# where a state change may be written: the state machine, the book's locked write, the lifecycle
ALLOWED = {"photogen_pipelines/orders/states.py", "photogen_pipelines/orders/book.py", "photogen_pipelines/orders/lifecycle.py"}
# another state machine's one writer: a pack purchase's state (payments/packs.py PackState), not an order's
ALLOWED |= {"photogen_pipelines/payments/packs.py"}
S = OrderState


def _state_changes(path: Path) -> list[str]:
    """Calls of `.transition(...)` and assignments to `.state`, with their lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "transition":
            found.append(f"line {node.lineno}: .transition()")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"line {node.lineno}: .state =" for t in targets if isinstance(t, ast.Attribute) and t.attr == "state"]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "state":
                found.append(f"line {node.lineno}: setattr(…, 'state')")
    return found


def test_no_module_outside_the_lifecycle_changes_an_orders_state():
    offenders = {}
    for package in PRODUCTION:
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if relative not in ALLOWED and (changes := _state_changes(path)):
                offenders[relative] = changes
    assert offenders == {}


def test_the_finder_sees_every_way_of_changing_state(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("book.transition(i, s)\norder.state = s\nsetattr(order, 'state', s)\n")
    assert sorted(_state_changes(probe)) == ["line 1: .transition()", "line 2: .state =", "line 3: setattr(…, 'state')"]


@pytest.fixture
def book(tmp_path) -> SqlOrderBook:
    database = open_database(f"sqlite:///{tmp_path / 'orders.db'}")
    database.migrate()
    return SqlOrderBook(database)


def _paid(book: SqlOrderBook, **fields) -> Order:
    order = book.add(Order(style_id="ink_etching", product_id="poster_a3", upload_key="u", **fields))
    return lifecycle.paid_without_payments(book, order.id)


def test_the_moves_take_an_auto_order_from_paid_to_ready(book, tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    order = _paid(book, approval="auto")
    lifecycle.start_generation(book, order.id)
    store.put_bytes(f"orders/{order.id}/proofs/proof_1.png", b"png")
    approved = lifecycle.proofs_validated(book, store, order.id, best_variant=1)
    assert (approved.state, approved.approved_proof) == (S.APPROVED, 1)
    assert approved.reason == "auto-approved: proof 1 has the best identity score"
    lifecycle.start_rendering(book, order.id)
    ready = lifecycle.deliver(book, order.id)
    assert [e.to_state for e in ready.events] == [
        S.AWAITING_PAYMENT, S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY
    ]  # fmt: skip


def test_a_customer_order_waits_at_proofs_ready_and_only_a_stored_proof_is_approved(book, tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    order = _paid(book)
    lifecycle.start_generation(book, order.id)
    assert lifecycle.proofs_validated(book, store, order.id, best_variant=0).state == S.PROOFS_READY
    with pytest.raises(BadInput):
        lifecycle.approve(book, store, order.id, 0)
    store.put_bytes(f"orders/{order.id}/proofs/proof_0.png", b"png")
    assert lifecycle.approve(book, store, order.id, 0, reason="chosen").state == S.APPROVED
    with pytest.raises(IllegalTransition):
        lifecycle.approve(book, store, order.id, 0)


def test_a_failed_run_fails_the_order_but_a_failed_rerender_keeps_it_delivered(book):
    order = _paid(book)
    lifecycle.start_generation(book, order.id)
    failed = lifecycle.settle_failed_run(book, order.id, "proof_job", "run r1 at selfie", attempts=3)
    assert failed.state == S.FAILED and failed.reason == "proof_job failed after 3 attempt(s): run r1 at selfie"

    delivered = _paid(book)
    for target in (S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY, S.RENDERING):
        book.transition(delivered.id, target)
    kept = lifecycle.settle_failed_run(book, delivered.id, "print_job", "run r2", attempts=1)
    assert kept.state == S.READY and kept.reason.startswith("re-render failed (run r2)")
