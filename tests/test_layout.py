"""`geofence.layout` against a plain-Python twin written from CONTRACT.md
("Quarantine" reasons 8-10, "Timeline": an assignment's fixes sorted by ts),
on seeded random rows: unknown devices, unsorted blocks, repeated instants,
device swaps, an explicit as_of and a store window; and the same answer with
1 and 2 Numba threads."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from geofence.layout import IGNORED, lay_out_fixes, scatter, scatter_chunk
from trails.quarantine import OK, REASON_CODE

INF = 2**62


def twin(dev, ts, n_dev, a_dev, a_start, a_end, as_of=None, unknown="unassigned", window=(None, None)):
    """Obvious code: per row, in (device, ts, row) order, the first reason that applies."""
    n = len(ts)
    lo = -INF if window[0] is None else window[0]
    hi = INF if window[1] is None else window[1]
    reason = [None] * n
    assign = [-1] * n
    last_kept = {}  # device -> ts of its last kept row
    for i in sorted(range(n), key=lambda i: (dev[i] if 0 <= dev[i] < n_dev else n_dev, ts[i], i)):
        d, t = dev[i], ts[i]
        known = 0 <= d < n_dev
        if not known and unknown == "ignore":
            reason[i] = IGNORED
            continue
        if known and not lo <= t < hi:
            reason[i] = IGNORED
            continue
        if as_of is not None and t > as_of:
            reason[i] = REASON_CODE["after_as_of"]
            continue
        holders = [a for a in range(len(a_dev)) if a_dev[a] == d and a_start[a] <= t < a_end[a]] if known else []
        if not holders:
            reason[i] = REASON_CODE["unassigned"]
            continue
        if last_kept.get(d) == t:
            reason[i] = REASON_CODE["duplicate"]
            continue
        reason[i] = OK
        assign[i] = holders[0]
        last_kept[d] = t
    per_a = [[] for _ in a_dev]
    for i in range(n):
        if assign[i] >= 0:
            per_a[assign[i]].append(i)
    sel = [i for rows in per_a for i in sorted(rows, key=lambda i: (ts[i], i))]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in per_a])])
    kept_ts = [ts[i] for i in range(n) if reason[i] == OK]
    return np.array(reason, np.int8), np.array(sel, np.int64), offsets, (max(kept_ts) if kept_ts else None)


def random_rows(seed):
    rng = np.random.default_rng(seed)
    n_dev = int(rng.integers(1, 6))
    n = int(rng.integers(0, 400))
    dev = rng.integers(-1, n_dev + 1, n)  # -1 and n_dev: devices nobody wears
    base = 1_700_000_000_000
    ts = base + rng.integers(0, 50, n) * 60_000
    if rng.random() < 0.5:  # a supplier file sorted by device and time
        order = np.lexsort((ts, dev))
        dev, ts = dev[order], ts[order]
    a_dev, a_start, a_end = [], [], []
    for d in range(n_dev):
        cuts = np.sort(rng.choice(np.arange(-5, 55), size=int(rng.integers(0, 4)) * 2, replace=False))
        for k in range(0, len(cuts), 2):  # non-overlapping assignments of one device
            a_dev.append(d)
            a_start.append(base + int(cuts[k]) * 60_000)
            a_end.append(INF if rng.random() < 0.2 and k == len(cuts) - 2 else base + int(cuts[k + 1]) * 60_000)
    perm = rng.permutation(len(a_dev))  # assignments in no particular order
    a = [np.array(v, np.int64)[perm] if v else np.zeros(0, np.int64) for v in (a_dev, a_start, a_end)]
    as_of = int(base + rng.integers(0, 60) * 60_000) if rng.random() < 0.4 else None
    window = (int(base + 10 * 60_000), int(base + 40 * 60_000)) if rng.random() < 0.3 else (None, None)
    unknown = "ignore" if rng.random() < 0.3 else "unassigned"
    return dev, ts, n_dev, a[0], a[1], a[2], as_of, unknown, window


@pytest.mark.parametrize("seed", range(200))
def test_layout_matches_twin(seed):
    dev, ts, n_dev, a_dev, a_start, a_end, as_of, unknown, window = random_rows(seed)
    want_reason, want_sel, want_off, want_latest = twin(dev.tolist(), ts.tolist(), n_dev, a_dev.tolist(),
                                                        a_start.tolist(), a_end.tolist(), as_of, unknown, window)
    lay = lay_out_fixes(dev.astype(np.int32), ts, n_dev, a_dev, a_start, a_end, as_of_ms=as_of,
                        unknown_device=unknown, window=window)
    assert lay.reason.tolist() == want_reason.tolist()
    assert lay.fix_offsets.tolist() == want_off.tolist()
    assert lay.latest_ms == want_latest
    sel = np.empty(int(lay.fix_offsets[-1]), np.int64)
    kept = np.flatnonzero(lay.dest >= 0)
    sel[lay.dest[kept]] = kept
    assert sel.tolist() == want_sel.tolist()
    assert np.all(lay.dest[lay.reason != OK] == -1)


@pytest.mark.parametrize("seed", range(5))
def test_layout_is_the_same_with_one_or_two_threads(seed):
    rng = np.random.default_rng(1000 + seed)
    n, n_dev = 300_000, 500
    dev = rng.integers(-1, n_dev, n).astype(np.int32)
    ts = 1_700_000_000_000 + rng.integers(0, 86_400, n) * 1000
    a_dev = np.arange(n_dev, dtype=np.int64)
    a_start = np.full(n_dev, 1_700_000_000_000 + 3_600_000, np.int64)
    a_end = np.full(n_dev, INF, np.int64)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            lay = lay_out_fixes(dev, ts, n_dev, a_dev, a_start, a_end)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append((lay.reason.tobytes(), lay.dest.tobytes(), lay.fix_offsets.tobytes(), lay.latest_ms))
    assert results[0] == results[1]


def test_scatter_and_chunks_place_kept_rows():
    rng = np.random.default_rng(7)
    src = rng.normal(size=1000)
    src[rng.random(1000) < 0.1] = np.nan
    dest = np.full(1000, -1, np.int32)
    keep = np.sort(rng.choice(1000, 600, replace=False))
    dest[keep] = rng.permutation(600)
    want = np.empty(600)
    want[dest[keep]] = src[keep]
    out = np.empty(600)
    assert np.array_equal(scatter(src, dest, out), want, equal_nan=True)
    filled = np.where(np.isnan(want), 7.5, want)
    assert np.array_equal(scatter(src, dest, np.empty(600), fill_nan=7.5), filled)
    out2 = np.empty(600)
    for a in range(0, 1000, 128):
        scatter_chunk(src[a:a + 128], dest, a, out2, fill_nan=7.5)
    assert np.array_equal(out2, filled)


def test_bad_unknown_device_mode_is_refused():
    with pytest.raises(ValueError, match="unknown_device"):
        lay_out_fixes(np.zeros(1, np.int32), np.zeros(1, np.int64), 1, np.zeros(1, np.int64),
                      np.zeros(1, np.int64), np.ones(1, np.int64), unknown_device="drop")
