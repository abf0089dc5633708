"""The store reads only what it wrote, and one lock keeps its writers apart
(issue 10, items 6, 11, 25).

- The watched folder is the suppliers': a symbolic link there is never
  followed or moved into, and taken files end up under HOME, never in the
  folder. The old attack (``failed/`` replaced by a link into HOME/store, a
  crafted Parquet file dropped beside it) must leave the store untouched.
- HOME/store/manifest.parquet lists every file the store published; readers
  ignore (and report) files it does not list, and refuse listed files that
  changed. A store from before the manifest is adopted once.
- HOME/store.lock: an ingest and a service (`serve`, `watch`) exclude each
  other, tested with real processes; a killed ingest's staging folder is
  removed by whoever takes the lock next.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from api.cli.main import main
from conftest import EXAMPLES
from trails.errors import InputError
from trails.ingest import ingest
from trails.store import (
    FIX_SCHEMA,
    FixFiles,
    existing_keys,
    list_days,
    read_store_fixes,
    read_store_quarantine,
    store_summary,
)

QR = EXAMPLES / "quarantine_rows"  # 34 fixes kept, on 2024-05-31 and 2024-06-01, devices D1 and D2
BIN = Path(sys.executable).parent
DAY = "day=2024-06-01"


def flatten_to_format_1(home: Path) -> None:
    """Turn a store into one written before buckets and before the manifest: every fix file
    moved from its bucket folder into its day folder, the manifest deleted (the next lock
    holder adopts the files)."""
    for p in sorted((home / "store" / "fixes").glob("day=*/bucket=*/*.parquet")):
        p.rename(p.parent.parent / f"{p.stem}-{p.parent.name.removeprefix('bucket=')}.parquet")
    for d in (home / "store" / "fixes").glob("day=*/bucket=*"):
        d.rmdir()
    (home / "store" / "manifest.parquet").unlink()


def _forged(path: Path, n: int = 5) -> Path:
    """A Parquet file in the store's own fix schema, as an attacker would craft it."""
    t = pa.table({
        "device_id": pa.array(["FORGED"] * n), "ts_ms": pa.array(1717236000000 + np.arange(n) * 60_000),
        "lat": np.full(n, 51.5), "lon": np.full(n, -0.1), "x": np.full(n, 530000.0), "y": np.full(n, 180000.0),
        "accuracy_m": np.full(n, 5.0), "battery_pct": np.full(n, 90.0),
        "source": pa.array(["forged.csv"] * n).dictionary_encode(), "row": pa.array(np.arange(1, n + 1)),
    }).cast(FIX_SCHEMA)
    pq.write_table(t, path)
    return path


def _store_files(home: Path) -> list[str]:
    root = home / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet") if p.name != "manifest.parquet")


