"""The console's server-side sessions (issue 12): one row per sign-in, keyed by
the SHA-256 of the session id the browser holds (the id itself is never
stored, as with API tokens), with when it began, when it was last used (the
idle timeout runs from there) and when it ended (sign-out, expiry, a revoked
user).

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False, index=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
