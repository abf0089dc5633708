"""Ingest: read -> validate -> project -> append to the store (atomic, idempotent).

`ingest` streams a fixes file (and optionally an events file) in batches,
quarantines bad rows (reasons 1-7, `trails.validate`), projects kept fixes once
to EPSG:27700 (`trails.projection.project_lonlat`), and appends them to the
day-partitioned Parquet store (`trails.store`).

Rules written down here (the contract leaves them to us):

- *Duplicates* (reason 10): a row whose ``(device_id, ts_ms)`` (events: plus
  ``event``) is already in the store, or occurs earlier in the same file, is
  quarantined as ``duplicate``; the first kept copy wins (`trails.keys.KeySet`,
  the rule continuous intake uses too). Re-ingesting a file therefore adds no
  fixes, and the quarantine records every refused row.
- *Quarantine rows* keep the row's ``device_id`` and ``ts`` as the file wrote
  them (at most `trails.quarantine.QUARANTINE_TEXT_CHARS` characters), whatever
  the reason: a duplicate's ``ts`` is its own text, not the instant re-written.
- *Atomic*: all new files are written to ``HOME/store/.tmp-<id>/`` and renamed
  into place (and listed in the store's manifest) only after both files were
  read and validated completely; an `InputError` (missing file, unreadable,
  missing column, bad column type) leaves the store unchanged. An ingest holds
  the home's store lock from start to end: a second ingest, or a service, on
  the same home refuses meanwhile.
- Missing ``accuracy_m`` stays NaN in the store: the policy default is applied
  at detection time.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.keys import KeySet, event_names
from trails.projection import project_lonlat
from trails.quarantine import REASON_CODE, REASONS, Rejected, bounded_text
from trails.readers import _iter_validated
from trails.store import (
    EVENT_SCHEMA,
    FIX_SCHEMA,
    QUARANTINE_SCHEMA,
    STORE_CRS,
    StoreLock,
    Transaction,
    day_label,
    device_order,
    existing_keys,
    sort_order,
)
from trails.timestamps import DAY_MS

__all__ = ["IngestSummary", "ingest"]

#: Rows per day file (a day with more gets several files, each sorted).
FILE_ROWS = 2_000_000
#: Rows buffered across days before the biggest day is written early.
BUFFER_ROWS = 6_000_000
_DUPLICATE = REASON_CODE["duplicate"]


@dataclass(frozen=True)
class IngestSummary:
    """What one `ingest` call did."""

    fixes_path: str
    events_path: str | None
    fixes_read: int
    fixes_stored: int
    events_read: int
    events_stored: int
    quarantined: dict[str, int] = field(default_factory=dict)
    days: tuple[str, ...] = ()
    seconds: float = 0.0
    ingest_id: str = ""

    @property
    def rows_per_s(self) -> float:
        rows = self.fixes_read + self.events_read
        return rows / self.seconds if self.seconds > 0 else float("inf")


_POOL: ThreadPoolExecutor | None = None


def _warm_projection() -> None:
    """Create each pool thread's PROJ object now, while the first batch is read (~40 ms each)."""
    import threading

    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, min(2, os.cpu_count() or 1)), thread_name_prefix="tagtrail-project")
    barrier = threading.Barrier(2, timeout=1.0)

    def warm():
        project_lonlat(np.array([-1.0]), np.array([52.0]), STORE_CRS)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    for _ in range(2):
        _POOL.submit(warm)


