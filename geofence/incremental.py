"""Incremental detection: rows arrive in batches, in any order, and the
records after each batch are exactly those `geofence.detect.detect_columns`
gives on every row received so far, at the implicit as_of (the latest kept
fix or event received).

How it stays exact without starting from the beginning of time:

- Each assignment keeps a **safe cut**: a fix time t_c after which detection
  can be rerun on its own (`rules.safe_cuts` says why): records that start
  before t_c are final, and a rerun of the synthetic assignment
  ``[t_c, A.end)`` on the fixes from t_c on gives exactly the records that
  start from t_c on. Two things cross a cut: the low-battery decision at the
  cut fix itself (kept from before), and the accumulated-battery window
  (`RerunContext`: the last accumulated breach and the battery gaps still in
  the window are handed to the rerun).
- A batch reruns, in one `detect_columns` call, every assignment it touches
  from its latest cut, and, when the batch moves as_of on, every assignment
  still being worn (their trailing gaps and open episodes run to as_of).
- A late row (older than its assignment's latest cut) reruns from the latest
  retained cut before it; cuts and their fixes are retained for
  `retention_ms` of data time. Older than that, the assignment is rebuilt
  from its whole history, which `history` supplies (the service reads the
  store); without `history`, everything is retained.
- Open episodes keep their `breach_id` (it depends only on the start) and
  are updated in place; a record that a batch removes (a gap that late data
  filled, absences replaced by a missed curfew) is reported as withdrawn.

Rows must be deduplicated by the caller ((device, instant) for fixes, plus
the kind for events; the first to arrive wins) and already projected to the
policy CRS. Pure computation: no I/O, no clock.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.keys import as_strings
from trails.timestamps import NEG_INF_MS, POS_INF_MS

from .detect import AssignmentTable, EventInput, FixInput, RerunContext, _device_codes, detect_columns
from .layout import assign_rows, first_rows
from .model import Assignment, Policy, Zone

__all__ = ["FixRows", "EventRows", "Change", "IncrementalDetector"]


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


@dataclass(frozen=True)
class Change:
    """One record that a batch created, changed or withdrew (`record` None)."""

    breach_id: str
    record: dict | None
    previous: dict | None


class _Rows:
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

    @classmethod
    def concat(cls, parts: Sequence):
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate(cs) for cs in zip(*(p.cols() for p in parts))))


@dataclass(frozen=True)
class _Fixes(_Rows):
    owner: np.ndarray
    ts: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray
    batt: np.ndarray

    @staticmethod
    def empty() -> "_Fixes":
        z = np.zeros(0)
        return _Fixes(np.zeros(0, np.int64), np.zeros(0, np.int64), z, z, z, z)

    @staticmethod
    def of(rows: FixRows, owner: np.ndarray, sel: np.ndarray) -> "_Fixes":
        """Rows `sel` of `rows`, owned by `owner` (one per row of `rows`)."""
        col = lambda a: np.asarray(a, np.float64)[sel]  # noqa: E731
        return _Fixes(owner[sel], np.asarray(rows.ts_ms, np.int64)[sel], col(rows.x), col(rows.y),
                      col(rows.accuracy_m), col(rows.battery_pct))


@dataclass(frozen=True)
class _Events(_Rows):
    owner: np.ndarray
    ts: np.ndarray
    kind: np.ndarray  # object (str)

    @staticmethod
    def empty() -> "_Events":
        return _Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object))

    @staticmethod
    def of(rows: EventRows, owner: np.ndarray, sel: np.ndarray) -> "_Events":
        """Rows `sel` of `rows`, owned by `owner` (one per row of `rows`)."""
        kind = np.asarray(list(rows.event), object)[sel] if sel.size else np.zeros(0, object)
        return _Events(owner[sel], np.asarray(rows.ts_ms, np.int64)[sel], kind)


#: history(assignment) -> (FixRows, EventRows): every kept row of the assignment
#: (its device, inside [start, end)) received so far.
History = Callable[[Assignment], tuple[FixRows, EventRows]]


def _settled(records: dict[str, dict], t_c: int) -> dict[str, dict]:
    """The records that a rerun from cut t_c leaves alone (see the module docstring)."""
    out = {}
    for bid, r in records.items():
        s, e, t = r["_start_ms"], r["_end_ms"], r["type"]
        if (e <= t_c) if t == "accumulated_battery" else ((s <= t_c) if t == "low_battery" else (s < t_c)):
            out[bid] = r
    return out


def _public(r: dict) -> dict:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _per_owner(reduce: np.ufunc, owner: np.ndarray, ts: np.ndarray, n: int, fill: int) -> np.ndarray:
    """`reduce` (np.minimum or np.maximum) of `ts` per owner in [0, n), `fill` where an owner has none."""
    out = np.full(n, fill, np.int64)
    if owner.size:
        reduce.at(out, owner, ts)
    return out


class IncrementalDetector:
    """Detection that takes rows batch by batch and reports what changed.

    State is columnar so that a pass over a national caseload costs
    vectorised work, not Python work per assignment: per-assignment arrays
    (latest cut, completeness, latest row), the retained safe cuts as one
    small list each, the rows as two flat tables (the *tail*, rows from each
    assignment's latest cut on, which every rerun reads; the *archive*, rows
    before it, read only for late rows), and records in dicts kept only for
    assignments that have any.

    Parameters
    ----------
    assignments, zones, policy : as for `detect_columns` (validated).
    retention_ms : data time for which safe cuts (and the fixes after the
        oldest of them) are kept for late rows; None keeps everything.
    history : how to fetch an assignment's whole history when a row is older
        than everything retained (required unless `retention_ms` is None).
    """

    def __init__(self, assignments: Sequence[Assignment], zones: Sequence[Zone], policy: Policy, *,
                 retention_ms: int | None = None, history: History | None = None) -> None:
        if retention_ms is not None and history is None:
            raise ValueError("retention_ms needs a history loader for rows older than what is retained")
        self.policy = policy
        self.retention_ms = retention_ms
        self.history = history
        self.as_of: int | None = None
        self._set_config(list(assignments), tuple(zones))
        n = len(self.assignments)
        self._cuts: list[list[int]] = [[] for _ in range(n)]  # retained safe cuts, ascending
        self._cut_last = np.full(n, NEG_INF_MS, np.int64)  # == cuts[-1], or NEG_INF_MS without a cut
        self._complete = np.ones(n, np.bool_)  # rows held from A.start (no cut dropped yet)
        self._latest = np.full(n, NEG_INF_MS, np.int64)  # latest kept row (as_of is the latest over all)
        self._live: dict[int, dict[str, dict]] = {}  # records a rerun may still change
        self._frozen: dict[int, dict[str, dict]] = {}  # settled before the oldest retained cut: never rerun
        self._tail = _Fixes.empty()  # rows at or after their assignment's latest cut
        self._archive: list[_Fixes] = []  # rows before it (kept for late rows), in chunks
        self._archive_rows = 0
        self._archive_pruned = 0
        self._events = _Events.empty()
        #: assignment index -> why its last rerun failed (it keeps its previous records meanwhile)
        self.failures: dict[int, str] = {}

    def _set_config(self, assignments: list[Assignment], zones: tuple[Zone, ...]) -> None:
        self.assignments = assignments
        self.zones = zones
        self._table = AssignmentTable.build(assignments, zones)
        self._devices = pa.array(self._table.device_names, pa.string())
        self._compiled = None  # all zones, compiled on first use

    # ------------------------------------------------------------------ reading
    def records(self) -> list[dict]:
        """Every current record, in the contract's order."""
        from .records import sort_records

        return sort_records([_public(r) for d in (self._frozen, self._live) for recs in d.values()
                             for r in recs.values()])

    def breach_ids(self) -> set[str]:
        """The breach_id of every current record."""
        return {bid for d in (self._frozen, self._live) for recs in d.values() for bid in recs}

    def saved_cuts(self) -> list[tuple[list[int], bool]]:
        """Per assignment (in order): its retained safe cuts and whether its rows start at A.start."""
        return [(list(c), bool(k)) for c, k in zip(self._cuts, self._complete.tolist())]

    def _all_records(self, i: int) -> dict[str, dict]:
        live, frozen = self._live.get(i, {}), self._frozen.get(i)
        return {**frozen, **live} if frozen else live

    # ------------------------------------------------------------------ writing
    def _owners(self, devices, ts: np.ndarray) -> np.ndarray:
        """Index of the assignment holding each (device, ts), or -1 (``unassigned``,
        as detection decides it: `geofence.layout.assign_rows`)."""
        if ts.shape[0] == 0:
            return np.full(0, -1, np.int64)
        code = _device_codes(as_strings(devices), self._devices)
        t = self._table
        return assign_rows(code, ts, len(self._devices), t.a_dev, t.a_start, t.a_end)

    def add(self, fixes: FixRows | None = None, events: EventRows | None = None) -> tuple[list[Change], np.ndarray, np.ndarray]:
        """Take one batch; returns (changes, fix rows without assignment, event rows without assignment)
        (positions in the batch: those rows are quarantined as ``unassigned`` and ignored)."""
        fixes = fixes or FixRows.empty()
        events = events or EventRows.empty()
        n = len(self.assignments)
        f_ts = np.asarray(fixes.ts_ms, np.int64)
        e_ts = np.asarray(events.ts_ms, np.int64)
        f_owner = self._owners(fixes.device_id, f_ts)
        e_owner = self._owners(events.device_id, e_ts)
        fk, ek = np.flatnonzero(f_owner >= 0), np.flatnonzero(e_owner >= 0)
        new_f = _Fixes.of(fixes, f_owner, fk)
        new_e = _Events.of(events, e_owner, ek)
        own = np.concatenate([new_f.owner, new_e.owner])
        own_ts = np.concatenate([new_f.ts, new_e.ts])
        new_min = _per_owner(np.minimum, own, own_ts, n, POS_INF_MS)
        touched = new_min < POS_INF_MS

        # where each touched assignment reruns from: its latest cut before the new rows (the usual
        # case, vectorised), an earlier retained cut, A.start, or a rebuild from the whole history
        rerun = touched.copy()
        start = np.where(self._cut_last > NEG_INF_MS, self._cut_last, self._table.a_start)
        from_cut = self._cut_last > NEG_INF_MS
        late = np.flatnonzero(touched & ((self._cut_last >= new_min) | ((self._cut_last == NEG_INF_MS) & ~self._complete)))
        rebuild = []
        for i in late.tolist():
            cuts = self._cuts[i]
            k = bisect_left(cuts, int(new_min[i]))
            if k:
                start[i], from_cut[i] = cuts[k - 1], True
            else:
                start[i], from_cut[i] = self._table.a_start[i], False
                if not self._complete[i]:  # older than anything retained: rebuild from the whole history
                    rebuild.append(i)  # records stay: the rerun from A.start is diffed against them
        if rebuild:
            self._rebuild(rebuild)
        self._tail = _Fixes.concat([self._tail, new_f])
        self._events = _Events.concat([self._events, new_e])
        if rebuild:
            self._dedup(np.asarray(rebuild, np.int64))
        np.maximum.at(self._latest, own, own_ts)

        old_as_of = self.as_of
        if own_ts.size:
            self.as_of = max(self.as_of if self.as_of is not None else NEG_INF_MS, int(own_ts.max()))
        if self.as_of is not None and self.as_of != old_as_of:  # every assignment still worn runs to as_of
            worn = self._table.a_end > (old_as_of if old_as_of is not None else NEG_INF_MS)
            rerun |= worn & (self.as_of > self._table.a_start)
        changes = self._rerun(np.flatnonzero(rerun), start, from_cut) if rerun.any() and self.as_of is not None else []
        return changes, np.flatnonzero(f_owner < 0), np.flatnonzero(e_owner < 0)

    def restore(self, saved: Sequence[tuple[Sequence[int], bool, dict[str, dict]]], fixes: FixRows,
                events: EventRows) -> None:
        """Put back every assignment's saved state (a service restarting): per assignment, in
        order, its safe cuts, whether its rows start at A.start, and its current records (with
        ``_start_ms`` and ``_end_ms``); and the rows received so far (those before each
        assignment's oldest cut, when it is not complete, are not needed and are left out)."""
        n = len(self.assignments)
        if len(saved) != n:
            raise ValueError(f"restore needs one saved state per assignment ({n}), got {len(saved)}")
        self._cuts = [[int(c) for c in cuts] for cuts, _, _ in saved]
        self._complete = np.array([bool(c) for _, c, _ in saved], np.bool_)
        self._cut_last = np.array([c[-1] if c else NEG_INF_MS for c in self._cuts], np.int64)
        self._live = {i: dict(r) for i, (_, _, r) in enumerate(saved) if r}
        self._frozen = {}
        first = np.array([c[0] if c else NEG_INF_MS for c in self._cuts], np.int64)
        since = np.where(self._complete | (first == NEG_INF_MS), self._table.a_start, first)
        f_ts = np.asarray(fixes.ts_ms, np.int64)
        e_ts = np.asarray(events.ts_ms, np.int64)
        fo, eo = self._owners(fixes.device_id, f_ts), self._owners(events.device_id, e_ts)
        fk = np.flatnonzero((fo >= 0) & (f_ts >= since[np.maximum(fo, 0)]))
        ek = np.flatnonzero((eo >= 0) & (e_ts >= since[np.maximum(eo, 0)]))
        rows = _Fixes.of(fixes, fo, fk)
        in_tail = rows.ts >= self._cut_last[rows.owner]
        self._tail = rows.take(np.flatnonzero(in_tail))
        self._archive = [rows.take(np.flatnonzero(~in_tail))]
        self._archive_rows = self._archive_pruned = len(self._archive[0])
        self._events = _Events.of(events, eo, ek)
        self._latest = _per_owner(np.maximum, np.concatenate([rows.owner, self._events.owner]),
                                  np.concatenate([rows.ts, self._events.ts]), n, NEG_INF_MS)

    def reconfigure(self, assignments: Sequence[Assignment], zones: Sequence[Zone]) -> list[Change]:
        """New subjects or zones: re-evaluate only the assignments they touch.

        An assignment that is new, whose period or zone list changed, or one
        of whose zones changed, is rebuilt from its whole history (`history`);
        the records of a removed assignment are withdrawn; the others keep
        their state. as_of is then the latest kept row under the new
        assignments; if it moved, every assignment still worn is rerun (and if
        it went back, which only removing an assignment can do, they are all
        rebuilt, since cuts taken under the later as_of may no longer hold).
        """
        if self.history is None:
            raise ValueError("reconfigure needs a history loader")
        assignments = list(assignments)
        key = lambda a: (a.subject_id, a.device_id, a.start_ms)  # noqa: E731
        old = {key(a): i for i, a in enumerate(self.assignments)}
        old_z = {z.zone_id: z for z in self.zones}
        new_z = {z.zone_id: z for z in zones}
        changed_z = {zid for zid in set(old_z) | set(new_z) if old_z.get(zid) != new_z.get(zid)}
        n_old, n = len(self.assignments), len(assignments)
        old_to_new = np.full(n_old, -1, np.int64)
        src = np.full(n, -1, np.int64)  # the old index a kept or rebuilt assignment takes its records from
        rebuild = []
        for j, a in enumerate(assignments):
            i = old.pop(key(a), None)
            if i is not None:
                src[j] = i
            if i is not None and self.assignments[i] == a and not set(a.zones) & changed_z:
                old_to_new[i] = j
            else:
                rebuild.append(j)
        changes = [Change(bid, None, _public(r)) for i in old.values() for bid, r in self._all_records(i).items()]
        kept = np.flatnonzero(old_to_new >= 0)
        live, frozen = {}, {}
        for j in range(n):
            i = int(src[j])
            if i < 0:
                continue
            if old_to_new[i] == j:
                if i in self._live:
                    live[j] = self._live[i]
                if i in self._frozen:
                    frozen[j] = self._frozen[i]
            elif self._all_records(i):  # rebuilt: every record is diffed against the rerun from A.start
                live[j] = dict(self._all_records(i))
        cuts: list[list[int]] = [[] for _ in range(n)]
        cut_last = np.full(n, NEG_INF_MS, np.int64)
        complete = np.ones(n, np.bool_)
        latest = np.full(n, NEG_INF_MS, np.int64)
        new_idx = old_to_new[kept]
        for i, j in zip(kept.tolist(), new_idx.tolist()):
            cuts[j] = self._cuts[i]
        cut_last[new_idx] = self._cut_last[kept]
        complete[new_idx] = self._complete[kept]
        latest[new_idx] = self._latest[kept]

        def remap(rows):
            o = old_to_new[rows.owner]
            keep = np.flatnonzero(o >= 0)
            return rows.take(keep), o[keep]

        tail, to = remap(self._tail)
        self._tail = _Fixes(to, *tail.cols()[1:])
        arch = _Fixes.concat(self._archive)
        arch, ao = remap(arch)
        self._archive = [_Fixes(ao, *arch.cols()[1:])]
        self._archive_rows = self._archive_pruned = len(arch)
        ev, eo = remap(self._events)
        self._events = _Events(eo, ev.ts, ev.kind)
        self._cuts, self._cut_last, self._complete, self._latest = cuts, cut_last, complete, latest
        self._live, self._frozen = live, frozen
        self.failures = {int(old_to_new[i]): e for i, e in self.failures.items() if old_to_new[i] >= 0}
        self._set_config(assignments, tuple(zones))
        if rebuild:
            self._rebuild(rebuild)
        old_as_of = self.as_of
        self.as_of = int(self._latest.max()) if n and self._latest.max() > NEG_INF_MS else None
        rerun = np.zeros(n, np.bool_)
        rerun[rebuild] = True
        start = np.where(self._cut_last > NEG_INF_MS, self._cut_last, self._table.a_start)
        from_cut = self._cut_last > NEG_INF_MS
        if self.as_of is not None and old_as_of is not None and self.as_of < old_as_of:
            others = np.flatnonzero(~rerun)
            if others.size:
                self._rebuild(others.tolist())
            rerun[:] = True
            start, from_cut = self._table.a_start.copy(), np.zeros(n, np.bool_)
        elif self.as_of != old_as_of:
            rerun |= self._table.a_end > (old_as_of if old_as_of is not None else NEG_INF_MS)
        start[rerun & ~from_cut] = self._table.a_start[rerun & ~from_cut]
        start[rebuild] = self._table.a_start[rebuild]
        from_cut[rebuild] = False
        if rerun.any() and self.as_of is not None:
            changes += self._rerun(np.flatnonzero(rerun), start, from_cut)
        elif self.as_of is None:  # nothing kept any more: every record goes
            for j in np.flatnonzero(rerun).tolist():
                changes += [Change(bid, None, _public(r)) for bid, r in self._all_records(j).items()]
                self._live.pop(j, None)
                self._frozen.pop(j, None)
        return changes

    # ------------------------------------------------------------------ rows
    def _rebuild(self, idx: Sequence[int]) -> None:
        """Replace the rows of assignments `idx` by their whole history (their cuts go too)."""
        n = len(self.assignments)
        gone = np.zeros(n, np.bool_)
        gone[np.asarray(idx, np.int64)] = True
        self._tail = self._tail.take(np.flatnonzero(~gone[self._tail.owner]))
        arch = _Fixes.concat(self._archive)
        self._archive = [arch.take(np.flatnonzero(~gone[arch.owner]))]
        self._archive_rows = self._archive_pruned = len(self._archive[0])
        self._events = self._events.take(np.flatnonzero(~gone[self._events.owner]))
        f_parts, e_parts = [self._tail], [self._events]
        for i in idx:
            a = self.assignments[i]
            hf, he = self.history(a)
            end = POS_INF_MS if a.end_ms is None else a.end_ms
            f_ts, e_ts = np.asarray(hf.ts_ms, np.int64), np.asarray(he.ts_ms, np.int64)
            fm = np.flatnonzero((f_ts >= a.start_ms) & (f_ts < end))
            em = np.flatnonzero((e_ts >= a.start_ms) & (e_ts < end))
            f_parts.append(_Fixes.of(hf, np.full(f_ts.size, i, np.int64), fm))
            e_parts.append(_Events.of(he, np.full(e_ts.size, i, np.int64), em))
            self._cuts[i] = []
            self._cut_last[i] = NEG_INF_MS
            self._complete[i] = True
            vals = [int(f_ts[fm].max())] if fm.size else []
            vals += [int(e_ts[em].max())] if em.size else []
            self._latest[i] = max(vals) if vals else NEG_INF_MS
        self._tail = _Fixes.concat(f_parts)
        self._events = _Events.concat(e_parts)

    def _dedup(self, idx: np.ndarray) -> None:
        """Drop repeated rows of assignments `idx` (a history may hold rows the batch carries
        too): the first of each (assignment, instant[, kind]) stays (`geofence.layout.first_rows`)."""
        n = len(self.assignments)
        mine = np.zeros(n, np.bool_)
        mine[idx] = True
        t = self._tail
        sel = np.flatnonzero(mine[t.owner])
        keep = np.ones(len(t), np.bool_)
        keep[sel] = first_rows(t.owner[sel], t.ts[sel], n)
        if not keep.all():
            self._tail = t.take(np.flatnonzero(keep))
        e = self._events
        sel = np.flatnonzero(mine[e.owner])
        if sel.size:
            kinds = pa.array(e.kind[sel].tolist(), pa.string())
            codes = pc.dictionary_encode(kinds).indices.to_numpy(zero_copy_only=False)
            keep_e = np.ones(len(e), np.bool_)
            keep_e[sel] = first_rows(e.owner[sel], e.ts[sel], n, extra_key=codes)
            if not keep_e.all():
                self._events = e.take(np.flatnonzero(keep_e))

    def _prune_archive(self) -> None:
        """Merge the archive's chunks, leaving out rows before their assignment's oldest retained cut."""
        arch = _Fixes.concat(self._archive)
        first = np.array([c[0] if c else NEG_INF_MS for c in self._cuts], np.int64)
        lo = np.where(self._complete | (first == NEG_INF_MS), NEG_INF_MS, first)
        arch = arch.take(np.flatnonzero(arch.ts >= lo[arch.owner]))
        self._archive = [arch]
        self._archive_rows = self._archive_pruned = len(arch)
        ev = self._events
        self._events = ev.take(np.flatnonzero(ev.ts >= lo[ev.owner]))

    # ------------------------------------------------------------------ rerun
    def _context(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray) -> RerunContext:
        """The accumulated-battery window across each rerun's cut (`RerunContext`)."""
        r0 = self._table.a_start[R].copy()
        n_prior = np.zeros(R.size, np.int64)
        flat: list[tuple[int, int]] = []
        if self.policy.battery_policy == "accumulated":
            prior: dict[int, list[tuple[int, int]]] = {}
            for j in np.flatnonzero(from_cut).tolist():
                i = int(R[j])
                if i not in self._live and i not in self._frozen:
                    continue
                settled = _settled(self._all_records(i), int(start[j]))
                acc = [r["_end_ms"] for r in settled.values() if r["type"] == "accumulated_battery"]
                if acc:
                    r0[j] = max(acc)
                low = max(int(r0[j]), int(start[j]) - self.policy.accumulated_window_ms)
                gaps = sorted((r["_start_ms"], r["_end_ms"]) for r in settled.values()
                              if r["type"] == "battery" and r["_end_ms"] > low)
                if gaps:
                    prior[j] = gaps
            for j in sorted(prior):
                n_prior[j] = len(prior[j])
                flat += prior[j]
        return RerunContext(r0_ms=r0, prior_offsets=np.concatenate([[0], np.cumsum(n_prior)]).astype(np.int64),
                            prior_start_ms=np.asarray([g[0] for g in flat], np.int64),
                            prior_end_ms=np.asarray([g[1] for g in flat], np.int64))

    def _rerun(self, R: np.ndarray, start_all: np.ndarray, from_cut_all: np.ndarray) -> list[Change]:
        """Rerun assignments `R` (ascending), each from `start_all[i]` (a cut if `from_cut_all[i]`,
        else A.start) to as_of, and diff their records.

        One bad assignment never holds up the rest: if detection fails, the
        group is split in halves and each half retried, down to the single
        assignments that fail; those keep their previous records and state,
        are listed in `failures` (with the error) and are retried whenever
        they are rerun again."""
        try:
            res = self._detect(R, start_all[R], from_cut_all[R])
        except Exception as exc:  # noqa: BLE001 - isolated, reported, retried
            if R.size == 1:
                self.failures[int(R[0])] = f"{type(exc).__name__}: {exc}"
                return []
            half = R.size // 2
            return self._rerun(R[:half], start_all, from_cut_all) + self._rerun(R[half:], start_all, from_cut_all)
        if self.failures:
            for i in R.tolist():
                self.failures.pop(i, None)
        changes = self._diff(R, start_all[R], from_cut_all[R], res)
        self._settle(R, res)
        return changes

    def _detect(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray):
        """`detect_columns` on assignments `R` from `start` to as_of (no state changes)."""
        n = len(self.assignments)
        pos = np.full(n, -1, np.int64)
        pos[R] = np.arange(R.size, dtype=np.int64)
        s_of = np.full(n, POS_INF_MS, np.int64)
        s_of[R] = start
        tail = self._tail
        parts = [tail.take(np.flatnonzero(tail.ts >= s_of[tail.owner]))]
        early = start < self._cut_last[R]  # rows before the latest cut are needed too: from the archive
        if early.any():
            want = np.full(n, POS_INF_MS, np.int64)
            want[R[early]] = start[early]
            parts += [c.take(np.flatnonzero(c.ts >= want[c.owner])) for c in self._archive]
        rows = _Fixes.concat(parts)
        ev = self._events
        ev = ev.take(np.flatnonzero(ev.ts >= s_of[ev.owner]))
        sub = self._table.take(R, start)
        j_of = pos[rows.owner]
        fixes = FixInput(row=np.arange(1, len(rows) + 1, dtype=np.int64), ts_ms=rows.ts, accuracy_m=rows.acc,
                         battery_pct=rows.batt, device_code=sub.a_dev[j_of].astype(np.int32),
                         device_names=sub.device_names, x=rows.x, y=rows.y)
        ej = pos[ev.owner]
        events = EventInput(row=np.arange(1, len(ev) + 1, dtype=np.int64),
                            device_id=pa.array([sub.device_ids[j] for j in ej.tolist()], pa.string()),
                            ts_ms=ev.ts, event=pa.array([str(k) for k in ev.kind.tolist()], pa.string()))
        if self._compiled is None:
            from .compile import compile_zones

            self._compiled = compile_zones(self.zones, self.policy.crs) if self.zones else None
        # each rerun's device code points at its own device, so rows of a device worn in two
        # reruns go to the right one by time, as always
        return detect_columns(fixes, events, sub, self.zones, self.policy, as_of_ms=self.as_of,
                              context=self._context(R, start, from_cut), find_cuts=True, compiled=self._compiled)

    def _diff(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray, res) -> list[Change]:
        """Replace the live records of assignments `R` by the rerun's, reporting what changed."""
        pos = np.full(len(self.assignments), -1, np.int64)
        pos[R] = np.arange(R.size, dtype=np.int64)
        per: dict[int, list[int]] = {}
        for k, j in enumerate(res.record_assignment.tolist()):
            per.setdefault(j, []).append(k)
        check = set(per) | {int(pos[i]) for i in self._live if pos[i] >= 0} \
            | {int(pos[i]) for i in self._frozen if pos[i] >= 0 and not from_cut[pos[i]]}
        changes: list[Change] = []
        for j in sorted(check):
            i, s, t_c = int(R[j]), int(start[j]), bool(from_cut[j])
            records = self._live.get(i, {})
            if not t_c and i in self._frozen:  # a rebuild from A.start: everything is recomputed
                records = {**self._frozen.pop(i), **records}
            new = _settled(records, s) if t_c else {}
            for k in per.get(j, ()):
                r = res.records[k]
                s_ms, e_ms = int(res.record_start_ms[k]), int(res.record_end_ms[k])
                if t_c and r["type"] == "low_battery" and s_ms == s:
                    continue  # decided with the fix before the cut; kept from before
                new[r["breach_id"]] = {**r, "_start_ms": s_ms, "_end_ms": e_ms}
            for bid in records.keys() | new.keys():
                old_r, new_r = records.get(bid), new.get(bid)
                if old_r is None or new_r is None or _public(old_r) != _public(new_r):
                    changes.append(Change(bid, None if new_r is None else _public(new_r),
                                          None if old_r is None else _public(old_r)))
            if new:
                self._live[i] = new
            else:
                self._live.pop(i, None)
        return changes

    def _settle(self, R: np.ndarray, res) -> None:
        """After a rerun of `R`: advance their cuts, archive rows before them, freeze what they settle."""
        self._advance_cuts(R, res.cut_ms if res.cut_ms.size else np.full(R.size, -1, np.int64))
        # rows of the rerun before the (new) latest cut move from the tail to the archive
        tail = self._tail
        back = tail.ts < self._cut_last[tail.owner]
        if back.any():
            moved = tail.take(np.flatnonzero(back))
            self._tail = tail.take(np.flatnonzero(~back))
            self._archive.append(moved)
            self._archive_rows += len(moved)
            if self.retention_ms is not None and self._archive_rows > max(1_000_000, 2 * self._archive_pruned):
                self._prune_archive()
        # what is settled before the oldest retained cut can only change by a rebuild
        in_r = np.zeros(len(self.assignments), np.bool_)
        in_r[R] = True
        for i in [i for i in self._live if in_r[i] and self._cuts[i]]:
            done = _settled(self._live[i], self._cuts[i][0])
            if done:
                self._frozen.setdefault(i, {}).update(done)
                rest = {bid: r for bid, r in self._live[i].items() if bid not in done}
                if rest:
                    self._live[i] = rest
                else:
                    del self._live[i]

    def _advance_cuts(self, R: np.ndarray, cut: np.ndarray) -> None:
        adv = (cut >= 0) & (cut > self._cut_last[R])
        idx, new = R[adv], cut[adv]
        self._cut_last[idx] = new
        keep = self.retention_ms
        for i, c in zip(idx.tolist(), new.tolist()):
            cuts = self._cuts[i]
            cuts.append(c)
            if keep is not None and cuts[0] < c - keep:
                k = bisect_left(cuts, c - keep, 0, len(cuts) - 1)
                if k:
                    del cuts[:k]
                    self._complete[i] = False
