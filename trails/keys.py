"""Which (device, instant) keys have been accepted already: the first copy of a
fix to arrive is kept, later copies are ``duplicate`` (CONTRACT.md,
"Quarantine", reason 10, in arrival order).

Keys are int64 ``device number << 27 | ms of the UTC day`` (a day has
86,400,000 ms < 2**27), grouped by day: each day holds a sorted array of
keys loaded once (from the store, by `loader`) plus the keys added since, so
a lookup is a binary search and a set probe, and memory is 8 bytes a key.
Events are few: their keys (device, instant, kind) live in a plain set.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KeyIndex", "DAY_MS", "as_strings"]

DAY_MS = 86_400_000
_MS_BITS = 27

#: loader(day) -> (device ids, ts_ms) of the fixes already stored for that UTC day.
DayLoader = Callable[[int], tuple[Iterable[str], np.ndarray]]


class _Day:
    __slots__ = ("base", "extra")

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.extra: set[int] = set()

    def contains(self, keys: np.ndarray) -> np.ndarray:
        hit = np.zeros(keys.shape[0], bool)
        if self.base.size:
            pos = np.searchsorted(self.base, keys)
            ok = pos < self.base.size
            hit[ok] = self.base[pos[ok]] == keys[ok]
        if self.extra:
            extra = self.extra
            hit |= np.fromiter((int(k) in extra for k in keys.tolist()), bool, keys.shape[0])
        return hit

    def add(self, keys: np.ndarray) -> None:
        self.extra.update(keys.tolist())
        if len(self.extra) > 200_000:  # fold into the sorted array now and then
            self.base = np.union1d(self.base, np.fromiter(self.extra, np.int64, len(self.extra)))
            self.extra = set()


def as_strings(devices) -> pa.Array:
    """Device ids as one Arrow string array (they may come as one, chunked, or as a list)."""
    if isinstance(devices, pa.ChunkedArray):
        return devices.combine_chunks()
    return devices if isinstance(devices, pa.Array) else pa.array(list(devices), pa.string())


class KeyIndex:
    """Accepted fix keys by day, and accepted event keys.

    Parameters
    ----------
    loader : called once per day the first time that day is looked up, to
        load the keys stored before this index existed (e.g. the Parquet
        store and the intake log). None: nothing was stored before.
    """

    def __init__(self, loader: DayLoader | None = None) -> None:
        self._loader = loader
        self._days: dict[int, _Day] = {}
        self._known = pa.array([], pa.string())  # every device seen; its position is its id
        self._events: set[tuple[str, int, str]] = set()

    def _gid(self, devices) -> np.ndarray:
        """Stable integer id of each row's device (new devices get the next ids)."""
        if not len(devices):
            return np.zeros(0, np.int64)
        arr = as_strings(devices)
        idx = pc.index_in(arr, value_set=self._known)
        if idx.null_count:  # devices not seen before get the next ids, in order of appearance
            self._known = pa.concat_arrays([self._known, pc.unique(arr.filter(pc.is_null(idx)))])
            idx = pc.index_in(arr, value_set=self._known)
        return idx.to_numpy(zero_copy_only=False).astype(np.int64)

    def _keys(self, devices, ts_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(ts_ms, np.int64)
        day = ts // DAY_MS
        return day, (self._gid(devices) << _MS_BITS) | (ts - day * DAY_MS)

    def _day(self, day: int, loader: DayLoader | None = None) -> _Day:
        d = self._days.get(day)
        if d is None:
            base = np.zeros(0, np.int64)
            loader = loader or self._loader
            if loader is not None:
                devs, ts = loader(day)
                ts = np.asarray(ts, np.int64)
                if ts.size:
                    _, keys = self._keys(devs, ts)
                    base = np.unique(keys)
            d = self._days[day] = _Day(base)
        return d

    def first_copies(self, devices, ts_ms: np.ndarray, *, loader: DayLoader | None = None) -> np.ndarray:
        """True for each fix that is not already accepted and is the first of its
        key in this batch (positions in input order). Adds nothing. `loader`
        overrides the constructor's for days not seen yet (e.g. to read through
        the caller's own database session)."""
        devices = as_strings(devices)
        n = len(devices)
        out = np.zeros(n, bool)
        if n == 0:
            return out
        day, keys = self._keys(devices, ts_ms)
        _, first = np.unique(np.stack([day, keys]), axis=1, return_index=True)
        out[first] = True  # first occurrence within the batch
        for d in np.unique(day).tolist():
            m = np.flatnonzero(day == d)
            out[m[self._day(int(d), loader).contains(keys[m])]] = False
        return out

    def add(self, devices, ts_ms: np.ndarray, *, loader: DayLoader | None = None) -> None:
        """Record accepted fixes (call after they are durable)."""
        devices = as_strings(devices)
        if not len(devices):
            return
        day, keys = self._keys(devices, ts_ms)
        for d in np.unique(day).tolist():
            self._day(int(d), loader).add(keys[day == d])

    def load_events(self, keys) -> None:
        """Event keys stored before this index existed: (device, ts_ms, kind) tuples."""
        self._events.update((d, int(t), k) for d, t, k in keys)

    def first_events(self, devices, ts_ms, kinds) -> np.ndarray:
        """Like `first_copies` for events, keyed by (device, instant, kind)."""
        seen: set = set()
        out = []
        for key in zip(devices, (int(t) for t in ts_ms), kinds):
            out.append(key not in self._events and key not in seen)
            seen.add(key)
        return np.asarray(out, bool)

    def add_events(self, devices, ts_ms, kinds) -> None:
        self._events.update(zip(devices, (int(t) for t in ts_ms), kinds))
