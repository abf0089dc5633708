"""Synthetic movement, battery and signal for one wearer of `trails.sim.simulate`.

A wearer's day is planned as a short list of *knots* ``(t, x, y)``: position is
piecewise linear in time between knots (stays are two knots at one place,
trips are straight lines at walking or driving speed). Planning loops over
days (a few dozen knots per week); everything per fix is vectorised NumPy:
one fix a minute with per-device phase and jitter, GPS noise scaled to
``accuracy_m``, battery drain and charging, flat batteries, signal loss.

Deliberate behaviours (the breach mix): curfew absences of 20-120 min on a
few nights, rarely a whole night away (missed curfew), occasional visits
into an exclusion zone, rare trips out of an inclusion zone, neglectful
chargers whose tag runs flat (battery reaches 0 before it goes silent),
signal-loss gaps, rare strap tampers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from trails.sim.population import Wearer, to_lonlat
from trails.timestamps import POS_INF_MS

__all__ = ["Calendar", "Track", "simulate_wearer", "swap_ms"]

HOME, STAY_IN, STAY_OUT, TRAVEL = 0, 1, 2, 3

_LONDON = ZoneInfo("Europe/London")
_WALK_M_PER_MIN = 78.0  # 1.3 m/s


@dataclass(frozen=True)
class Calendar:
    """The simulation's time grid: ``n_minutes`` one-minute slots from ``start_ms`` (UTC)."""

    start_ms: int
    n_minutes: int

    @property
    def first_local_date(self) -> int:
        dt = datetime.fromtimestamp(self.start_ms / 1000, tz=timezone.utc).astimezone(_LONDON)
        return dt.date().toordinal()

    @property
    def last_local_date(self) -> int:
        end = self.start_ms + self.n_minutes * 60_000
        dt = datetime.fromtimestamp(end / 1000, tz=timezone.utc).astimezone(_LONDON)
        return dt.date().toordinal()

    def minute(self, ordinal: int, minute_of_day: float) -> float:
        """Minutes since start of local (Europe/London) time ``minute_of_day`` on a date."""
        whole = int(minute_of_day)
        return _local_minute(self.start_ms, ordinal, whole) + (minute_of_day - whole)


@lru_cache(maxsize=200_000)
def _local_minute(start_ms: int, ordinal: int, minute_of_day: int) -> float:
    d = date.fromordinal(ordinal)
    local = datetime(d.year, d.month, d.day, tzinfo=_LONDON) + timedelta(minutes=minute_of_day)
    return (local.timestamp() * 1000 - start_ms) / 60_000


@dataclass(frozen=True)
class Track:
    """One wearer's clean rows: fixes (time ordered per device) and events."""

    ts_ms: np.ndarray        # int64
    device_idx: np.ndarray   # int8 index into Wearer.device_ids
    lat: np.ndarray          # float64, 6 decimals
    lon: np.ndarray          # float64, 6 decimals
    accuracy_m: np.ndarray   # float64, 1 decimal
    battery_pct: np.ndarray  # float64, whole numbers, NaN = not reported
    event_ts_ms: np.ndarray  # int64 (strap tampers)
    event_device_idx: np.ndarray


class _Knots:
    def __init__(self) -> None:
        self.t = [-4000.0]
        self.x = [0.0]
        self.y = [0.0]
        self.k = [HOME]

    @property
    def last_t(self) -> float:
        return self.t[-1]

    def add(self, t: float, x: float, y: float, kind: int) -> None:
        t = max(t, self.t[-1] + 0.01)
        self.t.append(t)
        self.x.append(x)
        self.y.append(y)
        self.k.append(kind)

    def go(self, t: float, x: float, y: float, stay_kind: int, rng: np.random.Generator) -> float:
        """Depart at ``t`` from the last position to ``(x, y)``; returns the arrival time."""
        x0, y0 = self.x[-1], self.y[-1]
        self.add(t, x0, y0, TRAVEL)
        arrive = self.t[-1] + _travel_min(math.hypot(x - x0, y - y0), rng)
        self.add(arrive, x, y, stay_kind)
        return self.t[-1]


def _travel_min(dist_m: float, rng: np.random.Generator) -> float:
    if dist_m < 1200.0:
        return 1.0 + dist_m / _WALK_M_PER_MIN
    return 3.0 + dist_m / (60.0 * float(rng.uniform(6.0, 12.0)))


