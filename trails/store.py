"""The Parquet store under ``HOME/store``: day-partitioned fixes and events, plus quarantine.

Layout (format 2, device buckets; every store created now)::

    HOME/store/fixes/day=YYYY-MM-DD/bucket=K/part-<ingest id>-<n>.parquet   FIX_SCHEMA
    HOME/store/events/day=YYYY-MM-DD/part-<ingest id>-<n>.parquet           EVENT_SCHEMA
    HOME/store/quarantine/part-<ingest id>.parquet                          QUARANTINE_SCHEMA

Days are UTC days of ``ts_ms``. A fix lies in bucket ``K = crc32(device_id) mod
B`` of its day (`trails.buckets`); B is chosen when the store is created
(``tagtrail ingest --buckets B``, default 16) and recorded in the manifest.
Events are few (a tamper event now and then) and stay one folder per day:
every bucket task reads the events of its own devices from them. A store
written before buckets (format 1) keeps its fix files directly in the day
folders, and writers keep writing it that way until ``tagtrail store
migrate-buckets`` rewrites it (`migrate_buckets`); readers read both.
Each file is sorted by ``device_id`` then
``ts_ms`` (a day, or a day's bucket, may hold several files: one or more per ingest). ``source`` is
the ingested file's name (dictionary-encoded) and ``row`` its 1-based record
number there, so every stored fix traces back to its input line. A ``(device_id, ts_ms)`` key (events: plus ``event``) occurs at most
once in the whole store: `trails.ingest` quarantines later copies as
``duplicate``. New files are written under ``HOME/store/.tmp-<id>/`` and renamed
into place only when a whole ingest has succeeded (`Transaction`).

Integrity:

- ``HOME/store/manifest.parquet`` lists every file the store published
  (`trails.manifest`); readers read only listed files, so a file that appears
  in the store any other way is never read (it is reported), and a listed file
  that changed is an error naming it.
- ``HOME/store.lock`` (`StoreLock`) is the one lock for adding to the store:
  `tagtrail ingest` holds it for its whole run, `tagtrail serve`/`watch` for
  the service's whole life; whoever comes second refuses, naming the holder.
  Taking it removes staging folders left by a killed writer and adopts a store
  written before the manifest existed.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from filelock import FileLock, Timeout

from trails.buckets import DEFAULT_BUCKETS, bucket_dir, check_buckets, split_by_bucket
from trails.errors import InputError
from trails.home import private_dir, secure_home
from trails.manifest import KINDS, PUBLISHING, Manifest, StoreIntegrityError, adopt, day_label, entry, write_manifest
from trails.projection import STORE_CRS
from trails.timestamps import DAY_MS

log = logging.getLogger("tagtrail.store")


__all__ = [
    "STORE_CRS",
    "FIX_SCHEMA",
    "EVENT_SCHEMA",
    "QUARANTINE_SCHEMA",
    "StoredFixes",
    "StoredEvents",
    "Transaction",
    "store_root",
    "day_label",
    "list_days",
    "days_between",
    "store_manifest",
    "read_store_fixes",
    "read_store_events",
    "read_store_quarantine",
    "store_summary",
    "device_order",
    "FixFiles",
    "compacted_upto",
    "StoreLock",
    "StoreIntegrityError",
    "write_intake_rows",
]

FIX_SCHEMA = pa.schema([
    ("device_id", pa.string()),
    ("ts_ms", pa.int64()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("x", pa.float64()),
    ("y", pa.float64()),
    ("accuracy_m", pa.float64()),
    ("battery_pct", pa.float64()),
    ("source", pa.dictionary(pa.int32(), pa.string())),
    ("row", pa.int64()),
])
EVENT_SCHEMA = pa.schema([
    ("device_id", pa.string()),
    ("ts_ms", pa.int64()),
    ("event", pa.string()),
    ("source", pa.dictionary(pa.int32(), pa.string())),
    ("row", pa.int64()),
])
QUARANTINE_SCHEMA = pa.schema([
    ("source_file", pa.string()),
    ("source", pa.string()),
    ("row", pa.int64()),
    ("reason", pa.string()),
    ("device_id", pa.string()),
    ("ts", pa.string()),
    ("ingest_id", pa.string()),
])


#: Rows per Parquet row group of a store file. Files are sorted by device, so each row group's
#: device_id statistics (min, max) let a bucket task that wants some of a file's devices read
#: only the row groups that hold them (`FixFiles(device_range=...)`).
ROW_GROUP_ROWS = 131_072


def store_root(home) -> Path:
    return Path(home) / "store"


def _manifest(home) -> Manifest:
    """The store's manifest, read once for one call. A store written before the
    manifest existed (partition folders, no manifest) is adopted first, under
    the store lock, as any writer would on taking it."""
    root = store_root(home)
    m = Manifest.read(root)
    if not m.exists and any((root / k).is_dir() for k in KINDS):
        if StoreLock.held_here(home) is not None:
            adopt(root)
        else:
            with StoreLock(home, "writer"):  # taking the lock adopts the store
                pass
        m = Manifest.read(root)
    return m


def store_manifest(home) -> Manifest:
    """The store's manifest now (a store from before the manifest is adopted first): one
    snapshot for a caller that reads the store several times and must see one state of it."""
    return _manifest(home)


def list_days(home, kind: str = "fixes") -> list[int]:
    """Day numbers with stored `kind` (``fixes``/``events``) files, ascending (from the manifest)."""
    return _manifest(home).days(kind)


def days_between(m: Manifest, kind: str, start_ms, end_ms) -> list[int]:
    """Day numbers of `kind` listed in `m` that overlap [start_ms, end_ms) (either bound optional)."""
    days = m.days(kind)
    if start_ms is not None:
        days = [d for d in days if (d + 1) * DAY_MS > start_ms]
    if end_ms is not None:
        days = [d for d in days if d * DAY_MS < end_ms]
    return days


def _rows_mismatch(path: str, listed: int, found: int) -> StoreIntegrityError:
    return StoreIntegrityError(f"store file {path!r}: {found} rows, but the store wrote {listed}: "
                               f"it was changed after it was written")


def device_order(device_id: pa.Array) -> np.ndarray:
    """int64 rank of each row's device_id in sorted (byte-wise) order of the distinct ids."""
    if isinstance(device_id, pa.ChunkedArray):
        device_id = device_id.combine_chunks()
    if len(device_id) == 0:
        return np.zeros(0, np.int64)
    enc = pc.dictionary_encode(device_id)
    sort_idx = pc.sort_indices(enc.dictionary).to_numpy()
    rank_of_code = np.empty(len(sort_idx), np.int64)
    rank_of_code[sort_idx] = np.arange(len(sort_idx))
    return rank_of_code[enc.indices.to_numpy(zero_copy_only=False)]


