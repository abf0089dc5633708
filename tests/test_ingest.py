"""`tagtrail ingest` and the Parquet store (trails.ingest, trails.store)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from api.cli.main import main
from trails.ingest import ingest
from trails.projection import project_lonlat
from trails.store import read_store_events, read_store_fixes, read_store_quarantine, store_summary

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
QR = EXAMPLES / "quarantine_rows"


def snapshot(home: Path) -> dict:
    root = home / "store"
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_bad_row_kind_and_duplicates(tmp_path):
    s = ingest(QR / "fixes.csv", home=tmp_path, events_path=QR / "events.csv")
    assert s.fixes_read == 42 and s.events_read == 3
    assert s.quarantined == {
        "missing_device": 1, "bad_timestamp": 1, "naive_timestamp": 1, "bad_coordinates": 2,
        "bad_accuracy": 1, "bad_battery": 1, "unknown_event": 1, "duplicate": 2,
    }
    assert s.fixes_stored == 42 - 7 - 1 and s.events_stored == 1
    q = read_store_quarantine(tmp_path).to_pylist()
    dup = [(r["source"], r["row"]) for r in q if r["reason"] == "duplicate"]
    assert sorted(dup) == [("events", 2), ("fixes", 39)]  # first copy kept
    assert {r["source_file"] for r in q} == {"fixes.csv", "events.csv"}
    assert [r["ts"] for r in q if (r["source"], r["row"]) == ("fixes", 32)] == ["yesterday"]


def test_reingest_adds_nothing(tmp_path):
    ingest(QR / "fixes.csv", home=tmp_path, events_path=QR / "events.csv")
    before = read_store_fixes(tmp_path)
    s = ingest(QR / "fixes.csv", home=tmp_path, events_path=QR / "events.csv")
    assert s.fixes_stored == 0 and s.events_stored == 0
    assert s.quarantined["duplicate"] == 34 + 1 + 1 + 1  # every stored fix, event, plus in-file copies
    after = read_store_fixes(tmp_path)
    assert len(after) == len(before) == 34
    summary = store_summary(tmp_path)
    assert summary["fixes"] == 34 and summary["events"] == 1 and summary["devices"] == 2
    assert summary["quarantined"]["duplicate"] == 39


def test_partitioning_sort_order_and_columns(tmp_path):
    csv = tmp_path / "f.csv"
    rows = ["device_id,ts,lat,lon,accuracy_m,battery_pct",
            "B,2024-06-02T00:00:01Z,51.5,-0.1,,",
            "A,2024-06-02T00:00:00Z,51.5,-0.1,5,90",
            "B,2024-06-01T23:59:59.999Z,51.4,-0.2,3,",
            "A,2024-06-01T12:00:00+01:00,51.3,-0.3,,10",
            "A,2024-06-01T10:00:00Z,51.2,-0.4,,"]
    csv.write_text("\n".join(rows) + "\n")
    ingest(csv, home=tmp_path / "h", buckets=1)
    parts = sorted((tmp_path / "h" / "store" / "fixes").iterdir())
    assert [p.name for p in parts] == ["day=2024-06-01", "day=2024-06-02"]
    day1 = pq.read_table(next(parts[0].glob("bucket=0/*.parquet")))
    assert day1.column("device_id").to_pylist() == ["A", "A", "B"]
    assert day1.column("row").to_pylist() == [5, 4, 3]
    assert day1.column("ts_ms").to_pylist() == sorted(day1.column("ts_ms").to_pylist()[:2]) + [1717286399999]
    f = read_store_fixes(tmp_path / "h")
    assert f.device_id.to_pylist() == ["A", "A", "A", "B", "B"]
    x, y = project_lonlat(f.lon, f.lat, "EPSG:27700")
    assert np.array_equal(x, f.x) and np.array_equal(y, f.y)
    assert np.isnan(f.accuracy_m[0]) and f.battery_pct[1] == 10
    g = read_store_fixes(tmp_path / "h", start_ms=1717286400000, devices=["B"])
    assert g.row.tolist() == [1]
    assert len(read_store_fixes(tmp_path / "h", end_ms=1717236000000)) == 0
    assert len(read_store_fixes(tmp_path / "nowhere")) == 0


def test_atomic_failure_leaves_store_unchanged(tmp_path, capsys):
    home = tmp_path / "h"
    assert main(["ingest", str(QR / "fixes.csv"), "--home", str(home), "--no-progress"]) == 0
    before = snapshot(home)
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,ts,lat\nD1,2024-06-01T10:00:00Z,51\n")
    capsys.readouterr()
    assert main(["ingest", str(QR / "fixes.csv"), "--events", str(bad), "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv" in err[0] and "'event'" in err[0]
    assert snapshot(home) == before
    # an unreadable file discovered part-way (invalid UTF-8 after the header)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"device_id,ts,lat,lon\nD7,2024-06-01T10:00:00Z,51,0\nD\xff,2024-06-01T10:00:00Z,51,0\n")
    assert main(["ingest", str(broken), "--home", str(home), "--no-progress"]) == 2
    assert "broken.csv" in capsys.readouterr().err
    assert snapshot(home) == before
    assert not list((home / "store").glob(".tmp-*"))


def test_cli_output_and_help(tmp_path, capsys):
    assert main(["ingest", str(QR / "fixes.csv"), "--events", str(QR / "events.csv"), "--home", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fixes: 42 read, 34 stored" in out and "duplicate 2" in out and "rows/s" in out.splitlines()[-1]
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTRAIL_HOME", str(tmp_path / "env"))
    assert main(["ingest", str(QR / "fixes.csv"), "--no-progress"]) == 0
    assert store_summary(tmp_path / "env")["fixes"] == 34


def test_csv_and_parquet_same_store(tmp_path):
    src = QR / "fixes.csv"
    cols = ["device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct"]
    t = pa.csv.read_csv(src, convert_options=pa.csv.ConvertOptions(column_types={c: pa.string() for c in cols}, strings_can_be_null=False))
    pq.write_table(t, tmp_path / "fixes.parquet")
    ingest(src, home=tmp_path / "a")
    ingest(tmp_path / "fixes.parquet", home=tmp_path / "b")
    a, b = read_store_fixes(tmp_path / "a"), read_store_fixes(tmp_path / "b")
    for name in ("ts_ms", "x", "y", "lat", "lon", "row", "accuracy_m", "battery_pct"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.device_id.equals(b.device_id)
    qa, qb = read_store_quarantine(tmp_path / "a"), read_store_quarantine(tmp_path / "b")
    assert qa.column("reason").to_pylist() == qb.column("reason").to_pylist()


def test_events_store(tmp_path):
    ingest(QR / "fixes.csv", home=tmp_path, events_path=QR / "events.csv")
    ev = read_store_events(tmp_path)
    assert ev.event.to_pylist() == ["strap_tamper"] and ev.row.tolist() == [1]


def test_empty_and_all_bad_file(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("device_id,ts,lat,lon\n,2024-06-01T10:00:00Z,51,0\n")
    s = ingest(p, home=tmp_path)
    assert s.fixes_stored == 0 and s.quarantined == {"missing_device": 1}
    p.write_text("device_id,ts,lat,lon\n")
    s = ingest(p, home=tmp_path)
    assert s.fixes_read == 0
    assert store_summary(tmp_path)["fixes"] == 0


def _random_csv(path: Path, rng, n: int, n_dev: int = 5) -> list[tuple[str, int]]:
    """Unsorted fixes over 3 days with repeated (device, ts) keys; returns the rows' keys."""
    dev = rng.integers(0, n_dev, n)
    ts = 1_717_200_000_000 + rng.integers(0, 3 * 86_400, n) * 1000
    ts[rng.random(n) < 0.2] = ts[0]  # many duplicates of one instant
    lines = ["device_id,ts,lat,lon,accuracy_m,battery_pct"]
    lines += [f"D{d},{np.datetime64(int(t), 'ms')}Z,51.5,-0.1,5,50" for d, t in zip(dev, ts)]
    path.write_text("\n".join(lines) + "\n")
    return [(f"D{d}", int(t)) for d, t in zip(dev, ts)]


