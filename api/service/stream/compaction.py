"""Compaction: processed rows of the intake log move into the Parquet store.

The database log is where intake makes a batch durable before it answers;
the store (day partitions) is where `tagtrail detect --home`, extracts and
history reads find rows for good. Compaction writes the rows up to the
detector's watermark into the store (`trails.store.write_intake_rows`, which
records the seq range it holds) without holding the database, then deletes
them from the log in one short transaction, so intake is never held up for
long. A crash in between leaves rows in both places: `resume` (at the next
detector build) reads where the store ends and deletes what the log still
holds of it, so no row is moved twice.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import fixlog
from api.db.models import IntakeEvent, IntakeFixChunk
from api.service.stream.log_reader import LogReader

__all__ = ["Compaction", "batch_names", "MAX_BACKLOG"]

#: Processed fixes left in the log that make compaction due at once.
MAX_BACKLOG = 200_000
_EVENT_COLUMNS = ("device_id", "ts_ms", "event", "batch_id", "row")


class Compaction:
    """Moves processed rows of one home's intake log into its Parquet store.

    Parameters
    ----------
    home : the tagtrail home (the store is HOME/store).
    factory, read_only : sessions that write (deleting moved rows) and that only read.
    reader : the log's reader; its `compacted` position is moved here.
    every_s : seconds after which any processed backlog is compacted.
    """

    def __init__(self, home: Path, factory: sessionmaker[Session], read_only: sessionmaker[Session],
                 reader: LogReader, *, every_s: float = 60.0) -> None:
        self.home = Path(home)
        self.factory = factory
        self.read_only = read_only
        self.reader = reader
        self.every_s = every_s
        self.last_run = time.monotonic()

    def due(self, watermark: tuple[int, int]) -> bool:
        """Whether the runner should compact now: a large processed backlog, or any after `every_s`."""
        backlog = watermark[0] - self.reader.compacted[0]
        return backlog > MAX_BACKLOG or bool(backlog and time.monotonic() - self.last_run > self.every_s)

    def move(self, watermark: tuple[int, int]) -> int:
        """Write the processed rows (seqs up to `watermark`) not yet in the store into it;
        returns rows written. The caller holds the service's pass lock (the watermark
        does not move meanwhile); the log keeps the rows until `trim`."""
        moved = 0
        lo_f, lo_e = self.reader.compacted
        hi_f, hi_e = watermark
        from trails.store import write_intake_rows

        if hi_f > lo_f:
            moved += write_intake_rows(self.home, "fixes", self._fix_table(lo_f, hi_f), lo_f + 1, hi_f)
        if hi_e > lo_e:
            moved += write_intake_rows(self.home, "events", self._event_table(lo_e, hi_e), lo_e + 1, hi_e)
        self.reader.compacted = (max(lo_f, hi_f), max(lo_e, hi_e))
        self.last_run = time.monotonic()
        return moved

    def trim(self) -> None:
        """Delete the moved rows from the log: a few chunk rows and the (few) events, one short transaction."""
        with self.factory() as session:
            self._drop_moved(session)
            session.commit()

    def resume(self, session: Session) -> None:
        """At a detector build: where the store ends is where the log begins; rows the
        log still holds of what the store has (a crash between `move` and `trim`) go,
        in `session`'s transaction."""
        from trails.store import compacted_upto

        self.reader.compacted = (compacted_upto(self.home, "fixes"), compacted_upto(self.home, "events"))
        self._drop_moved(session)

    def _drop_moved(self, session: Session) -> None:
        f, e = self.reader.compacted
        session.execute(delete(IntakeFixChunk).where(IntakeFixChunk.seq_last <= f))
        session.execute(delete(IntakeEvent).where(IntakeEvent.seq <= e))

    def _fix_table(self, lo: int, hi: int) -> pa.Table:
        """The logged fixes with seq in (lo, hi], as the store's columns."""
        self.reader.release(lo)  # what was moved before is not needed in memory any more
        with self.read_only() as session:
            chunks = self.reader.chunks(session, lo, hi)
            session.commit()
        t = pa.concat_tables([c[3] for c in chunks]) if chunks else fixlog.SCHEMA.empty_table()
        batch = np.concatenate([np.full(c[3].num_rows, c[2], np.int64) for c in chunks]) if chunks else np.zeros(0, np.int64)
        return t.append_column("source", batch_names(batch))

    def _event_table(self, lo: int, hi: int) -> pa.Table:
        """The logged events with seq in (lo, hi], as the store's columns."""
        with self.read_only() as session:
            rows = session.connection().execute(select(*(getattr(IntakeEvent, c) for c in _EVENT_COLUMNS)).where(
                IntakeEvent.seq > lo, IntakeEvent.seq <= hi)).all()
            session.commit()
        c = dict(zip(_EVENT_COLUMNS, zip(*rows)))
        return pa.table({"device_id": pa.array(c["device_id"], pa.string()), "ts_ms": pa.array(c["ts_ms"], pa.int64()),
                         "event": pa.array(c["event"], pa.string()), "source": batch_names(c["batch_id"]),
                         "row": pa.array(c["row"], pa.int64())})


def batch_names(batch_ids) -> pa.DictionaryArray:
    """The store's `source` for compacted rows: "intake batch N", dictionary-encoded."""
    ids = pa.array(batch_ids, pa.int64())
    return pc.binary_join_element_wise("intake batch ", pc.cast(ids, pa.string()), "").dictionary_encode()
