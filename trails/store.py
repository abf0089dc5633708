"""The Parquet store under ``HOME/store``: day-partitioned fixes and events, plus quarantine.

Layout::

    HOME/store/fixes/day=YYYY-MM-DD/part-<ingest id>-<n>.parquet   FIX_SCHEMA
    HOME/store/events/day=YYYY-MM-DD/part-<ingest id>-<n>.parquet  EVENT_SCHEMA
    HOME/store/quarantine/part-<ingest id>.parquet                 QUARANTINE_SCHEMA

Days are UTC days of ``ts_ms``. Each file is sorted by ``device_id`` then
``ts_ms`` (a day may hold several files: one or more per ingest). ``source`` is
the ingested file's name (dictionary-encoded) and ``row`` its 1-based record
number there, so every stored fix traces back to its input line. A ``(device_id, ts_ms)`` key (events: plus ``event``) occurs at most
once in the whole store: `trails.ingest` quarantines later copies as
``duplicate``. New files are written under ``HOME/store/.tmp-<id>/`` and renamed
into place only when a whole ingest has succeeded (`Transaction`).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import InputError


def _ds():
    """pyarrow.dataset, imported on first use: it pulls in pandas (~0.4 s), which
    the detection path never needs."""
    import pyarrow.dataset as ds

    return ds

__all__ = [
    "DAY_MS",
    "FIX_SCHEMA",
    "EVENT_SCHEMA",
    "QUARANTINE_SCHEMA",
    "StoredFixes",
    "StoredEvents",
    "Transaction",
    "store_root",
    "day_label",
    "list_days",
    "read_store_fixes",
    "read_store_events",
    "read_store_quarantine",
    "store_summary",
    "device_order",
    "FixFiles",
    "compacted_upto",
    "ServiceLock",
    "write_intake_rows",
]

DAY_MS = 86_400_000
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
_DAY_RE = re.compile(r"^day=(\d{4})-(\d{2})-(\d{2})$")


def store_root(home) -> Path:
    return Path(home) / "store"


def day_label(day: int) -> str:
    """Day number (days since 1970-01-01) -> ``YYYY-MM-DD``."""
    return str(np.datetime64(int(day), "D"))


def _day_number(label: str) -> int:
    return int(np.datetime64(label, "D").astype(np.int64))


def list_days(home, kind: str = "fixes") -> list[int]:
    """Day numbers with a partition directory for `kind` (``fixes``/``events``), ascending."""
    root = store_root(home) / kind
    if not root.is_dir():
        return []
    days = []
    for d in root.iterdir():
        m = _DAY_RE.match(d.name)
        if m and d.is_dir():
            days.append(_day_number(f"{m.group(1)}-{m.group(2)}-{m.group(3)}"))
    return sorted(days)


def _day_files(home, kind: str, days) -> list[str]:
    root = store_root(home) / kind
    files: list[str] = []
    for d in days:
        part = root / f"day={day_label(d)}"
        if part.is_dir():
            files.extend(str(f) for f in sorted(part.glob("*.parquet")))
    return files


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
    """New store files staged in a temporary directory, renamed into place on `commit`.

    Use as a context manager: leaving the block with an exception removes the
    staging directory and leaves the store unchanged. An exclusive lock on
    ``HOME/store/.lock`` (released when the process ends) keeps a second
    ingest out while one runs.
    """

    def __init__(self, home) -> None:
        self.root = store_root(home)
        self.ingest_id = uuid.uuid4().hex[:16]
        self.tmp = self.root / f".tmp-{self.ingest_id}"
        self.files: list[Path] = []

    def __enter__(self) -> "Transaction":
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "a+")
        try:
            import fcntl

            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            self._lock.close()
            raise InputError(f"store {str(self.root)!r}: another ingest is writing to it") from None
        self.tmp.mkdir(parents=True, exist_ok=False)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.close()  # releases the lock

    def write(self, relpath: str, table: pa.Table) -> None:
        dest = self.tmp / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        names = set(table.column_names)
        pq.write_table(
            table, dest, compression="lz4",
            use_dictionary=[c for c in ("device_id", "source", "event", "battery_pct", "reason", "source_file", "ingest_id") if c in names],
            use_byte_stream_split=[c for c in ("lat", "lon", "x", "y") if c in names] or False,
        )
        self.files.append(Path(relpath))

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
        for rel in self.files:
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp / rel, target)
        self.files = []


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


def _read(home, kind: str, schema: pa.Schema, start_ms, end_ms, devices) -> "_Columns":
    days = list_days(home, kind)
    if start_ms is not None:
        days = [d for d in days if (d + 1) * DAY_MS > start_ms]
    if end_ms is not None:
        days = [d for d in days if d * DAY_MS < end_ms]
    files = _day_files(home, kind, days)
    if not files:
        return _Columns(schema.empty_table(), None)
    table = pa.concat_tables([pq.ParquetFile(f).read().cast(schema) for f in files])
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


def read_store_events(home, *, start_ms: int | None = None, end_ms: int | None = None, devices=None) -> StoredEvents:
    """Events in ``[start_ms, end_ms)`` for `devices` (None = all); see `read_store_fixes`."""
    c = _read(home, "events", EVENT_SCHEMA, start_ms, end_ms, devices)
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
    """

    def __init__(self, home, *, start_ms: int | None = None, end_ms: int | None = None) -> None:
        days = list_days(home, "fixes")
        if start_ms is not None:
            days = [d for d in days if (d + 1) * DAY_MS > start_ms]
        if end_ms is not None:
            days = [d for d in days if d * DAY_MS < end_ms]
        self.files = _day_files(home, "fixes", days)
        counts = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        self.offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _each_file(self, name: str, fill, *, dictionary: bool = False) -> None:
        """Call ``fill(first row, arrow chunked column)`` for each file, two files at a time."""
        from concurrent.futures import ThreadPoolExecutor

        def one(k: int) -> None:
            t = pq.read_table(self.files[k], columns=[name], read_dictionary=[name] if dictionary else None)
            fill(int(self.offsets[k]), t.column(0))

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
            local = pa.array(positions[sel] - self.offsets[k])
            names[sel] = np.asarray(src.take(local).cast(pa.string()).to_pylist(), object)
        return names.tolist(), rows


