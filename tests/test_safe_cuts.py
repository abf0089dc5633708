"""`rules.safe_cuts` against its plain-Python twin on seeded random layouts."""
from __future__ import annotations

import numpy as np
import pytest

from geofence import rules

OUT, UNCERTAIN, IN = 0, 1, 2


def twin(ts, battery, fix_offsets, t_end, zone_offsets, codes, pair_code_offsets, pair_kind, iv_off, iv_s, iv_e):
    out = []
    for a in range(len(fix_offsets) - 1):
        f0, f1 = fix_offsets[a], fix_offsets[a + 1]
        best = -1
        for j in range(f1 - f0):
            t = ts[f0 + j]
            if not t < t_end[a] or np.isnan(battery[f0 + j]):
                continue
            ok = True
            for p in range(zone_offsets[a], zone_offsets[a + 1]):
                c = codes[pair_code_offsets[p] + j]
                good = c == (OUT if pair_kind[p] == rules.KIND_EXCLUSION else IN)
                inside = any(iv_s[m] < t < iv_e[m] for m in range(iv_off[p], iv_off[p + 1]))
                ok &= good or not inside
            if ok:
                best = t
        out.append(best)
    return out


@pytest.mark.parametrize("seed", range(200))
def test_safe_cuts_match_twin(seed):
    rng = np.random.default_rng(seed)
    n_a = int(rng.integers(1, 6))
    nf = rng.integers(0, 30, n_a)
    fix_offsets = np.concatenate([[0], np.cumsum(nf)]).astype(np.int64)
    ts = np.concatenate([np.sort(rng.choice(1000, k, replace=False)) for k in nf]).astype(np.int64)
    battery = np.where(rng.random(ts.size) < 0.2, np.nan, rng.uniform(0, 100, ts.size))
    t_end = rng.integers(500, 1100, n_a).astype(np.int64)
    nz = rng.integers(0, 3, n_a)
    zone_offsets = np.concatenate([[0], np.cumsum(nz)]).astype(np.int64)
    n_p = int(zone_offsets[-1])
    pair_a = np.repeat(np.arange(n_a), nz)
    pair_kind = rng.integers(0, 3, n_p).astype(np.int8)
    pair_code_offsets = np.zeros(n_p, np.int64)
    codes = []
    for p in range(n_p):
        pair_code_offsets[p] = len(codes)
        codes.extend(rng.integers(0, 3, nf[pair_a[p]]).tolist())
    codes = np.asarray(codes, np.int8)
    iv_s, iv_e, counts = [], [], []
    for p in range(n_p):
        cuts = np.sort(rng.choice(np.arange(0, 1100, 10), size=2 * int(rng.integers(0, 4)), replace=False))
        iv_s += cuts[0::2].tolist()
        iv_e += cuts[1::2].tolist()
        counts.append(len(cuts) // 2)
    iv_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    args = (ts, battery, fix_offsets, t_end, zone_offsets, codes, pair_code_offsets, pair_kind, iv_off,
            np.asarray(iv_s, np.int64), np.asarray(iv_e, np.int64))
    assert rules.safe_cuts(*args).tolist() == twin(*args)
