"""Detection's inputs from the store (`trails.store`), and its quarantine mapped back to ingested files.

One implementation for both store paths of ``tagtrail detect --home``: the
single pass over everything and each bucket task (`geofence.bucketed`), so
the two read, keep and name rows the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa

from trails.projection import STORE_CRS
from trails.store import FixFiles, StoredEvents

from .detect import ChunkedColumn, EventInput, FixInput
from .model import Assignment

__all__ = ["store_fix_input", "store_event_input", "store_origin", "store_quarantine", "sort_store_quarantine",
           "clip_assignments", "Origin"]

#: origin(source, 0-based read positions) -> (ingested file names, their row numbers)
Origin = Callable[[str, np.ndarray], tuple[list[str], np.ndarray]]


def _combine(arr) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def store_fix_input(files: FixFiles, devices: list[str], crs: str, window: tuple[int | None, int | None]) -> FixInput:
    """The fix rows of `files`, read column by column when detection asks for them.

    Rows are numbered by their position in the files read (`store_quarantine`
    maps them back to the ingested file and row). Rows of devices not in
    `devices` (sorted), and rows outside `window`, are not part of the
    analysis (neither kept nor quarantined). The store keeps x/y in the
    British National Grid: another policy CRS projects lat/lon again.
    """
    n = len(files)
    same_crs = crs == STORE_CRS

    def chunked(name: str) -> ChunkedColumn:
        return ChunkedColumn(load=lambda: files.column(name), chunks=lambda fn: files.each_chunk(name, fn))

    return FixInput(row=ChunkedColumn(load=lambda: np.arange(1, n + 1, dtype=np.int64)),
                    ts_ms=chunked("ts_ms"), accuracy_m=chunked("accuracy_m"), battery_pct=chunked("battery_pct"),
                    device_code=ChunkedColumn(load=lambda: files.device_codes(devices)), device_names=devices,
                    x=chunked("x") if same_crs else None, y=chunked("y") if same_crs else None,
                    lat=None if same_crs else chunked("lat"), lon=None if same_crs else chunked("lon"),
                    unknown_device="ignore", window=window)


def store_event_input(se: StoredEvents) -> EventInput:
    """Stored events as detection's input, numbered by read position."""
    return EventInput(row=np.arange(1, len(se) + 1, dtype=np.int64), device_id=_combine(se.device_id),
                      ts_ms=se.ts_ms, event=_combine(se.event))


def store_origin(files: FixFiles, se: StoredEvents) -> Origin:
    """Where read positions came from: the ingested file name and row the store kept."""
    def origin(source: str, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        if source == "events":
            return [str(v) for v in se.source.take(pa.array(positions)).to_pylist()], se.row[positions]
        return files.origin(positions)

    return origin


def store_quarantine(quarantine: Sequence[tuple[str, int, str]], origin: Origin) -> list[tuple[str, int, str, str]]:
    """(source, read position, reason) -> (source, file row, reason, file), sorted by source
    (events first), file, row, then reason: a total order on the lines written, so any split
    of the rows into tasks gives the same file."""
    out = []
    for source in ("events", "fixes"):
        items = [(pos, reason) for src, pos, reason in quarantine if src == source]
        if not items:
            continue
        names, rows = origin(source, np.array([p - 1 for p, _ in items], np.int64))
        out.extend((source, int(r), reason, str(f)) for (_, reason), f, r in zip(items, names, rows.tolist()))
    return sort_store_quarantine(out)


def sort_store_quarantine(rows: list[tuple[str, int, str, str]]) -> list[tuple[str, int, str, str]]:
    """The order of store-mode quarantine.csv: events first, then by file, row and reason."""
    return sorted(rows, key=lambda q: (q[0] != "events", q[3], q[1], q[2]))


def clip_assignments(assignments: Sequence[Assignment], start_ms: int | None,
                     end_ms: int | None) -> tuple[Assignment, ...]:
    """Store mode with --from/--to: the analysis covers only that period, as if
    each assignment began no earlier than --from and ended by --to, so time
    outside the period (whose fixes were not read) is never taken as a gap."""
    out = []
    for a in assignments:
        s = a.start_ms if start_ms is None else max(a.start_ms, start_ms)
        e = a.end_ms if end_ms is None else (end_ms if a.end_ms is None else min(a.end_ms, end_ms))
        if e is None or e > s:
            out.append(replace(a, start_ms=s, end_ms=e))
    return tuple(out)
