"""geofence.schedule: window instances, clock changes, merging and chaining.

The fast code resolves local times with zoneinfo round trips and a binary
search; the twin here is the obvious definition, scanned minute by minute:
the instant a local wall time means is the first UTC minute whose local wall
clock reads at least that time (that is its first occurrence when it exists,
and the instant the clocks change when it is skipped).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from geofence.model import Window, Zone
from geofence.schedule import NEG_INF_MS, POS_INF_MS, active_intervals, resolve_local
from geofence.zones import load_zones
from trails.timestamps import format_ms, parse_timestamp

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
ALL = tuple(range(7))
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
H = 3_600_000


def ts(text: str) -> int:
    return parse_timestamp(text)


def zone(*windows: Window | None, tz: str = "Europe/London") -> Zone:
    wins = None if windows == (None,) else tuple(windows)
    return Zone("z", "curfew", None, (0.0, 51.0), 50.0, wins, tz)


def win(days, start: str, end: str) -> Window:
    days = (days,) if isinstance(days, int) else tuple(days)
    hm = lambda s: int(s[:2]) * 60 + int(s[3:])  # noqa: E731
    return Window(days, hm(start), hm(end))


def fmt(arr: np.ndarray) -> list[tuple[str, str]]:
    def one(v: int) -> str:
        return "-inf" if v == NEG_INF_MS else "+inf" if v == POS_INF_MS else format_ms(v)

    return [(one(a), one(b)) for a, b in arr.tolist()]


# ------------------------------------------------------------ the contract
def test_dst_changes_example():
    late, home = load_zones(EXAMPLES / "dst_changes" / "zones.geojson")
    # 2024-03-31 01:30 does not exist in London: it means 01:00Z; 05:00 BST is 04:00Z.
    got = active_intervals(late, ts("2024-03-30T00:00:00Z"), ts("2024-04-01T00:00:00Z"))
    assert fmt(got) == [("2024-03-31T01:00:00.000Z", "2024-03-31T04:00:00.000Z")]
    # 19:00 BST on the 26th to 07:00 GMT on the 27th: 13 hours.
    got = active_intervals(home, ts("2024-10-26T00:00:00Z"), ts("2024-10-28T00:00:00Z"))
    assert fmt(got) == [("2024-10-26T18:00:00.000Z", "2024-10-27T07:00:00.000Z")]
    assert int(got[0, 1] - got[0, 0]) == 13 * H
    # Spring night: 19:00 GMT to 07:00 BST (06:00Z): 11 hours.
    got = active_intervals(home, ts("2024-03-30T00:00:00Z"), ts("2024-04-01T00:00:00Z"))
    assert fmt(got) == [("2024-03-30T19:00:00.000Z", "2024-03-31T06:00:00.000Z")]


def test_touching_windows_example_merges_into_one_night():
    (z,) = load_zones(EXAMPLES / "touching_windows" / "zones.geojson")
    got = active_intervals(z, ts("2024-01-08T00:00:00Z"), ts("2024-01-10T00:00:00Z"))  # Mon 8th, Tue 9th
    assert fmt(got) == [
        ("2024-01-08T19:00:00.000Z", "2024-01-09T07:00:00.000Z"),
        ("2024-01-09T19:00:00.000Z", "2024-01-10T07:00:00.000Z"),
    ]


# ------------------------------------------------------------ table of cases
CASES = [
    # (id, zone, range start, range end, expected merged intervals)
    ("no-schedule", zone(None), "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", [("-inf", "+inf")]),
    ("plain-night-winter", zone(win(ALL, "19:00", "07:00")), "2024-01-10T12:00:00Z", "2024-01-11T12:00:00Z",
     [("2024-01-10T19:00:00.000Z", "2024-01-11T07:00:00.000Z")]),
    ("not-clipped", zone(win(ALL, "19:00", "07:00")), "2024-01-10T20:00:00Z", "2024-01-10T21:00:00Z",
     [("2024-01-10T19:00:00.000Z", "2024-01-11T07:00:00.000Z")]),
    ("ending-at-range-start-excluded", zone(win(ALL, "19:00", "07:00")), "2024-01-11T07:00:00Z", "2024-01-11T19:00:00Z", []),
    ("starting-at-range-end-excluded", zone(win(ALL, "19:00", "07:00")), "2024-01-11T08:00:00Z", "2024-01-11T19:00:00Z", []),
    ("one-ms-inside", zone(win(ALL, "19:00", "07:00")), "2024-01-11T06:59:59.999Z", "2024-01-11T07:00:00Z",
     [("2024-01-10T19:00:00.000Z", "2024-01-11T07:00:00.000Z")]),
    ("empty-range", zone(win(ALL, "19:00", "07:00")), "2024-01-11T00:00:00Z", "2024-01-11T00:00:00Z", []),
    ("reversed-range", zone(None), "2024-01-12T00:00:00Z", "2024-01-11T00:00:00Z", []),
    ("overlapping-windows-merge", zone(win(MON, "18:00", "22:00"), win(MON, "20:00", "23:30")),
     "2024-01-08T00:00:00Z", "2024-01-09T00:00:00Z", [("2024-01-08T18:00:00.000Z", "2024-01-08T23:30:00.000Z")]),
    ("day-and-night-chain-mon-to-sat", zone(win(range(6), "19:00", "07:00"), win(range(6), "07:00", "19:00")),
     "2024-01-03T00:00:00Z", "2024-01-03T01:00:00Z", [("2024-01-01T07:00:00.000Z", "2024-01-07T07:00:00.000Z")]),
    ("chain-longer-than-a-step", zone(win(range(6), "00:00", "00:00")),
     "2024-01-06T00:00:00Z", "2024-01-06T01:00:00Z", [("2024-01-01T00:00:00.000Z", "2024-01-07T00:00:00.000Z")]),
    ("always-active-by-schedule", zone(win(ALL, "19:00", "07:00"), win(ALL, "07:00", "19:00")),
     "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", [("-inf", "+inf")]),
    ("always-active-start-equals-end", zone(win(ALL, "12:00", "12:00")), "2024-03-30T00:00:00Z", "2024-04-01T00:00:00Z", [("-inf", "+inf")]),
    ("weekly-24h-window-not-always", zone(win(ALL[:-1], "12:00", "12:00")), "2024-01-07T13:00:00Z", "2024-01-07T14:00:00Z", []),
    # start == end: 24 local hours, 23 real hours on the spring night, 25 on the autumn one.
    ("start-eq-end-spring-23h", zone(win(SAT, "02:00", "02:00")), "2024-03-30T12:00:00Z", "2024-03-30T13:00:00Z",
     [("2024-03-30T02:00:00.000Z", "2024-03-31T01:00:00.000Z")]),
    ("start-eq-end-autumn-25h", zone(win(SAT, "12:00", "12:00")), "2024-10-26T12:00:00Z", "2024-10-26T13:00:00Z",
     [("2024-10-26T11:00:00.000Z", "2024-10-27T12:00:00.000Z")]),
    # Spring forward (London 01:00 -> 02:00 local, at 01:00Z).
    ("spring-start-in-gap", zone(win(SUN, "01:30", "05:00")), "2024-03-31T00:00:00Z", "2024-04-01T00:00:00Z",
     [("2024-03-31T01:00:00.000Z", "2024-03-31T04:00:00.000Z")]),
    ("spring-end-in-gap", zone(win(SAT, "23:00", "01:45")), "2024-03-30T00:00:00Z", "2024-04-01T00:00:00Z",
     [("2024-03-30T23:00:00.000Z", "2024-03-31T01:00:00.000Z")]),
    ("spring-window-skipped-entirely", zone(win(SUN, "01:10", "01:50")), "2024-03-30T00:00:00Z", "2024-04-01T00:00:00Z", []),
    ("spring-window-skipped-but-next-week-kept", zone(win(SUN, "01:10", "01:50")), "2024-03-30T00:00:00Z", "2024-04-08T00:00:00Z",
     [("2024-04-07T00:10:00.000Z", "2024-04-07T00:50:00.000Z")]),
    ("spring-gap-joins-windows", zone(win(SAT, "22:00", "01:15"), win(SUN, "01:45", "03:00")), "2024-03-31T00:00:00Z", "2024-03-31T01:00:00Z",
     [("2024-03-30T22:00:00.000Z", "2024-03-31T02:00:00.000Z")]),
    ("spring-gap-joins-only-that-week", zone(win(SAT, "22:00", "01:15"), win(SUN, "01:45", "03:00")), "2024-04-07T00:00:00Z", "2024-04-07T01:00:00Z",
     [("2024-04-06T21:00:00.000Z", "2024-04-07T00:15:00.000Z"), ("2024-04-07T00:45:00.000Z", "2024-04-07T02:00:00.000Z")]),
    # Fall back (London 02:00 BST -> 01:00 GMT at 01:00Z): an ambiguous time is its first occurrence.
    ("autumn-ambiguous-start-and-end", zone(win(SUN, "01:15", "01:45")), "2024-10-27T00:00:00Z", "2024-10-28T00:00:00Z",
     [("2024-10-27T00:15:00.000Z", "2024-10-27T00:45:00.000Z")]),
    ("autumn-ambiguous-start", zone(win(SUN, "01:30", "03:00")), "2024-10-27T00:00:00Z", "2024-10-28T00:00:00Z",
     [("2024-10-27T00:30:00.000Z", "2024-10-27T03:00:00.000Z")]),
    # Another timezone.
    ("new-york-night-winter", zone(win(ALL, "21:00", "06:00"), tz="America/New_York"), "2024-01-10T12:00:00Z", "2024-01-11T12:00:00Z",
     [("2024-01-11T02:00:00.000Z", "2024-01-11T11:00:00.000Z")]),
    ("new-york-spring-skipped-hour", zone(win(SUN, "02:15", "02:45"), tz="America/New_York"), "2024-03-09T00:00:00Z", "2024-03-12T00:00:00Z", []),
    ("new-york-spring-start-in-gap", zone(win(SUN, "02:30", "04:00"), tz="America/New_York"), "2024-03-09T00:00:00Z", "2024-03-12T00:00:00Z",
     [("2024-03-10T07:00:00.000Z", "2024-03-10T08:00:00.000Z")]),
    ("new-york-autumn-ambiguous", zone(win(SUN, "01:00", "01:30"), tz="America/New_York"), "2024-11-02T00:00:00Z", "2024-11-05T00:00:00Z",
     [("2024-11-03T05:00:00.000Z", "2024-11-03T05:30:00.000Z")]),
    ("lord-howe-half-hour-gap", zone(win(SUN, "02:10", "03:00"), tz="Australia/Lord_Howe"), "2024-10-05T00:00:00Z", "2024-10-07T00:00:00Z",
     [("2024-10-05T15:30:00.000Z", "2024-10-05T16:00:00.000Z")]),
    ("apia-skipped-day", zone(win(FRI, "09:00", "17:00"), tz="Pacific/Apia"), "2011-12-28T00:00:00Z", "2012-01-02T00:00:00Z", []),
    ("santiago-midnight-gap", zone(win(SAT, "22:00", "00:30"), tz="America/Santiago"), "2024-09-07T00:00:00Z", "2024-09-09T00:00:00Z",
     [("2024-09-08T02:00:00.000Z", "2024-09-08T04:00:00.000Z")]),
]


@pytest.mark.parametrize(("z", "start", "end", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_active_intervals(z, start, end, expected):
    got = active_intervals(z, ts(start), ts(end))
    assert got.dtype == np.int64 and got.ndim == 2 and got.shape[1] == 2
    assert fmt(got) == expected


def test_resolve_local_examples():
    d = date(2024, 3, 31).toordinal()
    assert format_ms(resolve_local("Europe/London", d, 90)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 60)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 59)) == "2024-03-31T00:59:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 120)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 121)) == "2024-03-31T01:01:00.000Z"
    d = date(2024, 10, 27).toordinal()
    assert format_ms(resolve_local("Europe/London", d, 60)) == "2024-10-27T00:00:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 119)) == "2024-10-27T00:59:00.000Z"
    assert format_ms(resolve_local("Europe/London", d, 120)) == "2024-10-27T02:00:00.000Z"


# ---------------------------------------------------------------- the twin
_SPAN_DAYS = 35


@lru_cache(maxsize=None)
def _wall_minutes(tz_name: str, first_day: date) -> tuple[int, np.ndarray]:
    """(first UTC minute, local wall clock in epoch-minutes for each UTC minute)."""
    tz = ZoneInfo(tz_name)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc) - timedelta(days=2)
    first_min = int(start.timestamp()) // 60
    n = (_SPAN_DAYS + 4) * 1440
    offsets = np.empty(n, dtype=np.int64)
    # Offsets change only at transitions: sample every 15 minutes (all tz
    # database transitions since 1970 fall on a quarter hour) and fill.
    for k in range(0, n, 15):
        off = datetime.fromtimestamp((first_min + k) * 60, tz).utcoffset()
        offsets[k:k + 15] = int(off.total_seconds()) // 60
    return first_min, first_min + np.arange(n, dtype=np.int64) + offsets


def _ref_resolve(tz_name: str, first_day: date, day: date, minute: int) -> int:
    first_min, wall = _wall_minutes(tz_name, first_day)
    target = (day.toordinal() - date(1970, 1, 1).toordinal()) * 1440 + minute
    hits = np.flatnonzero(wall >= target)
    assert hits.size and hits[0] > 0, "reference table too short"
    return int(first_min + hits[0]) * 60_000


def _ref_active(z: Zone, first_day: date, start_ms: int, end_ms: int):
    """Brute-force merged intervals from every local date of the table; None if a
    returned interval touches the edge of what the table can see."""
    inst = []
    for k in range(1, _SPAN_DAYS):
        day = first_day + timedelta(days=k)
        for w in z.windows:
            if day.weekday() in w.days:
                s = _ref_resolve(z.timezone, first_day, day, w.start_min)
                e_day = day if w.end_min > w.start_min else day + timedelta(days=1)
                e = _ref_resolve(z.timezone, first_day, e_day, w.end_min)
                if e > s:
                    inst.append((s, e))
    inst.sort()
    merged: list[list[int]] = []
    for s, e in inst:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    lo = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc).timestamp() * 1000) + 3 * 86_400_000
    hi = lo + (_SPAN_DAYS - 6) * 86_400_000
    hits = [m for m in merged if m[0] < end_ms and m[1] > start_ms]
    if any(m[0] < lo or m[1] > hi for m in hits):
        return None
    return np.array(hits, dtype=np.int64).reshape(-1, 2)


# (timezone, a day a week or two before one of its clock changes)
TZ_ANCHORS = [
    ("Europe/London", date(2024, 3, 20)), ("Europe/London", date(2024, 10, 15)),
    ("America/New_York", date(2024, 3, 1)), ("America/New_York", date(2024, 10, 25)),
    ("Australia/Lord_Howe", date(2024, 3, 28)), ("Australia/Lord_Howe", date(2024, 9, 27)),
    ("America/Santiago", date(2024, 3, 28)), ("America/Santiago", date(2024, 8, 30)),
    ("Pacific/Apia", date(2011, 12, 20)), ("Asia/Kolkata", date(2024, 6, 1)), ("UTC", date(2024, 2, 20)),
]
_TIMES = [0, 30, 60, 90, 105, 120, 150, 180, 420, 1140, 1380, 1410, 1439]


@pytest.mark.parametrize(("tz_name", "first_day"), TZ_ANCHORS, ids=[f"{t}-{d}" for t, d in TZ_ANCHORS])
def test_matches_minute_scan_twin(tz_name, first_day):
    rng = np.random.default_rng(first_day.toordinal())
    base = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc).timestamp() * 1000)
    compared = 0
    for _ in range(12):
        windows = []
        for _ in range(int(rng.integers(1, 4))):
            days = tuple(sorted({int(d) for d in rng.integers(0, 7, size=int(rng.integers(1, 5)))}))
            pick = lambda: int(rng.choice(_TIMES)) if rng.random() < 0.7 else int(rng.integers(0, 1440))  # noqa: E731
            windows.append(Window(days, pick(), pick()))
        z = zone(*windows, tz=tz_name)
        # Ranges inside the table, over the clock change.
        start_ms = base + int(rng.integers(5, 12)) * 86_400_000 + int(rng.integers(0, 86_400_000))
        end_ms = start_ms + int(rng.integers(1, 14 * 86_400_000))
        want = _ref_active(z, first_day, start_ms, end_ms)
        if want is None:
            continue
        got = active_intervals(z, start_ms, end_ms)
        if got.size and (got[0, 0] == NEG_INF_MS or got[-1, 1] == POS_INF_MS):
            continue  # chains beyond what the twin's table can see
        assert fmt(got) == fmt(want), (windows, format_ms(start_ms), format_ms(end_ms))
        compared += 1
    assert compared >= 4


def test_result_is_sorted_disjoint_and_not_touching():
    z = zone(win(ALL, "19:00", "23:00"), win((MON, WED), "23:00", "07:00"), win(FRI, "06:00", "20:00"))
    got = active_intervals(z, ts("2024-01-01T00:00:00Z"), ts("2024-03-01T00:00:00Z"))
    assert (got[:, 1] > got[:, 0]).all()
    assert (got[1:, 0] > got[:-1, 1]).all()
