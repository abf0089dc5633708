"""The intake log keeps fixes as one chunk per batch (Arrow IPC) instead of one
row per fix: a batch is one insert, and passes and compaction read it back
in one piece. Fixes already in the old table move into chunks (one per run
of consecutive seqs of one batch), keeping their seqs; the next seq is kept
in detector_state so that seqs are never reused.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLS = ("seq", "batch_id", "row", "device_id", "ts_ms", "lat", "lon", "x", "y", "accuracy_m", "battery_pct")


def upgrade() -> None:
    import pyarrow as pa

    from api.db.fixlog import SEQ_KEY, encode

    op.create_table(
        "intake_fix_chunks",
        sa.Column("seq_first", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("seq_last", sa.BigInteger, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_intake_fix_chunks_seq_last", "intake_fix_chunks", ["seq_last"])
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT {', '.join(chr(34) + c + chr(34) for c in _COLS)} FROM intake_fixes "
                                "ORDER BY seq")).all()
    chunks = sa.table("intake_fix_chunks", sa.column("seq_first"), sa.column("seq_last"), sa.column("batch_id"),
                      sa.column("rows"), sa.column("data"))
    start = 0
    for k in range(1, len(rows) + 1):
        if k == len(rows) or rows[k][1] != rows[start][1] or rows[k][0] != rows[k - 1][0] + 1:
            run = rows[start:k]
            cols = {c: [r[i] for r in run] for i, c in enumerate(_COLS)}
            t = pa.table({c: pa.array([float("nan") if v is None else v for v in cols[c]], pa.float64())
                          if c in ("accuracy_m", "battery_pct") else cols[c] for c in _COLS[2:]})
            conn.execute(chunks.insert().values(seq_first=run[0][0], seq_last=run[-1][0], batch_id=run[0][1],
                                                rows=len(run), data=encode(t)))
            start = k
    # the last seq ever given: the old table's sequence, its rows, and the detector's watermark
    last = [rows[-1][0]] if rows else []
    if conn.dialect.name == "sqlite":
        last += [r[0] for r in conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'intake_fixes'"))]
    elif conn.dialect.name == "postgresql":
        last += [r[0] for r in conn.execute(sa.text(
            "SELECT last_value FROM pg_sequences WHERE sequencename = 'intake_fixes_seq_seq'")) if r[0] is not None]
    for (value,) in conn.execute(sa.text("SELECT value FROM detector_state WHERE key = 'watermark'")):
        last.append(int(json.loads(value)[0]))
    if last:
        state = sa.table("detector_state", sa.column("key"), sa.column("value"))
        conn.execute(state.insert().values(key=SEQ_KEY, value=json.dumps(int(max(last)))))
    op.drop_index("ux_intake_fixes_key", table_name="intake_fixes")
    op.drop_table("intake_fixes")


def downgrade() -> None:  # pragma: no cover - one way, like the chunks themselves
    raise NotImplementedError("0003 cannot be undone")
