"""Idempotent ledger: one row per request id, and a dead-letter table for refused rows.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # keep the first row of any request id written twice before inserts became idempotent
    op.execute("DELETE FROM usage WHERE id NOT IN "
               "(SELECT min_id FROM (SELECT MIN(id) AS min_id FROM usage GROUP BY request_id) AS k)")
    op.create_index("ux_usage_request_id", "usage", ["request_id"], unique=True)
    op.create_table(
        "usage_dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_dead_letters")
    op.drop_index("ux_usage_request_id", "usage")
