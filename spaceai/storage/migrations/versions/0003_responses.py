"""Stored Responses API answers and their conversations.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("input_items", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_responses_created", "responses", ["created_at"])
    op.create_index("ix_responses_key", "responses", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_responses_key", "responses")
    op.drop_index("ix_responses_created", "responses")
    op.drop_table("responses")
