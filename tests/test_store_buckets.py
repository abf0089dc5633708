"""Device buckets in the store: placement, layout metadata, writers, and `migrate-buckets`."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.cli.main import main
from trails.buckets import bucket_of, bucket_of_path, check_buckets, split_by_bucket
from trails.errors import InputError
from trails.ingest import ingest
from trails.manifest import Manifest, StoreIntegrityError
from trails.migrate import migrate_buckets
from trails.sim.simulate import simulate
from trails.store import StoreLock, read_store_fixes, store_root, write_intake_rows

from test_store_integrity import flatten_to_format_1


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate(root, wearers=9, days=2, seed=5, start="2024-03-04", bad_row_rate=0.01)
    return root


def _fix_files(home: Path) -> list[Path]:
    return sorted((home / "store" / "fixes").rglob("*.parquet"))


def _all_fixes(home: Path):
    """Every stored fix, as a DataFrame (its `equals` takes NaN for NaN: battery unknown)."""
    f = read_store_fixes(home)
    return pa.table({"device_id": f.device_id, "ts_ms": f.ts_ms, "x": f.x, "y": f.y, "row": f.row,
                     "battery_pct": f.battery_pct, "source": f.source.cast(pa.string())}).to_pandas()


# --------------------------------------------------------------------------- placement
@pytest.mark.parametrize("ids,n,expected", [
    (["D-001", "D-002", "D-001"], 16, [14, 4, 14]),
    (["D-001"], 1, [0]),
    ([], 16, []),
    (["é-ünïcode"], 7, [zlib.crc32("é-ünïcode".encode()) % 7]),
], ids=["known-answer", "one-bucket", "empty", "utf-8"])
def test_bucket_of_is_crc32_of_utf8_mod_b(ids, n, expected):
    assert bucket_of(ids, n).tolist() == expected


@pytest.mark.parametrize("bad", [0, -1, 4097, 2.5, True, "16"])
def test_bucket_count_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="buckets"):
        check_buckets(bad)


def test_split_by_bucket_keeps_row_order():
    t = pa.table({"device_id": ["A", "B", "A", "C", "B"], "n": [0, 1, 2, 3, 4]})
    parts = split_by_bucket(t, 3)
    assert sum(p.num_rows for _, p in parts) == 5
    for k, p in parts:
        assert set(bucket_of(p.column("device_id"), 3).tolist()) == {k}
        assert p.column("n").to_pylist() == sorted(p.column("n").to_pylist())
    assert bucket_of_path("fixes/day=2024-03-04/bucket=12/part-x.parquet") == 12
    assert bucket_of_path("fixes/day=2024-03-04/part-x.parquet") is None


# --------------------------------------------------------------------------- writers
@pytest.mark.parametrize("n_buckets", [None, 1, 5])
def test_ingest_writes_sorted_bucket_files_and_records_b(tmp_path, sim, n_buckets):
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=n_buckets)
    b = n_buckets or 16
    assert Manifest.read(store_root(home)).buckets == b
    for p in _fix_files(home):
        k = int(p.parent.name.removeprefix("bucket="))
        t = pq.read_table(p)
        assert set(bucket_of(t.column("device_id"), b).tolist()) == {k}
        pairs = list(zip(t.column("device_id").to_pylist(), t.column("ts_ms").to_pylist()))
        assert pairs == sorted(pairs)
    # events stay one folder per day
    assert all(p.parent.name.startswith("day=") for p in (home / "store" / "events").rglob("*.parquet"))


def test_existing_store_keeps_its_b_and_another_is_refused(tmp_path, sim):
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, buckets=4)
    with pytest.raises(InputError, match="has 4 buckets, not 8: run `tagtrail store migrate-buckets"):
        ingest(sim / "fixes.csv", home=home, buckets=8)
    assert ingest(sim / "fixes.csv", home=home).fixes_stored == 0  # no --buckets: the store's own
    assert Manifest.read(store_root(home)).buckets == 4


def test_compaction_writes_bucket_files(tmp_path, sim):
    """The service's compaction (`write_intake_rows`) writes the same layout as ingest."""
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, buckets=3)
    rows = read_store_fixes(home)
    table = pa.table({"device_id": pa.array(["NEW-1", "NEW-2"]), "ts_ms": pa.array([rows.ts_ms[0], rows.ts_ms[0]]),
                      "lat": [51.5, 51.5], "lon": [-0.1, -0.1], "x": [530000.0, 530000.0], "y": [180000.0, 180000.0],
                      "accuracy_m": [5.0, 5.0], "battery_pct": [50.0, 50.0],
                      "source": pa.array(["batch-1", "batch-1"]).dictionary_encode(), "row": [1, 2]})
    assert write_intake_rows(home, "fixes", table, 1, 2) == 2
    new = [p for p in _fix_files(home) if p.name.startswith("part-intake-1-2-")]
    assert {int(p.parent.name.removeprefix("bucket=")) for p in new} == set(bucket_of(["NEW-1", "NEW-2"], 3).tolist())
    assert len(read_store_fixes(home)) == len(rows) + 2


