"""Where orders are kept between the storefront and the pipeline runs: the orders
database. Every change goes through a locked read-modify-write, so the API, a run and a
sensor changing one order at once queue up instead of overwriting each other."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from photogen_pipelines.clock import as_utc, utc_now
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import OrderEventRow, OrderRow, RecipientRow
from photogen_pipelines.errors import NotFound
from photogen_pipelines.orders import outbox
from photogen_pipelines.orders.recipients import Recipient
from photogen_pipelines.orders.states import OWES_REFUND, SETTLED, Order, OrderEvent, OrderState

ORDER_COLUMNS = (
    "id upload_id upload_key style_id product_id variants approval tier payments state reason approved_proof amount_cents "
    "currency payment_intent_id paid_cents refund_id refunded_cents stage shipping_method approval_reminded_at stage_seconds "
    "api_key_id created_at updated_at proofs_downloaded_at cancellation_fee_cents customer_ref credits_price credits_paid "
    "credits_refunded reroll_days quote_id preview"
).split()


class OrderUpdater(Protocol):
    """What a move needs: a locked read-modify-write of one order (the book, or one
    transaction of it when a move commits with other writes)."""

    def update(self, order_id: str, change: Callable[[Order], object]) -> Order: ...


class OrderBook(Protocol):
    def add(self, order: Order) -> Order: ...
    def get(self, order_id: str) -> Order: ...
    def update(self, order_id: str, change: Callable[[Order], object]) -> Order: ...
    def transition(self, order_id: str, target: OrderState, reason: str | None = None) -> Order: ...
    def start_stage(self, order_id: str, stage: str) -> Order: ...
    def record_stage(self, order_id: str, stage: str, seconds: float) -> Order: ...


def _to_order(row: OrderRow, events: Sequence[OrderEventRow]) -> Order:
    fields = {name: getattr(row, name) for name in ORDER_COLUMNS}
    fields["created_at"], fields["updated_at"] = as_utc(row.created_at), as_utc(row.updated_at)
    for name in ("approval_reminded_at", "proofs_downloaded_at"):
        if fields[name] is not None:
            fields[name] = as_utc(fields[name])
    fields["stage_seconds"] = dict(row.stage_seconds or {})
    fields["events"] = [
        OrderEvent(id=e.id, at=as_utc(e.at), from_state=e.from_state, to_state=e.to_state, reason=e.reason) for e in events
    ]
    return Order(**fields)


def order_values(order: Order) -> dict:
    """The `orders` row's columns of an order, as the book writes them (a bulk loader
    such as benchmarks/scale.py inserts these same values)."""
    values = order.model_dump(include=set(ORDER_COLUMNS))
    values["state"] = order.state.value
    values["shipping_method"] = order.shipping_method.value if order.shipping_method else None
    return values


def event_values(order_id: str, event: OrderEvent) -> dict:
    """The `order_events` row's columns of one state change, as the book writes them."""
    return {
        "order_id": order_id,
        "at": event.at,
        "from_state": event.from_state.value if event.from_state else None,
        "to_state": event.to_state.value,
        "reason": event.reason,
    }


def _write(session: Session, order: Order, row: OrderRow | None = None) -> None:
    values = order_values(order)
    if row is None:
        session.add(OrderRow(**values))
        session.flush()  # the row exists before its events point at it
    else:
        for name, value in values.items():
            setattr(row, name, value)
    new_events = [event for event in order.events if event.id is None]
    for event in new_events:
        session.add(OrderEventRow(**event_values(order.id, event)))
    # the storefront's events commit with the change they tell of, or not at all
    outbox.record_order_events(session, order, new_events)


def _first_state(order: Order) -> OrderState:
    # an order moved before it was first written (paid in credits as it is placed) was created awaiting payment
    return order.events[0].from_state if order.events else order.state


def _events(session: Session, order_id: str) -> Sequence[OrderEventRow]:
    return session.scalars(select(OrderEventRow).where(OrderEventRow.order_id == order_id).order_by(OrderEventRow.id)).all()


@dataclass
class OrderTransaction:
    """A transaction of the orders database, from `SqlOrderBook.transaction()`."""

    book: SqlOrderBook
    session: Session

    def update(self, order_id: str, change: Callable[[Order], object]) -> Order:
        """Change the order under its row lock, inside this transaction."""
        return self.book.update_in(self.session, order_id, change)

    def add(self, row: object) -> None:
        """Record a row in the same transaction, flushed at once: a duplicate key raises here."""
        self.session.add(row)
        self.session.flush()


