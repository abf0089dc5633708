"""Breach detection: kept fixes and events in, breach and alert records out.

The data flows one way (CONTRACT.md, "Timeline" onwards):

1. quarantine the rows that the row checks let through but that cannot be
   used here (`after_as_of`, `unassigned`, `duplicate`), in that precedence;
2. fix `as_of` (explicit, else the latest kept fix or event);
3. lay the kept fixes out per assignment (CSR `fix_offsets`), sorted by time;
4. classify every fix against every zone of its assignment (Numba kernel);
5. expand each zone's schedule into merged active intervals;
6. run the episode, gap, battery, tamper and low-battery rules;
7. build the records.

`detect_columns` is the single entry point used by the file and the store
paths of `tagtrail detect`, so both give the same records.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.projection import project_lonlat
from trails.quarantine import OK, Rejected
from trails.timestamps import POS_INF_MS

from . import rules
from .classify import classify_assignments
from .compile import CompiledZones, compile_zones
from .layout import IGNORED, lay_out_fixes, scatter, scatter_chunk
from .model import Assignment, Policy, Zone, zone_label
from .records import RECORD_TYPES, TYPE_CODE, RecordColumns, quarantine_rows, to_dicts_ordered
from .schedule import active_intervals

__all__ = ["FixInput", "EventInput", "ChunkedColumn", "AssignmentTable", "DetectResult", "RerunContext", "detect_columns",
           "gap_records", "battery_policy_counts"]

_KIND_CODE = {"curfew": rules.KIND_CURFEW, "inclusion": rules.KIND_INCLUSION,
              "exclusion": rules.KIND_EXCLUSION}


@dataclass(frozen=True)
class ChunkedColumn:
    """A column that is read only when needed, in chunks, never whole.

    `load()` returns the whole column (used for the columns the layout needs
    in full: device codes, times, rows); `chunks(fn)` calls ``fn(first_row,
    array)`` for consecutive chunks covering every row, possibly from several
    threads. Kept rows are scattered straight from the chunks into their final
    place, so a store read holds one copy of each column, not two.
    """

    load: Callable[[], np.ndarray]
    chunks: Callable[[Callable[[int, np.ndarray], None]], None] | None = None

    def each_chunk(self, fn: Callable[[int, np.ndarray], None]) -> None:
        if self.chunks is None:
            fn(0, self.load())
        else:
            self.chunks(fn)


#: A column is the array itself or a `ChunkedColumn`.
Column = "np.ndarray | ChunkedColumn"


def _load(col) -> np.ndarray:
    return col.load() if isinstance(col, ChunkedColumn) else col


def _place(col, dest: np.ndarray, n_kept: int, dtype, *, fill_nan: float | None = None) -> np.ndarray:
    """The kept rows of `col`, in layout order."""
    out = np.empty(n_kept, dtype)
    if isinstance(col, ChunkedColumn):
        col.each_chunk(lambda first, chunk: scatter_chunk(chunk, dest, first, out, fill_nan=fill_nan))
    else:
        scatter(np.asarray(col), dest, out, fill_nan=fill_nan)
    return out


@dataclass(frozen=True)
class FixInput:
    """Fix rows that passed the row checks (reasons 1-6), in row order.

    Devices: either `device_id` (Arrow strings) or `device_code` (int, -1 =
    none) indexing `device_names`. Positions: either `x`/`y` (already
    projected to the policy CRS, e.g. from the store) or `lat`/`lon`;
    projection then happens once, for kept rows only. `accuracy_m` NaN means
    "not given"; `battery_pct` NaN means unknown. Any column may be a
    `ChunkedColumn` (read lazily).

    Store mode sets `unknown_device="ignore"` (rows of devices without an
    assignment were never asked for) and `window` (--from/--to: rows outside
    are ignored, neither kept nor quarantined).
    """

    row: Column
    ts_ms: Column
    accuracy_m: Column
    battery_pct: Column
    device_id: pa.Array | None = None
    device_code: Column | None = None
    device_names: Sequence[str] | None = None
    lat: Column | None = None
    lon: Column | None = None
    x: Column | None = None
    y: Column | None = None
    unknown_device: str = "unassigned"
    window: tuple[int | None, int | None] = (None, None)


@dataclass(frozen=True)
class EventInput:
    """Event rows that passed the row checks (reasons 1-3 and 7)."""

    row: np.ndarray
    device_id: pa.Array
    ts_ms: np.ndarray
    event: pa.Array

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


@dataclass(frozen=True)
class DetectResult:
    """Records (contract dicts, sorted), quarantined rows 8-10, and the
    intermediate gap arrays so other battery policies can be compared cheaply."""

    records: list[dict]
    quarantine: list[tuple[str, int, str]]
    rejected_fixes: Rejected
    rejected_events: Rejected
    as_of_ms: int | None
    n_fixes_kept: int
    seconds: float
    gaps: tuple[np.ndarray, ...] = field(repr=False, default=())
    names: tuple[Sequence[str], Sequence[str], Sequence[str]] = field(repr=False, default=((), (), ()))
    timings: dict[str, float] = field(repr=False, default_factory=dict)
    cut_ms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    #: per record (aligned with `records`): its assignment's index and its instants in ms
    record_assignment: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    record_start_ms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    record_end_ms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))


class _Stages:
    """Seconds per pipeline stage (``tagtrail detect --timings``)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self._t
        self._t = now