def sort_order(dev_rank: np.ndarray, ts_ms: np.ndarray, *, day: np.ndarray | None = None) -> np.ndarray:
    """Stable order by (day, device rank, ts_ms); ties keep input order (first row first)."""
    n = len(ts_ms)
    if n == 0:
        return np.zeros(0, np.int64)
    dev_bits = int(dev_rank.max()).bit_length()
    if day is None:
        rel = ts_ms - ts_ms.min()
        ts_bits = int(rel.max()).bit_length()
        if ts_bits + dev_bits <= 62:
            return np.argsort((dev_rank << ts_bits) | rel, kind="stable")
        return np.lexsort((ts_ms, dev_rank))
    day0 = int(day.min())
    day_bits = (int(day.max()) - day0).bit_length()
    if 27 + dev_bits + day_bits <= 62:
        key = ((((day - day0) << dev_bits) | dev_rank) << 27) | (ts_ms - day * DAY_MS)
        return np.argsort(key, kind="stable")
    return np.lexsort((ts_ms, dev_rank, day))


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
class Transaction:
    """New store files staged in a temporary directory, published on `commit`.

    Use as a context manager: leaving the block with an exception removes the
    staging directory and leaves the store unchanged. Writing needs the store
    lock (`StoreLock`): the one this process holds on the home (an ingest's,
    or the service's for its compaction), else the transaction takes it for
    its own duration. `commit` renames the files into place, then lists them
    in the manifest in one atomic replace (the moment they become readable),
    then removes the files it retires (`retire`: unlisted by that same replace).

    `buckets` is B for a store this transaction creates (a store with no
    files yet; default `trails.buckets.DEFAULT_BUCKETS`); an existing store
    keeps its layout, and asking it for another B is an `InputError` (that
    is `migrate_buckets`' job). ``self.buckets`` is the layout written: B, or
    None for a format-1 store.
    """

    def __init__(self, home, *, buckets: int | None = None) -> None:
        self.home = Path(home)
        self.root = store_root(home)
        self.ingest_id = uuid.uuid4().hex[:16]
        self.tmp = self.root / f".tmp-{self.ingest_id}"
        self.files: list[tuple[str, int]] = []  # (path relative to the store, rows)
        self.retired: list[str] = []  # listed paths this transaction replaces
        self.requested = None if buckets is None else check_buckets(buckets)
        self.buckets: int | None = None
        self._own_lock: StoreLock | None = None

    def __enter__(self) -> "Transaction":
        if StoreLock.held_here(self.home) is None:
            self._own_lock = StoreLock(self.home, "writer").acquire()
        try:
            self.buckets = self._layout()
            private_dir(self.root)
            self.tmp.mkdir(mode=0o700)
        except BaseException:
            self._release()
            raise
        return self

    def _layout(self) -> int | None:
        """B to write with: the store's own, or the requested/default one for a store with no files yet."""
        m = Manifest.read(self.root)
        if m.table.num_rows == 0:
            return self.requested or DEFAULT_BUCKETS
        if self.requested is not None and self.requested != m.buckets:
            have = "no buckets (format 1)" if m.buckets is None else f"{m.buckets} buckets"
            raise InputError(f"store {str(self.root)!r} has {have}, not {self.requested}: run "
                             f"`tagtrail store migrate-buckets --home {str(self.home)!r} --buckets {self.requested}`")
        return m.buckets

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._own_lock is not None:
            self._own_lock.release()
            self._own_lock = None

    def write(self, relpath: str, table: pa.Table) -> None:
        """Stage `table` as the store file `relpath` (0600, in the 0700 staging folder)."""
        dest = self.tmp / relpath
        private_dir(dest.parent)
        names = set(table.column_names)
        pq.write_table(
            table, dest, compression="lz4", row_group_size=ROW_GROUP_ROWS,
            use_dictionary=[c for c in ("device_id", "source", "event", "battery_pct", "reason", "source_file", "ingest_id") if c in names],
            use_byte_stream_split=[c for c in ("lat", "lon", "x", "y") if c in names] or False,
        )
        os.chmod(dest, 0o600)
        self.files.append((relpath, table.num_rows))

    def write_day(self, kind: str, day: int, name: str, table: pa.Table) -> None:
        """Stage one day's rows (sorted by device, time) of `kind` as ``NAME``: one file in the day
        folder, or for fixes in a bucketed store one file per bucket present (same name in each)."""
        folder = f"{kind}/day={day_label(day)}"
        if kind != "fixes" or self.buckets is None:
            self.write(f"{folder}/{name}", table)
            return
        for k, part in split_by_bucket(table, self.buckets):
            self.write(f"{folder}/{bucket_dir(k)}/{name}", part)

    def retire(self, relpaths: list[str]) -> None:
        """Unlist these store files at `commit` (and remove them after it): a rewrite replaces them."""
        self.retired.extend(relpaths)

    def write_many(self, items: list[tuple[str, pa.Table]], *, threads: int = 2) -> None:
        """`write` several files, in parallel threads (Parquet encoding releases the GIL)."""
        if threads < 2 or len(items) < 2:
            for rel, t in items:
                self.write(rel, t)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as ex:
            for f in [ex.submit(self.write, rel, t) for rel, t in items]:
                f.result()

    def commit(self) -> None:
        """Publish the staged files: rename each into place, then replace the manifest (which also
        unlists what was retired and records the layout), then remove the retired files."""
        if not self.files and not self.retired:
            return
        with PUBLISHING:
            m = Manifest.read(self.root)
            entries = []
            for rel, rows in self.files:
                target = self.root / rel
                private_dir(target.parent)
                os.replace(self.tmp / rel, target)
                entries.append(entry(self.root, rel, rows))
            write_manifest(self.root, m.updated(entries, removed=self.retired), buckets=self.buckets)
        for rel in self.retired:
            (self.root / rel).unlink(missing_ok=True)
        _remove_empty_folders(self.root, self.retired)
        self.files, self.retired = [], []


