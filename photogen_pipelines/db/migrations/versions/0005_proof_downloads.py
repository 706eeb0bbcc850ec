"""Orders remember the customer's first proof download and the fee a cancel keeps from then on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("proofs_downloaded_at", TIME, nullable=True))
        # orders placed before it: nothing downloaded was recorded, so nothing is kept on a cancel
        orders.add_column(sa.Column("cancellation_fee_cents", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.drop_column("cancellation_fee_cents")
        orders.drop_column("proofs_downloaded_at")
