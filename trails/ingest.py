"""Ingest: read -> validate -> project -> append to the store (atomic, idempotent).

`ingest` streams a fixes file (and optionally an events file) in batches,
quarantines bad rows (reasons 1-7, `trails.validate`), projects kept fixes once
to EPSG:27700 (`trails.projection.project_lonlat`), and appends them to the
day-partitioned Parquet store (`trails.store`).

Rules written down here (the contract leaves them to us):

- *Duplicates* (reason 10): a row whose ``(device_id, ts_ms)`` (events: plus
  ``event``) is already in the store, or occurs earlier in the same file, is
  quarantined as ``duplicate``; the first kept copy wins. Re-ingesting a file
  therefore adds no fixes, and the quarantine records every refused row.
- *Atomic*: all new files are written to ``HOME/store/.tmp-<id>/`` and renamed
  into place only after both files were read and validated completely; an
  `InputError` (missing file, unreadable, missing column, bad column type)
  leaves the store unchanged. Two ingests must not run at once on one home.
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

from .projection import project_lonlat
from .quarantine import REASON_CODE, REASONS, Rejected
from .readers import _iter_validated
from .store import (
    DAY_MS,
    EVENT_SCHEMA,
    FIX_SCHEMA,
    QUARANTINE_SCHEMA,
    Transaction,
    day_label,
    device_order,
    existing_keys,
    sort_order,
)
from .validate import Events, Fixes

__all__ = ["STORE_CRS", "IngestSummary", "ingest", "project_parallel"]

STORE_CRS = "EPSG:27700"
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


def project_parallel(lon: np.ndarray, lat: np.ndarray, crs: str = STORE_CRS) -> tuple[np.ndarray, np.ndarray]:
    """`project_lonlat` on halves in two threads (pyproj releases the GIL; same results)."""
    global _POOL
    n = len(lon)
    workers = min(2, os.cpu_count() or 1)
    if n < 100_000 or workers < 2:
        return project_lonlat(lon, lat, crs)
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagtrail-project")
    cuts = np.linspace(0, n, workers + 1).astype(int)
    futs = [_POOL.submit(project_lonlat, lon[a:b], lat[a:b], crs) for a, b in zip(cuts[:-1], cuts[1:])]
    parts = [f.result() for f in futs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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


def _raw_text(table: pa.Table, name: str, idx: np.ndarray) -> pa.Array:
    col = table.column(name).take(pa.array(idx, pa.int64()))
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col.cast(pa.string())


def _const(n: int, value: str) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, np.int64)))


def _quarantine_table(source_file: str, source: str, rows: np.ndarray, reasons: np.ndarray,
                      device_id: pa.Array, ts: pa.Array, ingest_id: str) -> pa.Table:
    n = len(rows)
    names = pa.array(REASONS, pa.string())
    return pa.Table.from_arrays([
        _const(n, source_file),
        _const(n, source),
        pa.array(rows, pa.int64()),
        names.take(pa.array(reasons.astype(np.int32))),
        device_id,
        ts,
        _const(n, ingest_id),
    ], schema=QUARANTINE_SCHEMA)


def _format_ms(ts_ms: np.ndarray) -> pa.Array:
    t = pa.array(ts_ms, pa.int64()).cast(pa.timestamp("ms"))
    return pc.strftime(t, format="%Y-%m-%dT%H:%M:%SZ")


class _Source:
    """Accumulates one file's kept rows and quarantine parts across batches."""

    def __init__(self, path, kind: str, ingest_id: str) -> None:
        self.path = str(path)
        self.name = Path(path).name
        self.kind = kind
        self.ingest_id = ingest_id
        self.kept: list = []
        self.quarantine: list[pa.Table] = []
        self.rejected: list[Rejected] = []
        self.n_read = 0

    def add(self, kept, rejected: Rejected, table: pa.Table, bad: np.ndarray) -> None:
        self.n_read += table.num_rows
        self.kept.append(kept)
        if len(rejected):
            self.rejected.append(rejected)
            self.quarantine.append(_quarantine_table(
                self.name, self.kind, rejected.row, rejected.reason,
                _raw_text(table, "device_id", bad), _raw_text(table, "ts", bad), self.ingest_id,
            ))


