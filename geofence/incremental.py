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
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from .detect import EventInput, FixInput, RerunContext, detect_columns
from .model import Assignment, Policy, Zone

__all__ = ["FixRows", "EventRows", "Change", "IncrementalDetector"]

_INF = 2**62
_MIN = -(2**62)


@dataclass(frozen=True)
class FixRows:
    """Kept fix rows (validated, deduplicated, projected), any order."""

    device_id: Sequence[str]
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


@dataclass
class _Buffer:
    """An assignment's fixes and events from its oldest retained cut on, by time."""

    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batt: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ev_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ev_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, object))

    def add(self, ts, x, y, acc, batt, ev_ts, ev_kind) -> None:
        if len(ts):
            in_order = ts.size < 2 or bool(np.all(ts[1:] > ts[:-1]))
            appended = in_order and (self.ts.size == 0 or ts[0] > self.ts[-1])
            cols = [np.concatenate([old, new]) for old, new in
                    ((self.ts, ts), (self.x, x), (self.y, y), (self.acc, acc), (self.batt, batt))]
            if not appended:
                order = np.argsort(cols[0], kind="stable")
                cols = [c[order] for c in cols]
            self.ts, self.x, self.y, self.acc, self.batt = cols
        if len(ev_ts):
            order = np.argsort(np.concatenate([self.ev_ts, ev_ts]), kind="stable")
            self.ev_ts = np.concatenate([self.ev_ts, ev_ts])[order]
            self.ev_kind = np.concatenate([self.ev_kind, np.asarray(ev_kind, object)])[order]

    def drop_before(self, t: int) -> None:
        k = int(np.searchsorted(self.ts, t, side="left"))
        self.ts, self.x, self.y, self.acc, self.batt = (a[k:] for a in (self.ts, self.x, self.y, self.acc, self.batt))
        k = int(np.searchsorted(self.ev_ts, t, side="left"))
        self.ev_ts, self.ev_kind = self.ev_ts[k:], self.ev_kind[k:]

    @property
    def start(self) -> int | None:
        return int(self.ts[0]) if self.ts.size else None


@dataclass
class _State:
    a: Assignment
    cuts: list[int] = field(default_factory=list)  # retained safe cuts, ascending; the buffer starts at cuts[0]
    buf: _Buffer = field(default_factory=_Buffer)
    records: dict[str, dict] = field(default_factory=dict)
    complete: bool = True  # the buffer holds everything from A.start (no cut dropped yet)
    latest: int | None = None  # latest kept fix or event (as_of is the latest over all)
    frozen: dict[str, dict] = field(default_factory=dict)  # settled before the oldest retained cut: never rerun

    def all_records(self) -> dict[str, dict]:
        return {**self.frozen, **self.records} if self.frozen else self.records


#: history(assignment) -> (FixRows, EventRows): every kept row of the assignment
#: (its device, inside [start, end)) received so far.
History = Callable[[Assignment], tuple[FixRows, EventRows]]


_NO_ROWS = np.zeros(0, np.int64)