_INTAKE_PART = re.compile(r"^part-intake-(\d+)-(\d+)(?:-\d+)?\.parquet$")


def compacted_upto(home, kind: str = "fixes") -> int:
    """Highest intake-log seq already moved into the store (0 if none).

    Compaction names each file it writes ``part-intake-<lo>-<hi>[-n].parquet``;
    the seq range travels with the rename that publishes the file, so the
    store and the log can never both claim a row for readers that skip log
    rows at or below this number.
    """
    root = store_root(home) / kind
    best = 0
    if root.is_dir():
        for part in root.iterdir():
            if part.is_dir():
                for f in part.iterdir():
                    m = _INTAKE_PART.match(f.name)
                    if m:
                        best = max(best, int(m.group(2)))
    return best


def write_intake_rows(home, kind: str, table: pa.Table, seq_lo: int, seq_hi: int) -> int:
    """Publish intake-log rows (seq in [seq_lo, seq_hi]) as store files, one per UTC day,
    sorted by (device_id, ts_ms); atomic (`Transaction`). Returns rows written."""
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
            txn.write(f"{kind}/day={day_label(int(day[a]))}/part-intake-{seq_lo}-{seq_hi}-{n}.parquet",
                      table.slice(int(a), int(b - a)))
        txn.commit()
    return table.num_rows


class ServiceLock:
    """HOME/stream.lock, held (flock) by the one process running continuous intake
    and detection on a home (`tagtrail serve`, `tagtrail watch`).

    That process deduplicates against what it has accepted, so nothing else
    may add fixes to the home while it runs: `tagtrail ingest` refuses, and a
    second service refuses to start. The lock goes with the process, also
    when it is killed.
    """

    def __init__(self, home) -> None:
        self.path = Path(home) / "stream.lock"
        self._fh = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise InputError(f"another tagtrail service (serve or watch) is running on {str(self.path.parent)!r}") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @staticmethod
    def held(home) -> bool:
        """Is a service running on `home` right now?"""
        import fcntl

        path = Path(home) / "stream.lock"
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


def read_store_quarantine(home) -> pa.Table:
    """All quarantined rows recorded by ingests (QUARANTINE_SCHEMA)."""
    root = store_root(home) / "quarantine"
    files = sorted(str(f) for f in root.glob("*.parquet")) if root.is_dir() else []
    if not files:
        return QUARANTINE_SCHEMA.empty_table()
    return _ds().dataset(files, format="parquet", schema=QUARANTINE_SCHEMA).to_table()


def existing_keys(home, kind: str, day: int, columns: list[str]) -> pa.Table:
    """Key columns of the stored rows of one day partition (empty table if none)."""
    files = _day_files(home, kind, [day])
    schema = FIX_SCHEMA if kind == "fixes" else EVENT_SCHEMA
    if not files:
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    return _ds().dataset(files, format="parquet", schema=schema).to_table(columns=columns)


def store_summary(home) -> dict:
    """Counts for humans and `make run`: devices, fixes, events, days, quarantine by reason."""
    out: dict = {"home": str(home)}
    for kind, schema in (("fixes", FIX_SCHEMA), ("events", EVENT_SCHEMA)):
        days = list_days(home, kind)
        files = _day_files(home, kind, days)
        n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        out[kind] = n
        if kind == "fixes":
            out["days"] = len(days)
            out["first_day"] = day_label(days[0]) if days else None
            out["last_day"] = day_label(days[-1]) if days else None
            if files:
                dev = _ds().dataset(files, format="parquet", schema=schema).to_table(columns=["device_id"]).column("device_id")
                out["devices"] = int(pc.count_distinct(dev).as_py())
            else:
                out["devices"] = 0
    q = read_store_quarantine(home)
    counts: dict[str, int] = {}
    if q.num_rows:
        from .quarantine import REASONS

        vc = pc.value_counts(q.column("reason").combine_chunks()).to_pylist()
        found = {d["values"]: d["counts"] for d in vc}
        counts = {r: int(found[r]) for r in REASONS if r in found}
    out["quarantined"] = counts
    return out