def _dup_against_store(home, kind: str, day_sorted: np.ndarray, dev_sorted: np.ndarray, ts_sorted: np.ndarray,
                        devices_sorted: pa.Array, ev_sorted: np.ndarray | None, events_sorted: pa.Array | None) -> np.ndarray:
    """True where a new (sorted) row's key is already stored in its day partition."""
    dup = np.zeros(len(ts_sorted), bool)
    if len(ts_sorted) == 0:
        return dup
    days, starts = np.unique(day_sorted, return_index=True)
    ends = np.append(starts[1:], len(day_sorted))
    cols = ["device_id", "ts_ms"] + (["event"] if kind == "events" else [])
    for d, a, b in zip(days, starts, ends):
        old = existing_keys(home, kind, int(d), cols)
        if old.num_rows == 0:
            continue
        o_dev = pc.index_in(old.column("device_id"), value_set=devices_sorted)
        ok = o_dev.is_valid()
        if kind == "events":
            o_ev = pc.index_in(old.column("event"), value_set=events_sorted)
            ok = pc.and_(ok, o_ev.is_valid())
        old = old.filter(ok)
        if old.num_rows == 0:
            continue
        o_rank = pc.index_in(old.column("device_id"), value_set=devices_sorted).to_numpy().astype(np.int64)
        o_ts = old.column("ts_ms").to_numpy() - int(d) * DAY_MS
        new_key = (dev_sorted[a:b] << 27) | (ts_sorted[a:b] - int(d) * DAY_MS)
        old_key = (o_rank << 27) | o_ts
        if kind == "events":
            o_evr = pc.index_in(old.column("event"), value_set=events_sorted).to_numpy().astype(np.int64)
            new_key = new_key * 64 + ev_sorted[a:b]
            old_key = old_key * 64 + o_evr
        dup[a:b] = np.isin(new_key, old_key)
    return dup


def _sorted_unique(values: pa.Array) -> pa.Array:
    u = pc.unique(values)
    return u.take(pc.sort_indices(u))


def _finish(src: _Source, home, txn: Transaction, timings: dict) -> tuple[int, list[str]]:
    """Dedup, sort and stage one source's kept rows; returns (rows stored, day labels)."""
    t0 = time.perf_counter()
    kind = src.kind
    if kind == "fixes":
        kept = Fixes.concat(src.kept)
        xy = [f.result() for f in src.xy]
        xs = np.concatenate([p[0] for p in xy]) if xy else np.zeros(0)
        ys = np.concatenate([p[1] for p in xy]) if xy else np.zeros(0)
    else:
        kept = Events.concat(src.kept)
    n = len(kept)
    if n == 0:
        return 0, []
    dev = kept.device_id
    devices_sorted = _sorted_unique(dev)
    dev_rank = pc.index_in(dev, value_set=devices_sorted).to_numpy().astype(np.int64)
    ts = np.asarray(kept.ts_ms)
    day = ts // DAY_MS
    if kind == "fixes":
        order = sort_order(dev_rank, ts, day=day)
        ev_rank = events_sorted = ev_s = None
    else:
        events_sorted = _sorted_unique(kept.event)
        ev_rank = pc.index_in(kept.event, value_set=events_sorted).to_numpy().astype(np.int64)
        order = np.lexsort((ev_rank, ts, dev_rank, day))
    day_s, dev_s, ts_s = day[order], dev_rank[order], ts[order]
    same = np.zeros(n, bool)
    same[1:] = (dev_s[1:] == dev_s[:-1]) & (ts_s[1:] == ts_s[:-1])
    if kind == "events":
        ev_s = ev_rank[order]
        same[1:] &= ev_s[1:] == ev_s[:-1]
    dup = same | _dup_against_store(home, kind, day_s, dev_s, ts_s, devices_sorted, ev_s, events_sorted)
    timings["sort_dedup"] = timings.get("sort_dedup", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    order_arr = pa.array(order, pa.int64())
    if dup.any():
        d_idx = order[dup]
        src.quarantine.append(_quarantine_table(
            src.name, kind, np.asarray(kept.row)[d_idx], np.full(len(d_idx), _DUPLICATE, np.int8),
            dev.take(pa.array(d_idx, pa.int64())), _format_ms(ts[d_idx]), src.ingest_id,
        ))
        src.rejected.append(Rejected(kind, np.asarray(kept.row)[d_idx], np.full(len(d_idx), _DUPLICATE, np.int8)))
        keep_pos = ~dup
        order = order[keep_pos]
        day_s = day_s[keep_pos]
        order_arr = pa.array(order, pa.int64())
    source_col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(order), np.int32)), pa.array([src.name], pa.string()))
    if kind == "fixes":
        table = pa.Table.from_arrays([
            dev.take(order_arr), ts[order], kept.lat[order], kept.lon[order], xs[order], ys[order],
            kept.accuracy_m[order], kept.battery_pct[order], source_col, np.asarray(kept.row)[order],
        ], schema=FIX_SCHEMA)
    else:
        table = pa.Table.from_arrays([
            dev.take(order_arr), ts[order], kept.event.take(order_arr), source_col,
            np.asarray(kept.row)[order],
        ], schema=EVENT_SCHEMA)
    days, starts = np.unique(day_s, return_index=True)
    ends = np.append(starts[1:], len(day_s))
    labels = [day_label(int(d)) for d in days]
    txn.write_many([
        (f"{kind}/day={label}/part-{txn.ingest_id}.parquet", table.slice(int(a), int(b - a)))
        for label, a, b in zip(labels, starts, ends)
    ], threads=min(2, os.cpu_count() or 1))
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    return table.num_rows, labels


