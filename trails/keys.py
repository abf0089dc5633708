"""First-arrival deduplication: which keys have been accepted already, so that
the first copy of a fix (or event) to arrive is kept and later copies are
``duplicate`` (CONTRACT.md, "Quarantine", reason 10, in arrival order).

This is the one implementation for both ways rows arrive: `trails.ingest`
(files, batch by batch, against the Parquet store) and continuous intake
(`api.service.intake`, against the store and the intake log).

A fix's key is (device, instant); an event's is (device, instant, kind): its
*name* is then ``device + "\\x00" + kind`` (`event_names`; a device id never
holds a control character, `trails.validate`). A `KeySet` turns each name into
a small integer id (in order of first appearance) and each key into one int64,
``id << 27 | ms of the UTC day`` (a day has 86,400,000 ms < 2**27), grouped by
UTC day. A day holds its accepted keys as a few sorted runs of decreasing size
(the keys stored before, loaded once by `loader` when the day is first
touched, then the keys added since; a new run merges with the runs not more
than twice its size, so there are O(log n) runs and each key is copied
O(log n) times). A lookup is a binary search per run, whole-array NumPy work;
memory is 8 bytes a key.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.timestamps import DAY_MS

__all__ = ["KeySet", "KeyIndex", "DayLoader", "as_strings", "event_names"]

_MS_BITS = 27

#: loader(day) -> (names, ts_ms) of the keys already accepted for that UTC day
#: (day = days since 1970-01-01; names as `KeySet` takes them).
DayLoader = Callable[[int], tuple[Iterable[str], np.ndarray]]


def as_strings(values) -> pa.Array:
    """Strings as one Arrow string array (they may come as one, chunked, or as a list)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())


