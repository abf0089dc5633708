"""Migration 0003 moves per-row intake fixes into chunks without losing a row or a seq."""
from __future__ import annotations

import json
import math

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from api.db.session import MIGRATIONS, make_engine, migrate


def _upgrade(engine, rev):
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, rev)


def test_0003_moves_logged_fixes_into_chunks_keeping_seqs(tmp_path):
    from api.db.fixlog import SEQ_KEY, decode

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _upgrade(engine, "0002")
    rows = [  # batch 1: seqs 1-3, batch 2: seqs 4-5; seq 6 was compacted away (gone, but never to be reused)
        (1, 1, 1, "D1", 1000, 51.5, -0.1, 530000.0, 180000.0, None, 50.0),
        (2, 1, 2, "D1", 2000, 51.5, -0.1, 530001.0, 180000.0, 5.0, None),
        (3, 1, 3, "D2", 1000, 52.0, -1.0, 460000.0, 230000.0, 7.0, 60.0),
        (4, 2, 1, "D1", 3000, 51.6, -0.2, 529000.0, 181000.0, 3.0, 40.0),
        (5, 2, 2, "D3", 3000, 53.0, -2.0, 390000.0, 340000.0, 4.0, 30.0),
    ]
    with engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO intake_fixes (seq, batch_id, "row", device_id, ts_ms, lat, lon, x, y, '
                             'accuracy_m, battery_pct) VALUES (:s, :b, :r, :d, :t, :la, :lo, :x, :y, :a, :bp)'),
                     [dict(zip(("s", "b", "r", "d", "t", "la", "lo", "x", "y", "a", "bp"), r)) for r in rows])
        conn.execute(sa.text("UPDATE sqlite_sequence SET seq = 6 WHERE name = 'intake_fixes'"))
    migrate(engine)
    with engine.connect() as conn:
        chunks = conn.execute(sa.text("SELECT seq_first, seq_last, batch_id, rows, data FROM intake_fix_chunks "
                                      "ORDER BY seq_first")).all()
        counter = conn.execute(sa.text("SELECT value FROM detector_state WHERE key = :k"), {"k": SEQ_KEY}).scalar()
        tables = set(sa.inspect(conn).get_table_names())
    assert [(c[0], c[1], c[2], c[3]) for c in chunks] == [(1, 3, 1, 3), (4, 5, 2, 2)]
    got = [r for c in chunks for r in decode(c[4]).to_pylist()]
    assert [(r["row"], r["device_id"], r["ts_ms"], r["x"]) for r in got] == [(r[2], r[3], r[4], r[7]) for r in rows]
    assert math.isnan(got[0]["accuracy_m"]) and got[1]["accuracy_m"] == 5.0  # NaN = not given
    assert math.isnan(got[1]["battery_pct"]) and got[0]["battery_pct"] == 50.0
    assert json.loads(counter) == 6  # the next fix gets seq 7, never a used one
    assert "intake_fixes" not in tables