def ingest(fixes_path, *, home, events_path=None, progress: bool = False,
           batch_rows: int = 1_000_000, timings: dict | None = None) -> IngestSummary:
    """Validate, project and append a fixes file (and events file) to the store under `home`.

    Parameters
    ----------
    fixes_path : CSV or Parquet fixes file (CONTRACT.md, "Fixes").
    home : tagtrail home; the store is ``home/store``.
    events_path : optional events file (CONTRACT.md, "Events").
    progress : show a tqdm bar on stderr.
    timings : optional dict filled with seconds per stage (read_validate,
        project, sort_dedup, write, commit).

    Returns
    -------
    IngestSummary (counts by quarantine reason include ``duplicate``).

    Raises
    ------
    InputError
        A file is missing, unreadable, has another extension, lacks a required
        column or has a column of the wrong type. The store is then unchanged.
    """
    t_start = time.perf_counter()
    timings = {} if timings is None else timings
    # open both files first: path, extension and header errors surface before any work
    fix_iter = _iter_validated(fixes_path, "fixes", batch_rows)
    ev_iter = _iter_validated(events_path, "events", batch_rows) if events_path is not None else None
    Path(home).mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit=" fixes", unit_scale=True, file=sys.stderr, desc="ingest", leave=True)
    with Transaction(home) as txn:
        fixes = _Source(fixes_path, "fixes", txn.ingest_id)
        fixes.xy = []
        t0 = time.perf_counter()
        for kept, rejected, table, bad in fix_iter:
            t1 = time.perf_counter()
            timings["read_validate"] = timings.get("read_validate", 0.0) + t1 - t0
            fixes.add(kept, rejected, table, bad)
            fixes.xy.append(_project_async(kept.lon, kept.lat))
            t0 = time.perf_counter()
            timings["project"] = timings.get("project", 0.0) + t0 - t1
            if bar is not None:
                bar.update(table.num_rows)
        events = None
        if events_path is not None:
            events = _Source(events_path, "events", txn.ingest_id)
            for kept, rejected, table, bad in ev_iter:
                events.add(kept, rejected, table, bad)
            timings["read_validate"] = timings.get("read_validate", 0.0) + time.perf_counter() - t0
        n_fix, days = _finish(fixes, home, txn, timings)
        n_ev = 0
        if events is not None:
            n_ev, _ = _finish(events, home, txn, timings)
        t0 = time.perf_counter()
        q_parts = fixes.quarantine + (events.quarantine if events else [])
        if q_parts:
            q = pa.concat_tables(q_parts)
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
