"""The database: SQLAlchemy models, sessions and the Alembic migrations."""