def event_names(devices, kinds) -> pa.Array:
    """The `KeySet` name of each event: its device and its kind, joined by NUL."""
    return pc.binary_join_element_wise(as_strings(devices), as_strings(kinds), "\x00")


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """`keys` sorted, each once (a sort and a mask: NumPy's `np.unique` hashes first, and is slower here)."""
    s = np.sort(keys)
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if s.size else s


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted arrays as one sorted array (NumPy's stable sort merges the two runs in linear time)."""
    return np.sort(np.concatenate([a, b]), kind="stable")


class _Day:
    """One UTC day's accepted keys: sorted int64 runs, largest first."""

    __slots__ = ("runs",)

    def __init__(self, base: np.ndarray) -> None:
        self.runs: list[np.ndarray] = [base] if base.size else []

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """True for each of `keys` that is in a run."""
        hit = np.zeros(keys.shape[0], bool)
        if not keys.size:
            return hit
        k_min, k_max = keys.min(), keys.max()
        for run in self.runs:
            # only keys inside the run's range can hit, and only that window of it
            lo = np.searchsorted(run, k_min, side="left")
            window = run[lo:np.searchsorted(run, k_max, side="right")]
            if window.size:
                pos = np.searchsorted(window, keys)
                ok = pos < window.size
                hit[ok] |= window[pos[ok]] == keys[ok]
        return hit

    def add(self, keys: np.ndarray) -> None:
        """Add sorted keys (none of them held yet)."""
        run = keys
        while self.runs and self.runs[-1].size <= 2 * run.size:
            run = _merge(self.runs.pop(), run)
        self.runs.append(run)


def _group_order(day: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Stable order by (day, key): equal keys adjacent, in input order."""
    if day.size == 0:
        return np.zeros(0, np.int64)
    d0 = int(day.min())
    day_bits = (int(day.max()) - d0).bit_length()
    key_bits = int(key.max()).bit_length()
    if day_bits + key_bits <= 62:
        return np.argsort(((day - d0) << key_bits) | key, kind="stable")
    return np.lexsort((key, day))


class KeySet:
    """Accepted keys (name, instant) by UTC day: the first-arrival rule.

    Parameters
    ----------
    loader : called once per day, the first time that day is looked up or
        added to, for the keys accepted before this set existed (e.g. the
        Parquet store and the intake log). None: nothing was accepted before.
    """

    def __init__(self, loader: DayLoader | None = None) -> None:
        self._loader = loader
        self._days: dict[int, _Day] = {}
        self._known = pa.array([], pa.string())  # every name seen; its position is its id

    def _ids(self, names: pa.Array) -> np.ndarray:
        """Stable integer id of each name (new names get the next ids, in order of appearance)."""
        idx = pc.index_in(names, value_set=self._known)
        if idx.null_count:
            self._known = pa.concat_arrays([self._known, pc.unique(names.filter(pc.is_null(idx)))])
            idx = pc.index_in(names, value_set=self._known)
        return idx.to_numpy(zero_copy_only=False).astype(np.int64)

    def keys(self, names, ts_ms) -> tuple[np.ndarray, np.ndarray]:
        """(UTC day, int64 key) of each row: what `first_keys` and `add_keys` take."""
        ts = np.asarray(ts_ms, np.int64)
        names = as_strings(names)
        if len(names) != ts.shape[0]:
            raise ValueError(f"{len(names)} names but {ts.shape[0]} instants")
        if ts.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        day = ts // DAY_MS
        return day, (self._ids(names) << _MS_BITS) | (ts - day * DAY_MS)

    def _day(self, day: int, loader: DayLoader | None) -> _Day:
        d = self._days.get(day)
        if d is None:
            base = np.zeros(0, np.int64)
            loader = loader or self._loader
            if loader is not None:
                names, ts = loader(day)
                _, keys = self.keys(names, ts)
                base = _sorted_unique(keys)
            d = self._days[day] = _Day(base)
        return d

    def first_keys(self, day: np.ndarray, key: np.ndarray, *, order: np.ndarray | None = None,
                   loader: DayLoader | None = None) -> np.ndarray:
        """True for each row whose key is not accepted yet and is the first of its key
        in this batch (input positions). Adds nothing.

        `order` may pass a permutation the caller has anyway (ingest sorts by
        day, device and time for its files): rows must be grouped by day in it,
        with equal keys adjacent and in input order. Default: sorted by (day, key),
        stable. `loader` overrides the constructor's for days not seen yet (e.g.
        to read through the caller's own database session).
        """
        n = key.shape[0]
        if n == 0:
            return np.zeros(0, bool)
        if order is None:
            order = _group_order(day, key)
        ds, ks = day[order], key[order]
        later = np.zeros(n, bool)  # in `order`: a copy of the row before it
        later[1:] = (ks[1:] == ks[:-1]) & (ds[1:] == ds[:-1])
        starts = np.flatnonzero(np.concatenate([[True], ds[1:] != ds[:-1]]))
        for a, b in zip(starts.tolist(), np.append(starts[1:], n).tolist()):
            later[a:b] |= self._day(int(ds[a]), loader).contains(ks[a:b])
        first = np.empty(n, bool)
        first[order] = ~later
        return first

    def add_keys(self, day: np.ndarray, key: np.ndarray, *, loader: DayLoader | None = None) -> None:
        """Record accepted keys (call once they are kept: `first_keys` said so)."""
        if key.shape[0] == 0:
            return
        if day[0] == day[-1] and (day == day[0]).all():
            groups = [(int(day[0]), key)]
        else:
            by_day = np.argsort(day, kind="stable")
            ds, ks = day[by_day], key[by_day]
            starts = np.flatnonzero(np.concatenate([[True], ds[1:] != ds[:-1]]))
            groups = [(int(ds[a]), ks[a:b]) for a, b in zip(starts.tolist(), np.append(starts[1:], ds.size).tolist())]
        for d, ks in groups:
            self._day(d, loader).add(_sorted_unique(ks))

    def first(self, names, ts_ms, *, loader: DayLoader | None = None) -> np.ndarray:
        """`first_keys` of (name, instant) rows."""
        day, key = self.keys(names, ts_ms)
        return self.first_keys(day, key, loader=loader)

    def add(self, names, ts_ms, *, loader: DayLoader | None = None) -> None:
        """`add_keys` of (name, instant) rows."""
        day, key = self.keys(names, ts_ms)
        self.add_keys(day, key, loader=loader)


class KeyIndex:
    """Accepted fix keys and event keys of a running service (`api.service.stream`).

    Parameters
    ----------
    loader : the fixes' `DayLoader` (device ids, ts_ms); events are loaded
        once, up front (`load_events`).
    """

    def __init__(self, loader: DayLoader | None = None) -> None:
        self._fixes = KeySet(loader)
        self._events = KeySet()

    def first_copies(self, devices, ts_ms, *, loader: DayLoader | None = None) -> np.ndarray:
        """True for each fix that is not accepted yet and is the first of its (device,
        instant) in this batch (input positions). Adds nothing."""
        return self._fixes.first(devices, ts_ms, loader=loader)

    def add(self, devices, ts_ms, *, loader: DayLoader | None = None) -> None:
        """Record accepted fixes (call after they are durable)."""
        self._fixes.add(devices, ts_ms, loader=loader)

    def load_events(self, keys: Iterable[tuple[str, int, str]]) -> None:
        """Event keys accepted before this index existed: (device, ts_ms, kind) tuples."""
        rows = list(keys)
        if rows:
            devices, ts, kinds = zip(*rows)
            self.add_events(devices, ts, kinds)

    def first_events(self, devices, ts_ms, kinds) -> np.ndarray:
        """Like `first_copies` for events, keyed by (device, instant, kind)."""
        return self._events.first(event_names(devices, kinds), np.asarray(ts_ms, np.int64))

    def add_events(self, devices, ts_ms, kinds) -> None:
        """Record accepted events."""
        if len(devices):
            self._events.add(event_names(devices, kinds), np.asarray(ts_ms, np.int64))