def _project_async(lon: np.ndarray, lat: np.ndarray):
    """Future of (x, y): projection of one batch overlaps reading the next."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, min(2, os.cpu_count() or 1)), thread_name_prefix="tagtrail-project")
    n = len(lon)
    if n < 100_000:
        return _POOL.submit(project_lonlat, lon, lat, STORE_CRS)
    h = n // 2
    a = _POOL.submit(project_lonlat, lon[:h], lat[:h], STORE_CRS)
    b = _POOL.submit(project_lonlat, lon[h:], lat[h:], STORE_CRS)

    class _Both:
        def result(self):
            (xa, ya), (xb, yb) = a.result(), b.result()
            return np.concatenate([xa, xb]), np.concatenate([ya, yb])

    return _Both()


def _raw_text(table: pa.Table, name: str, idx: np.ndarray) -> pa.ChunkedArray:
    """Rows `idx` of a raw column, as read (a dictionary column stays encoded: `_quarantine_table`
    bounds its values before any row is decoded)."""
    return table.column(name).take(pa.array(idx, pa.int64()))


def _const(n: int, value: str) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, np.int64)))


def _quarantine_table(source_file: str, source: str, rows: np.ndarray, reasons: np.ndarray,
                      device_id, ts, ingest_id: str) -> pa.Table:
    """The store's quarantine rows; `device_id` and `ts` are kept as text of at most
    `trails.quarantine.QUARANTINE_TEXT_CHARS` characters each (`bounded_text`)."""
    n = len(rows)
    names = pa.array(REASONS, pa.string())
    return pa.Table.from_arrays([
        _const(n, source_file),
        _const(n, source),
        pa.array(rows, pa.int64()),
        names.take(pa.array(reasons.astype(np.int32))),
        bounded_text(device_id),
        bounded_text(ts),
        _const(n, ingest_id),
    ], schema=QUARANTINE_SCHEMA)


class _Source:
    """Accumulates one file's kept rows and quarantine parts across batches."""

    def __init__(self, path, kind: str, ingest_id: str) -> None:
        self.path = str(path)
        self.name = Path(path).name
        self.kind = kind
        self.ingest_id = ingest_id
        self.quarantine: list[pa.Table] = []
        self.rejected: list[Rejected] = []
        self.n_read = 0

    def add(self, kept, rejected: Rejected, table: pa.Table, bad: np.ndarray) -> int:
        """Count a batch and quarantine its rejected rows; returns the batch's first row number."""
        first_row = self.n_read + 1
        self.n_read += table.num_rows
        if len(rejected):
            self.rejected.append(rejected)
            self.quarantine.append(_quarantine_table(
                self.name, self.kind, rejected.row, rejected.reason,
                _raw_text(table, "device_id", bad), _raw_text(table, "ts", bad), self.ingest_id,
            ))
        return first_row


