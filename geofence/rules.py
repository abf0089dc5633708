"""Numba kernels for the contract's timeline rules (CONTRACT.md, "Timeline"
to "Breaches and alerts").

Everything here works on flat arrays laid out per assignment (CSR
`fix_offsets`) and per assignment-zone pair (`pair_*` arrays). Each kernel
runs twice: once to count the records each assignment or pair yields, once
to write them into slices sized from those counts, so parallel iterations
write only their own slice and results never depend on thread count.

Each kernel's plain-Python twin is in `tests/naive_rules.py` (compared on
seeded random layouts in `tests/test_rules_twins.py`; `safe_cuts` in
`tests/test_safe_cuts.py`); `tests/reference.py` is the whole-pipeline twin.
"""
from __future__ import annotations

import numpy as np

from trails.jit import njit_parallel, njit_serial, prange

__all__ = [
    "KIND_CURFEW",
    "KIND_INCLUSION",
    "KIND_EXCLUSION",
    "EP_CURFEW_ABSENCE",
    "EP_INCLUSION_EXIT",
    "EP_EXCLUSION_ENTRY",
    "EP_CURFEW_MISSED",
    "coverage_ends",
    "zone_episodes",
    "contact_gaps",
    "accumulated_battery",
    "low_battery_mask",
    "assign_fixes",
    "safe_cuts",
]

OUT, UNCERTAIN, IN = 0, 1, 2

KIND_CURFEW, KIND_INCLUSION, KIND_EXCLUSION = 0, 1, 2
EP_CURFEW_ABSENCE, EP_INCLUSION_EXIT, EP_EXCLUSION_ENTRY, EP_CURFEW_MISSED = 0, 1, 2, 3


# --------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------
@njit_parallel
def _coverage_ends(ts, fix_offsets, t_end, cov_ms, out):
    for a in prange(fix_offsets.shape[0] - 1):
        f0, f1 = fix_offsets[a], fix_offsets[a + 1]
        for i in range(f0, f1):
            e = ts[i] + cov_ms
            if i + 1 < f1 and ts[i + 1] < e:
                e = ts[i + 1]
            if t_end[a] < e:
                e = t_end[a]
            if e < ts[i]:
                e = ts[i]
            out[i] = e


def coverage_ends(ts_ms: np.ndarray, fix_offsets: np.ndarray, t_end_ms: np.ndarray, coverage_ms: int) -> np.ndarray:
    """End of each fix's coverage ``c_i = [t_i, min(t_{i+1}, t_i + coverage, T_end))``.

    An empty coverage (a fix at ``T_end``) has end == start.
    """
    out = np.empty(ts_ms.shape[0], np.int64)
    _coverage_ends(ts_ms, fix_offsets, t_end_ms, np.int64(coverage_ms), out)
    return out


# --------------------------------------------------------------------------
# Zone episodes: absences, exits, entries, missed curfews
# --------------------------------------------------------------------------
@njit_serial
def _emit(out_s, out_e, out_t, k, s, e, ep_type, write):
    if write:
        out_s[k] = s
        out_e[k] = e
        out_t[k] = ep_type
    return k + 1


@njit_serial
def _window_is_missed(ts, cov_end, codes, c0, f0, nf, i, ws, we, frac, length):
    """Curfew missed: no IN piece, some OUT piece, OUT time >= frac x length."""
    n_out = 0
    out_ms = np.int64(0)
    j = i
    while j < nf and ts[f0 + j] < we:
        t = ts[f0 + j]
        ce = cov_end[f0 + j]
        if ce > t:
            c = codes[c0 + j]
            if c == IN:
                return False
            if c == OUT:
                n_out += 1
                out_ms += (ce if ce < we else we) - (t if t > ws else ws)
        j += 1
    return n_out > 0 and np.float64(out_ms) >= frac * np.float64(length)


