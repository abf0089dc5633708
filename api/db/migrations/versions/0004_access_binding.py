"""Access decisions bound to the assignments they were made on; user identities.

- ``access_requests.bound_assignments_json``: the wearer's assignments when
  data was approved, clipped to the approved period; the extract reads only
  these. Decisions made before this revision have none: the service cannot
  know which assignments held when they were made, so their extracts are
  refused (409) rather than guessed at; approvals expire within days.
- ``users.person``: the person behind an account (`api.access.users.person_key` of
  the name), filled in for existing users; the two-person rule compares it.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _person_key(name: str) -> str:
    """`api.access.users.person_key` as it was when this revision was written (a migration
    is a snapshot: it must do the same thing however the code changes later)."""
    import unicodedata

    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cc") or c.isspace())
    return " ".join(text.casefold().split())


def upgrade() -> None:
    person_key = _person_key

    op.add_column("access_requests", sa.Column("bound_assignments_json", sa.Text))
    op.add_column("users", sa.Column("person", sa.String(200), nullable=False, server_default=""))
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("person", sa.String))
    for user_id, name in conn.execute(sa.text("SELECT id, name FROM users")).all():
        conn.execute(users.update().where(users.c.id == user_id).values(person=person_key(name)))
    op.create_index("ix_users_person", "users", ["person"])


def downgrade() -> None:  # pragma: no cover - tagtrail migrates forward only
    raise NotImplementedError("tagtrail migrates forward only")