def _curfew_window(w: Wearer, cal: Calendar, ordinal: int) -> tuple[float, float] | None:
    """The curfew window that starts on local date ``ordinal``, in sim minutes."""
    wd = date.fromordinal(ordinal).weekday()
    for days, s, e in w.curfew:
        if wd in days:
            return cal.minute(ordinal, s), cal.minute(ordinal + (1 if e <= s else 0), e)
    return None


def _clear(w: Wearer, x: float, y: float) -> bool:
    return all(math.hypot(x - cx, y - cy) > r + 100.0 for cx, cy, r in w.exclusions)


def _day_out(w: Wearer, rng: np.random.Generator, kn: "_Knots", cal: Calendar, d: int, leave: float, ret: float,
             missed: bool, tonight: tuple[float, float] | None) -> tuple[bool, bool, float]:
    """A day out from `leave` to `ret` (1-3 places; now and then into an exclusion or out of the
    inclusion); `missed` stays out past tonight's curfew. Returns (stayed home after all: too
    little time; missed; minute home)."""
    places = w.places
    nd = int(rng.integers(1, 4))
    idx = rng.integers(0, len(places), nd)
    dests = [(places[i].x, places[i].y) for i in idx]
    fixed: dict[int, float] = {}
    if w.exclusion_spots and rng.random() < 0.06:
        cx, cy, rr = w.exclusion_spots[int(rng.integers(0, len(w.exclusion_spots)))]
        ang, dd = rng.uniform(0, 2 * np.pi), rr * math.sqrt(rng.random())
        j = int(rng.integers(0, nd))
        dests[j] = (cx + dd * math.cos(ang), cy + dd * math.sin(ang))
        fixed[j] = float(rng.uniform(10, 60))
    elif w.inclusion is not None and rng.random() < 0.02:
        cx, cy, rr = w.inclusion
        ang = rng.uniform(0, 2 * np.pi)
        dd = rr + 6000.0 + float(rng.uniform(0, 4000))
        j = int(rng.integers(0, nd))
        dests[j] = (cx + dd * math.cos(ang), cy + dd * math.sin(ang))
        fixed[j] = float(rng.uniform(30, 120))
    route = [(0.0, 0.0)] + dests + ([] if missed else [(0.0, 0.0)])
    legs = [_travel_min(math.hypot(bx - ax, by - ay), rng)
            for (ax, ay), (bx, by) in zip(route, route[1:])]
    free = ret - leave - sum(legs) - sum(fixed.values())
    n_free = nd - len(fixed)
    if free < 20.0 * max(n_free, 1):
        return True, False, cal.minute(d, float(rng.uniform(1000, 1300)))
    shares = rng.dirichlet(np.ones(max(n_free, 1)))
    t, s_idx = leave, 0
    for j, (px, py) in enumerate(dests):
        kn.add(t, kn.x[-1], kn.y[-1], TRAVEL)
        t += legs[j]
        kn.add(t, px, py, STAY_OUT if rng.random() < 0.4 else STAY_IN)
        if j in fixed:
            t += fixed[j]
        else:
            t += float(shares[s_idx]) * free
            s_idx += 1
    if missed:
        fx = places[int(rng.integers(0, len(places)))]
        t = kn.go(t, fx.x, fx.y, STAY_IN, rng)
        back = tonight[1] + float(rng.uniform(15, 120))
        return False, True, kn.go(max(back, t + 60.0), 0.0, 0.0, HOME, rng)
    kn.add(t, kn.x[-1], kn.y[-1], TRAVEL)
    home_at = t + legs[-1]
    kn.add(home_at, 0.0, 0.0, HOME)
    return False, False, home_at