@dataclass(frozen=True)
class AssignmentTable:
    """Assignments (and their zone pairs) as columns, built once.

    Incremental detection reruns thousands of assignments every pass, each
    from its own cut: the per-assignment Python work (device codes, zone
    pairs, schedule groups) is done here once, and a pass takes a subset
    with `take` and new start instants. Zone indices refer to the `zones`
    the table was built with, in order.
    """

    subject_ids: np.ndarray  # object (str)
    device_ids: np.ndarray  # object (str)
    device_names: list[str]  # distinct devices, sorted
    a_dev: np.ndarray  # index in device_names
    a_start: np.ndarray
    a_end: np.ndarray  # POS_INF_MS = still worn
    pair_offsets: np.ndarray  # CSR by assignment into pair_zone
    pair_zone: np.ndarray
    zone_group: np.ndarray  # per zone: index of its (windows, timezone) among the distinct ones
    zone_kind: np.ndarray  # per zone: rules.KIND_*
    zone_ids: list[str]  # as records name them: a versioned zone's key without its version (`model.zone_label`)

    def __len__(self) -> int:
        return int(self.a_start.shape[0])

    @staticmethod
    def build(assignments: Sequence[Assignment], zones: Sequence[Zone]) -> "AssignmentTable":
        names = sorted({a.device_id for a in assignments})
        dev_index = {d: i for i, d in enumerate(names)}
        zone_pos = {z.zone_id: i for i, z in enumerate(zones)}
        groups: dict[tuple, int] = {}
        zone_group = np.array([groups.setdefault((z.windows, z.timezone), len(groups)) for z in zones], np.int64)
        counts = np.array([len(a.zones) for a in assignments], np.int64)
        offsets = np.zeros(len(assignments) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return AssignmentTable(
            subject_ids=np.array([a.subject_id for a in assignments], object),
            device_ids=np.array([a.device_id for a in assignments], object),
            device_names=names, a_dev=np.array([dev_index[a.device_id] for a in assignments], np.int64),
            a_start=np.array([a.start_ms for a in assignments], np.int64),
            a_end=np.array([POS_INF_MS if a.end_ms is None else a.end_ms for a in assignments], np.int64),
            pair_offsets=offsets,
            pair_zone=np.array([zone_pos[zid] for a in assignments for zid in a.zones], np.int64),
            zone_group=zone_group,
            zone_kind=np.array([_KIND_CODE[z.kind] for z in zones], np.int8),
            zone_ids=[zone_label(z.zone_id) for z in zones])

    def take(self, idx: np.ndarray, start_ms: np.ndarray | None = None) -> "AssignmentTable":
        """The assignments `idx` (in that order), starting at `start_ms` if given."""
        idx = np.asarray(idx, np.int64)
        counts = self.pair_offsets[idx + 1] - self.pair_offsets[idx]
        offsets = np.zeros(idx.shape[0] + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        pos = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1] - self.pair_offsets[idx], counts)
        used, a_dev = np.unique(self.a_dev[idx], return_inverse=True)
        names = self.device_names
        return AssignmentTable(
            subject_ids=self.subject_ids[idx], device_ids=self.device_ids[idx],
            device_names=[names[i] for i in used.tolist()], a_dev=a_dev.astype(np.int64).reshape(-1),
            a_start=self.a_start[idx] if start_ms is None else np.asarray(start_ms, np.int64),
            a_end=self.a_end[idx], pair_offsets=offsets, pair_zone=self.pair_zone[pos],
            zone_group=self.zone_group, zone_kind=self.zone_kind, zone_ids=self.zone_ids)


