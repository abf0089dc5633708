"""The rule kernels of `geofence.rules` against their plain-Python twins
(`tests/naive_rules.py`): hand-worked tables for the edges (empty, one fix,
thresholds hit exactly, touching intervals), then seeded random layouts on a
coarse time grid (so fixes land exactly on coverage, gap, grace, window and
T_end boundaries), and schedules across both clock changes."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

import naive_rules as naive
from geofence import rules
from geofence.model import Window, Zone

OUT, UNCERTAIN, IN = naive.OUT, naive.UNCERTAIN, naive.IN
NAN = float("nan")
FAR = 2**62  # an open end / a zone active all the time

assert (rules.KIND_CURFEW, rules.KIND_INCLUSION, rules.KIND_EXCLUSION) == (naive.KIND_CURFEW, naive.KIND_INCLUSION,
                                                                           naive.KIND_EXCLUSION)
assert (rules.EP_CURFEW_ABSENCE, rules.EP_INCLUSION_EXIT, rules.EP_EXCLUSION_ENTRY, rules.EP_CURFEW_MISSED) == (
    naive.EP_CURFEW_ABSENCE, naive.EP_INCLUSION_EXIT, naive.EP_EXCLUSION_ENTRY, naive.EP_CURFEW_MISSED)


def i64(values) -> np.ndarray:
    return np.asarray(values, np.int64)


def offsets(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def same(got: tuple, want: tuple) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w)


# ====================================================================== hand-worked tables
# Each row: inputs, and the answer worked out from CONTRACT.md by hand; both the kernel
# and its twin must give it.

COVERAGE_TABLE = [
    # (ts per assignment, T_end per assignment, coverage_ms, ends)
    pytest.param([[]], [100], 30, [], id="empty"),
    pytest.param([[5]], [100], 30, [35], id="one-fix"),
    pytest.param([[0, 10, 40]], [45], 30, [10, 40, 45], id="next-fix-coverage-T_end"),
    pytest.param([[0, 30]], [100], 30, [30, 60], id="next-fix-exactly-coverage-later"),
    pytest.param([[0, 45]], [45], 30, [30, 45], id="fix-at-T_end-covers-nothing"),
    pytest.param([[0, 10]], [100], 0, [0, 10], id="coverage-0"),
    pytest.param([[0, 10], [], [20]], [5, 0, 25], 30, [5, 10, 25], id="three-assignments-T_end-before-a-fix"),
]


@pytest.mark.parametrize("times, t_end, cov_ms, ends", COVERAGE_TABLE)
def test_coverage_ends_table(times, t_end, cov_ms, ends):
    args = (i64([t for ts in times for t in ts]), offsets([len(ts) for ts in times]), i64(t_end), cov_ms)
    assert rules.coverage_ends(*args).tolist() == ends
    assert naive.coverage_ends(*args).tolist() == ends


GAP_TABLE = [
    # (A.start, T_end, ts, battery, gap_ms, gaps as (start, end, is_battery))
    pytest.param(0, 100, [], [], 50, [(0, 100, False)], id="no-fix-one-gap"),
    pytest.param(0, 50, [], [], 50, [], id="no-fix-exactly-gap_ms"),
    pytest.param(0, 100, [50], [90.0], 50, [], id="both-sides-exactly-gap_ms"),
    pytest.param(0, 100, [50], [5.0], 49, [(0, 50, False), (50, 100, True)], id="critical-5-is-battery"),
    pytest.param(0, 100, [50], [5.5], 49, [(0, 50, False), (50, 100, False)], id="above-critical"),
    pytest.param(0, 100, [50], [NAN], 49, [(0, 50, False), (50, 100, False)], id="unknown-battery-no-signal"),
    pytest.param(0, 100, [0, 100], [1.0, 1.0], 50, [(0, 100, True)], id="fix-at-start-and-at-T_end"),
    pytest.param(100, 100, [], [], 0, [], id="T_end-at-start-no-gaps"),
]


@pytest.mark.parametrize("a_start, t_end, ts, battery, gap_ms, gaps", GAP_TABLE)
def test_contact_gaps_table(a_start, t_end, ts, battery, gap_ms, gaps):
    args = (i64(ts), np.asarray(battery, np.float64), offsets([len(ts)]), i64([a_start]), i64([t_end]))
    kw = {"gap_ms": gap_ms, "battery_critical_pct": 5.0}
    want = (i64([0] * len(gaps)), i64([g[0] for g in gaps]), i64([g[1] for g in gaps]),
            np.asarray([g[2] for g in gaps], np.bool_))
    same(rules.contact_gaps(*args, **kw), want)
    same(naive.contact_gaps(*args, **kw), want)


ACCUMULATED_TABLE = [
    # (A.start, battery gaps, window, need, breaches as (start, end))
    pytest.param(0, [], 50, 30, [], id="no-gaps"),
    pytest.param(0, [(0, 29)], 50, 30, [], id="short-of-need-by-1"),
    pytest.param(0, [(0, 30)], 50, 30, [(0, 30)], id="exactly-need"),
    pytest.param(0, [(0, 100)], 50, 30, [(0, 30), (30, 60), (60, 90)], id="three-in-one-gap-each-from-the-last"),
    pytest.param(0, [(0, 20), (20, 30)], 50, 30, [(0, 30)], id="touching-gaps-add-up"),
    pytest.param(0, [(0, 20), (60, 75)], 50, 30, [], id="first-gap-slides-out-of-the-window"),
    pytest.param(0, [(0, 20), (40, 55)], 50, 30, [(0, 50)], id="earliest-t-inside-the-second-gap"),
    # (t - 50, t] holds 25 ms of battery time for every t in [45, 70] (the first gap leaves as fast as the
    # second arrives), then the second gap alone reaches 30 at t = 75
    pytest.param(0, [(0, 20), (45, 80)], 50, 30, [(25, 75)], id="first-gap-slides-out-second-alone-reaches-need"),
    pytest.param(10, [(0, 40)], 50, 30, [(10, 40)], id="counted-from-A.start"),
    pytest.param(0, [(0, 100)], 20, 30, [], id="need-longer-than-window-never"),
    pytest.param(0, [(0, 3)], 50, 1, [(0, 1), (1, 2), (2, 3)], id="need-1ms-every-millisecond"),
    pytest.param(0, [(0, 10), (15, 40)], 20, 17, [(12, 32)], id="need-reached-between-grid-points"),
]


@pytest.mark.parametrize("a_start, gaps, window, need, want", ACCUMULATED_TABLE)
def test_accumulated_battery_table(a_start, gaps, window, need, want):
    args = (i64([g[0] for g in gaps]), i64([g[1] for g in gaps]), offsets([len(gaps)]), i64([a_start]))
    kw = {"window_ms": window, "need_ms": need}
    expect = (i64([0] * len(want)), i64([w[0] for w in want]), i64([w[1] for w in want]))
    same(rules.accumulated_battery(*args, **kw), expect)
    same(naive.accumulated_battery(*args, **kw), expect)


LOW_BATTERY_TABLE = [
    # (battery per assignment, low_pct, mask)
    pytest.param([[]], 20.0, [], id="empty"),
    pytest.param([[20.0]], 20.0, [True], id="one-fix-at-low-with-none-before"),
    pytest.param([[NAN, 20.0, 21.0, NAN, 20.0, 19.0]], 20.0, [False, True, False, False, True, False],
                 id="unknowns-skipped-recover-then-low-again"),
    pytest.param([[10.0, 10.0], [10.0]], 20.0, [True, False, True], id="each-assignment-starts-afresh"),
    pytest.param([[NAN, NAN]], 20.0, [False, False], id="all-unknown"),
]


@pytest.mark.parametrize("battery, low, mask", LOW_BATTERY_TABLE)
def test_low_battery_mask_table(battery, low, mask):
    args = (np.asarray([b for bs in battery for b in bs], np.float64), offsets([len(b) for b in battery]), low)
    assert rules.low_battery_mask(*args).tolist() == mask
    assert naive.low_battery_mask(*args).tolist() == mask


def test_assign_fixes_table():
    """Device 0 wears assignment 1 during [0, 10) and assignment 0 during [10, 20) (they touch);
    device 1 has none; device 2 has an open end."""
    a_dev, a_start, a_end = i64([0, 0, 2]), i64([10, 0, 5]), i64([20, 10, FAR])
    dev, ts = i64([0, 0, 0, 0, 0, 1, 2, 2]), i64([-1, 0, 9, 10, 20, 5, 4, 10**15])
    want = [-1, 1, 1, 0, -1, -1, -1, 2]
    assert rules.assign_fixes(dev, ts, a_dev, a_start, a_end).tolist() == want
    assert naive.assign_fixes(dev, ts, a_dev, a_start, a_end).tolist() == want
    assert rules.assign_fixes(i64([]), i64([]), a_dev, a_start, a_end).tolist() == []


EPISODE_TABLE = [
    # (kind, ts, codes, intervals, A.start, T_end, min_ms, fraction, episodes as (type, start, end))
    # coverage 30 throughout
    pytest.param(rules.KIND_CURFEW, [0, 10, 20, 30, 40], [IN, OUT, OUT, OUT, IN], [(0, 100)], 0, 100, 30, 0.5,
                 [(rules.EP_CURFEW_ABSENCE, 10, 40)], id="absence-exactly-grace"),
    pytest.param(rules.KIND_CURFEW, [0, 10, 20, 30, 40], [IN, OUT, OUT, OUT, IN], [(0, 100)], 0, 100, 31, 0.5,
                 [], id="absence-1-under-grace"),
    pytest.param(rules.KIND_INCLUSION, [0, 10, 20, 30, 40], [IN, UNCERTAIN, OUT, UNCERTAIN, IN], [(-FAR, FAR)], 0, 100,
                 0, 0.5, [(rules.EP_INCLUSION_EXIT, 20, 30)], id="uncertain-ends-trimmed"),
    pytest.param(rules.KIND_INCLUSION, [0, 10, 20, 30], [OUT, UNCERTAIN, UNCERTAIN, OUT], [(-FAR, FAR)], 0, 100,
                 0, 0.5, [(rules.EP_INCLUSION_EXIT, 0, 60)], id="uncertain-between-outs-counts"),
    pytest.param(rules.KIND_CURFEW, [0, 40], [OUT, OUT], [(0, 100)], 0, 100, 0, 1.0,
                 [(rules.EP_CURFEW_ABSENCE, 0, 30), (rules.EP_CURFEW_ABSENCE, 40, 70)], id="not-contiguous-two-runs"),
    pytest.param(rules.KIND_CURFEW, [0, 30], [OUT, OUT], [(0, 100)], 0, 100, 0, 1.0,
                 [(rules.EP_CURFEW_ABSENCE, 0, 60)], id="exactly-coverage-apart-is-contiguous"),
    pytest.param(rules.KIND_CURFEW, [0, 30, 60], [OUT, OUT, UNCERTAIN], [(0, 100)], 0, 100, 0, 0.6,
                 [(rules.EP_CURFEW_MISSED, 0, 100)], id="missed-exactly-fraction"),
    pytest.param(rules.KIND_CURFEW, [0, 30, 60], [OUT, OUT, UNCERTAIN], [(0, 100)], 0, 100, 0, 0.61,
                 [(rules.EP_CURFEW_ABSENCE, 0, 60)], id="short-of-missed-fraction-is-an-absence"),
    pytest.param(rules.KIND_CURFEW, [0, 30, 60], [OUT, OUT, OUT], [(0, 100)], 0, 80, 0, 0.1,
                 [(rules.EP_CURFEW_ABSENCE, 0, 80)], id="window-cut-by-T_end-never-missed"),
    pytest.param(rules.KIND_CURFEW, [20, 50], [OUT, OUT], [(0, 100)], 10, 100, 0, 0.1,
                 [(rules.EP_CURFEW_ABSENCE, 20, 80)], id="window-cut-by-A.start-never-missed"),
    pytest.param(rules.KIND_EXCLUSION, [0, 10, 20, 30], [OUT, IN, IN, OUT], [(15, 25), (28, 50)], 0, 100, 0, 0.5,
                 [(rules.EP_EXCLUSION_ENTRY, 15, 25), (rules.EP_EXCLUSION_ENTRY, 28, 30)],
                 id="entries-clipped-to-their-windows"),
    pytest.param(rules.KIND_EXCLUSION, [0, 10], [IN, IN], [(-FAR, FAR)], 0, 10, 0, 0.5,
                 [(rules.EP_EXCLUSION_ENTRY, 0, 10)], id="fix-at-T_end-has-no-piece"),
    pytest.param(rules.KIND_CURFEW, [], [], [(0, 100)], 0, 100, 0, 0.5, [], id="no-fixes"),
]


def _one_pair(kind, ts, codes, intervals, a_start, t_end, min_ms, fraction, cov_ms=30):
    fix_offsets = offsets([len(ts)])
    t_end_a = i64([t_end])
    return ((i64(ts), rules.coverage_ends(i64(ts), fix_offsets, t_end_a, cov_ms), np.asarray(codes, np.int8),
             fix_offsets),
            dict(pair_assignment=i64([0]), pair_code_offsets=i64([0]), pair_kind=np.asarray([kind], np.int8),
                 pair_iv_offsets=i64([0, len(intervals)]), iv_start_ms=i64([iv[0] for iv in intervals]),
                 iv_end_ms=i64([iv[1] for iv in intervals]), a_start_ms=i64([a_start]), t_end_ms=t_end_a,
                 coverage_ms=cov_ms, pair_min_ms=i64([min_ms]), missed_fraction=fraction))


@pytest.mark.parametrize("kind, ts, codes, intervals, a_start, t_end, min_ms, fraction, episodes", EPISODE_TABLE)
def test_zone_episodes_table(kind, ts, codes, intervals, a_start, t_end, min_ms, fraction, episodes):
    args, kw = _one_pair(kind, ts, codes, intervals, a_start, t_end, min_ms, fraction)
    want = (i64([0] * len(episodes)), np.asarray([e[0] for e in episodes], np.int8),
            i64([e[1] for e in episodes]), i64([e[2] for e in episodes]))
    same(rules.zone_episodes(*args, **kw), want)
    same(naive.zone_episodes(*args, **kw), want)


# ====================================================================== seeded random layouts

GRID = 10  # every instant is a multiple of 10 ms, so thresholds (also multiples of 10) are hit exactly


def random_assignments(rng: np.random.Generator, *, live_only: bool = False):
    """(ts, battery, fix_offsets, a_start, t_end) for 0-5 assignments: strictly increasing fix
    times in [A.start, T_end] (a fix may sit on either), some assignments without fixes, some
    with T_end <= A.start (not when `live_only`)."""
    n_a = int(rng.integers(0 if not live_only else 1, 6))
    ts, counts, a_start, t_end = [], [], [], []
    for _ in range(n_a):
        s = int(rng.integers(-5, 5)) * GRID
        span = int(rng.integers(1 if live_only else -3, 60)) * GRID
        e = s + span
        hi = max(s, e)
        n = int(rng.integers(0, min(25, (hi - s) // GRID + 1) + 1))
        times = np.sort(rng.choice(np.arange(s, hi + 1, GRID), size=n, replace=False)) if n else []
        ts += [int(t) for t in times]
        counts.append(len(times))
        a_start.append(s)
        t_end.append(e)
    n = len(ts)
    battery = np.where(rng.random(n) < 0.2, np.nan,
                       rng.choice([0.0, 4.0, 5.0, 6.0, 19.0, 20.0, 21.0, 50.0, 100.0, 12.5], n))
    return i64(ts), battery.astype(np.float64), offsets(counts), i64(a_start), i64(t_end)


SEEDS = range(150)


@pytest.mark.parametrize("seed", SEEDS)
def test_coverage_ends_match_twin(seed):
    rng = np.random.default_rng(seed)
    ts, _, fix_offsets, _, t_end = random_assignments(rng)
    cov_ms = int(rng.choice([0, 10, 30, 50, 200]))
    got = rules.coverage_ends(ts, fix_offsets, t_end, cov_ms)
    assert got.tolist() == naive.coverage_ends(ts, fix_offsets, t_end, cov_ms).tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_contact_gaps_match_twin(seed):
    rng = np.random.default_rng(1000 + seed)
    ts, battery, fix_offsets, a_start, t_end = random_assignments(rng)
    kw = {"gap_ms": int(rng.choice([0, 10, 20, 50])), "battery_critical_pct": float(rng.choice([5.0, 20.0, 0.0]))}
    same(rules.contact_gaps(ts, battery, fix_offsets, a_start, t_end, **kw),
         naive.contact_gaps(ts, battery, fix_offsets, a_start, t_end, **kw))


@pytest.mark.parametrize("seed", SEEDS)
def test_low_battery_mask_matches_twin(seed):
    rng = np.random.default_rng(2000 + seed)
    _, battery, fix_offsets, _, _ = random_assignments(rng)
    low = float(rng.choice([20.0, 5.0, 0.0, 100.0]))
    assert (rules.low_battery_mask(battery, fix_offsets, low).tolist()
            == naive.low_battery_mask(battery, fix_offsets, low).tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_accumulated_battery_matches_twin(seed):
    """Battery gaps as contact gaps make them: sorted, disjoint, often touching."""
    rng = np.random.default_rng(3000 + seed)
    n_a = int(rng.integers(0, 4))
    unit = GRID if rng.random() < 0.5 else int(rng.integers(1, 8))  # on the grid, or on odd instants
    gs, ge, counts, a_start = [], [], [], []
    for _ in range(n_a):
        s = int(rng.integers(0, 10)) * unit
        points = np.cumsum(rng.integers(1, 30, int(rng.integers(1, 14))) * unit) + s
        gaps = [(int(u), int(v)) for u, v in zip(np.concatenate([[s], points[:-1]]), points) if rng.random() < 0.6]
        gs += [g[0] for g in gaps]
        ge += [g[1] for g in gaps]
        counts.append(len(gaps))
        a_start.append(s)
    args = (i64(gs), i64(ge), offsets(counts), i64(a_start))
    kw = {"window_ms": int(rng.choice([45, 50, 100, 300, 1000])),
          "need_ms": int(rng.choice([1, 7, 10, 30, 35, 50, 100, 120, 400]))}
    same(rules.accumulated_battery(*args, **kw), naive.accumulated_battery(*args, **kw))


@pytest.mark.parametrize("seed", SEEDS)
def test_assign_fixes_matches_twin(seed):
    """Rows sorted by (device, ts) with repeats; a device's assignments never overlap but may
    touch or stay open; some devices have none; assignments given in no particular order."""
    rng = np.random.default_rng(4000 + seed)
    n_dev = int(rng.integers(1, 5))
    a_dev, a_start, a_end = [], [], []
    for d in range(n_dev):
        cuts = np.unique(rng.integers(0, 30, int(rng.integers(0, 7)))) * GRID
        for k in range(len(cuts) - 1):
            if rng.random() < 0.7:
                a_dev.append(d)
                a_start.append(int(cuts[k]))
                a_end.append(FAR if k == len(cuts) - 2 and rng.random() < 0.3 else int(cuts[k + 1]))
    perm = rng.permutation(len(a_dev))
    a = [i64(v)[perm] for v in (a_dev, a_start, a_end)]
    n = int(rng.integers(0, 80))
    dev = rng.integers(0, n_dev + 1, n)  # device n_dev has no assignment
    ts = rng.integers(-2, 32, n) * GRID
    order = np.lexsort((ts, dev))
    dev, ts = i64(dev[order]), i64(ts[order])
    assert rules.assign_fixes(dev, ts, *a).tolist() == naive.assign_fixes(dev, ts, *a).tolist()


def random_pairs(rng: np.random.Generator, ts, fix_offsets, a_start, t_end):
    """0-3 zones per live assignment: kind, codes per fix (runs of a code, so episodes happen),
    merged intervals (sorted, not touching; some beyond the assignment, some unbounded)."""
    n_a = fix_offsets.shape[0] - 1
    nf = np.diff(fix_offsets)
    pair_a, kinds, code_off, codes, iv_count, iv_s, iv_e, min_ms = [], [], [], [], [], [], [], []
    for a in range(n_a):
        if t_end[a] <= a_start[a]:
            continue  # the caller excludes them (zone_episodes' precondition)
        for _ in range(int(rng.integers(0, 4))):
            pair_a.append(a)
            kinds.append(int(rng.integers(0, 3)))
            code_off.append(len(codes))
            code = int(rng.integers(0, 3))
            for _ in range(int(nf[a])):
                if rng.random() < 0.35:
                    code = int(rng.choice([OUT, UNCERTAIN, IN], p=[0.45, 0.2, 0.35]))
                codes.append(code)
            if rng.random() < 0.15:
                bounds = [-FAR, FAR]
            else:
                bounds = sorted(rng.choice(np.arange(-8, 70) * GRID, size=2 * int(rng.integers(0, 4)), replace=False))
            iv_s += [int(b) for b in bounds[0::2]]
            iv_e += [int(b) for b in bounds[1::2]]
            iv_count.append(len(bounds) // 2)
            min_ms.append(int(rng.choice([0, 10, 30, 60, 150])))
    return dict(pair_assignment=i64(pair_a), pair_code_offsets=i64(code_off), pair_kind=np.asarray(kinds, np.int8),
                pair_iv_offsets=offsets(iv_count), iv_start_ms=i64(iv_s), iv_end_ms=i64(iv_e),
                pair_min_ms=i64(min_ms)), np.asarray(codes, np.int8)


@pytest.mark.parametrize("seed", range(300))
def test_zone_episodes_match_twin(seed):
    rng = np.random.default_rng(5000 + seed)
    ts, _, fix_offsets, a_start, t_end = random_assignments(rng)
    cov_ms = int(rng.choice([0, 10, 30, 50]))
    kw, codes = random_pairs(rng, ts, fix_offsets, a_start, t_end)
    kw.update(a_start_ms=a_start, t_end_ms=t_end, coverage_ms=cov_ms,
              missed_fraction=float(rng.choice([0.5, 1.0, 0.25, 0.1])))
    cov_end = rules.coverage_ends(ts, fix_offsets, t_end, cov_ms)
    same(rules.zone_episodes(ts, cov_end, codes, fix_offsets, **kw),
         naive.zone_episodes(ts, cov_end, codes, fix_offsets, **kw))


# ====================================================================== schedules across clock changes

def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize("first_day, last_day", [("2024-03-29T12:00", "2024-04-02T12:00"),
                                                 ("2024-10-25T12:00", "2024-10-29T12:00")],
                         ids=["spring-forward", "fall-back"])
@pytest.mark.parametrize("seed", range(8))
def test_zone_episodes_match_twin_across_clock_changes(first_day, last_day, seed):
    """Curfews 19:00-07:00 and 01:00-03:00 in Europe/London (windows of 11 and 13 hours, one
    that the spring change shortens to an hour, one the autumn change stretches to three),
    from the plain schedule twin, with a fix every 5 minutes, real policy durations, and
    long OUT stretches so that windows are missed as well as broken."""
    from reference import merge, window_instances

    rng = np.random.default_rng(6000 + seed)
    a_start, t_end = _ms(first_day), _ms(last_day)
    night = Zone("night", "curfew", None, (0.0, 0.0), 50.0, (Window(tuple(range(7)), 19 * 60, 7 * 60),))
    small_hours = Zone("small", "curfew", None, (0.0, 0.0), 50.0, (Window(tuple(range(7)), 60, 180),))
    ivs = [merge(window_instances(z, a_start, t_end)) for z in (night, small_hours)]
    ivs = [[iv for iv in zone_iv if iv[1] > a_start and iv[0] < t_end] for zone_iv in ivs]
    ts = np.arange(a_start, t_end, 300_000, dtype=np.int64)
    ts = ts[rng.random(ts.size) > 0.1]  # holes: some fixes missing, so runs break on contiguity too
    codes = []
    for _ in ivs:
        code = IN
        for _ in range(ts.size):
            if rng.random() < 0.03:
                code = int(rng.choice([OUT, UNCERTAIN, IN], p=[0.5, 0.1, 0.4]))
            codes.append(code)
    fix_offsets = offsets([ts.size])
    kw = dict(pair_assignment=i64([0, 0]), pair_code_offsets=i64([0, ts.size]),
              pair_kind=np.asarray([rules.KIND_CURFEW] * 2, np.int8), pair_iv_offsets=offsets([len(v) for v in ivs]),
              iv_start_ms=i64([iv[0] for v in ivs for iv in v]), iv_end_ms=i64([iv[1] for v in ivs for iv in v]),
              a_start_ms=i64([a_start]), t_end_ms=i64([t_end]), coverage_ms=300_000,
              pair_min_ms=i64([900_000, 900_000]), missed_fraction=0.5)
    lengths = {iv[1] - iv[0] for iv in ivs[1]}
    assert lengths == {2 * 3_600_000, (1 if first_day.startswith("2024-03") else 3) * 3_600_000}
    cov_end = rules.coverage_ends(ts, fix_offsets, i64([t_end]), 300_000)
    got = rules.zone_episodes(ts, cov_end, np.asarray(codes, np.int8), fix_offsets, **kw)
    same(got, naive.zone_episodes(ts, cov_end, np.asarray(codes, np.int8), fix_offsets, **kw))