@pytest.mark.parametrize("batch_rows", [7, 64, None], ids=["tiny", "small", "default"])
def test_batches_dedup_first_row_wins_and_files_sorted(tmp_path, batch_rows):
    rng = np.random.default_rng(11)
    keys = _random_csv(tmp_path / "f.csv", rng, 400)
    s = ingest(tmp_path / "f.csv", home=tmp_path / "h", batch_rows=batch_rows)
    first = {}
    for i, k in enumerate(keys, start=1):
        first.setdefault(k, i)
    assert s.fixes_stored == len(first)
    assert s.quarantined.get("duplicate", 0) == len(keys) - len(first)
    f = read_store_fixes(tmp_path / "h")
    assert sorted(f.row.tolist()) == sorted(first.values())
    for p in (tmp_path / "h" / "store" / "fixes").rglob("*.parquet"):
        t = pq.read_table(p)
        pairs = list(zip(t.column("device_id").to_pylist(), t.column("ts_ms").to_pylist()))
        assert pairs == sorted(pairs)
        day = next(d for d in p.parts if d.startswith("day=")).removeprefix("day=")
        assert all(str(np.datetime64(ts, "ms").astype("datetime64[D]")) == day for _, ts in pairs)
    # a second file overlapping the first: only new keys are stored
    keys2 = _random_csv(tmp_path / "g.csv", np.random.default_rng(12), 300)
    s2 = ingest(tmp_path / "g.csv", home=tmp_path / "h", batch_rows=batch_rows)
    new = {k for k in keys2} - set(first)
    assert s2.fixes_stored == len(new)
    assert len(read_store_fixes(tmp_path / "h")) == len(first) + len(new)


