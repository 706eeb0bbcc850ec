"""Customers, their credit wallets, packs bought through Stripe, quotes; orders paid in credits or previewed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("shop_key", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("shop_key", "ref", name="uq_customers_shop_ref"),
    )
    op.create_table(
        "credit_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("counter_account", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("order_id", sa.String(32), nullable=True, index=True),
        sa.Column("pack_purchase_id", sa.String(32), nullable=True, index=True),
        sa.Column("lot_id", sa.Integer, nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False, index=True),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_credit_entries_key"),
    )
    op.create_table(
        "pack_purchases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.id"), nullable=False, index=True),
        sa.Column("pack_id", sa.String(32), nullable=False),
        sa.Column("credits", sa.Integer, nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_intent_id", sa.String(64), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("paid_cents", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refunded_cents", sa.Integer, nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_pack_purchases_key"),
    )
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("customer_ref", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("credits", sa.Integer, nullable=True),
        sa.Column("proofs_seconds", sa.Integer, nullable=False),
        sa.Column("print_seconds", sa.Integer, nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    with op.batch_alter_table("uploads") as uploads:
        uploads.add_column(sa.Column("customer_ref", sa.String(64), nullable=True))
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("customer_ref", sa.String(64), nullable=True))
        orders.add_column(sa.Column("credits_price", sa.Integer, nullable=False, server_default="0"))
        orders.add_column(sa.Column("credits_paid", sa.Integer, nullable=False, server_default="0"))
        orders.add_column(sa.Column("credits_refunded", sa.Integer, nullable=False, server_default="0"))
        orders.add_column(sa.Column("reroll_days", sa.Integer, nullable=True))
        orders.add_column(sa.Column("quote_id", sa.String(32), nullable=True))
        orders.add_column(sa.Column("preview", sa.Boolean, nullable=False, server_default=sa.false()))
        orders.create_index("ix_orders_customer", ["api_key_id", "customer_ref", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.drop_index("ix_orders_customer")
        for column in ("preview", "quote_id", "reroll_days", "credits_refunded", "credits_paid", "credits_price", "customer_ref"):
            orders.drop_column(column)
    with op.batch_alter_table("uploads") as uploads:
        uploads.drop_column("customer_ref")
    for table in ("quotes", "pack_purchases", "credit_entries", "customers"):
        op.drop_table(table)