def _remove_empty_folders(root: Path, relpaths: list[str]) -> None:
    """Remove the (now empty) folders that held removed files, deepest first."""
    folders = {str(Path(r).parent) for r in relpaths}
    folders |= {str(Path(f).parent) for f in folders if f.count("/") == 2}  # a bucket's day folder
    for f in sorted(folders, key=lambda f: -f.count("/")):
        try:
            (root / f).rmdir()
        except OSError:
            pass


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #
def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class StoredFixes:
    """Fixes read back from the store, sorted by device_id then ts_ms.

    device_id and source are Arrow string arrays; the rest are read-only NumPy
    arrays (accuracy_m / battery_pct NaN = not given / unknown).
    """

    device_id: pa.Array
    ts_ms: np.ndarray
    x: np.ndarray
    y: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    battery_pct: np.ndarray
    row: np.ndarray
    source: pa.Array  # dictionary-encoded source file names

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


@dataclass(frozen=True)
class StoredEvents:
    """Events read back from the store, sorted by device_id then ts_ms."""

    device_id: pa.Array
    ts_ms: np.ndarray
    event: pa.Array
    row: np.ndarray
    source: pa.Array

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def of_devices(self, devices) -> "StoredEvents":
        """The events of `devices`, in the same order (a bucket task's share)."""
        idx = np.flatnonzero(pc.is_in(self.device_id, value_set=pa.array(list(devices), pa.string()))
                             .to_numpy(zero_copy_only=False))
        take = pa.array(idx, pa.int64())
        return StoredEvents(device_id=self.device_id.take(take), ts_ms=_ro(self.ts_ms[idx]),
                            event=self.event.take(take), row=_ro(self.row[idx]), source=self.source.take(take))


