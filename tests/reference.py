"""Slow plain-Python reference of CONTRACT.md's detection rules (tests only).

The twin that the fast engine (`geofence.detect` and its kernels) is checked
against. Written from the contract text alone: one function per rule, each
docstring quoting the sentence it implements; plain loops over fixes; instants
and durations are Python ints (epoch milliseconds, UTC) throughout.

Entry point: `reference_detect(...)` -> (records, quarantine for reasons 8-10).

Readings of places where the contract leaves room (see also the report):
- "earlier kept row" (duplicate) means earlier in file order (row number),
  among rows that were themselves kept.
- `curfew_missed_fraction`: "the OUT pieces add up to at least fraction of M's
  length" is computed as ``float(out_ms) >= fraction * float(len_ms)``.
- Schedule windows are expanded over the local days spanned by the assignment
  plus a 3-day margin on each side. A window instance lasts at most 25 hours,
  so a margin of 2 days already makes exact every merged interval's part inside
  the assignment and the test "lies wholly inside [A.start, T_end)"; a chain of
  touching windows that never ends (e.g. every day 19:00-19:00) is truncated
  near the margins, i.e. well outside the assignment, so it is never "wholly
  inside" (never missed), as for an unbounded interval.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, Polygon

from geofence.model import Assignment, Policy, Zone

__all__ = ["reference_detect", "format_ms", "breach_id", "OUT", "UNCERTAIN", "IN"]

OUT, UNCERTAIN, IN = "OUT", "UNCERTAIN", "IN"
NEG_INF = -(2**62)  # stands for an unbounded start (zone without schedule)
POS_INF = 2**62  # stands for "still worn" / unbounded end
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)


# ====================================================================== time


def format_ms(ms: int) -> str:
    """`start`, `end`: "UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`"."""
    dt = EPOCH + timedelta(milliseconds=ms)
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}" + ".%03dZ" % (ms % 1000)  # %Y does not pad years < 1000


def to_ms(dt: datetime) -> int:
    return (dt - EPOCH) // ONE_MS


# ====================================================================== quarantine 8-10


def assignment_end(a: Assignment) -> int:
    """"`end` is null or absent (still worn)": an open end is +infinity."""
    return POS_INF if a.end_ms is None else a.end_ms


def holder(assignments: list[Assignment], device_id: str, ts: int) -> Assignment | None:
    """9. `unassigned`: "no assignment holds this device at `ts`"; an assignment
    holds its device during `[start, end)`."""
    found = [a for a in assignments if a.device_id == device_id and a.start_ms <= ts < assignment_end(a)]
    return found[0] if found else None


def screen_rows(rows: list[dict], source: str, assignments, explicit_as_of: int | None):
    """Reasons 8-10, "When several reasons apply, the first in this list is given":

    8. `after_as_of`: "`ts` later than an explicit `--as-of`"
    9. `unassigned`: "no assignment holds this device at `ts`"
    10. `duplicate`: "an earlier *kept* row of the same source has the same
        `device_id` and the same instant after flooring to the millisecond (and,
        for events, the same `event`)"

    Returns (kept rows in file order, [(source, row, reason)]).
    """
    kept, quarantined = [], []
    seen = set()
    for r in sorted(rows, key=lambda r: r["row"]):
        key = (r["device_id"], r["ts_ms"], r.get("event"))
        if explicit_as_of is not None and r["ts_ms"] > explicit_as_of:
            quarantined.append((source, r["row"], "after_as_of"))
        elif holder(assignments, r["device_id"], r["ts_ms"]) is None:
            quarantined.append((source, r["row"], "unassigned"))
        elif key in seen:
            quarantined.append((source, r["row"], "duplicate"))
        else:
            seen.add(key)
            kept.append(r)
    return kept, quarantined


def resolve_as_of(explicit_as_of: int | None, kept_fixes, kept_events) -> int | None:
    """"`as_of`: `--as-of` if given; otherwise the latest `ts` among all the fixes
    and events, of all devices, that are kept (not quarantined). With none kept
    and no `--as-of`, only tamper and low-battery records can arise"."""
    if explicit_as_of is not None:
        return explicit_as_of
    times = [r["ts_ms"] for r in kept_fixes] + [r["ts_ms"] for r in kept_events]
    return max(times) if times else None