@njit_serial
def _window_runs(ts, cov_end, codes, c0, f0, nf, i, ws, we, bad, good, ep_type,
                 cov_ms, min_ms, out_s, out_e, out_t, k, write):
    """Runs of one window W: maximal sequences of fixes with pieces in W,
    consecutive ones contiguous, none `good`; trimmed of UNCERTAIN ends, a run
    holding a `bad` fix is an episode from its first to its last bad piece."""
    first_bad = -1
    last_bad = -1
    prev_t = np.int64(0)
    in_run = False
    j = i
    while j < nf and ts[f0 + j] < we:
        t = ts[f0 + j]
        ce = cov_end[f0 + j]
        if ce <= t:  # a fix at T_end has no piece
            j += 1
            continue
        c = codes[c0 + j]
        if in_run and (c == good or t - prev_t > cov_ms):
            if first_bad >= 0:
                s = max(ts[f0 + first_bad], ws)
                e = min(cov_end[f0 + last_bad], we)
                if e - s >= min_ms:
                    k = _emit(out_s, out_e, out_t, k, s, e, ep_type, write)
            in_run = False
            first_bad = -1
        if c != good:
            in_run = True
            if c == bad:
                if first_bad < 0:
                    first_bad = j
                last_bad = j
        prev_t = t
        j += 1
    if in_run and first_bad >= 0:
        s = max(ts[f0 + first_bad], ws)
        e = min(cov_end[f0 + last_bad], we)
        if e - s >= min_ms:
            k = _emit(out_s, out_e, out_t, k, s, e, ep_type, write)
    return k


@njit_serial
def _pair_episodes(ts, cov_end, codes, c0, f0, nf, iv_s, iv_e, i0, i1, kind,
                   a_start, t_end, cov_ms, min_ms, frac,
                   out_s, out_e, out_t, k0, write):
    """Episodes of one assignment-zone pair; returns how many (written at k0.. if write)."""
    if kind == KIND_EXCLUSION:
        bad, good, ep_type = IN, OUT, EP_EXCLUSION_ENTRY
    else:
        bad, good = OUT, IN
        ep_type = EP_CURFEW_ABSENCE if kind == KIND_CURFEW else EP_INCLUSION_EXIT
    k = k0
    i = 0  # first fix whose coverage may reach the current window
    for m in range(i0, i1):
        ws = max(iv_s[m], a_start)
        we = min(iv_e[m], t_end)
        if ws >= we:
            continue
        while i < nf and cov_end[f0 + i] <= ws:
            i += 1
        # a window wholly inside [A.start, T_end) may be missed, replacing its absences
        if (kind == KIND_CURFEW and iv_s[m] >= a_start and iv_e[m] <= t_end
                and _window_is_missed(ts, cov_end, codes, c0, f0, nf, i, ws, we, frac,
                                      iv_e[m] - iv_s[m])):
            k = _emit(out_s, out_e, out_t, k, iv_s[m], iv_e[m], EP_CURFEW_MISSED, write)
            continue
        k = _window_runs(ts, cov_end, codes, c0, f0, nf, i, ws, we, bad, good, ep_type,
                         cov_ms, min_ms, out_s, out_e, out_t, k, write)
    return k - k0


@njit_parallel
def _zone_episodes(ts, cov_end, codes, fix_offsets, pair_assignment, pair_code_offsets,
                   pair_kind, pair_iv_offsets, iv_s, iv_e, a_start, t_end, cov_ms,
                   pair_min_ms, frac, out_offsets, out_s, out_e, out_t, counts, write):
    for p in prange(pair_assignment.shape[0]):
        a = pair_assignment[p]
        f0 = fix_offsets[a]
        nf = fix_offsets[a + 1] - f0
        k0 = out_offsets[p] if write else 0
        counts[p] = _pair_episodes(
            ts, cov_end, codes, pair_code_offsets[p], f0, nf, iv_s, iv_e,
            pair_iv_offsets[p], pair_iv_offsets[p + 1], pair_kind[p], a_start[a], t_end[a],
            cov_ms, pair_min_ms[p], frac, out_s, out_e, out_t, k0, write,
        )