def _read_checked(path: str, rows: int, **kw) -> pa.Table:
    """One listed store file (or some of its columns), checked to hold the rows the manifest lists."""
    t = pq.read_table(path, **kw)
    if t.num_rows != rows:
        raise _rows_mismatch(path, rows, t.num_rows)
    return t


def _read(home, kind: str, schema: pa.Schema, start_ms, end_ms, devices, manifest=None) -> "_Columns":
    m = _manifest(home) if manifest is None else manifest
    files, rows = m.files(kind, days_between(m, kind, start_ms, end_ms))
    if not files:
        return _Columns(schema.empty_table(), None)
    table = pa.concat_tables([_read_checked(f, int(n)).cast(schema) for f, n in zip(files, rows)])
    mask = None
    if start_ms is not None:
        mask = pc.greater_equal(table.column("ts_ms"), int(start_ms))
    if end_ms is not None:
        m = pc.less(table.column("ts_ms"), int(end_ms))
        mask = m if mask is None else pc.and_(mask, m)
    if devices is not None:
        m = pc.is_in(table.column("device_id"), value_set=pa.array(list(devices), pa.string()))
        mask = m if mask is None else pc.and_(mask, m)
    if mask is not None:
        table = table.filter(mask)
    if table.num_rows < 2:
        return _Columns(table, None)
    order = sort_order(device_order(table.column("device_id")), table.column("ts_ms").to_numpy())
    if bool((order[1:] > order[:-1]).all()):
        order = None
    return _Columns(table, order)


class _Columns:
    """Hands out a table's columns in (device_id, ts_ms) order, one at a time.

    Each column is dropped from the table once taken, so peak memory stays near
    one copy of the data plus one column (not two copies of everything).
    """

    def __init__(self, table: pa.Table, order: np.ndarray | None) -> None:
        self.table = table
        self.order = order
        self._order_arr = None if order is None else pa.array(order)

    def _pop(self, name: str) -> pa.ChunkedArray:
        col = self.table.column(name)
        self.table = self.table.drop_columns([name])
        return col

    def np(self, name: str) -> np.ndarray:
        a = self._pop(name).to_numpy()
        return _ro(a if self.order is None else a[self.order])

    def arr(self, name: str) -> pa.Array:
        a = self._pop(name).combine_chunks()
        return a if self._order_arr is None else a.take(self._order_arr)


def read_store_fixes(home, *, start_ms: int | None = None, end_ms: int | None = None, devices=None) -> StoredFixes:
    """Fixes in ``[start_ms, end_ms)`` (either bound optional) for `devices` (None = all).

    Reads only the day partitions that overlap the interval; the result is
    sorted by device_id then ts_ms.
    """
    c = _read(home, "fixes", FIX_SCHEMA, start_ms, end_ms, devices)
    return StoredFixes(
        device_id=c.arr("device_id"), ts_ms=c.np("ts_ms"), x=c.np("x"), y=c.np("y"),
        lat=c.np("lat"), lon=c.np("lon"), accuracy_m=c.np("accuracy_m"),
        battery_pct=c.np("battery_pct"), row=c.np("row"), source=c.arr("source"),
    )


def read_store_events(home, *, start_ms: int | None = None, end_ms: int | None = None, devices=None,
                      manifest: Manifest | None = None) -> StoredEvents:
    """Events in ``[start_ms, end_ms)`` for `devices` (None = all); see `read_store_fixes`
    (`manifest`: read what it lists, as `FixFiles` does)."""
    c = _read(home, "events", EVENT_SCHEMA, start_ms, end_ms, devices, manifest)
    return StoredEvents(
        device_id=c.arr("device_id"), ts_ms=c.np("ts_ms"), event=c.arr("event"),
        row=c.np("row"), source=c.arr("source"),
    )


