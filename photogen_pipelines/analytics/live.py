"""The shop right now, for the operators' metrics endpoint (`GET /metrics`, Prometheus).

The nightly `rejection_metrics` table answers "how did yesterday go"; an operator on call
asks what is happening now: how many orders sit in each state and how long the oldest has
waited there (a stuck order), how many proofs the identity gate turned away today per
style, how much was refunded, how many submissions the print provider refused, how many
webhooks are owed to the storefronts. One read of the orders database per scrape, a few
aggregate queries; no personal data is read (states, styles, counts and ages only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time

from sqlalchemy import func, select

from photogen_pipelines.clock import as_utc
from photogen_pipelines.db.database import Database
from photogen_pipelines.db.tables import FulfilmentRow, OrderEventRow, OrderRow, WebhookDeliveryRow
from photogen_pipelines.orders.states import TERMINAL, OrderState

# a state an order can be stuck in: everything but the ends of its road
WAITING_STATES = tuple(state for state in OrderState if state not in TERMINAL)
# the identity gate's two verdicts on a proof round
PASSED, REJECTED = OrderState.PROOFS_READY.value, OrderState.REJECTED.value


@dataclass(frozen=True)
class StyleVerdicts:
    passed: int = 0
    rejected: int = 0

    @property
    def rejection_rate(self) -> float | None:
        verdicts = self.passed + self.rejected
        return self.rejected / verdicts if verdicts else None


@dataclass(frozen=True)
class ShopNow:
    """What `/metrics` reports of the pipeline, read at one moment `at`."""

    at: datetime
    orders_by_state: dict[str, int] = field(default_factory=dict)
    oldest_seconds_by_state: dict[str, float] = field(default_factory=dict)  # since its last state change
    verdicts_today: dict[str, StyleVerdicts] = field(default_factory=dict)  # style id -> today's verdicts (UTC day)
    refunded_cents: dict[str, int] = field(default_factory=dict)  # currency -> refunded in all
    refunded_orders: int = 0
    credits_refunded: int = 0
    provider_errors: dict[str, int] = field(default_factory=dict)  # provider -> submissions with an error
    webhooks_pending: int = 0
    oldest_webhook_pending_seconds: float = 0.0


def shop_now(database: Database, now: datetime) -> ShopNow:
    """The counts and ages above, from the orders database as it is at `now` (aware, UTC)."""
    midnight = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    last_change = (
        select(OrderEventRow.order_id, func.max(OrderEventRow.at).label("at")).group_by(OrderEventRow.order_id).subquery()
    )
    with database.session() as session:
        by_state = dict(session.execute(select(OrderRow.state, func.count()).group_by(OrderRow.state)).all())
        oldest = session.execute(
            select(OrderRow.state, func.min(last_change.c.at))
            .join(last_change, last_change.c.order_id == OrderRow.id)
            .where(OrderRow.state.in_([s.value for s in WAITING_STATES]))
            .group_by(OrderRow.state)
        ).all()
        verdicts = session.execute(
            select(OrderRow.style_id, OrderEventRow.to_state, func.count())
            .join(OrderRow, OrderRow.id == OrderEventRow.order_id)
            .where(OrderEventRow.at >= midnight, OrderEventRow.to_state.in_([PASSED, REJECTED]))
            .group_by(OrderRow.style_id, OrderEventRow.to_state)
        ).all()
        refunded = dict(
            session.execute(
                select(OrderRow.currency, func.sum(OrderRow.refunded_cents))
                .where(OrderRow.refunded_cents > 0)
                .group_by(OrderRow.currency)
            ).all()
        )
        refunded_orders = session.scalar(
            select(func.count()).where((OrderRow.refunded_cents > 0) | (OrderRow.credits_refunded > 0))
        )
        credits_refunded = session.scalar(select(func.coalesce(func.sum(OrderRow.credits_refunded), 0)))
        provider_errors = dict(
            session.execute(
                select(FulfilmentRow.provider, func.count())
                .where(FulfilmentRow.last_error.is_not(None))
                .group_by(FulfilmentRow.provider)
            ).all()
        )
        pending, oldest_pending = session.execute(
            select(func.count(), func.min(WebhookDeliveryRow.created_at)).where(WebhookDeliveryRow.status == "pending")
        ).one()

    styles: dict[str, dict[str, int]] = {}
    for style_id, state, count in verdicts:
        styles.setdefault(style_id, {})[state] = count
    return ShopNow(
        at=now,
        orders_by_state={state.value: int(by_state.get(state.value, 0)) for state in OrderState},
        oldest_seconds_by_state={state: max(0.0, (now - as_utc(at)).total_seconds()) for state, at in oldest if at is not None},
        verdicts_today={
            style: StyleVerdicts(passed=counts.get(PASSED, 0), rejected=counts.get(REJECTED, 0))
            for style, counts in styles.items()
        },
        refunded_cents={currency: int(cents) for currency, cents in refunded.items()},
        refunded_orders=int(refunded_orders or 0),
        credits_refunded=int(credits_refunded or 0),
        provider_errors={provider: int(count) for provider, count in provider_errors.items()},
        webhooks_pending=int(pending or 0),
        oldest_webhook_pending_seconds=max(0.0, (now - as_utc(oldest_pending)).total_seconds()) if oldest_pending else 0.0,
    )