def _groups(owner: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions per owner (>= 0), each in input order."""
    keep = np.flatnonzero(owner >= 0)
    if keep.size == 0:
        return {}
    order = keep[np.argsort(owner[keep], kind="stable")]
    bounds = np.flatnonzero(np.diff(owner[order])) + 1
    return {int(owner[g[0]]): g for g in np.split(order, bounds)}


def _latest(buf: "_Buffer") -> int | None:
    vals = [int(a[-1]) for a in (buf.ts, buf.ev_ts) if a.size]
    return max(vals) if vals else None


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


class IncrementalDetector:
    """Detection that takes rows batch by batch and reports what changed.

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
        self.zones = tuple(zones)
        self.policy = policy
        self.retention_ms = retention_ms
        self.history = history
        self.as_of: int | None = None
        self.states = [_State(a) for a in assignments]
        self._compiled = None  # all zones, compiled on first use
        self._index_devices()

    def _index_devices(self) -> None:
        self._by_device: dict[str, list[int]] = {}
        for i, st in enumerate(self.states):
            self._by_device.setdefault(st.a.device_id, []).append(i)
        for idx in self._by_device.values():
            idx.sort(key=lambda i: self.states[i].a.start_ms)

    # ------------------------------------------------------------------ reading
    def records(self) -> list[dict]:
        """Every current record, in the contract's order."""
        from .records import sort_records

        return sort_records([_public(r) for s in self.states for r in s.all_records().values()])

    # ------------------------------------------------------------------ writing
    def _owners(self, devices, ts: np.ndarray) -> np.ndarray:
        """Index of the assignment holding each (device, ts), or -1 (rows grouped by device)."""
        out = np.full(ts.shape[0], -1, np.int64)
        if ts.shape[0] == 0:
            return out
        dev = np.asarray(list(devices), object)
        uniq, inv = np.unique(dev, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.flatnonzero(np.diff(inv[order])) + 1
        for k, rows in enumerate(np.split(order, bounds)):
            idx = self._by_device.get(uniq[inv[rows[0]]])
            if not idx:
                continue
            t = ts[rows]
            for i in idx:
                a = self.states[i].a
                end = _INF if a.end_ms is None else a.end_ms
                out[rows[(t >= a.start_ms) & (t < end)]] = i
        return out

    def add(self, fixes: FixRows | None = None, events: EventRows | None = None) -> tuple[list[Change], np.ndarray, np.ndarray]:
        """Take one batch; returns (changes, fix rows without assignment, event rows without assignment)
        (positions in the batch: those rows are quarantined as ``unassigned`` and ignored)."""
        fixes = fixes or FixRows.empty()
        events = events or EventRows.empty()
        f_ts = np.asarray(fixes.ts_ms, np.int64)
        e_ts = np.asarray(events.ts_ms, np.int64)
        f_owner = self._owners(fixes.device_id, f_ts)
        e_owner = self._owners(events.device_id, e_ts)
        f_groups = _groups(f_owner)
        e_groups = _groups(e_owner)
        f_cols = (f_ts, np.asarray(fixes.x, np.float64), np.asarray(fixes.y, np.float64),
                  np.asarray(fixes.accuracy_m, np.float64), np.asarray(fixes.battery_pct, np.float64))
        e_kind = np.asarray(list(events.event), object)

        restart: dict[int, int | None] = {}  # assignment -> rerun from this cut (None: from A.start)
        for i in sorted(set(f_groups) | set(e_groups)):
            st = self.states[i]
            fr = f_groups.get(i, _NO_ROWS)
            er = e_groups.get(i, _NO_ROWS)
            new_min = min(int(v.min()) for v in (f_ts[fr], e_ts[er]) if v.size)
            earlier = [c for c in st.cuts if c < new_min]
            if earlier:
                restart[i] = earlier[-1]
            elif st.complete:
                restart[i] = None
            else:  # older than anything retained: rebuild from the whole history
                self._load_history(st)  # records stay: the rerun from A.start is diffed against them
                restart[i] = None
            st.buf.add(*(c[fr] for c in f_cols), e_ts[er], e_kind[er])
            mine = max(int(v.max()) for v in (f_ts[fr], e_ts[er]) if v.size)
            st.latest = max(mine, st.latest if st.latest is not None else _MIN)

        kept_ts = np.concatenate([f_ts[f_owner >= 0], e_ts[e_owner >= 0]])
        old_as_of = self.as_of
        if kept_ts.size:
            self.as_of = max(self.as_of if self.as_of is not None else _MIN, int(kept_ts.max()))
        if self.as_of is not None and self.as_of != old_as_of:
            for i, st in enumerate(self.states):
                end = _INF if st.a.end_ms is None else st.a.end_ms
                if i not in restart and (old_as_of is None or end > old_as_of) and self.as_of > st.a.start_ms:
                    restart[i] = st.cuts[-1] if st.cuts else None
        changes = self._rerun(restart) if restart and self.as_of is not None else []
        return changes, np.flatnonzero(f_owner < 0), np.flatnonzero(e_owner < 0)

    def restore(self, index: int, *, cuts: Sequence[int], complete: bool, records: dict[str, dict],
                fixes: FixRows, events: EventRows) -> None:
        """Put back one assignment's saved state (a service restarting): its safe cuts,
        whether its buffer starts at A.start, its current records (with ``_start_ms``
        and ``_end_ms``) and the rows from its oldest cut (or A.start) on."""
        st = self.states[index]
        st.cuts, st.complete, st.records, st.buf = [int(c) for c in cuts], bool(complete), dict(records), _Buffer()
        st.frozen = {}
        since = st.a.start_ms if complete or not st.cuts else st.cuts[0]
        end = _INF if st.a.end_ms is None else st.a.end_ms
        f_ts, e_ts = np.asarray(fixes.ts_ms, np.int64), np.asarray(events.ts_ms, np.int64)
        fm = (np.asarray(list(fixes.device_id), object) == st.a.device_id) & (f_ts >= since) & (f_ts < end) \
            if len(fixes) else np.zeros(0, bool)
        em = (np.asarray(list(events.device_id), object) == st.a.device_id) & (e_ts >= since) & (e_ts < end) \
            if len(events) else np.zeros(0, bool)
        self._buffer_rows(st, fixes, fm, events, em)
        st.latest = _latest(st.buf)

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
        key = lambda a: (a.subject_id, a.device_id, a.start_ms)  # noqa: E731
        old = {key(st.a): st for st in self.states}
        old_z = {z.zone_id: z for z in self.zones}
        new_z = {z.zone_id: z for z in zones}
        changed_z = {zid for zid in set(old_z) | set(new_z) if old_z.get(zid) != new_z.get(zid)}
        states, rebuild = [], []
        for a in assignments:
            st = old.pop(key(a), None)
            if st is not None and st.a == a and not set(a.zones) & changed_z:
                states.append(st)
            else:
                rebuild.append(len(states))
                states.append(_State(a, records=dict(st.all_records()) if st is not None else {}))
        changes = [Change(bid, None, _public(r)) for st in old.values() for bid, r in st.all_records().items()]
        self.states, self.zones = states, tuple(zones)
        self._compiled = None
        self._index_devices()
        for i in rebuild:
            self._load_history(self.states[i])
        old_as_of = self.as_of
        latest = [st.latest for st in self.states if st.latest is not None]
        self.as_of = max(latest) if latest else None
        restart: dict[int, int | None] = {i: None for i in rebuild}
        if self.as_of is not None and old_as_of is not None and self.as_of < old_as_of:
            for i, st in enumerate(self.states):
                if i not in restart:
                    self._load_history(st)
                    restart[i] = None
        elif self.as_of != old_as_of:
            for i, st in enumerate(self.states):
                end = _INF if st.a.end_ms is None else st.a.end_ms
                if i not in restart and (old_as_of is None or end > old_as_of):
                    restart[i] = st.cuts[-1] if st.cuts else None
        if restart and self.as_of is not None:
            changes += self._rerun(restart)
        elif self.as_of is None:  # nothing kept any more: every record goes
            for i in restart:
                st = self.states[i]
                changes += [Change(bid, None, _public(r)) for bid, r in st.all_records().items()]
                st.records, st.frozen = {}, {}
        return changes

    def _load_history(self, st: _State) -> None:
        hf, he = self.history(st.a)
        st.buf, st.cuts, st.complete = _Buffer(), [], True
        end = _INF if st.a.end_ms is None else st.a.end_ms
        f_ts, e_ts = np.asarray(hf.ts_ms, np.int64), np.asarray(he.ts_ms, np.int64)
        fm = (f_ts >= st.a.start_ms) & (f_ts < end)
        em = (e_ts >= st.a.start_ms) & (e_ts < end)
        self._buffer_rows(st, hf, fm, he, em)
        st.latest = _latest(st.buf)

    def _buffer_rows(self, st: _State, fixes: FixRows, fm: np.ndarray, events: EventRows, em: np.ndarray) -> None:
        st.buf.add(np.asarray(fixes.ts_ms, np.int64)[fm], np.asarray(fixes.x, np.float64)[fm],
                   np.asarray(fixes.y, np.float64)[fm], np.asarray(fixes.accuracy_m, np.float64)[fm],
                   np.asarray(fixes.battery_pct, np.float64)[fm],
                   np.asarray(events.ts_ms, np.int64)[em], np.asarray(list(events.event), object)[em])

    # ------------------------------------------------------------------ rerun
    def _rerun(self, restart: dict[int, int | None]) -> list[Change]:
        order = sorted(restart)
        accumulated = self.policy.battery_policy == "accumulated"
        syn, parts, ev_parts, r0, prior = [], [], [], [], []
        for i in order:
            st, t_c = self.states[i], restart[i]
            start = st.a.start_ms if t_c is None else t_c
            syn.append(replace(st.a, start_ms=start))
            k = int(np.searchsorted(st.buf.ts, start, side="left"))
            parts.append((st.a.device_id, st.buf.ts[k:], st.buf.x[k:], st.buf.y[k:], st.buf.acc[k:], st.buf.batt[k:]))
            k = int(np.searchsorted(st.buf.ev_ts, start, side="left"))
            ev_parts.append((st.a.device_id, st.buf.ev_ts[k:], st.buf.ev_kind[k:]))
            # only the accumulated-battery rule looks back across the cut (frozen records included)
            settled = _settled(st.all_records(), start) if t_c is not None and accumulated else {}
            acc = [r for r in settled.values() if r["type"] == "accumulated_battery"]
            r0.append(max([r["_end_ms"] for r in acc], default=st.a.start_ms))
            low = max(r0[-1], start - self.policy.accumulated_window_ms)
            prior.append(sorted((r["_start_ms"], r["_end_ms"]) for r in settled.values()
                                if r["type"] == "battery" and r["_end_ms"] > low))
        n_f = [p[1].shape[0] for p in parts]
        cat = lambda j, dt: np.concatenate([p[j] for p in parts]).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        devices = [a.device_id for a in syn]
        code = np.repeat(np.arange(len(syn), dtype=np.int32), n_f)
        fixes = FixInput(row=np.arange(1, int(sum(n_f)) + 1, dtype=np.int64), ts_ms=cat(1, np.int64),
                         accuracy_m=cat(4, np.float64), battery_pct=cat(5, np.float64),
                         device_code=code, device_names=devices, x=cat(2, np.float64), y=cat(3, np.float64))
        n_e = [p[1].shape[0] for p in ev_parts]
        events = EventInput(row=np.arange(1, int(sum(n_e)) + 1, dtype=np.int64),
                            device_id=pa.array([p[0] for p, n in zip(ev_parts, n_e) for _ in range(n)], pa.string()),
                            ts_ms=np.concatenate([p[1] for p in ev_parts]).astype(np.int64),
                            event=pa.array([str(k) for p in ev_parts for k in p[2]], pa.string()))
        n_prior = [len(p) for p in prior]
        flat = [g for p in prior for g in p]
        context = RerunContext(
            r0_ms=np.asarray(r0, np.int64),
            prior_offsets=np.concatenate([[0], np.cumsum(n_prior)]).astype(np.int64),
            prior_start_ms=np.asarray([g[0] for g in flat], np.int64),
            prior_end_ms=np.asarray([g[1] for g in flat], np.int64))
        # device_code indexes `devices` (one name per synthetic assignment), so rows of a device
        # worn in two reruns go to the right one by time, as always
        if self._compiled is None:
            from .compile import compile_zones

            self._compiled = compile_zones(self.zones, self.policy.crs) if self.zones else None
        res = detect_columns(fixes, events, syn, self.zones, self.policy, as_of_ms=self.as_of,
                             context=context, find_cuts=True, compiled=self._compiled)
        per: dict[int, list[int]] = {j: [] for j in range(len(syn))}
        for k, j in enumerate(res.record_assignment.tolist()):
            per[j].append(k)
        changes: list[Change] = []
        for j, i in enumerate(order):
            st, t_c = self.states[i], restart[i]
            start = syn[j].start_ms
            if t_c is None and st.frozen:  # a rebuild from A.start: everything is recomputed
                st.records, st.frozen = st.all_records(), {}
            new = _settled(st.records, start) if t_c is not None else {}
            for k in per[j]:
                r = res.records[k]
                s_ms, e_ms = int(res.record_start_ms[k]), int(res.record_end_ms[k])
                if t_c is not None and r["type"] == "low_battery" and s_ms == start:
                    continue  # decided with the fix before the cut; kept from before
                new[r["breach_id"]] = {**r, "_start_ms": s_ms, "_end_ms": e_ms}
            for bid in set(st.records) | set(new):
                old_r, new_r = st.records.get(bid), new.get(bid)
                if old_r is None or new_r is None or _public(old_r) != _public(new_r):
                    changes.append(Change(bid, None if new_r is None else _public(new_r),
                                          None if old_r is None else _public(old_r)))
            st.records = new
            self._advance_cut(st, int(res.cut_ms[j]) if res.cut_ms.size else -1)
            if st.cuts:  # what is settled before the oldest retained cut can only change by a rebuild
                done = _settled(st.records, st.cuts[0])
                if done:
                    st.frozen.update(done)
                    st.records = {bid: r for bid, r in st.records.items() if bid not in done}
        return changes

    def _advance_cut(self, st: _State, cut: int) -> None:
        if cut >= 0 and (not st.cuts or cut > st.cuts[-1]):
            st.cuts.append(cut)
        if self.retention_ms is None or not st.cuts:
            return
        keep_from = st.cuts[-1] - self.retention_ms
        drop = [c for c in st.cuts[:-1] if c < keep_from]
        if drop:
            st.cuts = st.cuts[len(drop):]
            st.buf.drop_before(st.cuts[0])
            st.complete = False