def _evening(w: Wearer, rng: np.random.Generator, kn: "_Knots", charges: list[tuple[float, float]], home_at: float,
             tonight: tuple[float, float] | None) -> None:
    """The evening at home from `home_at`: a charging session (most nights; fewer for a
    neglectful charger), now and then a short walk out during tonight's curfew."""
    p_charge = 0.55 if w.is_neglectful_charger else 0.97
    charge_end = home_at
    if rng.random() < p_charge:
        cs = home_at + float(rng.uniform(0, 90))
        dur = float(rng.uniform(60, 240) if w.is_neglectful_charger else rng.uniform(120, 240))
        charges.append((cs, cs + dur))
        charge_end = cs + dur
    if tonight is not None and rng.random() < 0.04:
        ws, we = tonight
        out = max(ws + float(rng.uniform(30, 240)), charge_end + 5.0)
        dur = float(rng.uniform(20, 120))
        if out + dur < we - 30.0:
            reach = min(1500.0, _WALK_M_PER_MIN * (dur - 6.0) / 2.0)
            dist = float(rng.uniform(300.0, max(reach, 301.0)))
            ang = float(rng.uniform(0, 2 * np.pi))
            px, py = dist * math.cos(ang), dist * math.sin(ang)
            if _clear(w, px, py):
                tt = 1.0 + dist / _WALK_M_PER_MIN
                kn.go(out, px, py, STAY_OUT, rng)
                kn.go(out + dur - tt, 0.0, 0.0, HOME, rng)


def _plan(w: Wearer, rng: np.random.Generator, cal: Calendar):
    """Knots, charging sessions and tamper minutes for the whole run."""
    kn = _Knots()
    charges: list[tuple[float, float]] = []
    tampers: list[float] = []
    for d in range(cal.first_local_date - 1, cal.last_local_date + 1):
        prev = _curfew_window(w, cal, d - 1)
        tonight = _curfew_window(w, cal, d)
        leave = cal.minute(d, float(rng.uniform(450, 630)))
        if prev is not None:
            leave = max(leave, prev[1] + float(rng.uniform(10, 90)))
        leave = max(leave, kn.last_t + float(rng.uniform(10, 60)))
        if tonight is not None:
            ret = tonight[0] - float(rng.uniform(10, 150))
        else:
            ret = cal.minute(d, float(rng.uniform(1020, 1380)))
        stay_home = rng.random() < 0.12 or ret - leave < 120
        missed = tonight is not None and not stay_home and rng.random() < 0.008
        home_at = cal.minute(d, float(rng.uniform(1000, 1300))) if stay_home else ret

        if not stay_home:
            stay_home, missed, home_at = _day_out(w, rng, kn, cal, d, leave, ret, missed, tonight)
        if missed:
            continue
        _evening(w, rng, kn, charges, home_at, tonight)
        if rng.random() < 0.004:
            tampers.append(cal.minute(d, float(rng.uniform(0, 1440))))
    return kn, charges, tampers


def _battery(w: Wearer, rng: np.random.Generator, kind: np.ndarray, charges, n: int):
    """Battery level at each minute and whether the tag is powered.

    Planned charges come from the daily plan. A tag that runs flat stays
    silent until its wearer notices (or the Hub calls) and plugs it in: a
    delay of typically one to a few hours (log-normal, median ~2 h, longer for
    neglectful chargers), unless a planned charge comes first. Without that
    recovery a missed charge would silence a tag for days, which is not what
    the Hub sees (most battery breaches are short, and the accumulated policy
    exists because they recur).
    """
    home_rate = float(rng.uniform(1.5, 2.5)) / 60.0
    out_rate = float(rng.uniform(4.0, 6.0)) / 60.0
    charge_rate = float(rng.uniform(40.0, 60.0)) / 60.0
    drain = np.where(kind == HOME, home_rate, out_rate)
    plan = sorted((max(int(math.ceil(cs)), 0), min(int(ce), n)) for cs, ce in charges)
    plan = [(a, b) for a, b in plan if a < b]
    median_delay = 240.0 if w.is_neglectful_charger else 100.0
    swap_at = w.swap_minute + 1 if w.swap_minute > 0 else -1
    level = np.empty(n)
    charging = np.zeros(n, dtype=bool)
    cur = float(rng.uniform(15, 60) if w.is_neglectful_charger else rng.uniform(40, 100))
    i, ci = 0, 0
    while i < n:
        while ci < len(plan) and plan[ci][1] <= i:
            ci += 1
        if i == swap_at:
            cur = float(rng.uniform(90, 100))  # the new tag arrives charged
        if ci < len(plan) and plan[ci][0] <= i:
            b = plan[ci][1]
            if i < swap_at < b:
                b = swap_at
            base = max(cur, 0.0)
            level[i:b] = np.minimum(100.0, base + charge_rate * np.arange(b - i))
            charging[i:b] = True
            cur = min(100.0, base + charge_rate * (b - i))
            i = b
            continue
        b = plan[ci][0] if ci < len(plan) else n
        if i < swap_at < b:
            b = swap_at
        cum = np.cumsum(drain[i:b])
        seg = cur - (cum - drain[i:b])
        flat = np.flatnonzero(seg <= 0.0)
        if flat.size == 0:
            level[i:b] = seg
            cur = cur - float(cum[-1])
            i = b
            continue
        z = i + int(flat[0])
        level[i:z] = seg[: z - i]
        delay = int(min(rng.lognormal(math.log(median_delay), 0.6), 18 * 60))
        r = min(z + max(delay, 1), b)
        level[z:r] = 0.0
        cur = 0.0
        if r < b:  # plugged in after noticing: a recovery charge
            e = min(r + int(rng.uniform(60, 180)), b, n)
            level[r:e] = np.minimum(100.0, charge_rate * np.arange(e - r))
            charging[r:e] = True
            cur = min(100.0, charge_rate * (e - r))
            r = e
        i = r
    alive = (level > 0.0) | charging
    return np.clip(level, 0.0, 100.0), alive