class SqlOrderBook:
    def __init__(self, database: Database):
        self.database = database

    def add(
        self,
        order: Order,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        recipient: Recipient | None = None,
    ) -> Order:
        """Record a new order (and who receives its print: personal data, in its own table)."""
        with self.database.session() as session:
            self.add_in(session, order, idempotency_key=idempotency_key, request_hash=request_hash, recipient=recipient)
        return self.get(order.id)

    def add_in(
        self,
        session: Session,
        order: Order,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        recipient: Recipient | None = None,
    ) -> None:
        """`add` inside a caller's transaction (an order paid in credits and its spend commit
        together); a duplicate Idempotency-Key raises IntegrityError here."""
        if not order.events or order.events[0].from_state is not None:
            order.events.insert(
                0, OrderEvent(at=order.created_at, from_state=None, to_state=_first_state(order), reason="order created")
            )
        _write(session, order)
        session.flush()
        row = session.get(OrderRow, order.id)
        row.idempotency_key, row.request_hash = idempotency_key, request_hash
        if recipient is not None:
            details = recipient.model_dump(mode="json")
            session.add(RecipientRow(order_id=order.id, details=details, created_at=order.created_at))
        session.flush()

    def get(self, order_id: str) -> Order:
        with self.database.session() as session:
            row = session.get(OrderRow, order_id)
            if row is None:
                raise NotFound(f"order {order_id} not found", code="order_not_found")
            return _to_order(row, _events(session, order_id))

    def update(self, order_id: str, change: Callable[[Order], object]) -> Order:
        """Apply `change` to the order under a row lock and store the result."""
        with self.database.session() as session:
            self.update_in(session, order_id, change)
        return self.get(order_id)

    def update_in(self, session: Session, order_id: str, change: Callable[[Order], object]) -> Order:
        """`update` inside a caller's transaction (a Stripe event and its effect commit together)."""
        row = session.scalars(select(OrderRow).where(OrderRow.id == order_id).with_for_update()).one_or_none()
        if row is None:
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        order = _to_order(row, _events(session, order_id))
        change(order)
        order.updated_at = utc_now()
        _write(session, order, row)
        return order

    @contextmanager
    def transaction(self) -> Iterator[OrderTransaction]:
        """One transaction over the orders database: what a caller records there (a Stripe
        event) and the order changes it causes commit together, or not at all."""
        with self.database.session() as session:
            yield OrderTransaction(self, session)

    def transition(self, order_id: str, target: OrderState, reason: str | None = None) -> Order:
        """A bare move, for tests and repair scripts; the product moves orders through
        `lifecycle`, which names why."""
        return self.update(order_id, lambda order: order.transition(target, reason))

    def start_stage(self, order_id: str, stage: str) -> Order:
        return self.update(order_id, lambda order: setattr(order, "stage", stage))

    def record_stage(self, order_id: str, stage: str, seconds: float) -> Order:
        def record(order: Order) -> None:
            order.stage = stage
            order.stage_seconds = {**order.stage_seconds, stage: round(seconds, 3)}

        return self.update(order_id, record)

    def find_idempotent(self, api_key_id: str | None, idempotency_key: str) -> tuple[Order, str | None] | None:
        """The order an earlier request with this key created, and that request's body hash."""
        with self.database.session() as session:
            row = session.scalars(
                select(OrderRow).where(OrderRow.api_key_id == api_key_id, OrderRow.idempotency_key == idempotency_key)
            ).one_or_none()
            if row is None:
                return None
            return _to_order(row, _events(session, row.id)), row.request_hash

    def find_by_payment_intent(self, payment_intent_id: str) -> Order | None:
        with self.database.session() as session:
            row = session.scalars(select(OrderRow).where(OrderRow.payment_intent_id == payment_intent_id)).first()
            return None if row is None else _to_order(row, _events(session, row.id))

    def list(self, states: Sequence[OrderState] | None = None, limit: int = 100) -> list[Order]:
        with self.database.session() as session:
            query = select(OrderRow).order_by(OrderRow.created_at, OrderRow.id).limit(limit)
            if states:
                query = query.where(OrderRow.state.in_([s.value for s in states]))
            return [_to_order(row, _events(session, row.id)) for row in session.scalars(query).all()]

    def owed_refunds(self, limit: int = 20) -> list[Order]:
        """Orders that will not be delivered and still hold the customer's money."""
        with self.database.session() as session:
            query = (
                select(OrderRow)
                .where(
                    OrderRow.state.in_([s.value for s in OWES_REFUND]),
                    (OrderRow.paid_cents > OrderRow.refunded_cents) | (OrderRow.credits_paid > OrderRow.credits_refunded),
                )
                .order_by(OrderRow.updated_at)
                .limit(limit)
            )
            return [_to_order(row, _events(session, row.id)) for row in session.scalars(query).all()]

    def events_since(
        self, to_states: Sequence[OrderState], since: datetime, exclude_ids: Sequence[int] = (), limit: int = 50
    ) -> list[tuple[int, str, datetime, OrderState]]:
        """State changes into `to_states` at or after `since`, oldest first: what the
        sensors turn into runs. Returns (event id, order id, at, to_state) tuples."""
        with self.database.session() as session:
            query = (
                select(OrderEventRow.id, OrderEventRow.order_id, OrderEventRow.at, OrderEventRow.to_state)
                .where(OrderEventRow.to_state.in_([s.value for s in to_states]), OrderEventRow.at >= since)
                .order_by(OrderEventRow.at, OrderEventRow.id)
                .limit(limit)
            )
            if exclude_ids:
                query = query.where(OrderEventRow.id.not_in(list(exclude_ids)))
            return [(i, o, as_utc(at), OrderState(s)) for i, o, at, s in session.execute(query).all()]

    def phase_seconds(self, tier: str, start: OrderState, end: OrderState, limit: int = 50) -> list[float]:
        """Seconds from each order's first move into `start` to its first move into `end`,
        for the `limit` orders of `tier` that reached `end` most recently: how long the
        shop's own orders of that tier wait for a phase (orders/waits.py)."""
        started = func.min(case((OrderEventRow.to_state == start.value, OrderEventRow.at)))
        ended = func.min(case((OrderEventRow.to_state == end.value, OrderEventRow.at)))
        query = (
            select(started, ended)
            .join(OrderRow, OrderRow.id == OrderEventRow.order_id)
            .where(OrderRow.tier == tier, OrderEventRow.to_state.in_([start.value, end.value]))
            .group_by(OrderEventRow.order_id)
            .having(started.is_not(None), ended.is_not(None))
            .order_by(ended.desc())
            .limit(limit)
        )
        with self.database.session() as session:
            rows = session.execute(query).all()
        return [max(0.0, (as_utc(e) - as_utc(s)).total_seconds()) for s, e in rows]

    def settled_between(self, start: datetime, end: datetime) -> list[Order]:
        """Orders whose latest move into a final state (ready, rejected, failed, cancelled,
        refunded) happened in [start, end), oldest settlement first: one day of the ledger.
        An order rejected one day and refunded the next settles on the second day."""
        final = [s.value for s in SETTLED]
        settled_at = func.max(OrderEventRow.at)
        settled = (
            select(OrderEventRow.order_id, settled_at.label("settled_at"))
            .where(OrderEventRow.to_state.in_(final))
            .group_by(OrderEventRow.order_id)
            # SQLite keeps UTC wall times without a zone: compare in UTC on both engines
            .having(settled_at >= as_utc(start), settled_at < as_utc(end))
            .subquery()
        )
        with self.database.session() as session:
            rows = session.scalars(
                select(OrderRow).join(settled, settled.c.order_id == OrderRow.id).order_by(settled.c.settled_at, OrderRow.id)
            ).all()
            # every event of those orders in one query, not one query per order
            events: dict[str, list[OrderEventRow]] = {row.id: [] for row in rows}
            for event in session.scalars(
                select(OrderEventRow)
                .where(OrderEventRow.order_id.in_(select(settled.c.order_id)))
                .order_by(OrderEventRow.order_id, OrderEventRow.id)
            ):
                if event.order_id in events:  # PostgreSQL may see an order settle between the two queries
                    events[event.order_id].append(event)
            return [_to_order(row, events[row.id]) for row in rows]