def test_second_concurrent_ingest_is_refused(tmp_path):
    import os
    import re

    from trails.errors import InputError
    from trails.store import StoreLock

    with StoreLock(tmp_path, "ingest"):
        with pytest.raises(InputError, match=re.escape(f"an ingest is running on {str(tmp_path)!r} (pid {os.getpid()})")):
            ingest(QR / "fixes.csv", home=tmp_path)
    assert ingest(QR / "fixes.csv", home=tmp_path).fixes_stored == 34


def test_quarantine_keeps_a_bounded_prefix_of_a_long_bad_value(tmp_path):
    """A bad device_id or ts of any length is stored as its first 256 characters and a
    marker saying how many were cut; short values are stored as read."""
    long_id, long_ts = "D" * 1000, "9" * 300
    p = tmp_path / "f.csv"
    p.write_text("device_id,ts,lat,lon\n"
                 f"{long_id},2024-06-01T10:00:00Z,51.5,-0.1\n"
                 f"D1,{long_ts},51.5,-0.1\n"
                 "D\u200b2,yesterday,51.5,-0.1\n", encoding="utf-8")
    s = ingest(p, home=tmp_path / "h")
    assert s.quarantined == {"bad_device": 2, "bad_timestamp": 1}
    q = {r["row"]: r for r in read_store_quarantine(tmp_path / "h").to_pylist()}
    assert q[1]["reason"] == "bad_device" and q[1]["device_id"] == "D" * 256 + "…[+744 characters]"
    assert q[2]["reason"] == "bad_timestamp" and q[2]["ts"] == "9" * 256 + "…[+44 characters]"
    assert (q[3]["device_id"], q[3]["ts"]) == ("D\u200b2", "yesterday")
