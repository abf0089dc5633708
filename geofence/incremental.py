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

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from trails.keys import as_strings
from trails.timestamps import NEG_INF_MS, POS_INF_MS

from .detect import AssignmentTable, EventInput, FixInput, _device_codes, detect_columns
from .incremental_rows import EventRows, FixRows, OwnedEvents, OwnedFixes, RowStore, per_owner
from .incremental_state import Change, CutState, RecordBook, public
from .layout import assign_rows
from .model import Assignment, Policy, Zone

__all__ = ["FixRows", "EventRows", "Change", "IncrementalDetector"]

#: history(assignment) -> (FixRows, EventRows): every kept row of the assignment
#: (its device, inside [start, end)) received so far.
History = Callable[[Assignment], tuple[FixRows, EventRows]]


class IncrementalDetector:
    """Detection that takes rows batch by batch and reports what changed.

    State is columnar so that a pass over a national caseload costs
    vectorised work, not Python work per assignment: per-assignment arrays
    (latest cut, completeness, latest row) and the retained safe cuts as one
    small list each (`CutState`), the rows as flat tables (`RowStore`: the
    *tail*, rows from each assignment's latest cut on, which every rerun
    reads; the *archive*, rows before it, read only for late rows), and
    records in dicts kept only for assignments that have any (`RecordBook`).

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
        self._cuts = CutState(len(self.assignments))
        self._book = RecordBook()
        self._rows = RowStore()
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
        return self._book.records()

    def breach_ids(self) -> set[str]:
        """The breach_id of every current record."""
        return self._book.breach_ids()

    def saved_cuts(self) -> list[tuple[list[int], bool]]:
        """Per assignment (in order): its retained safe cuts and whether its rows start at A.start."""
        return self._cuts.saved()

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
        new_f = OwnedFixes.of(fixes, f_owner, fk)
        new_e = OwnedEvents.of(events, e_owner, ek)
        own = np.concatenate([new_f.owner, new_e.owner])
        own_ts = np.concatenate([new_f.ts, new_e.ts])
        new_min = per_owner(np.minimum, own, own_ts, n, POS_INF_MS)
        touched = new_min < POS_INF_MS

        # where each touched assignment reruns from (`CutState.rerun_starts`)
        rerun = touched.copy()
        start, from_cut, rebuild = self._cuts.rerun_starts(touched, new_min, self._table.a_start)
        if rebuild:
            self._rebuild(rebuild)
        self._rows.append([new_f], [new_e])
        if rebuild:
            self._rows.dedup(np.asarray(rebuild, np.int64), n)
        np.maximum.at(self._cuts.latest, own, own_ts)

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
        cuts = CutState.restored([[int(c) for c in cuts] for cuts, _, _ in saved], [bool(c) for _, c, _ in saved],
                                 np.full(n, NEG_INF_MS, np.int64))
        self._book = RecordBook({i: dict(r) for i, (_, _, r) in enumerate(saved) if r})
        since = cuts.needed_from(self._table.a_start)
        f_ts = np.asarray(fixes.ts_ms, np.int64)
        e_ts = np.asarray(events.ts_ms, np.int64)
        fo, eo = self._owners(fixes.device_id, f_ts), self._owners(events.device_id, e_ts)
        fk = np.flatnonzero((fo >= 0) & (f_ts >= since[np.maximum(fo, 0)]))
        ek = np.flatnonzero((eo >= 0) & (e_ts >= since[np.maximum(eo, 0)]))
        rows, evs = OwnedFixes.of(fixes, fo, fk), OwnedEvents.of(events, eo, ek)
        self._rows = RowStore.split_at(rows, evs, cuts.last)
        cuts.latest = per_owner(np.maximum, np.concatenate([rows.owner, evs.owner]),
                                np.concatenate([rows.ts, evs.ts]), n, NEG_INF_MS)
        self._cuts = cuts

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
        old_to_new, src, rebuild, removed = self._match(assignments, zones)
        changes = [Change(bid, None, public(r)) for i in removed for bid, r in self._book.of(i).items()]
        kept = np.flatnonzero(old_to_new >= 0)
        book = self._book.remapped(src, old_to_new)
        self._rows = self._rows.remapped(old_to_new)
        self._cuts = self._cuts.remapped(kept, old_to_new, len(assignments))
        self._book = book
        self.failures = {int(old_to_new[i]): e for i, e in self.failures.items() if old_to_new[i] >= 0}
        self._set_config(assignments, tuple(zones))
        if rebuild:
            self._rebuild(rebuild)
        return changes + self._catch_up(rebuild)

    def _match(self, assignments: list[Assignment],
               zones: Sequence[Zone]) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
        """The old assignments against the new (same subject, device and start): (old index ->
        new index where it is kept as it was, else -1; new index -> the old index it takes
        records from, else -1; the new ones to rebuild: new, or changed, or with a changed
        zone; the old ones removed)."""
        key = lambda a: (a.subject_id, a.device_id, a.start_ms)  # noqa: E731
        old = {key(a): i for i, a in enumerate(self.assignments)}
        old_z = {z.zone_id: z for z in self.zones}
        new_z = {z.zone_id: z for z in zones}
        changed_z = {zid for zid in set(old_z) | set(new_z) if old_z.get(zid) != new_z.get(zid)}
        old_to_new = np.full(len(self.assignments), -1, np.int64)
        src = np.full(len(assignments), -1, np.int64)
        rebuild = []
        for j, a in enumerate(assignments):
            i = old.pop(key(a), None)
            if i is not None:
                src[j] = i
            if i is not None and self.assignments[i] == a and not set(a.zones) & changed_z:
                old_to_new[i] = j
            else:
                rebuild.append(j)
        return old_to_new, src, rebuild, list(old.values())

    def _catch_up(self, rebuild: list[int]) -> list[Change]:
        """After a reconfiguration: as_of is the latest kept row under the new assignments; rerun
        the rebuilt ones from A.start and, if as_of moved on, every one still worn; if it went
        back, rebuild and rerun them all. Without any row left, every record goes."""
        n = len(self.assignments)
        a_start = self._table.a_start
        old_as_of = self.as_of
        latest = self._cuts.latest
        self.as_of = int(latest.max()) if n and latest.max() > NEG_INF_MS else None
        rerun = np.zeros(n, np.bool_)
        rerun[rebuild] = True
        start, from_cut = self._cuts.starts(a_start)
        if self.as_of is not None and old_as_of is not None and self.as_of < old_as_of:
            others = np.flatnonzero(~rerun)
            if others.size:
                self._rebuild(others.tolist())
            rerun[:] = True
            start, from_cut = a_start.copy(), np.zeros(n, np.bool_)
        elif self.as_of != old_as_of:
            rerun |= self._table.a_end > (old_as_of if old_as_of is not None else NEG_INF_MS)
        start[rerun & ~from_cut] = a_start[rerun & ~from_cut]
        start[rebuild] = a_start[rebuild]
        from_cut[rebuild] = False
        if rerun.any() and self.as_of is not None:
            return self._rerun(np.flatnonzero(rerun), start, from_cut)
        changes: list[Change] = []
        if self.as_of is None:  # nothing kept any more: every record goes
            for j in np.flatnonzero(rerun).tolist():
                changes += self._book.withdraw(j)
        return changes

    # ------------------------------------------------------------------ rows
    def _rebuild(self, idx: Sequence[int]) -> None:
        """Replace the rows of assignments `idx` by their whole history (their cuts go too)."""
        self._rows.drop_owners(idx, len(self.assignments))
        f_parts, e_parts = [], []
        for i in idx:
            a = self.assignments[i]
            hf, he = self.history(a)
            end = POS_INF_MS if a.end_ms is None else a.end_ms
            f_ts, e_ts = np.asarray(hf.ts_ms, np.int64), np.asarray(he.ts_ms, np.int64)
            fm = np.flatnonzero((f_ts >= a.start_ms) & (f_ts < end))
            em = np.flatnonzero((e_ts >= a.start_ms) & (e_ts < end))
            f_parts.append(OwnedFixes.of(hf, np.full(f_ts.size, i, np.int64), fm))
            e_parts.append(OwnedEvents.of(he, np.full(e_ts.size, i, np.int64), em))
            vals = [int(f_ts[fm].max())] if fm.size else []
            vals += [int(e_ts[em].max())] if em.size else []
            self._cuts.reset(i, max(vals) if vals else NEG_INF_MS)
        self._rows.append(f_parts, e_parts)

    # ------------------------------------------------------------------ rerun
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
        changes = self._book.replace(R, start_all[R], from_cut_all[R], res, len(self.assignments))
        self._settle(R, res)
        return changes

    def _detect(self, R: np.ndarray, start: np.ndarray, from_cut: np.ndarray):
        """`detect_columns` on assignments `R` from `start` to as_of (no state changes)."""
        n = len(self.assignments)
        pos = np.full(n, -1, np.int64)
        pos[R] = np.arange(R.size, dtype=np.int64)
        rows, ev = self._rows.since(R, start, self._cuts.last, n)
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
        context = self._book.context(R, start, from_cut, self._table.a_start, self.policy)
        return detect_columns(fixes, events, sub, self.zones, self.policy, as_of_ms=self.as_of,
                              context=context, find_cuts=True, compiled=self._compiled)

    def _settle(self, R: np.ndarray, res) -> None:
        """After a rerun of `R`: advance their cuts, archive rows before them, freeze what they settle."""
        self._cuts.advance(R, res.cut_ms if res.cut_ms.size else np.full(R.size, -1, np.int64), self.retention_ms)
        # rows of the rerun before the (new) latest cut move from the tail to the archive
        if self._rows.archive_before(self._cuts.last) and self.retention_ms is not None and self._rows.archive_grown():
            self._rows.prune(self._cuts.needed_from())
        # what is settled before the oldest retained cut can only change by a rebuild
        in_r = np.zeros(len(self.assignments), np.bool_)
        in_r[R] = True
        self._book.freeze(in_r, self._cuts.cuts)
