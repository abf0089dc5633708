"""Numba kernels that lay fix rows out for the rules: grouped by device and
ordered by time, screened for the quarantine reasons decided here
(`after_as_of`, `unassigned`, `duplicate`), and placed per assignment (CSR
``fix_offsets``) by a destination index `dest` that columns are scattered with.

This is the one place detection decides reasons 8-10, for every kind of row:
fixes (`lay_out_fixes`), events (the same, with the event kind as an extra
key for duplicates: `lay_out_fixes(..., extra_key=...)`), the assignment that
holds each row of an incremental batch (`assign_rows`) and repeated rows in
the incremental detector's state (`first_rows`). (First-arrival deduplication
against what ingest and intake accepted before is `trails.keys`.)

Why not a sort: ``np.lexsort`` over (device, ts, row) is O(n log n) with
three keys and was the largest single cost of detection. Device codes are
small integers, so a stable counting sort groups the rows by device in O(n);
within a device, rows are almost always in time order already (store files
are sorted by (device, ts), and supplier files usually are), so each device's
block is only checked, and sorted (stable, by ts) only when it is not.
Stability keeps rows of equal time in input order, so "the first row wins"
for duplicates exactly as CONTRACT.md ("Quarantine", reason 10) says, when
input order is row order.

Every parallel loop writes only what its own chunk or device owns (a device's
rows and its assignments' counters), so results never depend on the number
of threads. The plain-Python twin is `twin` in `tests/test_layout.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trails.jit import njit_parallel, njit_serial, prange
from trails.quarantine import OK, REASON_CODE
from trails.timestamps import NEG_INF_MS, POS_INF_MS

__all__ = ["IGNORED", "FixLayout", "lay_out_fixes", "assign_rows", "first_rows", "scatter", "scatter_chunk",
           "index_dtype"]

#: Reason code of a row outside what was asked for (store mode: a device not
#: in the subjects, a time outside --from/--to). Not kept, not quarantined.
IGNORED = 126
_AFTER_AS_OF = REASON_CODE["after_as_of"]
_UNASSIGNED = REASON_CODE["unassigned"]
_DUPLICATE = REASON_CODE["duplicate"]


@njit_serial
def _same_extra_before(perm, ts, extra, block_start, k):
    """Whether a row before position `k` of its device block (from `block_start`), at
    the same instant, has the same extra key as row ``perm[k]`` (runs of one instant are short)."""
    i = perm[k]
    k2 = k - 1
    while k2 >= block_start and ts[perm[k2]] == ts[i]:
        if extra[perm[k2]] == extra[i]:
            return True
        k2 -= 1
    return False


@njit_parallel
def _layout(dev, ts, extra, n_dev, n_chunks, da_off, a_order, a_start, a_end, as_of, has_as_of,
            lo_ms, hi_ms, unknown_code, codes, perm, reason, dest, fix_offsets, dev_max, owner):
    """All of `lay_out_fixes` in one compiled function (one cache entry to load).

    `codes` = (after_as_of, unassigned, duplicate) reason codes, and `lo_ms`
    (``NEG_INF_MS`` when unbounded), passed in rather than read as globals:
    Numba freezes globals into its on-disk cache, which is not invalidated when
    `trails.quarantine.REASONS` changes. `extra`: per row, a key that must also
    be equal for a duplicate (an event's kind), or empty (fixes). `owner`: when
    not empty, filled with the assignment holding each row's (device, instant)
    that is neither ignored nor after as_of (duplicates included), else -1.

    1. stable counting sort of row indices by device into `perm` (chunked:
       chunk c writes its rows of device d from its own cursor);
    2. each device's block ordered by ts (checked; stable-sorted if needed);
    3. per device, in time order: ignored (outside [lo_ms, hi_ms)),
       after_as_of, unassigned, duplicate (same instant, and same `extra`, as
       an earlier kept row: all rows of one device and instant share reasons
       8-9, so the earlier rows of that instant are kept or duplicates), else
       kept by the device's assignment holding the instant (one device's
       assignments do not overlap; visited in start order);
    4. fix_offsets from the kept counts; dest[i] = CSR position of kept row i, else -1.
    """
    n = ts.shape[0]
    n_a = a_start.shape[0]
    has_extra = extra.shape[0] == n and n > 0
    has_owner = owner.shape[0] == n and n > 0
    step = (n + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, n_dev + 1), np.int64)
    for c in prange(n_chunks):
        for i in range(c * step, min(n, (c + 1) * step)):
            d = dev[i]
            if d < 0 or d >= n_dev:
                d = n_dev
            counts[c, d] += 1
    dev_off = np.zeros(n_dev + 2, np.int64)
    cursor = np.empty((n_chunks, n_dev + 1), np.int64)
    for d in range(n_dev + 1):
        at = dev_off[d]
        for c in range(n_chunks):
            cursor[c, d] = at
            at += counts[c, d]
        dev_off[d + 1] = at
    for c in prange(n_chunks):
        for i in range(c * step, min(n, (c + 1) * step)):
            d = dev[i]
            if d < 0 or d >= n_dev:
                d = n_dev
            perm[cursor[c, d]] = i
            cursor[c, d] += 1

    for d in prange(n_dev):
        lo = dev_off[d]
        hi = dev_off[d + 1]
        ordered = True
        for k in range(lo + 1, hi):
            if ts[perm[k]] < ts[perm[k - 1]]:
                ordered = False
                break
        if not ordered:
            block = perm[lo:hi].copy()
            keys = np.empty(hi - lo, np.int64)
            for k in range(hi - lo):
                keys[k] = ts[block[k]]
            order = np.argsort(keys, kind="mergesort")
            for k in range(hi - lo):
                perm[lo + k] = block[order[k]]

    after_code, unassigned_code, duplicate_code = codes[0], codes[1], codes[2]
    a_count = np.zeros(n_a, np.int64)
    for d in prange(n_dev):
        j = da_off[d]
        j1 = da_off[d + 1]
        prev_kept = False
        prev_t = lo_ms
        mx = lo_ms - 1  # below every row kept: "none kept"
        for k in range(dev_off[d], dev_off[d + 1]):
            i = perm[k]
            t = ts[i]
            if has_owner:
                owner[i] = -1
            if t < lo_ms or t >= hi_ms:
                reason[i] = IGNORED
                continue
            if has_as_of and t > as_of:
                reason[i] = after_code
                continue
            while j < j1 and a_end[a_order[j]] <= t:
                j += 1
            if j < j1 and a_start[a_order[j]] <= t:
                if has_owner:
                    owner[i] = a_order[j]
                dup = prev_kept and prev_t == t
                if dup and has_extra:
                    dup = _same_extra_before(perm, ts, extra, dev_off[d], k)
                if dup:
                    reason[i] = duplicate_code
                else:
                    reason[i] = OK
                    a_count[a_order[j]] += 1
                    prev_kept = True
                    prev_t = t
                    if t > mx:
                        mx = t
            else:
                reason[i] = unassigned_code
        dev_max[d] = mx
    for k in prange(dev_off[n_dev], dev_off[n_dev + 1]):  # rows of no known device
        i = perm[k]
        if unknown_code != IGNORED and has_as_of and ts[i] > as_of:
            reason[i] = after_code
        else:
            reason[i] = unknown_code
        dest[i] = -1
        if has_owner:
            owner[i] = -1

    fix_offsets[0] = 0
    for a in range(n_a):
        fix_offsets[a + 1] = fix_offsets[a] + a_count[a]
    for d in prange(n_dev):
        j = da_off[d]
        j1 = da_off[d + 1]
        for k in range(dev_off[d], dev_off[d + 1]):
            i = perm[k]
            if reason[i] != OK:
                dest[i] = -1
                continue
            t = ts[i]
            while a_end[a_order[j]] <= t:  # a kept row always has its assignment ahead
                j += 1
            a = a_order[j]
            dest[i] = fix_offsets[a + 1] - a_count[a]
            a_count[a] -= 1  # counts down: kept rows of a take positions in time order


@njit_parallel
def _scatter_par(src, dest, fill, has_fill, out):
    for i in prange(src.shape[0]):
        p = dest[i]
        if p >= 0:
            v = src[i]
            if has_fill and np.isnan(v):
                v = fill
            out[p] = v


@njit_serial
def _scatter_chunk(src, dest, offset, fill, has_fill, out):
    """One chunk of rows [offset, offset + len(src)): serial, for reader threads."""
    for r in range(src.shape[0]):
        p = dest[offset + r]
        if p >= 0:
            v = src[r]
            if has_fill and np.isnan(v):
                v = fill
            out[p] = v


@dataclass(frozen=True)
class FixLayout:
    """Where each kept fix goes, and why each other row was set aside.

    dest: int32/int64 per input row: its position among the kept fixes,
    assignment by assignment (CSR by `fix_offsets`), in time order within an
    assignment; -1 for a row not kept. Columns are scattered with it
    (`scatter`), so a column is never held twice.
    fix_offsets: int64 (n_assignments + 1,). reason: int8 per input row:
    `trails.quarantine.OK` (kept), a reason code, or `IGNORED`.
    latest_ms: largest ts of a kept fix, or None when none is kept.
    """

    dest: np.ndarray
    fix_offsets: np.ndarray
    reason: np.ndarray
    latest_ms: int | None

    def assignment_of(self, positions: np.ndarray) -> np.ndarray:
        """Assignment index of CSR positions (a few: searchsorted, not a full array)."""
        return np.searchsorted(self.fix_offsets, positions, side="right") - 1


def _chunks(n: int) -> int:
    import numba

    return max(1, min(64, 4 * numba.get_num_threads(), (n + 65535) // 65536))


def index_dtype(n: int):
    """int32 row indices while they fit (half the memory traffic), else int64."""
    return np.int32 if n < 2**31 - 1 else np.int64


def lay_out_fixes(dev_code: np.ndarray, ts_ms: np.ndarray, n_devices: int,
                  a_dev: np.ndarray, a_start: np.ndarray, a_end: np.ndarray, *,
                  as_of_ms: int | None = None, unknown_device: str = "unassigned",
                  window: tuple[int | None, int | None] = (None, None),
                  extra_key: np.ndarray | None = None) -> FixLayout:
    """Group, order, screen and place fix (or event) rows for detection.

    Parameters
    ----------
    dev_code : int (n,), each row's device as an index into the assignments'
        device list (``0 <= code < n_devices``), or -1 for any other device.
    ts_ms : int64 (n,).
    a_dev, a_start, a_end : per assignment, its device code and [start, end)
        (an open end as `trails.timestamps.POS_INF_MS`). One device's
        assignments must not overlap (SUBJECTS.json validation guarantees it).
    as_of_ms : an explicit --as-of (rows after it are ``after_as_of``).
    unknown_device : ``"unassigned"`` (file mode: quarantined) or
        ``"ignore"`` (store mode: the store holds other wearers too).
    window : store mode's [--from, --to): rows outside are ignored.
    extra_key : int (n,) or None: a row is a duplicate only if this key is
        equal too (events: a code of the event kind; CONTRACT.md "Quarantine" 10).

    Rows of equal device and time keep their input order, so the first is
    kept and later ones are ``duplicate``: input order must be row order.
    """
    return _lay_out(dev_code, ts_ms, n_devices, a_dev, a_start, a_end, as_of_ms=as_of_ms,
                    unknown_device=unknown_device, window=window, extra_key=extra_key)[0]


def assign_rows(dev_code: np.ndarray, ts_ms: np.ndarray, n_devices: int,
                a_dev: np.ndarray, a_start: np.ndarray, a_end: np.ndarray) -> np.ndarray:
    """int64 index of the assignment holding each row's (device, instant), -1 for none
    (the row is ``unassigned``): reason 9 as `lay_out_fixes` decides it, rows in any order.
    Arguments as for `lay_out_fixes`."""
    return _lay_out(dev_code, ts_ms, n_devices, a_dev, a_start, a_end, want_owner=True)[1]


def first_rows(group: np.ndarray, ts_ms: np.ndarray, n_groups: int, *,
               extra_key: np.ndarray | None = None) -> np.ndarray:
    """True for each row that is the first (in input order) of its (group, instant[, extra key]):
    the duplicate rule of `lay_out_fixes` with every instant of a group assigned.
    `group`: int (n,) in ``0 .. n_groups - 1``."""
    groups = np.arange(int(n_groups), dtype=np.int64)
    lay = _lay_out(group, ts_ms, n_groups, groups, np.full(groups.size, NEG_INF_MS, np.int64),
                   np.full(groups.size, POS_INF_MS, np.int64), extra_key=extra_key)[0]
    return lay.reason == OK


def _lay_out(dev_code, ts_ms, n_devices, a_dev, a_start, a_end, *, as_of_ms: int | None = None,
             unknown_device: str = "unassigned", window: tuple[int | None, int | None] = (None, None),
             extra_key: np.ndarray | None = None, want_owner: bool = False) -> tuple[FixLayout, np.ndarray | None]:
    """Check and coerce the inputs, run `_layout`: (layout, owner per row if `want_owner`)."""
    if unknown_device not in ("unassigned", "ignore"):
        raise ValueError(f"unknown_device must be 'unassigned' or 'ignore', got {unknown_device!r}")
    dev = np.ascontiguousarray(dev_code)
    if dev.dtype not in (np.int32, np.int64):
        dev = dev.astype(np.int64)
    ts = np.ascontiguousarray(ts_ms, np.int64)
    n = ts.shape[0]
    if dev.shape[0] != n:
        raise ValueError(f"{dev.shape[0]} device codes but {n} instants")
    extra = np.zeros(0, np.int64) if extra_key is None else np.ascontiguousarray(extra_key, np.int64)
    if extra_key is not None and extra.shape[0] != n:
        raise ValueError(f"{extra.shape[0]} extra keys but {n} instants")
    n_dev = int(n_devices)
    a_dev = np.ascontiguousarray(a_dev, np.int64)
    n_a = a_dev.shape[0]
    itype = index_dtype(n)
    perm = np.empty(n, itype)
    dest = np.empty(n, itype)
    reason = np.empty(n, np.int8)
    fix_offsets = np.zeros(n_a + 1, np.int64)
    dev_max = np.empty(n_dev, np.int64)
    owner = np.empty(n if want_owner else 0, np.int64)
    a_order = np.lexsort((a_start, a_dev)).astype(np.int64)
    da_off = np.zeros(n_dev + 1, np.int64)
    np.cumsum(np.bincount(a_dev, minlength=n_dev)[:n_dev], out=da_off[1:])
    lo = NEG_INF_MS if window[0] is None else int(window[0])
    hi = POS_INF_MS if window[1] is None else int(window[1])
    _layout(dev, ts, extra, n_dev, _chunks(n), da_off, a_order, np.ascontiguousarray(a_start, np.int64),
            np.ascontiguousarray(a_end, np.int64), np.int64(0 if as_of_ms is None else as_of_ms),
            as_of_ms is not None, np.int64(lo), np.int64(hi),
            np.int8(IGNORED if unknown_device == "ignore" else _UNASSIGNED),
            np.array([_AFTER_AS_OF, _UNASSIGNED, _DUPLICATE], np.int8),
            perm, reason, dest, fix_offsets, dev_max, owner)
    del perm
    latest = int(dev_max.max()) if n_dev and dev_max.max() >= lo else None  # below lo: none kept
    return FixLayout(dest=dest, fix_offsets=fix_offsets, reason=reason, latest_ms=latest), \
        (owner if want_owner else None)


def scatter(src: np.ndarray, dest: np.ndarray, out: np.ndarray, *, fill_nan: float | None = None) -> np.ndarray:
    """``out[dest[i]] = src[i]`` for every ``dest[i] >= 0``, in parallel (NaN -> `fill_nan` if given)."""
    src = np.ascontiguousarray(src)
    has_fill = fill_nan is not None and src.dtype.kind == "f"
    _scatter_par(src, dest, out.dtype.type(fill_nan if has_fill else 0), has_fill, out)
    return out


def scatter_chunk(src: np.ndarray, dest: np.ndarray, offset: int, out: np.ndarray, *,
                  fill_nan: float | None = None) -> None:
    """`scatter` of rows ``offset .. offset + len(src)`` (serial, releases the GIL)."""
    src = np.ascontiguousarray(src)
    has_fill = fill_nan is not None and src.dtype.kind == "f"
    _scatter_chunk(src, dest, np.int64(offset), out.dtype.type(fill_nan if has_fill else 0), has_fill, out)
