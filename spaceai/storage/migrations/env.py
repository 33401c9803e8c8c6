"""Alembic environment: runs the migrations online against the configured URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from spaceai.storage.db import create_engine
from spaceai.storage.tables import metadata

config = context.config
_ADVISORY_LOCK = 736_501_001  # serialises concurrent migrations of several processes on PostgreSQL


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_lock({_ADVISORY_LOCK})"))
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text(f"SELECT pg_advisory_unlock({_ADVISORY_LOCK})"))
                connection.commit()
    engine.dispose()


run_migrations_online()