class FixFiles:
    """The fix files of the days overlapping [start_ms, end_ms), read one column at a time.

    Detection reads the store this way: each column is decoded straight into
    one NumPy array (files in parallel threads, Parquet decoding releases the
    GIL) and nothing is filtered or sorted here, so a column costs one pass
    and one copy. Rows come in file order, the same for every column; rows
    outside [start_ms, end_ms) on the edge days are included (the caller
    ignores them).

    `manifest`: read the files this manifest lists (a bucket task's own
    snapshot of the store) instead of the store's current one;
    `device_range` ``(lo, hi)``: only the rows of devices in [lo, hi);
    `preload`: read each file once, up front, and keep (in memory) the rows
    asked for: all columns but `source`, or those named (a column not kept
    is read from the files when asked for).
    """

    def __init__(self, home, *, start_ms: int | None = None, end_ms: int | None = None,
                 manifest: Manifest | None = None, device_range: tuple[str, str] | None = None,
                 preload: bool | Sequence[str] = False) -> None:
        m = _manifest(home) if manifest is None else manifest
        self.files, self.rows = m.files("fixes", days_between(m, "fixes", start_ms, end_ms))
        self.starts = np.zeros(len(self.files), np.int64)
        self._cache: list[pa.Table] | None = None
        lengths = self.rows
        if preload or device_range is not None:
            lengths = self._load(device_range, keep=bool(preload),
                                 columns=None if isinstance(preload, bool) else list(preload))
        self.offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=self.offsets[1:])

    def _load(self, device_range: tuple[str, str] | None, *, keep: bool, columns: list[str] | None) -> np.ndarray:
        """Read each file once (`columns`, default all but `source`, if `keep`, else only
        device_id), two at a time; with `device_range`, keep only the rows of devices in [lo, hi) (code-point order):
        one contiguous run, as every store file is sorted by device_id; files without any are
        dropped. Returns the rows kept per file.

        Why: a bucket task reads many small files (a day of a bucket each), where opening a file
        costs more than decoding a column; reading each once, whole, and keeping the task's slice
        (`keep`, `preload=True`) costs one open per file instead of one per column."""
        from concurrent.futures import ThreadPoolExecutor

        if not keep:
            columns = ["device_id"]
        elif columns is None:
            columns = [c for c in FIX_SCHEMA.names if c != "source"]
        elif "device_id" not in columns:
            columns = ["device_id", *columns]

        def one(k: int) -> tuple[int, int, pa.Table | None]:
            skipped, t = _read_row_groups(self.files[k], int(self.rows[k]), columns, device_range)
            start, n = (0, t.num_rows) if device_range is None else _device_run(self.files[k], t.column("device_id"),
                                                                               *device_range)
            if not (keep and n):
                return skipped + start, n, None
            # a slice would keep the whole file's buffers alive: copy the task's rows out
            return skipped + start, n, t if n == t.num_rows else t.take(pa.array(np.arange(start, start + n)))

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tagtrail-read") as ex:
            got = list(ex.map(one, range(len(self.files))))
        keep_idx = [k for k, (_, n, _) in enumerate(got) if n]
        self.files = [self.files[k] for k in keep_idx]
        self.rows = self.rows[keep_idx] if keep_idx else np.zeros(0, np.int64)
        self.starts = np.asarray([got[k][0] for k in keep_idx], np.int64)
        if keep:
            self._cache = [got[k][2] for k in keep_idx]
        return np.asarray([got[k][1] for k in keep_idx], np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _each_file(self, name: str, fill, *, dictionary: bool = False) -> None:
        """Call ``fill(first row, arrow chunked column)`` for each file, two files at a time."""
        from concurrent.futures import ThreadPoolExecutor

        if self._cache is not None and self._cache and name in self._cache[0].column_names:
            # preloaded: the task's slices, in memory; each column is handed out once and dropped
            # (detection takes each once), but `row`, which the quarantine's origin reads again
            for k, t in enumerate(self._cache):
                fill(int(self.offsets[k]), t.column(name))
                if name != "row":
                    self._cache[k] = t.drop_columns([name])
            return

        def one(k: int) -> None:
            t = _read_checked(self.files[k], int(self.rows[k]), columns=[name],
                              read_dictionary=[name] if dictionary else None)
            n = int(self.offsets[k + 1] - self.offsets[k])
            col = t.column(0) if n == t.num_rows else t.column(0).slice(int(self.starts[k]), n)
            fill(int(self.offsets[k]), col)

        if len(self.files) <= 1:
            for k in range(len(self.files)):
                one(k)
            return
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tagtrail-read") as ex:
            for f in [ex.submit(one, k) for k in range(len(self.files))]:
                f.result()

    def each_chunk(self, name: str, fn) -> None:
        """Call ``fn(first row, NumPy chunk)`` over a numeric column, from reader threads."""
        def fill(at: int, col: pa.ChunkedArray) -> None:
            for chunk in col.chunks:
                fn(at, chunk.to_numpy(zero_copy_only=False))
                at += len(chunk)

        self._each_file(name, fill)

    def column(self, name: str) -> np.ndarray:
        """A numeric column (ts_ms, x, y, lat, lon, accuracy_m, battery_pct, row) as one array."""
        out = np.empty(len(self), FIX_SCHEMA.field(name).type.to_pandas_dtype())

        def fill(at: int, chunk: np.ndarray) -> None:
            out[at:at + chunk.shape[0]] = chunk

        self.each_chunk(name, fill)
        return out

    def device_codes(self, names: list[str]) -> np.ndarray:
        """int32 index of each row's device_id in `names`, -1 for any other device.

        Uses each file's dictionary (a few thousand ids), never the row strings.
        """
        out = np.empty(len(self), np.int32)
        value_set = pa.array(list(names), pa.string())

        def fill(at: int, col: pa.ChunkedArray) -> None:
            for chunk in col.chunks:
                n = len(chunk)
                if not pa.types.is_dictionary(chunk.type):
                    chunk = pc.dictionary_encode(chunk)
                codes = pc.index_in(chunk.dictionary, value_set=value_set).fill_null(-1)
                codes = codes.to_numpy(zero_copy_only=False).astype(np.int32)
                idx = chunk.indices.to_numpy(zero_copy_only=False)
                out[at:at + n] = codes[idx] if n else codes[:0]
                at += n

        self._each_file("device_id", fill, dictionary=True)
        return out

    def origin(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(ingested file name, its row number) of the rows at `positions` (0-based)."""
        positions = np.asarray(positions, np.int64)
        if positions.size == 0:
            return [], np.zeros(0, np.int64)
        rows = self.column("row")[positions]
        names = np.empty(positions.size, object)
        f_of = np.searchsorted(self.offsets, positions, side="right") - 1
        for k in np.unique(f_of).tolist():
            sel = np.flatnonzero(f_of == k)
            src = pq.read_table(self.files[k], columns=["source"]).column(0).combine_chunks()
            local = pa.array(positions[sel] - self.offsets[k] + self.starts[k])
            names[sel] = np.asarray(src.take(local).cast(pa.string()).to_pylist(), object)
        return names.tolist(), rows


def _read_row_groups(path: str, rows: int, columns: list[str],
                     device_range: tuple[str, str] | None) -> tuple[int, pa.Table]:
    """(rows skipped before the first group read, the row groups of a listed store file that may
    hold devices in `device_range` (all without one), contiguous). The file must hold the rows
    the manifest lists (as `_read_checked`); groups are chosen by their device_id statistics, and
    a file whose statistics say nothing is read whole."""
    pf = pq.ParquetFile(path, read_dictionary=["device_id"])
    if pf.metadata.num_rows != rows:
        raise _rows_mismatch(path, rows, pf.metadata.num_rows)
    n_groups = pf.metadata.num_row_groups
    wanted = list(range(n_groups))
    if device_range is not None and n_groups > 1:
        lo, hi = device_range
        col = pf.schema_arrow.get_field_index("device_id")
        stats = [pf.metadata.row_group(g).column(col).statistics for g in range(n_groups)]
        if all(st is not None and st.has_min_max for st in stats):
            wanted = [g for g, st in enumerate(stats) if st.max >= lo and st.min < hi] or [0]
            wanted = list(range(wanted[0], wanted[-1] + 1))
    if not wanted:
        return 0, pf.schema_arrow.empty_table().select(columns)
    skipped = sum(pf.metadata.row_group(g).num_rows for g in range(wanted[0]))
    return skipped, pf.read_row_groups(wanted, columns=columns)


def _device_run(path: str, col: pa.ChunkedArray, lo: str, hi: str) -> tuple[int, int]:
    """(first row, rows) of the devices in [lo, hi) in a file's dictionary-encoded device_id column.

    Raises
    ------
    StoreIntegrityError
        Those rows are not contiguous: the file is not sorted by device_id, as the store wrote it.
    """
    at, pos = 0, []
    for chunk in col.chunks:
        names = chunk.dictionary.cast(pa.string())
        inside = pc.and_(pc.greater_equal(names, lo), pc.less(names, hi)).to_numpy(zero_copy_only=False)
        pos.append(np.flatnonzero(inside[chunk.indices.to_numpy(zero_copy_only=False)]) + at)
        at += len(chunk)
    pos = np.concatenate(pos) if pos else np.zeros(0, np.int64)
    if pos.size == 0:
        return 0, 0
    if int(pos[-1] - pos[0]) + 1 != pos.size:
        raise StoreIntegrityError(f"store file {path!r}: not sorted by device_id (the store wrote it sorted)")
    return int(pos[0]), int(pos.size)


def compacted_upto(home, kind: str = "fixes") -> int:
    """Highest intake-log seq already moved into the store (0 if none).

    Compaction names each file it writes ``part-intake-<lo>-<hi>[-n].parquet``;
    the seq range travels with the rename that publishes the file, so the
    store and the log can never both claim a row for readers that skip log
    rows at or below this number.
    """
    paths = _manifest(home).paths(kind)
    if len(paths) == 0:
        return 0
    found = pc.extract_regex(paths, r"/part-intake-(?P<lo>\d+)-(?P<hi>\d+)(?:-\d+)?\.parquet$")
    hi = pc.max(pc.cast(pc.struct_field(found, "hi"), pa.int64())).as_py()
    return int(hi or 0)


def write_intake_rows(home, kind: str, table: pa.Table, seq_lo: int, seq_hi: int) -> int:
    """Publish intake-log rows (seq in [seq_lo, seq_hi]) as store files, one per UTC day (and device
    bucket, in a bucketed store), sorted by (device_id, ts_ms); atomic (`Transaction`). Returns rows written."""
    schema = FIX_SCHEMA if kind == "fixes" else EVENT_SCHEMA
    table = table.select(schema.names).cast(schema)
    if table.num_rows == 0:
        return 0
    ts = table.column("ts_ms").to_numpy()
    day = ts // DAY_MS
    order = sort_order(device_order(table.column("device_id")), ts, day=day)
    table = table.take(pa.array(order))
    day = day[order]
    with Transaction(home) as txn:
        starts = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
        ends = np.append(starts[1:], day.size)
        for n, (a, b) in enumerate(zip(starts, ends)):
            txn.write_day(kind, int(day[a]), f"part-intake-{seq_lo}-{seq_hi}-{n}.parquet", table.slice(int(a), int(b - a)))
        txn.commit()
    return table.num_rows


#: What a holder of the store lock is doing, as the one who comes second is told.
_ROLES = {
    "ingest": "an ingest is running",
    "service": "a tagtrail service is running",
    "writer": "a tagtrail process is writing to the store",
    "migrate": "a store migration (tagtrail store migrate-buckets) is running",
}


class StoreLock:
    """HOME/store.lock: the one lock for adding to a home's store.

    `tagtrail ingest` holds it for its whole run (before reading anything);
    `tagtrail serve` and `tagtrail watch` for the service's whole life (the
    service deduplicates against what it has accepted, so nothing else may add
    fixes meanwhile; its compaction writes under this same lock); any other
    store write (`Transaction`) takes it for its own duration. Whoever comes
    second refuses at once, naming the holder: the file says who holds it
    (``role pid``, written on taking it, emptied on release).

    The lock is a `filelock.FileLock` used as an exclusive, non-blocking
    ``flock`` (`_file_lock` says which options and why): the kernel drops it
    with the process's open file, so a holder killed with SIGKILL leaves no
    lock behind (only its line in the file, which `holder` sees is stale).
    Two `StoreLock` objects never share a hold, also in one process.

    Taking it makes HOME private (`trails.home.secure_home`), removes staging
    folders (``HOME/store/.tmp-*``) left by a writer that was killed (the lock
    says nobody else is writing) and adopts a store written before the
    manifest existed (`trails.manifest.adopt`).
    """

    _held: dict[str, "StoreLock"] = {}  # lock path -> the lock this process holds
    _held_lock = threading.Lock()

    def __init__(self, home, role: str) -> None:
        if role not in _ROLES:
            raise ValueError(f"store lock role {role!r}: not one of {sorted(_ROLES)}")
        self.home = Path(home)
        self.role = role
        self.path = self.home / "store.lock"
        self._lock: FileLock | None = None

    def _key(self) -> str:
        return os.path.realpath(self.path)

    def _file_lock(self) -> FileLock:
        """The `filelock.FileLock` behind this store lock, one per `StoreLock`.

        - ``blocking=False``: one attempt; a held lock raises `filelock.Timeout` at once.
        - ``thread_local=False``: the service takes the lock in one thread and may
          release it in another (filelock's default keeps holds per thread).
        - ``preserve_lock_file=True``: the file stays (it is never deleted, so every
          process locks the same inode) and filelock never falls back to a "soft"
          lock (a marker file, which a killed process would leave held); without
          ``flock`` the lock fails rather than pretends.
        - ``mode=0o600``: HOME stays private; ``on_acquired`` writes who holds it
          through the locked descriptor, before anyone can read it as held.

        filelock's re-entrancy (a counter per lock object) is never used: a
        `StoreLock` acquires its own lock once, and a second `StoreLock` on the
        same home (same process or not) has its own descriptor, so it is refused.
        """
        line = f"{self.role} {os.getpid()}\n".encode()

        def record_holder(fd: int) -> None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)

        return FileLock(self.path, mode=0o600, thread_local=False, blocking=False,
                        preserve_lock_file=True, on_acquired=record_holder)

    def acquire(self) -> "StoreLock":
        """Take the lock (never waits).

        Raises
        ------
        InputError
            Another process, or another holder in this one, has it: the message
            names what it is doing and its pid.
        """
        private_dir(self.home)
        secure_home(self.home)
        if self._lock is not None:
            raise InputError(self._refusal(self._holder_line()))
        lock = self._file_lock()
        try:
            lock.acquire()
        except Timeout:
            raise InputError(self._refusal(self._holder_line())) from None
        except OSError as exc:
            raise InputError(f"store lock {str(self.path)!r}: cannot open it: {exc.strerror}") from None
        self._lock = lock
        with StoreLock._held_lock:
            StoreLock._held[self._key()] = self
        try:
            _recover(self.home)
        except BaseException:
            self.release()
            raise
        return self

    def _holder_line(self) -> str:
        """What the holder wrote in the lock file ("" if unreadable)."""
        try:
            with open(self.path, "rb") as fh:
                return fh.read(100).decode("ascii", "replace")
        except OSError:
            return ""

    def _refusal(self, holder: str) -> str:
        """The one-line refusal: who holds the lock, and what to do instead."""
        role, _, pid = holder.strip().partition(" ")
        if role not in _ROLES or not pid.isdigit():
            return f"another tagtrail process holds {str(self.path)!r}"
        msg = f"{_ROLES[role]} on {str(self.home)!r} (pid {pid})"
        if self.role == "ingest" and role == "service":
            msg += ": send the fixes to it (POST /v1/fixes or its watched folder) instead of ingesting them directly"
        elif self.role == "service" and role == "ingest":
            msg += ": start the service when the ingest has finished"
        return msg

    def release(self) -> None:
        """Empty the holder line (nobody holds it now), then drop the lock."""
        if self._lock is not None:
            with StoreLock._held_lock:
                StoreLock._held.pop(self._key(), None)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                pass
            else:  # a second descriptor: closing it leaves the flock (held by the first) alone
                try:
                    os.ftruncate(fd, 0)
                finally:
                    os.close(fd)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()

    @classmethod
    def held_here(cls, home) -> "StoreLock | None":
        """The store lock this process holds on `home`, if any."""
        with cls._held_lock:
            return cls._held.get(os.path.realpath(Path(home) / "store.lock"))

    @staticmethod
    def holder(home) -> tuple[str, int] | None:
        """(role, pid) of whoever holds the lock on `home` now, None if nobody.

        For diagnostics and tests: it reads what the holder wrote (emptied on
        release) and checks that the process is alive (a killed holder leaves
        its line behind), without touching the lock itself."""
        try:
            with open(Path(home) / "store.lock", "rb") as fh:
                role, _, pid = fh.read(100).decode("ascii", "replace").strip().partition(" ")
        except FileNotFoundError:
            return None
        if role not in _ROLES or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another account's
            pass
        return role, int(pid)


def _recover(home) -> None:
    """Under the store lock: remove staging left by a killed writer, adopt a pre-manifest store."""
    root = store_root(home)
    if not root.is_dir():
        return
    with os.scandir(root) as it:
        stale = [e for e in it if e.name.startswith(".tmp-")]
    for e in stale:
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.unlink(e.path)
    if stale:
        log.warning("store %r: removed %d staging folder(s) left by an interrupted write: %s", str(root), len(stale),
                    ", ".join(sorted(e.name for e in stale)))
    adopt(root)


def read_store_quarantine(home) -> pa.Table:
    """All quarantined rows recorded by ingests (QUARANTINE_SCHEMA)."""
    files, rows = _manifest(home).files("quarantine")
    if not files:
        return QUARANTINE_SCHEMA.empty_table()
    return pa.concat_tables([_read_checked(f, int(n), schema=QUARANTINE_SCHEMA) for f, n in zip(files, rows)])


def existing_keys(home, kind: str, day: int, columns: list[str]) -> pa.Table:
    """Key columns of the stored rows of one day partition (empty table if none)."""
    files, rows = _manifest(home).files(kind, [day])
    schema = FIX_SCHEMA if kind == "fixes" else EVENT_SCHEMA
    if not files:
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    keys = pa.schema([schema.field(c) for c in columns])
    return pa.concat_tables([_read_checked(f, int(n), columns=columns).cast(keys) for f, n in zip(files, rows)])


def store_summary(home) -> dict:
    """Counts for humans and `make run`: devices, fixes, events, days, quarantine by reason."""
    out: dict = {"home": str(home)}
    m = _manifest(home)
    for kind in ("fixes", "events"):
        days = m.days(kind)
        files, rows = m.files(kind, days)
        out[kind] = int(rows.sum())
        if kind == "fixes":
            out["days"] = len(days)
            out["first_day"] = day_label(days[0]) if days else None
            out["last_day"] = day_label(days[-1]) if days else None
            ids = [c for f, n in zip(files, rows)
                   for c in _read_checked(f, int(n), columns=["device_id"]).column(0).cast(pa.string()).chunks]
            out["devices"] = int(pc.count_distinct(pa.chunked_array(ids, pa.string())).as_py())
    q = read_store_quarantine(home)
    counts: dict[str, int] = {}
    if q.num_rows:
        from trails.quarantine import REASONS

        vc = pc.value_counts(q.column("reason").combine_chunks()).to_pylist()
        found = {d["values"]: d["counts"] for d in vc}
        counts = {r: int(found[r]) for r in REASONS if r in found}
    out["quarantined"] = counts
    return out
