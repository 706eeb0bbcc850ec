"""Stray payments: money tied to an order that does not pay it, owed back to the customer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stray_payments",
        sa.Column("payment_intent_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("refund_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("refunded_at", TIME, nullable=True),
    )
    op.create_index("ix_stray_payments_order_id", "stray_payments", ["order_id"])
    op.create_index("ix_stray_payments_refunded_at", "stray_payments", ["refunded_at"])


def downgrade() -> None:
    op.drop_table("stray_payments")
