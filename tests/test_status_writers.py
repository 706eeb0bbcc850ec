"""Every stored status is an enum with one writer: a print submission's status
(`FulfilmentRow.status`, a `FulfilmentStatus`) is written only by
`fulfilment/submission.py`, a remote prediction's (`PredictionRow.status`, a
`PredictionStatus`) only by the journals in `engines/predictions.py`, a webhook delivery's
(`WebhookDeliveryRow.status`, a `DeliveryStatus`) only by `orders/outbox.py`, a studio job's
and its shots' state only by `jobs/lifecycle.py`; all keep the
words stored before they were enums. A refused submission records the refusal and fails the
order in one transaction."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from photogen_pipelines.catalog import load_products
from photogen_pipelines.db.tables import FulfilmentRow, OrderEventRow, PredictionRow
from photogen_pipelines.engines.predictions import (
    MemoryPredictionJournal,
    PredictionRecord,
    PredictionStatus,
    SqlPredictionJournal,
)
from photogen_pipelines.fulfilment import submission
from photogen_pipelines.fulfilment.providers.base import ProviderRefused, Submission
from photogen_pipelines.orders import lifecycle
from photogen_pipelines.orders.book import SqlOrderBook
from photogen_pipelines.orders.recipients import Recipient, ShippingMethod
from photogen_pipelines.orders.shipments import FulfilmentStatus, ProviderStatus
from photogen_pipelines.orders.states import Order, OrderState

REPO = Path(__file__).parents[1]
PRODUCTION = ["photogen_pipelines", "assets", "sensors", "resources", "storefront_api", "engine_service"]
S = OrderState

# (the row class, its table, the one module that may write its status)
FULFILMENT = ("FulfilmentRow", "fulfilments", "photogen_pipelines/fulfilment/submission.py")
PREDICTION = ("PredictionRow", "predictions", "photogen_pipelines/engines/predictions.py")
DELIVERY = ("WebhookDeliveryRow", "webhook_deliveries", "photogen_pipelines/orders/outbox.py")


def _names(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _targets(node: ast.Assign | ast.AugAssign | ast.AnnAssign) -> list[ast.expr]:
    """Every attribute an assignment writes, tuple targets (`a.x, a.y = …`) unpacked."""
    pending = list(node.targets) if isinstance(node, ast.Assign) else [node.target]
    found = []
    while pending:
        target = pending.pop()
        if isinstance(target, ast.Tuple | ast.List):
            pending += target.elts
        elif isinstance(target, ast.Starred):
            pending.append(target.value)
        else:
            found.append(target)
    return found


def _bound_to_other_rows(tree: ast.AST, row_class: str) -> set[str]:
    """Names that plainly hold a row of another table: a parameter annotated with another
    `…Row` class, or a name assigned a new one (`delivery = WebhookDeliveryRow(…)`)."""

    def other(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Name) and node.id.endswith("Row") and node.id != row_class

    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and other(node.annotation):
            bound.add(node.arg)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and other(node.value.func):
            bound.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return bound


def _writes_status(target: ast.expr, other_rows: set[str], attr: str = "status") -> bool:
    if not (isinstance(target, ast.Attribute) and target.attr == attr):
        return False
    return not (isinstance(target.value, ast.Name) and target.value.id in other_rows)


def _status_writes(path: Path, row_class: str, table: str, attr: str = "status") -> list[str]:
    """Where a module may write the status of `row_class`'s rows, with their lines: making a
    row or an UPDATE/INSERT of the class anywhere; in a module that names the class, any
    assignment to `.status` or setattr(…, 'status'); SQL text that updates or inserts into
    the table."""
    tree = ast.parse(path.read_text())
    names_it = _names(tree, row_class)
    other_rows = _bound_to_other_rows(tree, row_class)
    sql = re.compile(rf"\b(update|insert\s+into)\s+\"?{table}\b", re.I)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == row_class:
                found.append(f"line {node.lineno}: {row_class}(…)")
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if called in ("update", "insert", "upsert") and any(_names(arg, row_class) for arg in node.args):
                found.append(f"line {node.lineno}: {called}({row_class})")
            if called == "setattr" and names_it and len(node.args) > 1:
                if isinstance(node.args[1], ast.Constant) and node.args[1].value == attr:
                    found.append(f"line {node.lineno}: setattr(…, '{attr}')")
        if names_it and isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            if any(_writes_status(target, other_rows, attr) for target in _targets(node)):
                found.append(f"line {node.lineno}: .{attr} =")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.search(node.value):
            found.append(f"line {node.lineno}: SQL writing {table}")
    return found


def _offenders(row_class: str, table: str, writer: str, attr: str = "status") -> dict[str, list[str]]:
    offenders = {}
    for package in PRODUCTION:
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if relative != writer and (writes := _status_writes(path, row_class, table, attr)):
                offenders[relative] = writes
    return offenders


def test_no_module_but_the_submission_writes_a_fulfilment_status():
    assert _offenders(*FULFILMENT) == {}


def test_no_module_but_the_journal_writes_a_prediction_status():
    assert _offenders(*PREDICTION) == {}


def test_no_module_but_the_outbox_writes_a_webhook_delivery_status():
    assert _offenders(*DELIVERY) == {}


# a studio job's state and its shots' (JobState, ShotState) have one writer too
JOB = ("JobRow", "jobs", "photogen_pipelines/jobs/lifecycle.py", "state")
JOB_SHOT = ("JobShotRow", "job_shots", "photogen_pipelines/jobs/lifecycle.py", "state")


def test_no_module_but_the_jobs_lifecycle_writes_a_job_or_shot_state():
    assert _offenders(*JOB) == {}
    assert _offenders(*JOB_SHOT) == {}
    for row_class, table, writer, attr in (JOB, JOB_SHOT):
        assert _status_writes(REPO / writer, row_class, table, attr), f"{writer} no longer writes {row_class}.{attr}"


def test_the_writers_are_where_the_finder_looks():
    for row_class, table, writer in (FULFILMENT, PREDICTION, DELIVERY):
        assert _status_writes(REPO / writer, row_class, table), f"{writer} no longer writes {row_class}.status"


def test_the_finder_sees_every_way_of_writing_a_status(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from photogen_pipelines.db.tables import FulfilmentRow\n"
        "row = session.get(FulfilmentRow, i)\n"
        "row.status = 'failed'\n"
        "row.status, row.updated_at = 'failed', now\n"
        "setattr(row, 'status', 'failed')\n"
        "session.add(FulfilmentRow(order_id=i, status='pending'))\n"
        "session.execute(update(FulfilmentRow).values(status='failed'))\n"
        "session.execute(text('UPDATE fulfilments SET status = :s'))\n"
    )
    assert sorted(_status_writes(probe, "FulfilmentRow", "fulfilments")) == [
        "line 3: .status =",
        "line 4: .status =",
        "line 5: setattr(…, 'status')",
        "line 6: FulfilmentRow(…)",
        "line 7: update(FulfilmentRow)",
        "line 8: SQL writing fulfilments",
    ]
    other = tmp_path / "other.py"
    other.write_text("delivery.status = 'failed'\n")  # another table's status, in a module without the class
    assert _status_writes(other, "FulfilmentRow", "fulfilments") == []


# -- the stored words -----------------------------------------------------------------------


def test_the_statuses_keep_the_words_already_stored():
    assert [str(s) for s in FulfilmentStatus] == [
        "pending", "submitted", "in_production", "shipped", "delivered", "cancelled", "failed"
    ]  # fmt: skip
    assert {FulfilmentStatus.of(p): p.value for p in ProviderStatus} == {
        FulfilmentStatus(p.value): p.value for p in ProviderStatus
    }
    assert [str(s) for s in PredictionStatus] == ["starting", "processing", "succeeded", "failed", "canceled"]


def test_the_groups_of_fulfilment_statuses():
    assert {s for s in FulfilmentStatus if s.closed} == {"delivered", "cancelled", "failed"}
    assert {s for s in FulfilmentStatus if not s.accepted} == {"pending", "cancelled", "failed"}


@pytest.mark.parametrize("journal", ["memory", "sql"])
def test_a_journal_takes_our_words_only_and_stores_them_plain(journal, orders_db):
    saved = MemoryPredictionJournal() if journal == "memory" else SqlPredictionJournal(orders_db)
    saved.save(PredictionRecord(key="k", provider="replicate", prediction_id="p1", status="processing"))
    found = saved.find("k")
    assert found.status is PredictionStatus.PROCESSING and found.status == "processing"
    if journal == "sql":
        with orders_db.session() as session:
            stored = session.scalars(select(PredictionRow.status)).one()
        assert type(stored) is str and stored == "processing"
    with pytest.raises(ValueError):
        PredictionRecord(key="k", provider="replicate", prediction_id="p1", status="aborted")


# -- a refusal: one transaction ------------------------------------------------------------


class _RefusingProvider:
    """A print provider that refuses every order, as for a file it cannot fetch."""

    name = "printful"

    def submit(self, submission: Submission):
        raise ProviderRefused("the file could not be downloaded", code="provider_refused_file")

    def get(self, order_id, provider_order_id=None):
        return None

    def callback_reference(self, headers, body):
        return None, None


def _ready_order(book: SqlOrderBook) -> Order:
    recipient = Recipient.model_validate(
        {"name": "Ada Test", "email": "ada@example.org", "address": {"line1": "1 Test Street", "city": "Leeds",
         "postal_code": "LS1 1AA", "country_code": "gb"}},
        strict=False,
    )  # fmt: skip
    order = book.add(Order(style_id="ink_etching", product_id="poster_12x18", upload_key="k", variants=1), recipient=recipient)
    book.update(order.id, lambda o: (setattr(o, "shipping_method", ShippingMethod.STANDARD), setattr(o, "approved_proof", 0)))
    for state in (S.PAID, S.GENERATING, S.PROOFS_READY, S.APPROVED, S.RENDERING, S.READY):
        order = book.transition(order.id, state)
    return order


def _submit(book: SqlOrderBook, order_id: str) -> submission.SubmitResult:
    product = load_products().get("poster_12x18")
    return submission.submit(book, _RefusingProvider(), order_id, product, file_url=lambda: "http://127.0.0.1:9/print.jpg")


def _event_count(orders_db, order_id: str) -> int:
    with orders_db.session() as session:
        return len(session.scalars(select(OrderEventRow.id).where(OrderEventRow.order_id == order_id)).all())


def test_a_refusal_fails_the_submission_and_the_order_together(orders_db):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book)
    result = _submit(book, order.id)
    assert result.status == "refused"
    record = submission.fulfilment_of(orders_db, order.id)
    assert record.status is FulfilmentStatus.FAILED and record.last_error == result.reason and record.attempts == 1
    failed = book.get(order.id)
    assert failed.state == S.FAILED and failed.reason == result.reason
    with orders_db.session() as session:
        stored = session.get(FulfilmentRow, order.id).status
    assert type(stored) is str and stored == "failed"


def test_a_failure_between_the_refusals_writes_leaves_neither_written(orders_db, monkeypatch):
    book = SqlOrderBook(orders_db)
    order = _ready_order(book)
    events = _event_count(orders_db, order.id)

    def broken_move(*args, **kwargs):
        raise RuntimeError("the database went away between the two writes")

    monkeypatch.setattr(lifecycle, "refused_by_provider", broken_move)
    with pytest.raises(RuntimeError):
        _submit(book, order.id)
    record = submission.fulfilment_of(orders_db, order.id)
    # only the attempt, noted before the provider was asked, stands
    assert (record.status, record.last_error, record.attempts) == (FulfilmentStatus.PENDING, None, 1)
    assert book.get(order.id).state == S.READY and _event_count(orders_db, order.id) == events
