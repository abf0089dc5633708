"""Alembic environment: migrations run on the connection `api.db.session.migrate`
passes in (no alembic.ini, no URL in a file)."""
from __future__ import annotations

from alembic import context

from api.db.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover
    raise RuntimeError("run migrations through api.db.session.migrate(engine)")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
