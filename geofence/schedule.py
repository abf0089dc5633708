"""Weekly schedule windows -> merged UTC active intervals.

CONTRACT.md, "Zones" and "Zone activity". A window starts on each listed day
at `start` local time (in the zone's timezone) and ends at `end` local time
the same day if ``end > start``, else the next day (``start == end``: 24 local
hours, 23 or 25 real hours across a clock change). Starts and ends are
resolved separately:

- a local time that does not exist (skipped when clocks go forward) is the
  instant at which the clocks change (Europe/London 2024-03-31 01:30 ->
  01:00 UTC);
- a local time that occurs twice (clocks go back) is its first occurrence
  (``fold=0``);
- a window instance that resolves to an empty interval is dropped.

This resolution is monotone (a later local time never resolves to an earlier
instant), so instances that touch in local time touch in UTC too.

A zone's active intervals are the union of all window instances, with
instances that overlap or touch merged into maximal intervals M. Those M can
chain across many days (``19:00-07:00`` plus ``07:00-19:00`` every day), so
expansion keeps widening until each returned interval is complete; a schedule
that covers the whole local week is always active and, like a zone without a
schedule, gives one interval ``[NEG_INF_MS, POS_INF_MS]``.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from trails.timestamps import DAY_MS, NEG_INF_MS, POS_INF_MS

from .model import Window, Zone

__all__ = ["NEG_INF_MS", "POS_INF_MS", "active_intervals", "resolve_local", "window_instances"]

#: NEG_INF_MS / POS_INF_MS (`trails.timestamps`): an unbounded side of an active interval.

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_WEEK_MIN = 7 * 1440
#: Local dates expanded stay inside what `datetime` can represent.
_MIN_ORDINAL = date(1, 1, 3).toordinal()
_MAX_ORDINAL = date(9999, 12, 28).toordinal()
#: Days added on each side per widening step, and the most widening steps
#: tried before an unbounded side is declared (only reachable at the ends of
#: the calendar: a schedule that does not cover the whole week breaks its
#: chain at least once a week, except in a week where the uncovered local
#: time lies wholly inside a clock-change gap).
_STEP_DAYS = 8
_MAX_STEPS = 200


@lru_cache(maxsize=64)
def _zoneinfo(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _to_ms(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@lru_cache(maxsize=1 << 16)
def resolve_local(tz_name: str, ordinal: int, minute: int) -> int:
    """The UTC instant (epoch ms) of local wall time `minute` on local date `ordinal`.

    Parameters
    ----------
    tz_name
        IANA timezone name.
    ordinal
        Proleptic Gregorian ordinal of the local date (`date.toordinal`).
    minute
        Minutes after local midnight, 0..1439.

    Returns
    -------
    int
        A nonexistent local time (skipped by a forward change) gives the
        instant of the change; an ambiguous one (repeated by a backward
        change) its first occurrence.

    Examples
    --------
    >>> d = date(2024, 3, 31).toordinal()
    >>> resolve_local("Europe/London", d, 90) == resolve_local("Europe/London", d, 60)
    True
    """
    tz = _zoneinfo(tz_name)
    day = date.fromordinal(ordinal)
    naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(_UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return _to_ms(first)  # exists; fold=0 is the first occurrence if ambiguous
    # Nonexistent. PEP 495: fold=0 applies the offset from before the change,
    # fold=1 the offset after; the change instant T lies in (after, before].
    second = naive.replace(tzinfo=tz, fold=1).astimezone(_UTC)
    lo, hi = sorted((_to_ms(second) // 1000, _to_ms(first) // 1000))
    off_hi = _offset_s(tz, hi)
    # Smallest whole second t in (lo, hi] whose UTC offset is already the new one
    # (tz database transitions fall on whole seconds).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(tz, mid) == off_hi:
            hi = mid
        else:
            lo = mid
    return hi * 1000


def _offset_s(tz: ZoneInfo, epoch_s: int) -> float:
    return datetime.fromtimestamp(epoch_s, tz).utcoffset().total_seconds()


@lru_cache(maxsize=1 << 14)
def _day_instances(tz_name: str, windows: tuple[Window, ...], ordinal: int) -> tuple[tuple[int, int], ...]:
    """Non-empty instances of `windows` that start on local date `ordinal`."""
    weekday = date.fromordinal(ordinal).weekday()
    out = []
    for w in windows:
        if weekday not in w.days:
            continue
        start = resolve_local(tz_name, ordinal, w.start_min)
        end_day = ordinal if w.end_min > w.start_min else ordinal + 1
        end = resolve_local(tz_name, end_day, w.end_min)
        if end > start:
            out.append((start, end))
    return tuple(out)


def window_instances(zone: Zone, first_ordinal: int, last_ordinal: int) -> list[tuple[int, int]]:
    """Every non-empty window instance starting on local dates first..last (unmerged, sorted)."""
    if zone.windows is None:
        raise ValueError(f"zone {zone.zone_id!r} has no schedule")
    out: list[tuple[int, int]] = []
    for ordinal in range(first_ordinal, last_ordinal + 1):
        out.extend(_day_instances(zone.timezone, zone.windows, ordinal))
    out.sort()
    return out


def _merge(instances: list[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in instances:
        if merged and start <= merged[-1][1]:  # overlap or touch
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return merged


@lru_cache(maxsize=256)
def _covers_whole_week(windows: tuple[Window, ...]) -> bool:
    """True when the windows, as local weekly time, leave no minute uncovered."""
    covered = np.zeros(_WEEK_MIN, dtype=bool)
    for w in windows:
        length = w.end_min - w.start_min if w.end_min > w.start_min else 1440 - w.start_min + w.end_min
        for d in w.days:
            first = d * 1440 + w.start_min
            idx = np.arange(first, first + length) % _WEEK_MIN
            covered[idx] = True
    return bool(covered.all())


def _ordinal_of_ms(ms: int) -> int:
    """Proleptic ordinal of the UTC date of `ms`, clamped to the supported dates."""
    ordinal = _EPOCH.date().toordinal() + ms // DAY_MS
    return min(max(ordinal, _MIN_ORDINAL), _MAX_ORDINAL)


def active_intervals(zone: Zone, start_ms: int, end_ms: int) -> np.ndarray:
    """The zone's merged active intervals that intersect ``[start_ms, end_ms)``.

    Parameters
    ----------
    zone
        A validated zone.
    start_ms, end_ms
        The range of interest (epoch ms, half-open); empty when
        ``end_ms <= start_ms``.

    Returns
    -------
    numpy.ndarray
        Shape ``(k, 2)`` int64, rows ``[m_start, m_end)`` sorted and disjoint
        (not touching), each a whole merged interval M, **not clipped** to the
        range (a caller decides whether M lies wholly inside an assignment).
        A zone without a schedule, or whose schedule covers the whole week,
        gives ``[[NEG_INF_MS, POS_INF_MS]]``; an interval that chains beyond
        the calendar ``datetime`` supports is given the sentinel on that side.

    Examples
    --------
    ``19:00-23:00`` and ``23:00-07:00`` on the same Monday are one interval
    ``19:00-07:00``; a Sunday ``01:30-05:00`` window on 2024-03-31 in
    Europe/London (01:30 skipped) is ``[01:00Z, 04:00Z)``.
    """
    start_ms, end_ms = int(start_ms), int(end_ms)
    if end_ms <= start_ms:
        return np.empty((0, 2), dtype=np.int64)
    if zone.windows is None or _covers_whole_week(zone.windows):
        return np.array([[NEG_INF_MS, POS_INF_MS]], dtype=np.int64)

    # Instances from local dates before d0 end before local d0+1 00:00, and
    # those from dates after d1 start at or after local d1+1 00:00, so a merged
    # interval is complete when it starts at/after `lo_safe` (local d0+2, one
    # spare day for a clock change at midnight) and ends before `hi_safe`
    # (local d1). Local dates differ from UTC dates by at most a day or so,
    # hence the margins.
    d0 = _ordinal_of_ms(start_ms) - 3
    d1 = _ordinal_of_ms(end_ms - 1) + 3
    for _ in range(_MAX_STEPS):
        d0, d1 = max(d0, _MIN_ORDINAL), min(d1, _MAX_ORDINAL)
        merged = _merge(window_instances(zone, d0, d1))
        hits = [m for m in merged if m[0] < end_ms and m[1] > start_ms]
        lo_open = d0 == _MIN_ORDINAL
        hi_open = d1 == _MAX_ORDINAL
        lo_safe = resolve_local(zone.timezone, min(d0 + 2, _MAX_ORDINAL), 0)
        hi_safe = resolve_local(zone.timezone, d1, 0)
        need_lo = bool(hits) and hits[0][0] < lo_safe and not lo_open
        need_hi = bool(hits) and hits[-1][1] >= hi_safe and not hi_open
        if not need_lo and not need_hi:
            break
        if need_lo:
            d0 -= _STEP_DAYS
        if need_hi:
            d1 += _STEP_DAYS
    else:  # pragma: no cover - only a calendar-long chain gets here
        lo_open = hi_open = True
    if hits and lo_open and hits[0][0] < lo_safe:
        hits[0][0] = NEG_INF_MS
    if hits and hi_open and hits[-1][1] >= hi_safe:
        hits[-1][1] = POS_INF_MS
    return np.array(hits, dtype=np.int64).reshape(-1, 2)
