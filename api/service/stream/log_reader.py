"""The intake log, read in arrival order.

Intake makes every accepted row durable in the database before it answers:
fixes as one chunk per batch (`intake_fix_chunks`, Arrow IPC, numbered by
seq), events one row each (`intake_events`, numbered by seq). Compaction
later moves processed rows into the Parquet store. This module is the one
place that reads that log, so the pass, a history read, compaction and the
deduplication index all see the same rows the same way:

- rows after a position (the detector's watermark) for a pass;
- every processed row of a device (the log up to the watermark, then the
  store) for a history read or a rebuild;
- the fix chunks themselves (for compaction and the deduplication index).

It also keeps the chunks intake handed over after committing them
(`hold`), so that a pass or a compaction does not decode what is already in
memory; the database still says which chunks exist.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from geofence.incremental import EventRows, FixRows
from trails.keys import as_strings

from api.db import fixlog
from api.db.models import IntakeEvent, IntakeFixChunk

__all__ = ["Chunk", "LogRows", "LogReader", "cat_fixes", "cat_events"]

#: One fix chunk of the log: (first seq, last seq, intake batch id, rows as `api.db.fixlog.SCHEMA`).
Chunk = tuple[int, int, int, pa.Table]
#: Seqs per `IN (...)` list: well under SQLite's bound on host parameters.
_IN_BATCH = 500


@dataclass(frozen=True)
class LogRows:
    """Rows read from the log, and how far the read went.

    last : the last fix seq and event seq read (None: no row of that kind).
    batch : the latest intake batch among the rows read (0: none).
    """

    fixes: FixRows
    events: EventRows
    last: tuple[int | None, int | None]
    batch: int

    def after(self, watermark: tuple[int, int]) -> tuple[int, int]:
        """The watermark once these rows are processed (unchanged for a kind with no rows)."""
        return (self.last[0] if self.last[0] is not None else watermark[0],
                self.last[1] if self.last[1] is not None else watermark[1])


class LogReader:
    """Reads the intake log of one home (and, for processed rows, its Parquet store).

    `compacted` is where the log begins: fix and event seqs up to it are in
    the store, not the log (compaction moves it; a restart reads it from the
    store).
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.compacted: tuple[int, int] = (0, 0)
        self._held: dict[int, Chunk] = {}  # by first seq
        self._held_lock = threading.Lock()  # intake adds while a pass or compaction reads

    # ------------------------------------------------------------ chunks intake handed over
    def hold(self, chunk: Chunk) -> None:
        """Keep a chunk intake has just committed, so passes and compaction need not decode it."""
        with self._held_lock:
            self._held[chunk[0]] = chunk

    def release(self, upto_seq: int) -> None:
        """Forget held chunks whose rows all have seq <= `upto_seq` (moved into the store)."""
        with self._held_lock:
            self._held = {k: c for k, c in self._held.items() if c[1] > upto_seq}

    def held_count(self) -> int:
        """How many chunks are held in memory (for tests and status)."""
        with self._held_lock:
            return len(self._held)

    # ------------------------------------------------------------ reads
    def chunks(self, session: Session, lo: int, hi: int | None = None, limit: int | None = None) -> list[Chunk]:
        """The fix chunks with seqs in (lo, hi], each sliced to that range, in seq order
        (whole chunks until at least `limit` rows): which chunks exist is read from the
        database, their rows from what intake handed over when it is still held."""
        q = select(IntakeFixChunk.seq_first, IntakeFixChunk.seq_last, IntakeFixChunk.batch_id).where(
            IntakeFixChunk.seq_last > lo).order_by(IntakeFixChunk.seq_first)
        if hi is not None:
            q = q.where(IntakeFixChunk.seq_first <= hi)
        meta, n = [], 0
        for first, last, batch_id in session.connection().execute(q):
            if limit is not None and meta and n >= limit:
                break
            meta.append((int(first), int(last), int(batch_id)))
            n += int(last) - int(first) + 1
        with self._held_lock:
            tables = {m[0]: self._held[m[0]][3] for m in meta if m[0] in self._held}
        missing = [m[0] for m in meta if m[0] not in tables]
        for k in range(0, len(missing), _IN_BATCH):
            q = select(IntakeFixChunk.seq_first, IntakeFixChunk.data).where(
                IntakeFixChunk.seq_first.in_(missing[k:k + _IN_BATCH]))
            tables.update({int(f): fixlog.decode(d) for f, d in session.connection().execute(q)})
        out = []
        for first, last, batch_id in meta:
            a = max(lo + 1, first) - first
            b = (last if hi is None else min(last, hi)) - first + 1
            out.append((first + a, first + b - 1, batch_id, tables[first].slice(a, b - a)))
        return out

    def rows(self, session: Session, *, after: tuple[int, int] | None = None, upto: tuple[int, int] | None = None,
             device: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
             limit: int | None = None) -> LogRows:
        """Fix and event rows of the log with seqs in (after, upto] (both optional), in seq
        order, optionally of one device and from `since_ms` / before `until_ms`; at most
        about `limit` fixes (whole chunks) and `limit` events."""
        chunks = self.chunks(session, max(self.compacted[0], after[0] if after is not None else 0),
                             upto[0] if upto is not None else None, limit)
        t = pa.concat_tables([c[3] for c in chunks]) if chunks else fixlog.SCHEMA.empty_table()
        ts = t.column("ts_ms").to_numpy()
        keep = np.ones(t.num_rows, bool)
        if device is not None:
            keep &= (t.column("device_id").to_numpy(zero_copy_only=False) == device)
        if since_ms is not None:
            keep &= ts >= since_ms
        if until_ms is not None:
            keep &= ts < until_ms
        if not keep.all():
            t = t.filter(pa.array(keep))
        col = lambda name: t.column(name).to_numpy()  # noqa: E731
        fixes = FixRows(t.column("device_id").combine_chunks(), col("ts_ms"), col("x"), col("y"), col("accuracy_m"),
                        col("battery_pct"))
        qe = select(IntakeEvent.seq, IntakeEvent.device_id, IntakeEvent.ts_ms, IntakeEvent.event,
                    IntakeEvent.batch_id).order_by(IntakeEvent.seq)
        qe = qe.where(IntakeEvent.seq > max(self.compacted[1], after[1] if after is not None else 0))
        if upto is not None:
            qe = qe.where(IntakeEvent.seq <= upto[1])
        if device is not None:
            qe = qe.where(IntakeEvent.device_id == device)
        if since_ms is not None:
            qe = qe.where(IntakeEvent.ts_ms >= since_ms)
        if until_ms is not None:
            qe = qe.where(IntakeEvent.ts_ms < until_ms)
        if limit is not None:
            qe = qe.limit(limit)
        e = session.connection().execute(qe).all()  # Core rows: no ORM bookkeeping
        ec = list(zip(*e)) if e else [()] * 5
        events = EventRows(list(ec[1]), np.array(ec[2], np.int64), list(ec[3]))
        batch = max(chunks[-1][2] if chunks else 0, max(ec[4]) if e else 0)
        return LogRows(fixes, events, (chunks[-1][1] if chunks else None, e[-1][0] if e else None), int(batch))

    def processed_rows(self, session: Session, *, upto: tuple[int, int], device: str | None = None,
                       since_ms: int | None = None) -> tuple[FixRows, EventRows]:
        """Every processed row (the log up to `upto`, the detector's watermark, and the
        store), optionally of one device and from `since_ms`: what a rebuild or a history
        read starts from."""
        from trails.store import read_store_events, read_store_fixes

        got = self.rows(session, upto=upto, device=device, since_ms=since_ms)
        f, e = got.fixes, got.events
        if (self.home / "store").exists():
            devices = None if device is None else [device]
            sf = read_store_fixes(self.home, start_ms=since_ms, devices=devices)
            se = read_store_events(self.home, start_ms=since_ms, devices=devices)
            f = cat_fixes([f, FixRows(sf.device_id, sf.ts_ms, sf.x, sf.y, sf.accuracy_m, sf.battery_pct)])
            e = cat_events([e, EventRows(se.device_id.to_pylist(), se.ts_ms, se.event.to_pylist())])
        return f, e

    def pending(self, session: Session, watermark: tuple[int, int]) -> tuple[int, int]:
        """Fixes and events in the log that no pass has processed yet (after `watermark`)."""
        done = max(watermark[0], self.compacted[0])
        pf = sum(int(last) - max(int(first) - 1, done) for first, last in session.execute(
            select(IntakeFixChunk.seq_first, IntakeFixChunk.seq_last).where(IntakeFixChunk.seq_last > done)))
        pe = session.scalar(select(func.count()).select_from(IntakeEvent).where(
            IntakeEvent.seq > max(watermark[1], self.compacted[1])))
        return int(pf or 0), int(pe or 0)


def cat_fixes(parts: list[FixRows]) -> FixRows:
    """The fix rows of `parts`, one after another."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return FixRows.empty()
    return FixRows(pa.concat_arrays([as_strings(p.device_id) for p in parts]), np.concatenate([p.ts_ms for p in parts]),
                   np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.accuracy_m for p in parts]), np.concatenate([p.battery_pct for p in parts]))


def cat_events(parts: list[EventRows]) -> EventRows:
    """The event rows of `parts`, one after another."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return EventRows.empty()
    return EventRows([d for p in parts for d in p.device_id], np.concatenate([p.ts_ms for p in parts]),
                     [k for p in parts for k in p.event])