# --------------------------------------------------------------------------
# Quarantine 8-10 and assignment
# --------------------------------------------------------------------------
def _device_codes(device_id: pa.Array, devices: pa.Array) -> np.ndarray:
    """Code of each row's device among `devices`, or -1 when it has none."""
    if len(device_id) == 0:
        return np.zeros(0, np.int64)
    idx = pc.index_in(device_id, value_set=devices)
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _fix_device_codes(fixes: FixInput, devices: pa.Array, device_names: Sequence[str]) -> np.ndarray:
    """Each fix row's index in `devices` (whose strings are `device_names`), or -1."""
    if fixes.device_code is None:
        return _device_codes(fixes.device_id, devices).astype(np.int32)
    if fixes.device_names is device_names:  # codes already index `devices` (incremental reruns): no lookup
        return np.asarray(_load(fixes.device_code))
    names = pa.array(list(fixes.device_names or []), pa.string())
    remap = np.append(_device_codes(names, devices), -1).astype(np.int32)  # code -1 -> remap[-1] == -1
    code = np.asarray(_load(fixes.device_code))
    return remap[code]


def _rejected(source: str, row: np.ndarray, reason: np.ndarray) -> Rejected:
    bad = reason != OK
    return Rejected(source, row[bad].astype(np.int64), reason[bad].astype(np.int8))