# ====================================================================== timeline


def t_end(a: Assignment, as_of: int) -> int:
    """"Let `T_end = min(A.end, as_of)`"."""
    return min(assignment_end(a), as_of)


def assignment_fixes(a: Assignment, kept_fixes, as_of: int | None) -> list[dict]:
    """"The assignment's fixes are the kept fixes of its device with
    `A.start <= ts < A.end` (and `ts <= as_of`), sorted by `ts`"."""
    out = [
        f for f in kept_fixes
        if f["device_id"] == a.device_id
        and a.start_ms <= f["ts_ms"] < assignment_end(a)
        and (as_of is None or f["ts_ms"] <= as_of)
    ]
    return sorted(out, key=lambda f: f["ts_ms"])


def coverage(fixes: list[dict], i: int, T_end: int, policy: Policy) -> tuple[int, int]:
    """"The **coverage** of fix i is `c_i = [t_i, min(t_{i+1}, t_i + coverage_s, T_end))`
    (for the last fix, drop the `t_{i+1}` term); a fix at `as_of` covers nothing."
    An empty interval is returned as (t_i, t_i)."""
    t_i = fixes[i]["ts_ms"]
    end = min(t_i + policy.coverage_ms, T_end)
    if i + 1 < len(fixes):
        end = min(end, fixes[i + 1]["ts_ms"])
    return (t_i, max(t_i, end))


def contiguous(t_a: int, t_b: int, policy: Policy) -> bool:
    """"Two consecutive fixes are **contiguous** when `t_{i+1} - t_i <= coverage_s`"."""
    return t_b - t_a <= policy.coverage_ms


def intersect(x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int] | None:
    """Half-open interval intersection; None when empty."""
    lo, hi = max(x[0], y[0]), min(x[1], y[1])
    return (lo, hi) if lo < hi else None


# ====================================================================== geometry


@lru_cache(maxsize=None)
def transformer(crs: str) -> Transformer:
    """"`Transformer.from_crs("EPSG:4326", crs, always_xy=True)`"."""
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def project(lon: float, lat: float, crs: str) -> tuple[float, float]:
    x, y = transformer(crs).transform(lon, lat)
    return float(x), float(y)


@lru_cache(maxsize=None)
def zone_shape(zone: Zone, crs: str):
    """"Fix positions, polygon vertices and circle centres are projected from
    WGS84 to `crs` ... Polygon edges are straight lines in `crs`."
    Returns ('circle', (cx, cy), radius) or ('polygon', shapely geometry)."""
    if zone.is_circle:
        cx, cy = project(zone.center_lonlat[0], zone.center_lonlat[1], crs)
        return ("circle", (cx, cy), float(zone.radius_m))
    polys = []
    for rings in zone.polygons:
        projected = [[project(lon, lat, crs) for lon, lat in ring] for ring in rings]
        polys.append(Polygon(projected[0], projected[1:]))
    geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    return ("polygon", geom)


def signed_distance(x: float, y: float, zone: Zone, crs: str) -> float:
    """"let d be the distance from p to the boundary of Z (all rings), positive
    when p is inside Z and negative when outside (for a circle,
    d = radius - |p - centre|)"."""
    shape = zone_shape(zone, crs)
    if shape[0] == "circle":
        (cx, cy), radius = shape[1], shape[2]
        return radius - ((x - cx) ** 2 + (y - cy) ** 2) ** 0.5
    geom = shape[1]
    p = Point(x, y)
    dist = geom.boundary.distance(p)
    return dist if geom.contains(p) else -dist


def classify(fix: dict, zone: Zone, policy: Policy) -> str:
    """"The fix is, with respect to Z:
    - **IN** if d > 0 and d >= a (its whole accuracy circle is inside),
    - **OUT** if d < 0 and -d >= a (its whole accuracy circle is outside),
    - **UNCERTAIN** otherwise."  Missing accuracy "means `policy.default_accuracy_m`"."""
    a = fix["accuracy_m"] if fix["accuracy_m"] is not None else policy.default_accuracy_m
    x, y = project(fix["lon"], fix["lat"], policy.crs)
    d = signed_distance(x, y, zone, policy.crs)
    if d > 0 and d >= a:
        return IN
    if d < 0 and -d >= a:
        return OUT
    return UNCERTAIN


