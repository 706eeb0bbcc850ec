"""Jobs: the studio's jobs (pose packs, fashion shoots, try-on, living portraits) and their shots.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a product's or garment's photo is an upload too, without a face (a job's product lock compares with it)
    op.add_column("uploads", sa.Column("purpose", sa.String(16), nullable=False, server_default="person"))
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("state", sa.String(24), nullable=False, index=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("payments", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("credits_price", sa.Integer, nullable=False, server_default="0"),
        sa.Column("credits_paid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("credits_refunded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("api_key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("customer_ref", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("catalog", sa.String(64), nullable=True),
        sa.Column("sku", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_idempotency"),
    )
    op.create_index("ix_jobs_catalog_sku", "jobs", ["catalog", "sku"])
    # NULLs are distinct in a unique constraint: jobs placed without an API key (a merchant
    # catalog's, by a sensor tick and the weekly schedule at once) are unique by key here
    op.create_index(
        "ux_jobs_keyless_idempotency",
        "jobs",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text("api_key_id IS NULL"),
        postgresql_where=sa.text("api_key_id IS NULL"),
    )
    op.create_table(
        "job_shots",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("scores", sa.JSON, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_shots")
    op.drop_index("ux_jobs_keyless_idempotency", table_name="jobs")
    op.drop_index("ix_jobs_catalog_sku", table_name="jobs")
    op.drop_table("jobs")
    op.drop_column("uploads", "purpose")