# --------------------------------------------------------------------------
# Zone activity per assignment-zone pair
# --------------------------------------------------------------------------
def _pair_intervals(zones: Sequence[Zone], pair_zone: np.ndarray, pair_lo: np.ndarray,
                    pair_hi: np.ndarray, zone_group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged active intervals of each pair's zone that meet [lo, hi).

    Schedules are expanded once per distinct (windows, timezone) group
    (`zone_group`) over the span of its pairs, then each pair takes the
    intervals it meets: many wearers share a schedule, and expansion is the
    only Python-level loop over days.
    """
    n_pairs = pair_zone.shape[0]
    counts = np.zeros(n_pairs, np.int64)
    grp = zone_group[pair_zone]
    order = np.argsort(grp, kind="stable")
    bounds = np.flatnonzero(np.diff(grp[order])) + 1
    taken = []
    for members in (np.split(order, bounds) if n_pairs else []):
        lo = int(pair_lo[members].min())
        hi = int(pair_hi[members].max())
        iv = np.asarray(active_intervals(zones[int(pair_zone[members[0]])], lo, hi), np.int64).reshape(-1, 2)
        starts, ends = iv[:, 0], iv[:, 1]
        # intervals meeting [plo, phi): end > plo and start < phi (intervals sorted, disjoint)
        first = np.searchsorted(ends, pair_lo[members], side="right")
        last = np.searchsorted(starts, pair_hi[members], side="left")
        cnt = np.maximum(last - first, 0).astype(np.int64)
        counts[members] = cnt
        taken.append((members, first, cnt, starts, ends))
    offsets = np.zeros(n_pairs + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    iv_s = np.empty(int(offsets[-1]), np.int64)
    iv_e = np.empty(int(offsets[-1]), np.int64)
    for members, first, cnt, starts, ends in taken:
        total = int(cnt.sum())
        if total:
            k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            src = np.repeat(first, cnt) + k
            dst = np.repeat(offsets[members], cnt) + k
            iv_s[dst] = starts[src]
            iv_e[dst] = ends[src]
    return offsets, iv_s, iv_e


# --------------------------------------------------------------------------
# Gap-derived records (depend on the battery policy only)
# --------------------------------------------------------------------------
def gap_records(gap_assign: np.ndarray, gap_s: np.ndarray, gap_e: np.ndarray,
                gap_batt: np.ndarray, a_start: np.ndarray, policy: Policy,
                context: "RerunContext | None" = None) -> RecordColumns:
    """Records from gaps: `battery`/`no_signal` breaches or alerts, and
    `accumulated_battery` breaches under the accumulated policy.

    `context` (incremental reruns) supplies, per assignment, the battery gaps
    before the rerun's start that still count in the rolling window and the
    instant r of the last accumulated breach before it."""
    dur = gap_e - gap_s
    ooc = dur >= policy.out_of_contact_ms
    accumulated = policy.battery_policy == "accumulated"
    type_code = np.where(gap_batt, TYPE_CODE["battery"], TYPE_CODE["no_signal"]).astype(np.int64)
    priority = np.where(ooc, 1, 3).astype(np.int64)
    is_alert = gap_batt & ~ooc & accumulated
    priority[is_alert] = 4
    parts = [RecordColumns(gap_assign, type_code, np.full(gap_s.shape[0], -1, np.int64),
                           gap_s, gap_e, priority, is_alert)]
    if accumulated:
        bsel = np.flatnonzero(gap_batt)
        b_assign, b_s, b_e = gap_assign[bsel], gap_s[bsel], gap_e[bsel]
        r0 = a_start
        if context is not None:
            n_prior = np.diff(context.prior_offsets)
            p_assign = np.repeat(np.arange(n_prior.shape[0], dtype=np.int64), n_prior)
            b_assign = np.concatenate([p_assign, b_assign])
            b_s = np.concatenate([context.prior_start_ms, b_s])
            b_e = np.concatenate([context.prior_end_ms, b_e])
            order = np.lexsort((b_s, b_assign))  # prior gaps all end before the rerun's own begin
            b_assign, b_s, b_e = b_assign[order], b_s[order], b_e[order]
            r0 = context.r0_ms
        n_a = a_start.shape[0]
        b_offsets = np.zeros(n_a + 1, np.int64)
        np.cumsum(np.bincount(b_assign, minlength=n_a), out=b_offsets[1:])
        acc_a, acc_s, acc_e = rules.accumulated_battery(
            b_s, b_e, b_offsets, np.ascontiguousarray(r0, np.int64),
            window_ms=policy.accumulated_window_ms, need_ms=policy.accumulated_battery_ms)
        parts.append(RecordColumns(acc_a, np.full(acc_a.shape[0], TYPE_CODE["accumulated_battery"], np.int64),
                                   np.full(acc_a.shape[0], -1, np.int64), acc_s, acc_e,
                                   np.full(acc_a.shape[0], 3, np.int64), np.zeros(acc_a.shape[0], np.bool_)))
    return RecordColumns.concat(parts)


@dataclass(frozen=True)
class RerunContext:
    """What an incremental rerun of assignments from a cut needs from before it.

    Per assignment (in the order given to `detect_columns`): `r0_ms`, the
    instant of its last `accumulated_battery` breach raised before the cut
    (else its true start); and, CSR by `prior_offsets`, the battery gaps
    before the cut that can still count in the rolling window. Only the
    accumulated-battery rule looks back across a cut; every other rule is
    local to the cut by construction (`rules.safe_cuts`).
    """

    r0_ms: np.ndarray
    prior_offsets: np.ndarray
    prior_start_ms: np.ndarray
    prior_end_ms: np.ndarray


# --------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------
def detect_columns(
    fixes: FixInput,
    events: EventInput | None,
    assignments: "Sequence[Assignment] | AssignmentTable",
    zones: Sequence[Zone],
    policy: Policy,
    *,
    as_of_ms: int | None = None,
    rejected_fixes: Rejected | None = None,
    rejected_events: Rejected | None = None,
    context: RerunContext | None = None,
    find_cuts: bool = False,
    compiled: "CompiledZones | None" = None,
    latest_ms: int | None = None,
) -> DetectResult:
    """Run the contract's rules on rows that passed the row checks.

    `rejected_*` are the rows the readers already quarantined (reasons 1-7);
    they are merged with reasons 8-10 into the result's quarantine list.
    `context` and `find_cuts` serve incremental detection
    (`geofence.incremental`): the first carries accumulated-battery history
    from before each assignment's start, the second fills `cut_ms` with each
    assignment's latest safe cut (`rules.safe_cuts`). `latest_ms` serves
    bucketed detection (`geofence.bucketed`): the implicit as_of, the latest
    kept fix or event over every bucket, found by the caller; unlike
    `as_of_ms` it sets no row aside as ``after_as_of`` (CONTRACT.md, "Time").
    """
    t0 = time.perf_counter()
    st = _Stages()
    table = assignments if isinstance(assignments, AssignmentTable) else AssignmentTable.build(assignments, zones)
    n_a = len(table)
    devices = pa.array(table.device_names, pa.string())

    # 1. reasons 8-10, by the layout kernel: fixes, then events (a duplicate also has the same kind)
    f_dev = _fix_device_codes(fixes, devices, table.device_names)
    st.mark("read device codes")
    ts_all = _load(fixes.ts_ms)
    st.mark("read ts")
    lay = lay_out_fixes(f_dev, ts_all, len(devices), table.a_dev, table.a_start, table.a_end, as_of_ms=as_of_ms,
                        unknown_device=fixes.unknown_device, window=fixes.window)
    del f_dev
    st.mark("layout (reasons 8-10, CSR)")
    ev = _lay_out_events(events, devices, table, as_of_ms)
    all_f_rej, all_e_rej, quarantine = _quarantine(fixes, lay, ev.rejected, rejected_fixes, rejected_events)
    st.mark("events and quarantine")

    # 2. as_of
    as_of = _as_of(as_of_ms, lay, ev.ts)
    if as_of_ms is None and latest_ms is not None:
        as_of = int(latest_ms) if as_of is None else max(as_of, int(latest_ms))

    # 3. kept fixes per assignment, by time: one column at a time, straight into place
    ts = np.empty(int(lay.fix_offsets[-1]), np.int64)
    scatter(ts_all, lay.dest, ts)
    del ts_all
    st.mark("place ts")
    kept = _place_kept(fixes, lay, ts, policy)
    st.mark("read and place columns")

    # tamper and low battery arise from every kept event and fix
    parts = [_tamper_records(ev), _low_battery_records(kept, lay, policy)]
    st.mark("tamper and low battery")

    gaps: tuple[np.ndarray, ...] = ()
    cut_ms = np.full(n_a, -1, np.int64)
    if as_of is not None and n_a:
        cut_ms, gaps = _timeline_records(parts, kept, table, zones, policy, as_of, context=context,
                                         find_cuts=find_cuts, compiled=compiled, st=st)

    cols = RecordColumns.concat(parts)
    records, rec_order = to_dicts_ordered(cols, table.subject_ids, table.device_ids, table.zone_ids)
    st.mark("records")
    return DetectResult(
        records=records,
        quarantine=quarantine,
        rejected_fixes=all_f_rej,
        rejected_events=all_e_rej,
        as_of_ms=as_of,
        n_fixes_kept=int(ts.shape[0]),
        seconds=time.perf_counter() - t0,
        gaps=gaps,
        names=(table.subject_ids, table.device_ids, table.zone_ids),
        timings=st.times,
        cut_ms=cut_ms,
        record_assignment=cols.assignment_idx[rec_order],
        record_start_ms=cols.start_ms[rec_order],
        record_end_ms=cols.end_ms[rec_order],
    )


@dataclass(frozen=True)
class _KeptEvents:
    """The kept events: each one's assignment, instant and whether it is a strap tamper; and the
    event rows quarantined (reasons 8-10)."""

    assign: np.ndarray
    ts: np.ndarray
    is_tamper: np.ndarray
    rejected: Rejected


def _lay_out_events(events: EventInput | None, devices: pa.Array, table: AssignmentTable,
                    as_of_ms: int | None) -> _KeptEvents:
    """Events through the same layout kernel as fixes (a duplicate also has the same kind)."""
    if events is None or not len(events):
        empty = np.zeros(0, np.int64)
        return _KeptEvents(empty, empty, np.zeros(0, np.bool_), Rejected.empty("events"))
    e_dev = _device_codes(events.device_id, devices)
    kinds = pc.dictionary_encode(events.event).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    e_lay = lay_out_fixes(e_dev, events.ts_ms, len(devices), table.a_dev, table.a_start, table.a_end,
                          as_of_ms=as_of_ms, extra_key=kinds)
    e_keep = np.flatnonzero(e_lay.dest >= 0)
    return _KeptEvents(assign=e_lay.assignment_of(e_lay.dest[e_keep]), ts=events.ts_ms[e_keep],
                       is_tamper=pc.equal(events.event, "strap_tamper").to_numpy(zero_copy_only=False)[e_keep],
                       rejected=_rejected("events", events.row, e_lay.reason))


def _quarantine(fixes: FixInput, lay, e_rej: Rejected, rejected_fixes: Rejected | None,
                rejected_events: Rejected | None) -> tuple[Rejected, Rejected, list[tuple[str, int, str]]]:
    """(every rejected fix, every rejected event, the quarantine list): the readers' (reasons
    1-7) with the layout's (8-10; rows the layout ignores are not quarantined)."""
    bad = np.flatnonzero((lay.reason != OK) & (lay.reason != IGNORED))
    f_rej = Rejected("fixes", np.asarray(_load(fixes.row))[bad].astype(np.int64) if bad.size else
                     np.zeros(0, np.int64), lay.reason[bad].astype(np.int8))
    all_f_rej = Rejected.concat("fixes", [rejected_fixes or Rejected.empty("fixes"), f_rej])
    all_e_rej = Rejected.concat("events", [rejected_events or Rejected.empty("events"), e_rej])
    return all_f_rej, all_e_rej, quarantine_rows([all_e_rej, all_f_rej])