# --------------------------------------------------------------------------- item 6: the watched folder
def test_failed_folder_linked_into_the_store_lands_nothing_in_it(tmp_path, capsys):
    """The review's attack: DIR/failed is a link to a day partition of the store and
    a crafted Parquet file (unreadable as a supplier file: no `ts`) is dropped in
    DIR. The old watcher moved it through the link into the store, where its
    forged fixes were read as stored fixes."""
    home, feed = tmp_path / "home", tmp_path / "feed"
    ingest(QR / "fixes.csv", home=home)
    feed.mkdir()
    os.symlink(home / "store" / "fixes" / DAY, feed / "failed")
    os.symlink(home / "store" / "fixes" / DAY, feed / "processed")
    _forged(feed / "part-forged.parquet")
    before = _store_files(home)
    assert main(["watch", str(feed), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    out = capsys.readouterr().out
    assert _store_files(home) == before
    f = read_store_fixes(home)
    assert len(f) == 34 and "FORGED" not in set(f.device_id.to_pylist())
    # the links are refused, reported once each, and left as they were
    assert out.count("failed: refused: a symbolic link") == 1 and out.count("processed: refused: a symbolic link") == 1
    assert os.readlink(feed / "failed") == str(home / "store" / "fixes" / DAY)
    # the crafted file failed intake and is kept under HOME, out of the suppliers' reach
    from api.service.watch import feed_dir

    kept = feed_dir(home, feed) / "failed"
    assert sorted(p.name for p in kept.iterdir()) == ["part-forged.parquet", "part-forged.parquet.error.txt"]
    assert "'ts'" in (kept / "part-forged.parquet.error.txt").read_text()
    assert sorted(p.name for p in feed.iterdir()) == ["failed", "processed"]


def test_linked_file_in_the_folder_is_never_read_or_moved(tmp_path, capsys, caplog):
    """A link to a file elsewhere (here a valid fixes file) is refused, not read:
    no row is accepted, the link stays, the log says so once."""
    home, feed = tmp_path / "home", tmp_path / "feed"
    feed.mkdir()
    os.symlink(EXAMPLES / "curfew_basic" / "fixes.csv", feed / "elsewhere.csv")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", feed / "linked-dir")
    with caplog.at_level(logging.WARNING, logger="tagtrail.watch"):
        assert main(["watch", str(feed), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "elsewhere.csv: refused: a symbolic link: never followed or taken; left in place\n" in out
    assert out.count("elsewhere.csv") == 1 and out.count("linked-dir: refused") == 1
    assert "rows accepted" not in out and "no rows yet" in out
    assert os.path.islink(feed / "elsewhere.csv") and os.path.islink(feed / "linked-dir")
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and all(str(feed) in m for m in refusals)


def test_take_opens_without_following_a_link_made_after_the_scan(tmp_path):
    """The name was a regular file at the scan and is a link when taken: the open
    (O_NOFOLLOW) refuses it, and nothing is read, moved or written."""
    from api.http.app import create_app
    from api.settings import Settings
    from api.service.watch import FolderWatcher

    home, feed = tmp_path / "home", tmp_path / "feed"
    feed.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("name,password\nroot,hunter2\n")
    app = create_app(Settings.from_home(home))
    try:
        w = FolderWatcher(app.state.stream, app.state.session_factory, app.state.audit, feed)
        os.symlink(secret, feed / "swapped.csv")
        c = w.take(feed / "swapped.csv")
    finally:
        app.state.engine.dispose()
    assert c["refused"].startswith("a symbolic link") and c["accepted"] == 0 and w.n_refused == 1
    assert os.path.islink(feed / "swapped.csv")
    assert [p for d in ("incoming", "processed", "failed") for p in (w.home_dir / d).iterdir()] == []


# --------------------------------------------------------------------------- item 6: the manifest
def test_file_the_store_did_not_write_is_ignored_with_a_warning(tmp_path, caplog):
    home = tmp_path / "h"
    ingest(QR / "fixes.csv", home=home)
    dropped = _forged(home / "store" / "fixes" / DAY / "part-0000000000000000-00000.parquet")
    (home / "store" / "fixes" / "day=2024-06-02").mkdir()
    _forged(home / "store" / "fixes" / "day=2024-06-02" / "part-x.parquet")
    with caplog.at_level(logging.WARNING, logger="tagtrail.store"):
        f = read_store_fixes(home)
        assert len(f) == 34 and "FORGED" not in set(f.device_id.to_pylist())
        files = FixFiles(home)
        assert len(files) == 34 and str(dropped) not in files.files
        assert list_days(home) == [19874, 19875]  # 2024-05-31 and 2024-06-01, not the folder of 2024-06-02
        assert "FORGED" not in existing_keys(home, "fixes", 19875, ["device_id"]).column(0).to_pylist()
        assert store_summary(home)["fixes"] == 34 and store_summary(home)["devices"] == 2
    warned = [r.getMessage() for r in caplog.records]
    assert sum(str(dropped) in m and "the store did not write it" in m for m in warned) == 1  # once per process
    assert sum("day=2024-06-02" in m for m in warned) == 1


@pytest.mark.parametrize("change", ["appended", "replaced_by_link", "deleted"])
def test_store_file_changed_after_writing_is_an_error_naming_it(tmp_path, capsys, change):
    home = tmp_path / "h"
    ingest(QR / "fixes.csv", home=home, buckets=1)
    (listed,) = (home / "store" / "fixes" / DAY / "bucket=0").iterdir()
    if change == "appended":
        with open(listed, "ab") as fh:
            fh.write(b"\0" * 10)
        why = "bytes, but the store wrote"
    elif change == "replaced_by_link":
        copy = _forged(tmp_path / "copy.parquet")
        listed.unlink()
        os.symlink(copy, listed)
        why = "not a regular file"
    else:
        listed.unlink()
        why = "listed in manifest.parquet but missing"
    with pytest.raises(InputError) as err:
        read_store_fixes(home)
    assert str(listed) in str(err.value) and why in str(err.value)
    with pytest.raises(InputError, match=re.escape(str(listed))):
        FixFiles(home)
    # the CLI: one line on stderr naming the file, exit 2
    case = EXAMPLES / "quarantine_rows"
    assert main(["detect", "--home", str(home), "--subjects", str(case / "subjects.json"), "--zones",
                 str(case / "zones.geojson"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(listed) in lines[0] and why in lines[0]


def test_store_from_before_the_manifest_is_adopted_once(tmp_path, caplog):
    home = tmp_path / "h"
    ingest(QR / "fixes.csv", home=home, events_path=QR / "events.csv", buckets=1)
    flatten_to_format_1(home)  # as a store written before buckets and before the manifest existed
    files = _store_files(home)
    with caplog.at_level(logging.WARNING, logger="tagtrail.store"):
        assert len(read_store_fixes(home)) == 34  # the first reader takes the lock, which adopts
    assert any("adopted 4 files" in r.getMessage() for r in caplog.records)  # 2 fix days, events, quarantine
    m = pq.read_table(home / "store" / "manifest.parquet")
    assert sorted(m.column("path").to_pylist()) == files
    sizes = {p: (home / "store" / p).stat().st_size for p in files}
    assert dict(zip(m.column("path").to_pylist(), m.column("bytes").to_pylist())) == sizes
    rows = {p: pq.ParquetFile(home / "store" / p).metadata.num_rows for p in files}
    assert dict(zip(m.column("path").to_pylist(), m.column("rows").to_pylist())) == rows
    assert len(read_store_quarantine(home)) == 10  # the example's 8 bad rows and 2 in-file duplicates
    # once: a file dropped after the adoption is not adopted by the next writer
    _forged(home / "store" / "fixes" / DAY / "part-late.parquet")
    assert ingest(QR / "fixes.csv", home=home).fixes_stored == 0
    assert len(read_store_fixes(home)) == 34


def test_ingest_publishes_files_and_manifest_together(tmp_path):
    """What a reader sees is what the manifest lists: every store file, with its
    rows and bytes, and nothing else (the manifest is written with the files)."""
    home = tmp_path / "h"
    ingest(QR / "fixes.csv", home=home, events_path=QR / "events.csv", buckets=1)
    m = pq.read_table(home / "store" / "manifest.parquet").to_pylist()
    assert sorted((r["kind"], r["path"]) for r in m) == sorted((p.split("/")[0], p) for p in _store_files(home))
    fixes = [r for r in m if r["kind"] == "fixes"]
    assert [r["day"] for r in fixes] == [19874, 19875] and sum(r["rows"] for r in fixes) == 34
    assert all(r["bytes"] == (home / "store" / r["path"]).stat().st_size for r in m)
    assert [r["rows"] for r in m if r["kind"] == "events"] == [1]
    assert next(r for r in m if r["kind"] == "quarantine")["day"] is None


# --------------------------------------------------------------------------- items 11 and 25: one lock, real processes
def _big_csv(path: Path, n: int, seed: int) -> Path:
    """n fixes of 500 devices, one a second from 2024-06-01: distinct keys."""
    rng = np.random.default_rng(seed)
    ts = pa.array((1_717_200_000_000 + np.arange(n) * 1000).astype("datetime64[ms]"))
    t = pa.table({
        "device_id": pa.array([f"D{d:03d}" for d in range(500)]).take(pa.array(rng.integers(0, 500, n))),
        "ts": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ"),
        "lat": 51 + rng.random(n), "lon": -1 + rng.random(n),
    })
    pacsv.write_csv(t, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


def _wait(pred, what: str, timeout_s: float = 60.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _staging(home: Path) -> list[str]:
    root = home / "store"
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-")) if root.is_dir() else []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_started_during_an_ingest_refuses_and_nothing_is_stored_twice(tmp_path):
    """A real `tagtrail ingest` of 300,000 fixes is frozen (SIGSTOP) while it
    stages its files; `tagtrail serve` on the same home must refuse at once,
    naming the ingest; the ingest then finishes and stores each fix once."""
    home = tmp_path / "home"
    big = _big_csv(tmp_path / "big.csv", 300_000, seed=1)
    ing = subprocess.Popen([str(BIN / "tagtrail"), "ingest", str(big), "--home", str(home), "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _staging(home), "the ingest to start staging")
        os.kill(ing.pid, signal.SIGSTOP)
        assert ing.poll() is None, "the ingest finished before it could be frozen"
        port = _free_port()
        srv = subprocess.Popen([str(BIN / "tagtrail"), "serve", "--home", str(home), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = srv.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait()
            raise AssertionError("`tagtrail serve` started while an ingest was running on its home") from None
        assert srv.returncode == 2
        assert err == (f"tagtrail serve: error: an ingest is running on {str(home)!r} (pid {ing.pid}): "
                       f"start the service when the ingest has finished\n")
    finally:
        os.kill(ing.pid, signal.SIGCONT)
    out, err = ing.communicate(timeout=300)
    assert ing.returncode == 0, err
    assert "fixes: 300000 read, 300000 stored" in out
    f = read_store_fixes(home)
    keys = np.unique(np.stack([np.asarray(f.device_id.dictionary_encode().indices), f.ts_ms]), axis=1)
    assert len(f) == 300_000 and keys.shape[1] == 300_000
    assert _staging(home) == []


def test_ingest_during_serve_refuses_naming_the_service(tmp_path):
    home = tmp_path / "home"
    home.mkdir()  # `serve` refuses a home that does not exist (issue 11)
    port = _free_port()
    srv = subprocess.Popen([str(BIN / "tagtrail"), "serve", "--home", str(home), "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, "the service to answer")
        r = subprocess.run([str(BIN / "tagtrail"), "ingest", str(QR / "fixes.csv"), "--home", str(home),
                            "--no-progress"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr == (f"tagtrail ingest: error: a tagtrail service is running on {str(home)!r} (pid {srv.pid}): "
                            f"send the fixes to it (POST /v1/fixes or its watched folder) instead of ingesting them "
                            f"directly\n")
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=60)
    assert not (home / "store" / "fixes").exists()
    assert main(["ingest", str(QR / "fixes.csv"), "--home", str(home), "--no-progress"]) == 0


def test_compaction_in_a_service_writes_under_the_lock_it_holds(tmp_path):
    """The service's compaction (`write_intake_rows`) runs inside the process that
    holds the store lock: it must write (no self-deadlock, no refusal), while an
    ingest in the same process is refused."""
    from trails.store import StoreLock, compacted_upto, write_intake_rows

    home = tmp_path / "h"
    t = pa.table({"device_id": ["A", "B"], "ts_ms": [1717236000000, 1717322400000], "lat": [51.5, 51.5],
                  "lon": [-0.1, -0.1], "x": [530000.0, 530000.0], "y": [180000.0, 180000.0],
                  "accuracy_m": [5.0, 5.0], "battery_pct": [50.0, 50.0], "row": [1, 2],
                  "source": pa.array(["intake batch 1"] * 2).dictionary_encode()})
    with StoreLock(home, "service"):
        assert write_intake_rows(home, "fixes", t, 1, 2) == 2
        with pytest.raises(InputError, match=re.escape(f"a tagtrail service is running on {str(home)!r} "
                                                       f"(pid {os.getpid()})")):
            ingest(QR / "fixes.csv", home=home)
    assert compacted_upto(home) == 2 and len(read_store_fixes(home)) == 2


@pytest.mark.parametrize("next_start", ["ingest", "watch"])
def test_killed_ingest_leaves_no_staging_after_the_next_start(tmp_path, next_start):
    """SIGKILL of a real ingest while it stages files: its HOME/store/.tmp-*
    folder stays behind, the lock goes with the process; whoever takes the lock
    next (an ingest, or a service) removes it. The killed ingest published nothing."""
    home = tmp_path / "home"
    ingest(QR / "fixes.csv", home=home)
    big = _big_csv(tmp_path / "big.csv", 300_000, seed=2)
    ing = subprocess.Popen([str(BIN / "tagtrail"), "ingest", str(big), "--home", str(home), "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _wait(lambda: _staging(home), "the ingest to start staging")
    os.kill(ing.pid, signal.SIGKILL)
    ing.wait()
    assert _staging(home) == left and len(read_store_fixes(home)) == 34
    if next_start == "ingest":
        assert main(["ingest", str(QR / "fixes.csv"), "--home", str(home), "--no-progress"]) == 0
    else:
        (tmp_path / "feed").mkdir()
        assert main(["watch", str(tmp_path / "feed"), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    assert _staging(home) == []
    assert len(read_store_fixes(home)) == 34