# ====================================================================== schedule


def resolve_local(tz: ZoneInfo, day: date, minute: int) -> int:
    """"a local time that does not exist (skipped when clocks go forward) means
    the instant at which the clocks change; a local time that occurs twice
    (clocks go back) means its first occurrence"."""
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
    first = wall.replace(tzinfo=tz, fold=0)  # PEP 495: fold=0 is the earlier occurrence
    back = first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None)
    if back == wall:
        return to_ms(first.astimezone(timezone.utc))
    # Nonexistent: the two readings of the wall time straddle the change.
    a = to_ms(wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)) // 1000
    b = to_ms(wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)) // 1000
    lo, hi = min(a, b), max(a, b)

    def offset(sec: int):
        return datetime.fromtimestamp(sec, tz).utcoffset()

    before = offset(lo)
    assert offset(hi) != before
    while hi - lo > 1:  # smallest whole second whose offset differs from `before`
        mid = (lo + hi) // 2
        if offset(mid) == before:
            lo = mid
        else:
            hi = mid
    return hi * 1000


def window_instances(zone: Zone, lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """"A window starts on each listed day at `start` local time and ends at `end`
    local time on the same day if `end > start`, else on the next day ...
    Window starts and ends are resolved separately ... A window that resolves to
    an empty interval is dropped."  Instances starting on the local days from
    lo_ms's day - 3 to hi_ms's day + 3."""
    tz = ZoneInfo(zone.timezone)
    first = (EPOCH + timedelta(milliseconds=lo_ms)).astimezone(tz).date() - timedelta(days=3)
    last = (EPOCH + timedelta(milliseconds=hi_ms)).astimezone(tz).date() + timedelta(days=3)
    out = []
    day = first
    while day <= last:
        for w in zone.windows:
            if day.weekday() in w.days:
                start = resolve_local(tz, day, w.start_min)
                end_day = day if w.end_min > w.start_min else day + timedelta(days=1)
                end = resolve_local(tz, end_day, w.end_min)
                if end > start:
                    out.append((start, end))
        day += timedelta(days=1)
    return out


def merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """"with windows that overlap or touch merged into maximal intervals"."""
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def active_intervals(zone: Zone, a_start: int, T_end: int) -> list[tuple[int, int]]:
    """"A zone's **active intervals** within an assignment are the union of its
    schedule's window instances (or the whole time, without a schedule)"."""
    if zone.windows is None:
        return [(NEG_INF, POS_INF)]
    return merge(window_instances(zone, a_start, T_end))


# ====================================================================== episodes


def pieces_in(fixes, covs, classes, W) -> list[dict]:
    """"the **piece** of fix i is `c_i ∩ W`"; "take the fixes with a non-empty
    piece in W, in time order"."""
    out = []
    for f, c, cls in zip(fixes, covs, classes):
        p = intersect(c, W)
        if p is not None:
            out.append({"t": f["ts_ms"], "piece": p, "cls": cls})
    return out


def runs(items: list[dict], excluded: str, policy: Policy) -> list[list[dict]]:
    """"A **run** is a maximal sequence of them in which consecutive fixes are
    contiguous and none is IN" (must-be-inside; `excluded` = IN), or "none OUT"
    (must-be-outside; `excluded` = OUT)."""
    out, cur = [], []
    for it in items:
        if it["cls"] == excluded:
            if cur:
                out.append(cur)
            cur = []
            continue
        if cur and not contiguous(cur[-1]["t"], it["t"], policy):
            out.append(cur)
            cur = []
        cur.append(it)
    if cur:
        out.append(cur)
    return out


def episode_of_run(run: list[dict], decisive: str) -> tuple[int, int] | None:
    """"Trim the run's leading and trailing UNCERTAIN fixes; what remains, if it
    holds an OUT fix [an IN fix for exclusion], is an **absence** [entry], from
    the start of its first fix's piece to the end of its last fix's piece"."""
    lo, hi = 0, len(run)
    while lo < hi and run[lo]["cls"] == UNCERTAIN:
        lo += 1
    while hi > lo and run[hi - 1]["cls"] == UNCERTAIN:
        hi -= 1
    core = run[lo:hi]
    if not any(it["cls"] == decisive for it in core):
        return None
    return (core[0]["piece"][0], core[-1]["piece"][1])


def absences(items: list[dict], policy: Policy) -> list[tuple[int, int]]:
    """Must-be-inside zones: runs with none IN, absences hold an OUT fix."""
    found = [episode_of_run(r, OUT) for r in runs(items, IN, policy)]
    return [e for e in found if e is not None]


def entries(items: list[dict], policy: Policy) -> list[tuple[int, int]]:
    """`exclusion_entry`: "a run is a maximal sequence of fixes with pieces in W,
    consecutive ones contiguous, none OUT; trimmed of leading and trailing
    UNCERTAIN fixes, what remains, if it holds an IN fix, is an **entry**"."""
    found = [episode_of_run(r, IN) for r in runs(items, OUT, policy)]
    return [e for e in found if e is not None]


def is_missed(M: tuple[int, int], items: list[dict], a_start: int, T_end: int, policy: Policy) -> bool:
    """`curfew_missed`: "A curfew window M (a merged interval) that lies wholly
    inside `[A.start, T_end)` ... is **missed** when no fix with a piece in it is
    IN, at least one is OUT, and the OUT pieces add up to at least
    `curfew_missed_fraction` of M's length." "A window that is cut by the
    assignment's start or end or by `as_of` is never missed".
    Compared in IEEE double: float(out) >= fraction * float(len(M))."""
    if not (a_start <= M[0] and M[1] <= T_end):
        return False
    if any(it["cls"] == IN for it in items):
        return False
    if not any(it["cls"] == OUT for it in items):
        return False
    out_ms = sum(it["piece"][1] - it["piece"][0] for it in items if it["cls"] == OUT)
    return float(out_ms) >= policy.curfew_missed_fraction * float(M[1] - M[0])


# ====================================================================== records


def breach_id(subject_id: str, type_: str, zone_id: str | None, start_text: str) -> str:
    """"first 16 lower-case hex digits of SHA-256 of `subject_id|type|zone_id|start`
    (UTF-8; `start` as written in the record; empty string for a null zone)"."""
    text = f"{subject_id}|{type_}|{zone_id or ''}|{start_text}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record(a: Assignment, kind: str, type_: str, zone_id: str | None, start: int, end: int, priority: int) -> dict:
    """One line of breaches.jsonl with exactly the contract's keys."""
    s, e = format_ms(start), format_ms(end)
    return {
        "breach_id": breach_id(a.subject_id, type_, zone_id, s),
        "kind": kind,
        "type": type_,
        "subject_id": a.subject_id,
        "device_id": a.device_id,
        "zone_id": zone_id,
        "start": s,
        "end": e,
        "duration_s": (end - start) / 1000,
        "priority": priority,
    }


def sort_key(r: dict):
    """"Lines are sorted by `(subject_id, start, type, zone_id or "")`, strings
    compared by Unicode code point." (Python compares str by code point.)"""
    return (r["subject_id"], r["start"], r["type"], r["zone_id"] or "")


# ====================================================================== zone rules


def zone_records(a: Assignment, zone: Zone, fixes, covs, policy: Policy, T_end: int) -> list[dict]:
    """Must-be-inside (`curfew_absence`, `inclusion_exit`, `curfew_missed`) and
    must-be-outside (`exclusion_entry`) rules for one zone of one assignment:
    "For a merged interval M, its part inside the assignment is
    `W = M ∩ [A.start, T_end)`" ... "for each non-empty W"."""
    classes = [classify(f, zone, policy) for f in fixes]
    out = []
    for M in active_intervals(zone, a.start_ms, T_end):
        W = intersect(M, (a.start_ms, T_end))
        if W is None:
            continue
        items = pieces_in(fixes, covs, classes, W)
        if zone.kind == "exclusion":
            for s, e in entries(items, policy):
                # "An entry of at least `exclusion_min_s` is a breach ... priority 2."
                if e - s >= policy.exclusion_min_ms:
                    out.append(record(a, "breach", "exclusion_entry", zone.zone_id, s, e, 2))
            continue
        if zone.kind == "curfew" and is_missed(M, items, a.start_ms, T_end, policy):
            # "one breach of type `curfew_missed` over M, priority 1, and replaces
            # the `curfew_absence` records of that window"
            out.append(record(a, "breach", "curfew_missed", zone.zone_id, M[0], M[1], 1))
            continue
        grace = policy.curfew_grace_ms if zone.kind == "curfew" else policy.inclusion_grace_ms
        type_ = "curfew_absence" if zone.kind == "curfew" else "inclusion_exit"
        for s, e in absences(items, policy):
            # "An absence of at least `curfew_grace_s` (curfew) or `inclusion_grace_s`
            # (inclusion) is a breach of type `curfew_absence` or `inclusion_exit`, priority 2."
            if e - s >= grace:
                out.append(record(a, "breach", type_, zone.zone_id, s, e, 2))
    return out


# ====================================================================== gaps and battery


def gaps(a: Assignment, fixes, T_end: int, policy: Policy) -> list[tuple[int, int, str]]:
    """"Contact points: A.start, then t_0 ... t_n, then `T_end`. Between two
    consecutive contact points u < v, if `v - u > gap_s` there is a gap `[u, v)`.
    When u is a fix whose `battery_pct` is known and `<= battery_critical_pct`,
    the gap has type `battery`; otherwise `no_signal`."  -> [(u, v, type)]"""
    points = [(a.start_ms, None)] + [(f["ts_ms"], f) for f in fixes] + [(T_end, None)]
    out = []
    for (u, fu), (v, _) in zip(points, points[1:]):
        if v - u > policy.gap_ms:
            battery = fu is not None and fu["battery_pct"] is not None and fu["battery_pct"] <= policy.battery_critical_pct
            out.append((u, v, "battery" if battery else "no_signal"))
    return out


def gap_record(a: Assignment, u: int, v: int, type_: str, policy: Policy) -> dict:
    """"A gap lasting at least `out_of_contact_s` (out of contact) is a breach of
    its type with priority 1, whatever the battery policy. Otherwise a
    `no_signal` gap is a breach, priority 3; a `battery` gap is a breach,
    priority 3, under `per_episode`, and an alert, priority 4, under `accumulated`."."""
    if v - u >= policy.out_of_contact_ms:
        return record(a, "breach", type_, None, u, v, 1)
    if type_ == "no_signal" or policy.battery_policy == "per_episode":
        return record(a, "breach", type_, None, u, v, 3)
    return record(a, "alert", type_, None, u, v, 4)


def battery_time(battery_gaps: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Battery-gap time inside the interval from lo to hi (ms; open/closed ends
    do not change a length)."""
    return sum(max(0, min(v, hi) - max(u, lo)) for u, v in battery_gaps)


def accumulated_battery(a: Assignment, battery_gaps: list[tuple[int, int]], policy: Policy) -> list[dict]:
    """"Under `accumulated`, every battery gap's time (out-of-contact ones too)
    counts toward a breach of type `accumulated_battery`, raised at the earliest
    instant t at which the battery-gap time inside
    `(max(t - accumulated_window_s, r), t]` reaches `accumulated_battery_s`,
    where r is the instant of this assignment's previous `accumulated_battery`
    breach (or A.start). Its interval is `[max(t - accumulated_window_s, r), t)`,
    priority 3."

    f(t) = battery_time(max(t - Wn, r), t) is continuous and linear between the
    candidate instants r, u, v, r + Wn, u + Wn, v + Wn (slope +1, 0 or -1), so the
    earliest t with f(t) >= S is found exactly on the first segment that reaches S.
    """
    S, Wn = policy.accumulated_battery_ms, policy.accumulated_window_ms
    out = []
    r = a.start_ms

    def f(t: int) -> int:
        return battery_time(battery_gaps, max(t - Wn, r), t)

    while True:
        cands = {r, r + Wn}
        for u, v in battery_gaps:
            cands.update((u, v, u + Wn, v + Wn))
        cands = sorted(c for c in cands if c >= r)
        t_hit = None
        for p, q in zip(cands, cands[1:]):
            fp, fq = f(p), f(q)
            if fp >= S:
                t_hit = p
                break
            if fq >= S:
                # linear on [p, q]: fp + (t - p) * (fq - fp) / (q - p) >= S
                num, den = (S - fp) * (q - p), (fq - fp)
                t_hit = p + -(-num // den)  # ceiling: the first whole millisecond
                assert f(t_hit) >= S and f(t_hit - 1) < S
                break
        if t_hit is None:
            return out
        start = max(t_hit - Wn, r)
        out.append(record(a, "breach", "accumulated_battery", None, start, t_hit, 3))
        r = t_hit


def low_battery_alerts(a: Assignment, fixes, policy: Policy) -> list[dict]:
    """"A kept fix whose `battery_pct` is `<= battery_low_pct`, where the
    assignment's previous fix with a known battery reading was above
    `battery_low_pct` (or there is none), raises an alert of type `low_battery`,
    start = end = its `ts`, priority 4."""
    out = []
    previous = None
    for f in fixes:
        b = f["battery_pct"]
        if b is None:
            continue
        if b <= policy.battery_low_pct and (previous is None or previous > policy.battery_low_pct):
            out.append(record(a, "alert", "low_battery", None, f["ts_ms"], f["ts_ms"], 4))
        previous = b
    return out


def tamper_records(kept_events, assignments) -> list[dict]:
    """"Each kept `strap_tamper` event is a breach of type `strap_tamper`,
    priority 1, with start = end = its `ts`." (of the assignment holding its device)"""
    out = []
    for ev in kept_events:
        if ev["event"] == "strap_tamper":
            a = holder(assignments, ev["device_id"], ev["ts_ms"])
            out.append(record(a, "breach", "strap_tamper", None, ev["ts_ms"], ev["ts_ms"], 1))
    return out


# ====================================================================== per assignment


def assignment_records(a: Assignment, kept_fixes, zones_by_id, policy: Policy, as_of: int | None) -> list[dict]:
    """"Work per assignment A = (subject, device, [A.start, A.end))."
    "Tamper and low-battery records arise from every kept event and fix, even
    when `T_end <= A.start`; the zone and gap rules need `T_end > A.start`."."""
    fixes = assignment_fixes(a, kept_fixes, as_of)
    out = low_battery_alerts(a, fixes, policy)
    if as_of is None:
        return out
    T_end = t_end(a, as_of)
    if not T_end > a.start_ms:
        return out
    covs = [coverage(fixes, i, T_end, policy) for i in range(len(fixes))]
    for zone_id in a.zones:
        out += zone_records(a, zones_by_id[zone_id], fixes, covs, policy, T_end)
    all_gaps = gaps(a, fixes, T_end, policy)
    out += [gap_record(a, u, v, type_, policy) for u, v, type_ in all_gaps]
    if policy.battery_policy == "accumulated":
        out += accumulated_battery(a, [(u, v) for u, v, type_ in all_gaps if type_ == "battery"], policy)
    return out


def reference_detect(*, fixes, events, assignments, zones, policy, as_of_ms=None):
    """Everything after row parsing. Returns (records sorted as breaches.jsonl,
    quarantine entries for reasons 8-10 sorted events before fixes, then row)."""
    assignments = list(assignments)
    kept_fixes, q_fixes = screen_rows(fixes, "fixes", assignments, as_of_ms)
    kept_events, q_events = screen_rows(events, "events", assignments, as_of_ms)
    as_of = resolve_as_of(as_of_ms, kept_fixes, kept_events)
    zones_by_id = {z.zone_id: z for z in zones}
    records = []
    for a in assignments:
        records += assignment_records(a, kept_fixes, zones_by_id, policy, as_of)
    records += tamper_records(kept_events, assignments)
    records.sort(key=sort_key)
    quarantine = sorted(q_events + q_fixes, key=lambda q: (0 if q[0] == "events" else 1, q[1]))
    return records, quarantine