def _as_of(as_of_ms: int | None, lay, e_ts: np.ndarray) -> int | None:
    """as_of as given, else the latest kept fix or event (None when nothing was kept)."""
    if as_of_ms is not None:
        return int(as_of_ms)
    latest = [lay.latest_ms] if lay.latest_ms is not None else []
    latest += [int(e_ts.max())] if e_ts.size else []
    return max(latest) if latest else None


@dataclass(frozen=True)
class _KeptFixes:
    """The kept fixes per assignment (CSR `fix_offsets`), by time, one array per column."""

    ts: np.ndarray
    battery: np.ndarray
    acc: np.ndarray  # NaN replaced by the policy's default accuracy
    x: np.ndarray
    y: np.ndarray
    fix_offsets: np.ndarray


def _place_kept(fixes: FixInput, lay, ts: np.ndarray, policy: Policy) -> _KeptFixes:
    """The kept rows' other columns (`ts` is placed already), each read and scattered straight
    into place; positions projected here, kept rows only, when the input has lat/lon."""
    dest = lay.dest
    n_kept = ts.shape[0]
    battery = _place(fixes.battery_pct, dest, n_kept, np.float64)
    acc = _place(fixes.accuracy_m, dest, n_kept, np.float64, fill_nan=policy.default_accuracy_m)
    if fixes.x is not None:
        x = _place(fixes.x, dest, n_kept, np.float64)
        y = _place(fixes.y, dest, n_kept, np.float64)
    else:
        import os

        x, y = project_lonlat(_place(fixes.lon, dest, n_kept, np.float64),
                              _place(fixes.lat, dest, n_kept, np.float64), policy.crs,
                              inplace=True, threads=min(2, os.cpu_count() or 1))
    return _KeptFixes(ts, battery, acc, x, y, lay.fix_offsets)


