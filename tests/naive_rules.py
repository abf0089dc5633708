"""Slow, obvious twins of the rule kernels in `geofence.rules` (tests only).

Each function takes the same arguments as the public wrapper of its kernel
(`coverage_ends`, `zone_episodes`, `contact_gaps`, `accumulated_battery`,
`low_battery_mask`, `assign_fixes`) and answers in the same shape, but works
one assignment (or assignment-zone pair) at a time with plain Python ints,
through the rule functions of `tests/reference.py`, each of which quotes the
CONTRACT.md sentence it implements. So there is one plain reading of each
rule, and these adapters only carry the kernels' flat layouts to it and
back. Where the wrapper's input is an intermediate the twin can derive (the
coverage ends given to `zone_episodes`), the twin derives it, so a wrong
intermediate cannot hide.

`accumulated_battery` is the exception: the reference solves it exactly on
linear pieces, and the kernel by bisection; the twin here tries every
millisecond, a third way that needs no argument to trust (for small instants).
"""
from __future__ import annotations

import math

import numpy as np

import reference as ref
from geofence.model import Assignment, Policy

__all__ = ["coverage_ends", "zone_episodes", "contact_gaps", "accumulated_battery", "low_battery_mask",
           "assign_fixes", "OUT", "UNCERTAIN", "IN", "KIND_CURFEW", "KIND_INCLUSION", "KIND_EXCLUSION",
           "EP_CURFEW_ABSENCE", "EP_INCLUSION_EXIT", "EP_EXCLUSION_ENTRY", "EP_CURFEW_MISSED"]

# the codes and kinds, as DEVELOPERS.md and geofence.rules define them
OUT, UNCERTAIN, IN = 0, 1, 2
KIND_CURFEW, KIND_INCLUSION, KIND_EXCLUSION = 0, 1, 2
EP_CURFEW_ABSENCE, EP_INCLUSION_EXIT, EP_EXCLUSION_ENTRY, EP_CURFEW_MISSED = 0, 1, 2, 3
_CLASS = {OUT: ref.OUT, UNCERTAIN: ref.UNCERTAIN, IN: ref.IN}


def _ints(a) -> list[int]:
    return [int(v) for v in np.asarray(a).tolist()]


def _per_assignment(fix_offsets) -> list[range]:
    off = _ints(fix_offsets)
    return [range(off[a], off[a + 1]) for a in range(len(off) - 1)]


def _fixes(ts: list[int], battery: list[float] | None, rows: range) -> list[dict]:
    """One assignment's fixes as the reference reads them (battery None = unknown)."""
    return [{"ts_ms": ts[i], "battery_pct": None if battery is None or math.isnan(battery[i]) else battery[i]}
            for i in rows]


def _columns(rows: list[tuple], dtypes: tuple) -> tuple[np.ndarray, ...]:
    cols = list(zip(*rows)) or [()] * len(dtypes)
    return tuple(np.asarray(c, d) for c, d in zip(cols, dtypes))


def coverage_ends(ts_ms, fix_offsets, t_end_ms, coverage_ms) -> np.ndarray:
    """Twin of `rules.coverage_ends`: the end of each fix's coverage (`reference.coverage`)."""
    ts, t_end = _ints(ts_ms), _ints(t_end_ms)
    policy = Policy(coverage_ms=int(coverage_ms))
    out: list[int] = []
    for a, rows in enumerate(_per_assignment(fix_offsets)):
        fixes = _fixes(ts, None, rows)
        out += [ref.coverage(fixes, i, t_end[a], policy)[1] for i in range(len(fixes))]
    return np.asarray(out, np.int64)


def _pair_episodes(kind: int, fixes: list[dict], classes: list[str], intervals: list[tuple[int, int]],
                   a_start: int, t_end: int, min_ms: int, policy: Policy) -> list[tuple[int, int, int]]:
    """One zone of one assignment, as `reference.zone_records` does it, with the grace
    (or exclusion minimum) given per pair: for each merged interval M and its part
    W = M ∩ [A.start, T_end), the missed window or the episodes of at least `min_ms`."""
    covs = [ref.coverage(fixes, i, t_end, policy) for i in range(len(fixes))]
    found = []
    for M in intervals:
        W = ref.intersect(M, (a_start, t_end))
        if W is None:
            continue
        items = ref.pieces_in(fixes, covs, classes, W)
        if kind == KIND_EXCLUSION:
            episodes, ep_type = ref.entries(items, policy), EP_EXCLUSION_ENTRY
        elif kind == KIND_CURFEW and ref.is_missed(M, items, a_start, t_end, policy):
            found.append((EP_CURFEW_MISSED, M[0], M[1]))  # replaces the window's absences
            continue
        else:
            episodes = ref.absences(items, policy)
            ep_type = EP_CURFEW_ABSENCE if kind == KIND_CURFEW else EP_INCLUSION_EXIT
        found += [(ep_type, s, e) for s, e in episodes if e - s >= min_ms]
    return found


