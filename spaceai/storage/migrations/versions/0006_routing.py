"""How each request was routed, in its ledger row: the model asked for (``model`` is the one
that served), the upstream deployment that served it, the retries and fallbacks taken, and the
time spent waiting on upstreams. Nullable: rows written before have none of them, and adding a
nullable column rewrites no row (SQLite and PostgreSQL alike), however large the ledger.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def _columns() -> list[sa.Column]:
    return [sa.Column("model_requested", sa.String(200), nullable=True),
            sa.Column("deployment", sa.String(200), nullable=True),
            sa.Column("retries", sa.Integer, nullable=True),
            sa.Column("fallbacks", sa.Integer, nullable=True),
            sa.Column("upstream_ms", sa.Float, nullable=True)]


def upgrade() -> None:
    for column in _columns():
        op.add_column("usage", column)


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
