"""Erasures: that a customer's data was erased, when, and how much, without who.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("shop_key", sa.String(32), nullable=False),
        # an HMAC of the shop's reference under the server's secret: the same request is
        # recognised (erasure is idempotent), the reference cannot be read back
        sa.Column("ref_digest", sa.String(64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders", sa.Integer, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.UniqueConstraint("shop_key", "ref_digest", name="uq_erasures_shop_ref"),
    )


def downgrade() -> None:
    op.drop_table("erasures")
