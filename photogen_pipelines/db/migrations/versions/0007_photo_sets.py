"""Orders made from several photos of one customer: the set, in the order they were given.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # an order from one photo has no rows here: its upload_key is the whole set, as before
    op.create_table(
        "order_photos",
        sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id"), nullable=True, index=True),
        sa.Column("storage_key", sa.String(300), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("order_photos")
