"""Audit log integrity: per-entry authentication. Each audit_log row gets a
`mac`, HMAC-SHA256 of its canonical entry under HOME/keys/audit-mac.key,
written by the service with the row; a checkpoint is signed only over rows
whose MAC verifies, so a row INSERTed by someone who can write the database
but not HOME/keys is refused.

Existing rows keep mac NULL. Computing their MACs here would need the key,
which lives in HOME (a migration only has the database connection), and an
UPDATE of the append-only table (its triggers refuse it; dropping them for
the purpose would open the table to exactly the edit it guards against).
Nor would it add anything: rows written before this revision are covered by
the checkpoints the service signed after every commit, which `tagtrail audit
verify` checks. `api.audit.verify` accepts MAC-less rows only as a prefix of
the log (never after a row with a MAC).

Plain ``ALTER TABLE ... ADD COLUMN``, not a batch (copy-and-rename)
operation: on SQLite a table copy would lose the append-only triggers.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:  # pragma: no cover - tagtrail migrates forward only
    raise NotImplementedError("tagtrail migrates forward only")