def _parallel_map(f, items: list) -> list:
    """[f(x) for x in items] on the worker pool (gathers release the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, min(2, os.cpu_count() or 1)), thread_name_prefix="tagtrail-project")
    return [fut.result() for fut in [_POOL.submit(f, x) for x in items]]


class _Appender:
    """Dedup, sort and stage one source's kept rows, batch by batch.

    Each batch is sorted by (UTC day, device_id, ts_ms); its day slices are
    buffered per day and written (in a background thread) as
    ``part-<ingest id>-<n>.parquet`` once a day holds `FILE_ROWS` rows, or at
    the end; so a day partition may hold several files, each sorted. Keys already
    seen (earlier in this file, or stored before: loaded once per day touched)
    are quarantined as ``duplicate``; the first kept copy wins (`trails.keys.KeySet`,
    given the batch's sort order, which groups equal keys in row order).
    """

    def __init__(self, home, kind: str, txn: Transaction, src: _Source) -> None:
        self.home, self.kind, self.txn, self.src = home, kind, txn, src
        self.keys = KeySet(self._stored_keys)
        self.n_stored = 0
        self.days: set[int] = set()
        self.writes: list = []
        self._writer = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="tagtrail-write")
        self._adder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagtrail-append")
        self.buffers: dict[int, list[pa.Table]] = {}
        self.buffered: dict[int, int] = {}
        self.file_no = 0
        self.adds: list = []

    def _stored_keys(self, day: int) -> tuple[pa.Array, np.ndarray]:
        """The `KeySet` names and instants of the rows the store holds for `day`."""
        cols = ["device_id", "ts_ms"] + (["event"] if self.kind == "events" else [])
        old = existing_keys(self.home, self.kind, day, cols)
        dev = old.column("device_id").combine_chunks()
        names = event_names(dev, old.column("event").combine_chunks()) if self.kind == "events" else dev
        return names, old.column("ts_ms").to_numpy()

    def _quarantine_duplicates(self, rows: np.ndarray, raw: pa.Table, first_row: int) -> None:
        """Quarantine rows `rows` (1-based) of the raw batch `raw` (whose first row is
        `first_row`) as ``duplicate``, with their text as read, like every other reason."""
        pos = rows - first_row
        codes = np.full(len(rows), _DUPLICATE, np.int8)
        self.src.quarantine.append(_quarantine_table(
            self.src.name, self.kind, rows, codes, _raw_text(raw, "device_id", pos), _raw_text(raw, "ts", pos),
            self.src.ingest_id))
        self.src.rejected.append(Rejected(self.kind, rows, codes))

    def add(self, kept, raw: pa.Table, first_row: int, xy=None) -> None:
        """Add one validated batch: `kept` rows of the raw table `raw` (first row number
        `first_row`), with their projected (x, y) for fixes."""
        n = len(kept)
        if n == 0:
            return
        ev = kept.event if self.kind == "events" else None
        dev = kept.device_id
        ts = np.asarray(kept.ts_ms)
        day = ts // DAY_MS
        dev_rank = device_order(dev)
        if ev is None:
            order = sort_order(dev_rank, ts, day=day)
        else:
            ev_rank = device_order(ev)
            order = np.lexsort((ev_rank, ts, dev_rank, day))
        k_day, key = self.keys.keys(dev if ev is None else event_names(dev, ev), ts)
        first = self.keys.first_keys(k_day, key, order=order)
        dup = ~first[order]
        rows = np.asarray(kept.row)
        if dup.any():
            self._quarantine_duplicates(rows[order[dup]], raw, first_row)
            order = order[~dup]
        self.keys.add_keys(k_day[order], key[order])
        day_s = day[order]
        m = len(order)
        if m == 0:
            return
        identity = m == n and (n < 2 or bool((order[1:] > order[:-1]).all()))
        order_arr = pa.array(order, pa.int64())
        if identity:
            gather = lambda a: a if isinstance(a, pa.Array) else np.asarray(a)  # noqa: E731
        else:
            gather = lambda a: a.take(order_arr) if isinstance(a, pa.Array) else np.asarray(a)[order]  # noqa: E731
        source_col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, np.int32)), pa.array([self.src.name], pa.string()))
        if self.kind == "fixes":
            x, y = xy
            cols = _parallel_map(gather, [dev, ts, kept.lat, kept.lon, x, y, kept.accuracy_m, kept.battery_pct, rows])
            table = pa.Table.from_arrays(cols[:8] + [source_col, cols[8]], schema=FIX_SCHEMA)
        else:
            cols = [gather(c) for c in (dev, ts, ev, rows)]
            table = pa.Table.from_arrays(cols[:3] + [source_col, cols[3]], schema=EVENT_SCHEMA)
        starts = np.concatenate([[0], np.flatnonzero(day_s[1:] != day_s[:-1]) + 1])
        ends = np.append(starts[1:], m)
        for a, b in zip(starts, ends):
            d = int(day_s[a])
            self.days.add(d)
            self.buffers.setdefault(d, []).append(table.slice(int(a), int(b - a)))
            self.buffered[d] = self.buffered.get(d, 0) + int(b - a)
        self.n_stored += m
        # flush full days; bound memory by flushing the biggest day when too much waits
        for d in [d for d, k in self.buffered.items() if k >= FILE_ROWS]:
            self._flush(d)
        while sum(self.buffered.values()) > BUFFER_ROWS:
            self._flush(max(self.buffered, key=self.buffered.get))
        while sum(not f.done() for f in self.writes) > 4:
            next(f for f in self.writes if not f.done()).result()

    def _flush(self, day: int) -> None:
        """Write one day's buffered slices as one file sorted by (device_id, ts_ms) (per device bucket
        in a bucketed store: `trails.store.Transaction.write_day`)."""
        pieces = self.buffers.pop(day)
        self.buffered.pop(day)
        table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        if len(pieces) > 1:  # each piece is sorted; the concatenation may not be
            dev = table.column("device_id").combine_chunks()
            rank = device_order(dev)
            order = sort_order(rank, table.column("ts_ms").to_numpy())
            if not (len(order) < 2 or bool((order[1:] > order[:-1]).all())):
                table = table.take(pa.array(order))
        name = f"part-{self.txn.ingest_id}-{self.file_no:05d}.parquet"
        self.file_no += 1
        self.writes.append(self._writer.submit(self.txn.write_day, self.kind, day, name, table))

    def submit(self, kept, raw: pa.Table, first_row: int, xy_future=None) -> None:
        """`add` in the appender's own thread (batches stay in order); at most 2 waiting.

        Only the raw ``device_id`` and ``ts`` columns wait with the batch (for
        quarantining duplicates), not the whole raw table."""
        raw = raw.select(["device_id", "ts"])
        while len(self.adds) >= 2:
            self.adds.pop(0).result()
        self.adds.append(self._adder.submit(
            lambda: self.add(kept, raw, first_row, None if xy_future is None else xy_future.result())))

    def drain(self) -> None:
        while self.adds:
            self.adds.pop(0).result()

    def close(self, *, flush: bool = True) -> None:
        """Finish: write what is buffered (`flush`) and wait; else just stop the threads."""
        try:
            if flush:
                self.drain()
                for d in sorted(self.buffers):
                    self._flush(d)
                for f in self.writes:
                    f.result()
        finally:
            self._adder.shutdown(wait=True, cancel_futures=True)
            self._writer.shutdown(wait=True, cancel_futures=True)


def _batch_rows_for(path) -> int:
    """Batch size: ~1/8 of the file (pipeline start-up and tail stay short), 100k..1M rows."""
    try:
        est_rows = Path(path).stat().st_size // (60 if str(path).endswith(".csv") else 25)
    except OSError:
        return 500_000
    return int(min(1_000_000, max(100_000, est_rows // 8)))


def ingest(fixes_path, *, home, events_path=None, progress: bool = False,
           batch_rows: int | None = None, timings: dict | None = None, buckets: int | None = None) -> IngestSummary:
    """Validate, project and append a fixes file (and events file) to the store under `home`.

    Parameters
    ----------
    fixes_path : CSV or Parquet fixes file (CONTRACT.md, "Fixes").
    home : tagtrail home; the store is ``home/store``.
    events_path : optional events file (CONTRACT.md, "Events").
    progress : show a tqdm bar on stderr.
    batch_rows : rows per streamed batch (default: from the file size).
    timings : optional dict filled with seconds per stage (read_validate,
        append, write_wait, commit).
    buckets : device buckets B of the store this ingest creates (default
        `trails.buckets.DEFAULT_BUCKETS`); an existing store keeps its own,
        and another B for it is an `InputError` (`trails.store.Transaction`).

    Returns
    -------
    IngestSummary (counts by quarantine reason include ``duplicate``).

    Raises
    ------
    InputError
        A file is missing, unreadable, has another extension, lacks a required
        column or has a column of the wrong type. The store is then unchanged.
        Also when another ingest or a tagtrail service holds the home's store
        lock (`trails.store.StoreLock`, taken before anything is read and held
        to the end, so two writers never deduplicate against the same store).
    """
    with StoreLock(home, "ingest"):
        return _ingest_locked(fixes_path, home=home, events_path=events_path, progress=progress,
                              batch_rows=batch_rows, timings=timings, buckets=buckets)


def _ingest_locked(fixes_path, *, home, events_path, progress: bool, batch_rows: int | None,
                   timings: dict | None, buckets: int | None) -> IngestSummary:
    """`ingest`, with the store lock held."""
    t_start = time.perf_counter()
    timings = {} if timings is None else timings
    # open both files first: path, extension and header errors surface before any work
    if batch_rows is None:
        batch_rows = _batch_rows_for(fixes_path)
    fix_iter = _iter_validated(fixes_path, "fixes", batch_rows)
    ev_iter = _iter_validated(events_path, "events", batch_rows) if events_path is not None else None
    Path(home).mkdir(parents=True, exist_ok=True)
    _warm_projection()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit=" fixes", unit_scale=True, file=sys.stderr, desc="ingest", leave=True)
    with Transaction(home, buckets=buckets) as txn:
        fixes = _Source(fixes_path, "fixes", txn.ingest_id)
        fix_app = _Appender(home, "fixes", txn, fixes)
        events = ev_app = None
        try:
            # pipeline: reader thread -> validate (here) -> project (pool) -> append (own thread)
            t0 = time.perf_counter()
            for kept, rejected, table, bad in fix_iter:
                t1 = time.perf_counter()
                timings["read_validate"] = timings.get("read_validate", 0.0) + t1 - t0
                first_row = fixes.add(kept, rejected, table, bad)
                fix_app.submit(kept, table, first_row, _project_async(kept.lon, kept.lat))
                t0 = time.perf_counter()
                timings["append"] = timings.get("append", 0.0) + t0 - t1
                if bar is not None:
                    bar.update(table.num_rows)
            fix_app.drain()
            if events_path is not None:
                events = _Source(events_path, "events", txn.ingest_id)
                ev_app = _Appender(home, "events", txn, events)
                for kept, rejected, table, bad in ev_iter:
                    ev_app.add(kept, table, events.add(kept, rejected, table, bad))
        except BaseException:
            fix_app.close(flush=False)
            if ev_app is not None:
                ev_app.close(flush=False)
            raise
        t1 = time.perf_counter()
        try:
            fix_app.close()
        finally:
            if ev_app is not None:
                ev_app.close()
        timings["write_wait"] = time.perf_counter() - t1
        n_fix = fix_app.n_stored
        n_ev = ev_app.n_stored if ev_app is not None else 0
        days = [day_label(d) for d in sorted(fix_app.days)]
        t0 = time.perf_counter()
        q_parts = fixes.quarantine + (events.quarantine if events else [])
        if q_parts:
            q = pa.concat_tables(q_parts)
            is_fix = pc.equal(q.column("source").cast(pa.string()), "fixes").to_numpy(zero_copy_only=False)
            q = q.take(pa.array(np.lexsort((q.column("row").to_numpy(), is_fix))))  # events first, by row
            txn.write(f"quarantine/part-{txn.ingest_id}.parquet", q)
        txn.commit()
        timings["commit"] = time.perf_counter() - t0
        ingest_id = txn.ingest_id
    if bar is not None:
        bar.close()
    rej = Rejected.concat("fixes", fixes.rejected + (events.rejected if events else []))
    return IngestSummary(
        fixes_path=str(fixes_path),
        events_path=None if events_path is None else str(events_path),
        fixes_read=fixes.n_read,
        fixes_stored=n_fix,
        events_read=events.n_read if events else 0,
        events_stored=n_ev,
        quarantined=rej.counts(),
        days=tuple(days),
        seconds=time.perf_counter() - t_start,
        ingest_id=ingest_id,
    )