# --------------------------------------------------------------------------- migrate-buckets
def test_migrate_a_format_1_store_then_rebucket_then_nothing(tmp_path, sim):
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=1)
    flatten_to_format_1(home)
    assert Manifest.read(store_root(home)).exists is False
    before = _all_fixes(home)  # the reader adopts the old store
    assert Manifest.read(store_root(home)).buckets is None
    s = migrate_buckets(home, 4)
    assert s.changed and s.before is None and s.fixes == len(before)
    m = Manifest.read(store_root(home))
    assert m.buckets == 4
    listed = sorted(m.paths("fixes").to_pylist())
    on_disk = sorted(str(p.relative_to(home / "store")) for p in _fix_files(home))
    assert listed == on_disk and all("/bucket=" in p for p in listed)
    assert _all_fixes(home).equals(before)
    s2 = migrate_buckets(home, 3)
    assert s2.changed and s2.before == 4 and _all_fixes(home).equals(before)
    again = migrate_buckets(home, 3)
    assert not again.changed and sorted(Manifest.read(store_root(home)).paths("fixes").to_pylist()) == \
        sorted(str(p.relative_to(home / "store")) for p in _fix_files(home))
    assert not list((home / "store").glob(".tmp-*"))


def test_migrate_refuses_bad_input_and_a_held_lock(tmp_path, sim, capsys):
    with pytest.raises(InputError, match="no store"):
        migrate_buckets(tmp_path / "nowhere", 4)
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home)
    with pytest.raises(InputError, match="from 1 to 4096"):
        migrate_buckets(home, 0)
    with StoreLock(home, "ingest"):
        with pytest.raises(InputError, match="an ingest is running"):
            migrate_buckets(home, 4)
    # a changed store file is an error naming it, and nothing is rewritten
    victim = _fix_files(home)[0]
    with open(victim, "ab") as fh:
        fh.write(b"\0")
    files_before = _fix_files(home)
    with pytest.raises(StoreIntegrityError, match="changed after it was written"):
        migrate_buckets(home, 4)
    assert _fix_files(home) == files_before and Manifest.read(store_root(home)).buckets == 16
    # the CLI: exit 2 with one line, and --help names the action
    assert main(["store", "migrate-buckets", "--home", str(tmp_path / "nowhere")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["store", "migrate-buckets", "--help"])
    assert "migrate-buckets" in capsys.readouterr().out


def test_detect_records_are_unchanged_by_migration(tmp_path, sim):
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=1)
    flatten_to_format_1(home)
    args = ["detect", "--home", str(home), "--subjects", str(sim / "subjects.json"), "--zones",
            str(sim / "zones.geojson"), "--quiet"]
    assert main(args + ["--out", str(tmp_path / "before")]) == 0
    assert main(["store", "migrate-buckets", "--home", str(home), "--buckets", "5"]) == 0
    assert main(args + ["--out", str(tmp_path / "after")]) == 0
    for name in ("breaches.jsonl", "quarantine.csv"):
        assert (tmp_path / "before" / name).read_bytes() == (tmp_path / "after" / name).read_bytes()
    assert np.any([len((tmp_path / "after" / "breaches.jsonl").read_bytes()) > 0])


def test_bucket_tasks_read_only_listed_files(tmp_path, sim, caplog):
    """A Parquet file dropped into a bucket folder by anything but the store is never read by
    the bucket tasks (reported once); a listed file changed afterwards is an error naming it."""
    import logging

    from test_store_integrity import _forged

    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=2)
    args = ["detect", "--home", str(home), "--subjects", str(sim / "subjects.json"), "--zones",
            str(sim / "zones.geojson"), "--quiet", "--task-rows", "2000"]
    assert main(args + ["--out", str(tmp_path / "before")]) == 0
    bucket = sorted((home / "store" / "fixes").glob("day=*/bucket=*"))[0]
    forged = _forged(bucket / "part-forged.parquet")
    with caplog.at_level(logging.WARNING, logger="tagtrail.store"):
        assert main(args + ["--out", str(tmp_path / "after")]) == 0
    assert (tmp_path / "before" / "breaches.jsonl").read_bytes() == (tmp_path / "after" / "breaches.jsonl").read_bytes()
    assert sum(str(forged) in r.getMessage() for r in caplog.records) == 1
    listed = next(p for p in sorted(bucket.iterdir()) if p != forged)
    with open(listed, "ab") as fh:
        fh.write(b"\0")
    assert main(args + ["--out", str(tmp_path / "changed")]) == 2
    assert not (tmp_path / "changed").exists()
