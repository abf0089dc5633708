"""The rows incremental detection holds (`geofence.incremental`), as flat columnar tables.

Why a table of its own: a pass over a national caseload must cost vectorised
work, not Python work per assignment, so every assignment's rows live in one
table with an ``owner`` column (the assignment index) and every operation
(append, drop, deduplicate, move to the archive, select from a start) is a
few NumPy calls over the whole table. `RowStore` keeps two fix tables: the
*tail* (rows from each assignment's latest safe cut on, which every rerun
reads) and the *archive* (rows before it, in chunks, read only for late rows),
and one event table.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.timestamps import POS_INF_MS

from .layout import first_rows

__all__ = ["FixRows", "EventRows", "OwnedFixes", "OwnedEvents", "RowStore", "per_owner"]


@dataclass(frozen=True)
class FixRows:
    """Kept fix rows (validated, deduplicated, projected), any order."""

    device_id: "Sequence[str] | pa.Array"  # an Arrow string array saves a conversion per row
    ts_ms: np.ndarray
    x: np.ndarray
    y: np.ndarray
    accuracy_m: np.ndarray  # NaN = not given
    battery_pct: np.ndarray  # NaN = unknown

    def __len__(self) -> int:
        return int(np.asarray(self.ts_ms).shape[0])

    @staticmethod
    def empty() -> "FixRows":
        z = np.zeros(0)
        return FixRows([], np.zeros(0, np.int64), z, z, z, z)


@dataclass(frozen=True)
class EventRows:
    """Kept event rows (validated, deduplicated), any order."""

    device_id: Sequence[str]
    ts_ms: np.ndarray
    event: Sequence[str]

    def __len__(self) -> int:
        return int(np.asarray(self.ts_ms).shape[0])

    @staticmethod
    def empty() -> "EventRows":
        return EventRows([], np.zeros(0, np.int64), [])


class _OwnedRows:
    """Flat rows of many assignments, in no particular order; `owner` is the assignment index.
    Every field is one NumPy column, so taking and concatenating work field by field."""

    owner: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def cols(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def take(self, sel: np.ndarray):
        return type(self)(*(c[sel] for c in self.cols()))

    def owned_by(self, owner: np.ndarray):
        """The same rows with a new `owner` column."""
        return type(self)(owner, *self.cols()[1:])

    @classmethod
    def concat(cls, parts: Sequence):
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate(cs) for cs in zip(*(p.cols() for p in parts))))


@dataclass(frozen=True)
class OwnedFixes(_OwnedRows):
    owner: np.ndarray
    ts: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray
    batt: np.ndarray

    @staticmethod
    def empty() -> "OwnedFixes":
        z = np.zeros(0)
        return OwnedFixes(np.zeros(0, np.int64), np.zeros(0, np.int64), z, z, z, z)

    @staticmethod
    def of(rows: FixRows, owner: np.ndarray, sel: np.ndarray) -> "OwnedFixes":
        """Rows `sel` of `rows`, owned by `owner` (one per row of `rows`)."""
        col = lambda a: np.asarray(a, np.float64)[sel]  # noqa: E731
        return OwnedFixes(owner[sel], np.asarray(rows.ts_ms, np.int64)[sel], col(rows.x), col(rows.y),
                          col(rows.accuracy_m), col(rows.battery_pct))


@dataclass(frozen=True)
class OwnedEvents(_OwnedRows):
    owner: np.ndarray
    ts: np.ndarray
    kind: np.ndarray  # object (str)

    @staticmethod
    def empty() -> "OwnedEvents":
        return OwnedEvents(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object))

    @staticmethod
    def of(rows: EventRows, owner: np.ndarray, sel: np.ndarray) -> "OwnedEvents":
        """Rows `sel` of `rows`, owned by `owner` (one per row of `rows`)."""
        kind = np.asarray(list(rows.event), object)[sel] if sel.size else np.zeros(0, object)
        return OwnedEvents(owner[sel], np.asarray(rows.ts_ms, np.int64)[sel], kind)


def per_owner(reduce: np.ufunc, owner: np.ndarray, ts: np.ndarray, n: int, fill: int) -> np.ndarray:
    """`reduce` (np.minimum or np.maximum) of `ts` per owner in [0, n), `fill` where an owner has none."""
    out = np.full(n, fill, np.int64)
    if owner.size:
        reduce.at(out, owner, ts)
    return out


def _remap(rows: _OwnedRows, old_to_new: np.ndarray):
    """`rows` whose owner is still there, owned by its new index."""
    o = old_to_new[rows.owner]
    keep = np.flatnonzero(o >= 0)
    return rows.take(keep).owned_by(o[keep])


class RowStore:
    """Every row incremental detection holds: the tail and archive of fixes, and the events.

    The archive grows in chunks (one per pass that moves rows back) and is
    merged, dropping rows no retained cut needs, only when it has doubled
    since the last merge (at least a million rows), so a pass costs the rows
    it moves, not the archive's size.
    """

    def __init__(self, tail: OwnedFixes | None = None, archive: OwnedFixes | None = None,
                 events: OwnedEvents | None = None) -> None:
        self.tail = OwnedFixes.empty() if tail is None else tail  # rows at or after their assignment's latest cut
        self.archive: list[OwnedFixes] = []  # rows before it (kept for late rows), in chunks
        self.archive_rows = self.archive_pruned = 0
        if archive is not None:
            self._set_archive(archive)
        self.events = OwnedEvents.empty() if events is None else events

    def _set_archive(self, arch: OwnedFixes) -> None:
        """The archive as one chunk (just merged or pruned)."""
        self.archive = [arch]
        self.archive_rows = self.archive_pruned = len(arch)

    def append(self, fixes: Sequence[OwnedFixes], events: Sequence[OwnedEvents]) -> None:
        """New rows go to the tail (the next rerun of their assignment reads them from its cut)."""
        self.tail = OwnedFixes.concat([self.tail, *fixes])
        self.events = OwnedEvents.concat([self.events, *events])

    def drop_owners(self, idx: Sequence[int], n: int) -> None:
        """Forget every row of assignments `idx` (of `n`)."""
        gone = np.zeros(n, np.bool_)
        gone[np.asarray(idx, np.int64)] = True
        self.tail = self.tail.take(np.flatnonzero(~gone[self.tail.owner]))
        arch = OwnedFixes.concat(self.archive)
        self._set_archive(arch.take(np.flatnonzero(~gone[arch.owner])))
        self.events = self.events.take(np.flatnonzero(~gone[self.events.owner]))

    def dedup(self, idx: np.ndarray, n: int) -> None:
        """Drop repeated rows of assignments `idx` (a history may hold rows the batch carries
        too): the first of each (assignment, instant[, kind]) stays (`geofence.layout.first_rows`)."""
        mine = np.zeros(n, np.bool_)
        mine[idx] = True
        t = self.tail
        sel = np.flatnonzero(mine[t.owner])
        keep = np.ones(len(t), np.bool_)
        keep[sel] = first_rows(t.owner[sel], t.ts[sel], n)
        if not keep.all():
            self.tail = t.take(np.flatnonzero(keep))
        e = self.events
        sel = np.flatnonzero(mine[e.owner])
        if sel.size:
            kinds = pa.array(e.kind[sel].tolist(), pa.string())
            codes = pc.dictionary_encode(kinds).indices.to_numpy(zero_copy_only=False)
            keep_e = np.ones(len(e), np.bool_)
            keep_e[sel] = first_rows(e.owner[sel], e.ts[sel], n, extra_key=codes)
            if not keep_e.all():
                self.events = e.take(np.flatnonzero(keep_e))

    def archive_before(self, cut_last: np.ndarray) -> bool:
        """Move tail rows before their assignment's latest cut `cut_last` to the archive (a new
        chunk); True if any moved."""
        tail = self.tail
        back = tail.ts < cut_last[tail.owner]
        if not back.any():
            return False
        moved = tail.take(np.flatnonzero(back))
        self.tail = tail.take(np.flatnonzero(~back))
        self.archive.append(moved)
        self.archive_rows += len(moved)
        return True

    def archive_grown(self) -> bool:
        """Whether the archive has doubled (and holds a million rows) since it was last merged."""
        return self.archive_rows > max(1_000_000, 2 * self.archive_pruned)

    def prune(self, lo: np.ndarray) -> None:
        """Merge the archive's chunks, leaving out rows (and events) before `lo` of their assignment."""
        arch = OwnedFixes.concat(self.archive)
        self._set_archive(arch.take(np.flatnonzero(arch.ts >= lo[arch.owner])))
        ev = self.events
        self.events = ev.take(np.flatnonzero(ev.ts >= lo[ev.owner]))

    def since(self, R: np.ndarray, start: np.ndarray, cut_last: np.ndarray, n: int) -> tuple[OwnedFixes, OwnedEvents]:
        """The rows of assignments `R` (of `n`) from `start` (one per assignment of `R`) on: the
        tail's, and the archive's for those starting before their latest cut `cut_last`."""
        s_of = np.full(n, POS_INF_MS, np.int64)
        s_of[R] = start
        tail = self.tail
        parts = [tail.take(np.flatnonzero(tail.ts >= s_of[tail.owner]))]
        early = start < cut_last[R]  # rows before the latest cut are needed too: from the archive
        if early.any():
            want = np.full(n, POS_INF_MS, np.int64)
            want[R[early]] = start[early]
            parts += [c.take(np.flatnonzero(c.ts >= want[c.owner])) for c in self.archive]
        ev = self.events
        return OwnedFixes.concat(parts), ev.take(np.flatnonzero(ev.ts >= s_of[ev.owner]))

    def remapped(self, old_to_new: np.ndarray) -> "RowStore":
        """The rows of the assignments that stay (`old_to_new` >= 0), owned by their new index."""
        return RowStore(_remap(self.tail, old_to_new), _remap(OwnedFixes.concat(self.archive), old_to_new),
                        _remap(self.events, old_to_new))

    @staticmethod
    def split_at(rows: OwnedFixes, events: OwnedEvents, cut_last: np.ndarray) -> "RowStore":
        """Rows restored after a restart: from each assignment's latest cut on in the tail, before it
        in the archive."""
        in_tail = rows.ts >= cut_last[rows.owner]
        return RowStore(rows.take(np.flatnonzero(in_tail)), rows.take(np.flatnonzero(~in_tail)), events)
