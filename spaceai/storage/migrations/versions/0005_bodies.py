"""Request and response bodies, logged only when the operator turns it on: a table of their
own (with its own retention) and a per-key switch.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("log_bodies", sa.Boolean, nullable=True))
    op.create_table(
        "request_bodies",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("request", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_request_bodies_created", "request_bodies", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_request_bodies_created", "request_bodies")
    op.drop_table("request_bodies")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("log_bodies")
