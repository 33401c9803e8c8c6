"""Storage: SQLAlchemy tables and Alembic migrations (SQLite by default, PostgreSQL too)."""