def swap_ms(w: Wearer, cal: Calendar) -> int:
    """The instant the wearer's tag is replaced (half a minute after the swap slot's fix)."""
    if w.swap_minute < 0:
        return POS_INF_MS
    return cal.start_ms + w.swap_minute * 60_000 + 30_000


def simulate_wearer(w: Wearer, rng: np.random.Generator, cal: Calendar) -> Track:
    """All clean fixes and events of wearer ``w`` from its behaviour stream ``rng``."""
    n = cal.n_minutes
    kn, charges, tampers = _plan(w, rng, cal)
    T = np.asarray(kn.t)
    K = np.asarray(kn.k, dtype=np.int8)
    minute = np.arange(n, dtype=np.int64)
    phase = int(rng.integers(2000, 10_000))
    offs = phase + rng.integers(-1500, 1501, n)
    ts_ms = cal.start_ms + minute * 60_000 + offs
    t_min = minute + offs / 60_000.0
    x = np.interp(t_min, T, np.asarray(kn.x))
    y = np.interp(t_min, T, np.asarray(kn.y))
    kind = K[np.searchsorted(T, t_min, side="right") - 1]

    level, alive = _battery(w, rng, kind, charges, n)

    indoor = (kind == HOME) | (kind == STAY_IN)
    base_in = float(rng.uniform(25, 45))
    acc = np.where(indoor, np.clip(base_in + rng.normal(0, 7, n), 20, 60), rng.uniform(5, 15, n))
    sigma = acc / 3.5
    at_home = kind == HOME
    x = x + rng.normal(0, 1, n) * sigma + at_home * rng.normal(0, 3, n)
    y = y + rng.normal(0, 1, n) * sigma + at_home * rng.normal(0, 3, n)

    keep = alive & (rng.random(n) >= 0.005)
    n_gaps = int(rng.poisson(0.2 * n / 1440))
    if n_gaps:
        g0 = rng.integers(0, n, n_gaps)
        u = rng.random(n_gaps)
        glen = np.where(u < 0.75, rng.uniform(2, 12, n_gaps),
                        np.where(u < 0.95, rng.uniform(12, 35, n_gaps), rng.uniform(35, 70, n_gaps)))
        for a, L in zip(g0, glen.astype(np.int64)):
            keep[a:a + L] = False

    battery = np.round(level)
    battery[(level > 10.0) & (rng.random(n) < 0.02)] = np.nan
    lon, lat = to_lonlat(w.home_lat, w.home_lon, x, y)
    device_idx = (ts_ms >= swap_ms(w, cal)).astype(np.int8)

    tam = np.asarray(tampers, dtype=np.float64)
    tam = tam[(tam >= 0) & (tam < n)]
    tam_min = tam.astype(np.int64)
    tam = tam[alive[tam_min]]
    ev_ts = cal.start_ms + np.floor(tam * 60_000).astype(np.int64)
    ev_dev = (ev_ts >= swap_ms(w, cal)).astype(np.int8)
    order = np.argsort(ev_ts, kind="stable")

    return Track(
        ts_ms=ts_ms[keep],
        device_idx=device_idx[keep],
        lat=np.round(lat[keep], 6),
        lon=np.round(lon[keep], 6),
        accuracy_m=np.round(acc[keep], 1),
        battery_pct=battery[keep],
        event_ts_ms=ev_ts[order],
        event_device_idx=ev_dev[order],
    )