def zone_episodes(
    ts_ms: np.ndarray,
    cov_end_ms: np.ndarray,
    codes: np.ndarray,
    fix_offsets: np.ndarray,
    *,
    pair_assignment: np.ndarray,
    pair_code_offsets: np.ndarray,
    pair_kind: np.ndarray,
    pair_iv_offsets: np.ndarray,
    iv_start_ms: np.ndarray,
    iv_end_ms: np.ndarray,
    a_start_ms: np.ndarray,
    t_end_ms: np.ndarray,
    coverage_ms: int,
    pair_min_ms: np.ndarray,
    missed_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Breach episodes for every assignment-zone pair.

    ``codes[pair_code_offsets[p] + i]`` is the class (OUT/UNCERTAIN/IN) of the
    i-th fix of pair p's assignment; pair p's merged active intervals are
    ``iv_*[pair_iv_offsets[p]:pair_iv_offsets[p+1]]``, sorted and unclipped.
    Pairs with ``t_end <= a_start`` must be excluded by the caller.

    Returns (pair index, episode type, start_ms, end_ms) per episode, in pair
    order and, within a pair, in time order.
    """
    n_pairs = pair_assignment.shape[0]
    counts = np.zeros(n_pairs, np.int64)
    dummy_i = np.zeros(0, np.int64)
    dummy_t = np.zeros(0, np.int8)
    args = (ts_ms, cov_end_ms, codes, fix_offsets, pair_assignment, pair_code_offsets,
            pair_kind, pair_iv_offsets, iv_start_ms, iv_end_ms, a_start_ms, t_end_ms,
            np.int64(coverage_ms), pair_min_ms, np.float64(missed_fraction))
    _zone_episodes(*args, counts, dummy_i, dummy_i, dummy_t, counts, False)
    offsets = np.zeros(n_pairs + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    out_s = np.empty(n, np.int64)
    out_e = np.empty(n, np.int64)
    out_t = np.empty(n, np.int8)
    counts2 = np.zeros(n_pairs, np.int64)
    _zone_episodes(*args, offsets[:-1].copy(), out_s, out_e, out_t, counts2, True)
    pair_idx = np.repeat(np.arange(n_pairs, dtype=np.int64), counts)
    return pair_idx, out_t, out_s, out_e


# --------------------------------------------------------------------------
# Gaps
# --------------------------------------------------------------------------
@njit_parallel
def _contact_gaps(ts, battery, fix_offsets, a_start, t_end, gap_ms, critical,
                  out_offsets, out_s, out_e, out_batt, counts, write):
    for a in prange(fix_offsets.shape[0] - 1):
        if t_end[a] <= a_start[a]:
            counts[a] = 0
            continue
        f0, f1 = fix_offsets[a], fix_offsets[a + 1]
        k = out_offsets[a] if write else 0
        n = 0
        u = a_start[a]
        u_batt = False
        for i in range(f0, f1 + 1):
            v = ts[i] if i < f1 else t_end[a]
            if v - u > gap_ms:
                if write:
                    out_s[k + n] = u
                    out_e[k + n] = v
                    out_batt[k + n] = u_batt
                n += 1
            if i < f1:
                u = v
                b = battery[i]
                u_batt = (not np.isnan(b)) and b <= critical
        counts[a] = n


def contact_gaps(
    ts_ms: np.ndarray,
    battery_pct: np.ndarray,
    fix_offsets: np.ndarray,
    a_start_ms: np.ndarray,
    t_end_ms: np.ndarray,
    *,
    gap_ms: int,
    battery_critical_pct: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaps between consecutive contact points (A.start, fixes, T_end) longer
    than `gap_ms`; a gap after a fix with known battery <= critical is a
    battery gap. Returns (assignment index, start_ms, end_ms, is_battery)."""
    n_a = fix_offsets.shape[0] - 1
    counts = np.zeros(n_a, np.int64)
    di = np.zeros(0, np.int64)
    db = np.zeros(0, np.bool_)
    args = (ts_ms, battery_pct, fix_offsets, a_start_ms, t_end_ms, np.int64(gap_ms),
            np.float64(battery_critical_pct))
    _contact_gaps(*args, counts, di, di, db, counts, False)
    offsets = np.zeros(n_a + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    out_s = np.empty(n, np.int64)
    out_e = np.empty(n, np.int64)
    out_b = np.empty(n, np.bool_)
    _contact_gaps(*args, offsets[:-1].copy(), out_s, out_e, out_b, np.zeros(n_a, np.int64), True)
    return np.repeat(np.arange(n_a, dtype=np.int64), counts), out_s, out_e, out_b


# --------------------------------------------------------------------------
# Accumulated battery
# --------------------------------------------------------------------------
@njit_serial
def _measure_upto(gs, ge, cum, g0, g1, s):
    """Battery-gap time before instant s (gaps g0..g1 sorted, disjoint)."""
    lo, hi = g0, g1
    while lo < hi:  # first gap with start >= s
        mid = (lo + hi) // 2
        if gs[mid] < s:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    if j < g0:
        return np.int64(0)
    e = ge[j] if ge[j] < s else s
    return cum[j] + (e - gs[j])


@njit_serial
def _accumulated_one(gs, ge, cum, g0, g1, r0, window_ms, need_ms, out_s, out_e, k0, write):
    k = k0
    r = r0
    for g in range(g0, g1):
        while True:
            hi = ge[g]
            lo_b = hi - window_ms
            left = lo_b if lo_b > r else r
            f_hi = _measure_upto(gs, ge, cum, g0, g1, hi) - _measure_upto(gs, ge, cum, g0, g1, left)
            if f_hi < need_ms:
                break
            lo = gs[g] if gs[g] > r else r
            # smallest t in (lo, hi] with f(t) >= need; f is nondecreasing there
            a, b = lo + 1, hi
            while a < b:
                mid = a + (b - a) // 2
                lb = mid - window_ms
                lm = lb if lb > r else r
                f = _measure_upto(gs, ge, cum, g0, g1, mid) - _measure_upto(gs, ge, cum, g0, g1, lm)
                if f >= need_ms:
                    b = mid
                else:
                    a = mid + 1
            t = a
            lb = t - window_ms
            start = lb if lb > r else r
            if write:
                out_s[k] = start
                out_e[k] = t
            k += 1
            r = t
    return k - k0


@njit_parallel
def _accumulated(gs, ge, cum, gap_offsets, a_start, window_ms, need_ms,
                 out_offsets, out_s, out_e, counts, write):
    for a in prange(gap_offsets.shape[0] - 1):
        k0 = out_offsets[a] if write else 0
        counts[a] = _accumulated_one(gs, ge, cum, gap_offsets[a], gap_offsets[a + 1],
                                     a_start[a], window_ms, need_ms, out_s, out_e, k0, write)


def accumulated_battery(
    gap_start_ms: np.ndarray,
    gap_end_ms: np.ndarray,
    gap_offsets: np.ndarray,
    a_start_ms: np.ndarray,
    *,
    window_ms: int,
    need_ms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`accumulated_battery` breaches per assignment from its battery gaps.

    The breach is raised at the earliest t at which battery-gap time inside
    ``(max(t - window, r), t]`` reaches `need_ms`, r being the previous such
    breach (or A.start). Within one gap that time never decreases as t grows,
    and outside gaps it never increases, so each gap is searched by bisection.
    Returns (assignment index, start_ms, end_ms).
    """
    n_a = gap_offsets.shape[0] - 1
    lengths = gap_end_ms - gap_start_ms
    cum = np.zeros(lengths.shape[0], np.int64)  # time of earlier gaps of the same assignment
    if lengths.shape[0]:
        c = np.cumsum(lengths) - lengths
        base = np.repeat(c[gap_offsets[:-1].clip(max=max(len(c) - 1, 0))], np.diff(gap_offsets))
        cum = c - base
    counts = np.zeros(n_a, np.int64)
    di = np.zeros(0, np.int64)
    args = (gap_start_ms, gap_end_ms, cum, gap_offsets, a_start_ms, np.int64(window_ms), np.int64(need_ms))
    _accumulated(*args, counts, di, di, counts, False)
    offsets = np.zeros(n_a + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    out_s = np.empty(n, np.int64)
    out_e = np.empty(n, np.int64)
    _accumulated(*args, offsets[:-1].copy(), out_s, out_e, np.zeros(n_a, np.int64), True)
    return np.repeat(np.arange(n_a, dtype=np.int64), counts), out_s, out_e


# --------------------------------------------------------------------------
# Low battery
# --------------------------------------------------------------------------
@njit_parallel
def _low_battery(battery, fix_offsets, low_pct, out):
    for a in prange(fix_offsets.shape[0] - 1):
        prev_high = True  # no earlier known reading counts as above
        for i in range(fix_offsets[a], fix_offsets[a + 1]):
            b = battery[i]
            if np.isnan(b):
                out[i] = False
                continue
            is_low = b <= low_pct
            out[i] = is_low and prev_high
            prev_high = not is_low


def low_battery_mask(battery_pct: np.ndarray, fix_offsets: np.ndarray, low_pct: float) -> np.ndarray:
    """True for a fix at or below `low_pct` whose assignment's previous fix with
    a known reading was above it (or that has none)."""
    out = np.empty(battery_pct.shape[0], np.bool_)
    _low_battery(np.ascontiguousarray(battery_pct, np.float64), fix_offsets, np.float64(low_pct), out)
    return out


# --------------------------------------------------------------------------
# Safe cuts (incremental detection)
# --------------------------------------------------------------------------
@njit_serial
def _strictly_inside(t, iv_s, iv_e, i0, i1):
    """Is t inside some interval (start < t < end) of the sorted, disjoint iv_*[i0:i1]?"""
    lo, hi = i0, i1
    while lo < hi:  # first interval with end > t
        mid = (lo + hi) // 2
        if iv_e[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo < i1 and iv_s[lo] < t


@njit_parallel
def _safe_cuts(ts, battery, fix_offsets, t_end, zone_offsets, codes, pair_code_offsets, pair_kind,
               iv_off, iv_s, iv_e, out):
    for a in prange(fix_offsets.shape[0] - 1):
        f0 = fix_offsets[a]
        out[a] = -1
        for j in range(fix_offsets[a + 1] - f0 - 1, -1, -1):
            t = ts[f0 + j]
            if not (t < t_end[a]) or np.isnan(battery[f0 + j]):
                continue
            ok = True
            for p in range(zone_offsets[a], zone_offsets[a + 1]):
                c = codes[pair_code_offsets[p] + j]
                good = c == OUT if pair_kind[p] == KIND_EXCLUSION else c == IN
                if not good and _strictly_inside(t, iv_s, iv_e, iv_off[p], iv_off[p + 1]):
                    ok = False
                    break
            if ok:
                out[a] = t
                break


def safe_cuts(ts_ms: np.ndarray, battery_pct: np.ndarray, fix_offsets: np.ndarray, t_end_ms: np.ndarray,
              zone_offsets: np.ndarray, codes: np.ndarray, pair_code_offsets: np.ndarray,
              pair_kind: np.ndarray, pair_iv_offsets: np.ndarray, iv_start_ms: np.ndarray,
              iv_end_ms: np.ndarray) -> np.ndarray:
    """Per assignment, the time of its latest fix at which detection can be cut and
    resumed exactly (-1 if none), for incremental detection.

    A fix k at t_k qualifies when t_k < T_end, its battery reading is known,
    and for every zone of the assignment either no merged active interval
    holds t_k strictly inside (start < t_k < end) or fix k is decisive the
    good way (IN for curfew and inclusion, OUT for exclusion). Then:
    no must-be-inside or exclusion run spans k (a good fix with a piece ends
    a run) and the window holding k cannot be missed (it has an IN piece), so
    every record that starts before t_k is final; coverage and contiguity
    before k need only fix k's time; gaps restart at the contact point t_k;
    the next low-battery decision needs only fix k's known reading. Only the
    accumulated-battery window looks further back, which `RerunContext`
    carries. Pairs are ``zone_offsets[a]:zone_offsets[a+1]`` (CSR by
    assignment); codes and intervals as in `zone_episodes`.
    """
    out = np.empty(fix_offsets.shape[0] - 1, np.int64)
    _safe_cuts(ts_ms, battery_pct, fix_offsets, t_end_ms, zone_offsets, codes, pair_code_offsets,
               pair_kind, pair_iv_offsets, iv_start_ms, iv_end_ms, out)
    return out


# --------------------------------------------------------------------------
# Fix -> assignment
# --------------------------------------------------------------------------
@njit_serial
def _assign_sorted(dev, ts, a_dev, a_start, a_end, a_idx, out):
    j = 0
    n_a = a_dev.shape[0]
    for i in range(dev.shape[0]):
        d = dev[i]
        t = ts[i]
        # advance past assignments of smaller devices, or of this device that end by t
        while j < n_a and (a_dev[j] < d or (a_dev[j] == d and a_end[j] <= t)):
            j += 1
        if j < n_a and a_dev[j] == d and a_start[j] <= t:
            out[i] = a_idx[j]
        else:
            out[i] = -1


def assign_fixes(
    dev_code: np.ndarray,
    ts_ms: np.ndarray,
    a_dev_code: np.ndarray,
    a_start_ms: np.ndarray,
    a_end_ms: np.ndarray,
) -> np.ndarray:
    """Index of the assignment holding each (device, instant), or -1.

    Preconditions: rows sorted by (device code, ts); one device's assignments
    do not overlap (SUBJECTS.json is validated for that).
    """
    order = np.lexsort((a_start_ms, a_dev_code))
    out = np.empty(dev_code.shape[0], np.int64)
    _assign_sorted(dev_code, ts_ms, a_dev_code[order], a_start_ms[order], a_end_ms[order],
                   order.astype(np.int64), out)
    return out