def zone_episodes(ts_ms, cov_end_ms, codes, fix_offsets, *, pair_assignment, pair_code_offsets, pair_kind,
                  pair_iv_offsets, iv_start_ms, iv_end_ms, a_start_ms, t_end_ms, coverage_ms, pair_min_ms,
                  missed_fraction) -> tuple[np.ndarray, ...]:
    """Twin of `rules.zone_episodes`: (pair index, episode type, start, end) per episode, pairs
    in order, each pair's in time order. `cov_end_ms` is ignored (coverage is derived here)."""
    del cov_end_ms
    ts, all_codes, rows = _ints(ts_ms), _ints(codes), _per_assignment(fix_offsets)
    iv_s, iv_e, iv_off = _ints(iv_start_ms), _ints(iv_end_ms), _ints(pair_iv_offsets)
    a_start, t_end, min_ms = _ints(a_start_ms), _ints(t_end_ms), _ints(pair_min_ms)
    policy = Policy(coverage_ms=int(coverage_ms), curfew_missed_fraction=float(missed_fraction))
    out = []
    for p, a in enumerate(_ints(pair_assignment)):
        fixes = _fixes(ts, None, rows[a])
        c0 = int(pair_code_offsets[p])
        classes = [_CLASS[c] for c in all_codes[c0:c0 + len(fixes)]]
        intervals = list(zip(iv_s[iv_off[p]:iv_off[p + 1]], iv_e[iv_off[p]:iv_off[p + 1]]))
        out += [(p, *ep) for ep in _pair_episodes(int(pair_kind[p]), fixes, classes, intervals, a_start[a],
                                                  t_end[a], min_ms[p], policy)]
    return _columns(out, (np.int64, np.int8, np.int64, np.int64))


def contact_gaps(ts_ms, battery_pct, fix_offsets, a_start_ms, t_end_ms, *, gap_ms, battery_critical_pct):
    """Twin of `rules.contact_gaps` (`reference.gaps`), only where T_end > A.start ("the zone
    and gap rules need T_end > A.start"). Returns (assignment, start, end, is_battery)."""
    ts, battery = _ints(ts_ms), [float(b) for b in np.asarray(battery_pct).tolist()]
    a_start, t_end = _ints(a_start_ms), _ints(t_end_ms)
    policy = Policy(gap_ms=int(gap_ms), battery_critical_pct=float(battery_critical_pct))
    out = []
    for a, rows in enumerate(_per_assignment(fix_offsets)):
        if t_end[a] > a_start[a]:
            assignment = Assignment("S", "D", a_start[a], None)
            out += [(a, u, v, kind == "battery")
                    for u, v, kind in ref.gaps(assignment, _fixes(ts, battery, rows), t_end[a], policy)]
    return _columns(out, (np.int64, np.int64, np.int64, np.bool_))


def low_battery_mask(battery_pct, fix_offsets, low_pct) -> np.ndarray:
    """Twin of `rules.low_battery_mask`: True for the fixes `reference.low_battery_alerts`
    raises an alert at (one assignment's fix times are distinct)."""
    battery = [float(b) for b in np.asarray(battery_pct).tolist()]
    policy = Policy(battery_low_pct=float(low_pct))
    out = [False] * len(battery)
    for rows in _per_assignment(fix_offsets):
        fixes = _fixes(list(range(len(battery))), battery, rows)  # the row index stands for the time
        alerts = {r["start"] for r in ref.low_battery_alerts(Assignment("S", "D", 0, None), fixes, policy)}
        for i in rows:
            out[i] = ref.format_ms(i) in alerts
    return np.asarray(out, np.bool_)


def _battery_time(gaps: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Battery-gap time inside (lo, hi]."""
    return sum(max(0, min(v, hi) - max(u, lo)) for u, v in gaps)


def accumulated_battery(gap_start_ms, gap_end_ms, gap_offsets, a_start_ms, *, window_ms, need_ms):
    """Twin of `rules.accumulated_battery`, by trying every millisecond: "raised at the earliest
    instant t at which the battery-gap time inside (max(t - accumulated_window_s, r), t] reaches
    accumulated_battery_s, where r is the instant of this assignment's previous accumulated_battery
    breach (or A.start). Its interval is [max(t - accumulated_window_s, r), t)". Battery time
    stops growing after the last gap ends, so no t after it can be the first to reach the need.
    Returns (assignment, start, end)."""
    gs, ge, a_start = _ints(gap_start_ms), _ints(gap_end_ms), _ints(a_start_ms)
    out = []
    for a, rows in enumerate(_per_assignment(gap_offsets)):
        gaps = [(gs[g], ge[g]) for g in rows]
        r = a_start[a]
        for t in range(r + 1, max((v for _, v in gaps), default=r) + 1):
            lo = max(t - window_ms, r)
            if _battery_time(gaps, lo, t) >= need_ms:
                out.append((a, lo, t))
                r = t
    return _columns(out, (np.int64, np.int64, np.int64))


def assign_fixes(dev_code, ts_ms, a_dev_code, a_start_ms, a_end_ms) -> np.ndarray:
    """Twin of `rules.assign_fixes`: the index of the assignment that holds each (device,
    instant), or -1 (`reference.holder`: an assignment holds its device during [start, end))."""
    assignments = [Assignment(f"S{k}", str(d), s, None if e >= ref.POS_INF else e)
                   for k, (d, s, e) in enumerate(zip(_ints(a_dev_code), _ints(a_start_ms), _ints(a_end_ms)))]
    out = []
    for d, t in zip(_ints(dev_code), _ints(ts_ms)):
        held = ref.holder(assignments, str(d), t)
        out.append(-1 if held is None else int(held.subject_id[1:]))
    return np.asarray(out, np.int64)