def _tamper_records(ev: _KeptEvents) -> RecordColumns:
    """A strap_tamper breach per kept tamper event."""
    tam = np.flatnonzero(ev.is_tamper)
    return RecordColumns(ev.assign[tam].astype(np.int64), np.full(tam.size, TYPE_CODE["strap_tamper"], np.int64),
                         np.full(tam.size, -1, np.int64), ev.ts[tam], ev.ts[tam],
                         np.ones(tam.size, np.int64), np.zeros(tam.size, np.bool_))


def _low_battery_records(kept: _KeptFixes, lay, policy: Policy) -> RecordColumns:
    """A low_battery alert per kept fix where the battery falls to the policy's low level."""
    low = np.flatnonzero(rules.low_battery_mask(kept.battery, kept.fix_offsets, policy.battery_low_pct))
    return RecordColumns(lay.assignment_of(low), np.full(low.size, TYPE_CODE["low_battery"], np.int64),
                         np.full(low.size, -1, np.int64), kept.ts[low], kept.ts[low],
                         np.full(low.size, 4, np.int64), np.ones(low.size, np.bool_))


def _timeline_records(parts: list[RecordColumns], kept: _KeptFixes, table: AssignmentTable,
                      zones: Sequence[Zone], policy: Policy, as_of: int, *, context: RerunContext | None,
                      find_cuts: bool, compiled: "CompiledZones | None",
                      st: _Stages) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Steps 4-6 up to as_of: zone episodes and gap records are appended to `parts`; returns
    (each assignment's latest safe cut, -1 without one or unless `find_cuts`; the gap arrays)."""
    a_start = table.a_start
    t_end = np.minimum(table.a_end, np.int64(as_of))
    live = t_end > a_start
    cov_end = rules.coverage_ends(kept.ts, kept.fix_offsets, t_end, policy.coverage_ms)
    st.mark("coverage")
    cut_ms = _zone_records(parts, kept, cov_end, t_end, live, table, zones, policy, find_cuts=find_cuts,
                           compiled=compiled, st=st)

    # 6. gaps and battery
    g_a, g_s, g_e, g_b = rules.contact_gaps(kept.ts, kept.battery, kept.fix_offsets, a_start, t_end,
                                            gap_ms=policy.gap_ms,
                                            battery_critical_pct=policy.battery_critical_pct)
    parts.append(gap_records(g_a, g_s, g_e, g_b, a_start, policy, context))
    st.mark("gaps and battery")
    return cut_ms, (g_a, g_s, g_e, g_b, a_start)


def _zone_records(parts: list[RecordColumns], kept: _KeptFixes, cov_end: np.ndarray, t_end: np.ndarray,
                  live: np.ndarray, table: AssignmentTable, zones: Sequence[Zone], policy: Policy, *,
                  find_cuts: bool, compiled: "CompiledZones | None", st: _Stages) -> np.ndarray:
    """Steps 4-6 for zones: classify every kept fix against every zone of its (live) assignment,
    expand the schedules and append the zone episodes to `parts`; returns each assignment's
    latest safe cut if `find_cuts` (else -1 each)."""
    n_a = len(table)
    ts, fix_offsets = kept.ts, kept.fix_offsets
    cut_ms = np.full(n_a, -1, np.int64)
    pair_a = np.repeat(np.arange(n_a, dtype=np.int64), np.diff(table.pair_offsets))
    pair_live = live[pair_a]
    pair_a, pair_z = pair_a[pair_live], table.pair_zone[pair_live]
    if not pair_a.size:
        if find_cuts:
            z0 = np.zeros(n_a + 1, np.int64)
            cut_ms = rules.safe_cuts(ts, kept.battery, fix_offsets, t_end, z0, np.zeros(0, np.int8),
                                     np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(1, np.int64),
                                     np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cut_ms
    st.mark("zone pairs")
    if compiled is None:
        used = np.unique(pair_z)
        compiled = compile_zones([zones[i] for i in used], policy.crs)
        local = np.searchsorted(used, pair_z)
    else:  # compiled once by the caller for all of `zones`, in order
        local = pair_z
    st.mark("compile zones")
    zone_offsets = np.zeros(n_a + 1, np.int64)
    np.cumsum(np.bincount(pair_a, minlength=n_a), out=zone_offsets[1:])
    codes, code_offsets = classify_assignments(kept.x, kept.y, kept.acc, fix_offsets, zone_offsets, local, compiled)
    st.mark("classify")
    nf = np.diff(fix_offsets)
    j_in_a = np.arange(pair_a.size) - zone_offsets[pair_a]
    pair_code_offsets = (code_offsets[pair_a] + j_in_a * nf[pair_a]).astype(np.int64)
    iv_off, iv_s, iv_e = _pair_intervals(zones, pair_z, table.a_start[pair_a], t_end[pair_a], table.zone_group)
    st.mark("schedules")
    kinds = table.zone_kind[pair_z]
    min_ms = np.where(kinds == rules.KIND_CURFEW, policy.curfew_grace_ms,
                      np.where(kinds == rules.KIND_INCLUSION, policy.inclusion_grace_ms,
                               policy.exclusion_min_ms)).astype(np.int64)
    ep_pair, ep_type, ep_s, ep_e = rules.zone_episodes(
        ts, cov_end, codes, fix_offsets,
        pair_assignment=pair_a, pair_code_offsets=pair_code_offsets,
        pair_kind=kinds, pair_iv_offsets=iv_off, iv_start_ms=iv_s, iv_end_ms=iv_e,
        a_start_ms=table.a_start, t_end_ms=t_end, coverage_ms=policy.coverage_ms,
        pair_min_ms=min_ms, missed_fraction=policy.curfew_missed_fraction)
    ep_code = np.array([TYPE_CODE["curfew_absence"], TYPE_CODE["inclusion_exit"],
                        TYPE_CODE["exclusion_entry"], TYPE_CODE["curfew_missed"]], np.int64)[ep_type]
    ep_prio = np.where(ep_type == rules.EP_CURFEW_MISSED, 1, 2).astype(np.int64)
    parts.append(RecordColumns(pair_a[ep_pair], ep_code, pair_z[ep_pair], ep_s, ep_e,
                               ep_prio, np.zeros(ep_s.size, np.bool_)))
    st.mark("zone episodes")
    if find_cuts:
        cut_ms = rules.safe_cuts(ts, kept.battery, fix_offsets, t_end, zone_offsets, codes,
                                 pair_code_offsets, kinds, iv_off, iv_s, iv_e)
    return cut_ms


def battery_policy_counts(result: DetectResult, policy: Policy) -> dict[str, dict[str, int]]:
    """Breach and alert counts from gaps under each battery policy, so managers
    can see what switching to the accumulated policy would change."""
    out: dict[str, dict[str, int]] = {}
    if not result.gaps:
        return {p: {} for p in ("per_episode", "accumulated")}
    g_a, g_s, g_e, g_b, a_start = result.gaps
    for name in ("per_episode", "accumulated"):
        cols = gap_records(g_a, g_s, g_e, g_b, a_start, replace(policy, battery_policy=name))
        counts: dict[str, int] = {}
        for t, al in zip(cols.type_code.tolist(), cols.is_alert.tolist()):
            key = f"{RECORD_TYPES[t]} {'alert' if al else 'breach'}"
            counts[key] = counts.get(key, 0) + 1
        out[name] = dict(sorted(counts.items()))
    return out
