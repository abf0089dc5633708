"""Seeded random detection cases for comparing the engine with its twin.

Geometry is generated in British National Grid metres and converted back to
WGS84, so every fix's distance to each zone boundary is known at generation
time; fixes closer than `MARGIN_M` to a classification threshold are moved,
as the contract's conformance cases do ("at least 1 m away from each
threshold"), so any correct arithmetic agrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from geofence.model import Assignment, Policy, Window, Zone

MARGIN_M = 0.05
_TO_WGS = Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)
DAY_MS = 86_400_000
# periods that cover both Europe/London clock changes of 2024 and a plain week
BASES_MS = (1711670400000, 1729814400000, 1704931200000)  # 2024-03-29, 2024-10-25, 2024-01-11


@dataclass
class Case:
    fixes: list[dict]
    events: list[dict]
    assignments: list[Assignment]
    zones: list[Zone]
    policy: Policy
    as_of_ms: int | None


def _lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = _TO_WGS.transform(x, y)
    return float(lon), float(lat)


def _rect_signed_distance(px, py, x0, y0, x1, y1) -> float:
    """Signed distance to an axis-aligned rectangle (positive inside)."""
    dx = max(x0 - px, 0.0, px - x1)
    dy = max(y0 - py, 0.0, py - y1)
    if dx == 0 and dy == 0:
        return min(px - x0, x1 - px, py - y0, y1 - py)
    return -math.hypot(dx, dy)


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    base = int(rng.choice(BASES_MS)) + int(rng.integers(0, 24)) * 3_600_000
    span_ms = int(rng.integers(1, 4)) * DAY_MS
    hx, hy = 530000.0 + rng.uniform(-5e4, 5e4), 180000.0 + rng.uniform(-5e4, 5e4)

    # zones around the home: a circle, a rectangle (with an optional hole), another circle
    zones: list[Zone] = []
    shapes = []  # (zone_id, signed distance function in BNG)
    n_zones = int(rng.integers(1, 4))
    for k in range(n_zones):
        kind = str(rng.choice(["curfew", "inclusion", "exclusion"]))
        zid = f"Z{k}"
        windows = None
        if kind == "curfew" or rng.random() < 0.5:
            windows = tuple(
                Window(days=tuple(sorted(set(rng.choice(7, size=int(rng.integers(1, 8)), replace=True).tolist()))),
                       start_min=int(rng.integers(0, 24 * 4)) * 15,
                       end_min=int(rng.integers(0, 24 * 4)) * 15)
                for _ in range(int(rng.integers(1, 3)))
            )
        cx, cy = hx + rng.uniform(-200, 200), hy + rng.uniform(-200, 200)
        if rng.random() < 0.5:
            r = float(rng.uniform(40, 300))
            zones.append(Zone(zid, kind, None, _lonlat(cx, cy), r, windows))
            shapes.append(lambda px, py, cx=cx, cy=cy, r=r: r - math.hypot(px - cx, py - cy))
        else:
            w, h = rng.uniform(80, 400), rng.uniform(80, 400)
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            shell = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
            rings = [tuple(_lonlat(*p) for p in shell)]
            hole = None
            if rng.random() < 0.3:
                hx0, hy0, hx1, hy1 = cx - w / 6, cy - h / 6, cx + w / 6, cy + h / 6
                hole = (hx0, hy0, hx1, hy1)
                rings.append(tuple(_lonlat(*p) for p in [(hx0, hy0), (hx0, hy1), (hx1, hy1), (hx1, hy0), (hx0, hy0)]))
            zones.append(Zone(zid, kind, (tuple(rings),), None, None, windows))

            def sd(px, py, b=(x0, y0, x1, y1), hole=hole):
                ds = _rect_signed_distance(px, py, *b)
                if hole is None:
                    return ds
                dh = _rect_signed_distance(px, py, *hole)
                mag = min(abs(ds), abs(dh))
                return mag if (ds > 0 and dh < 0) else -mag

            shapes.append(sd)

    policy = Policy(
        coverage_ms=int(rng.choice([120, 300, 600])) * 1000,
        gap_ms=int(rng.choice([600, 900, 1800])) * 1000,
        curfew_grace_ms=int(rng.choice([0, 300, 900])) * 1000,
        curfew_missed_fraction=float(rng.choice([0.25, 0.5, 1.0])),
        inclusion_grace_ms=int(rng.choice([0, 600, 900])) * 1000,
        exclusion_min_ms=int(rng.choice([0, 300])) * 1000,
        battery_critical_pct=float(rng.choice([5, 10])),
        battery_low_pct=float(rng.choice([20, 30])),
        battery_policy=str(rng.choice(["per_episode", "accumulated"])),
        accumulated_battery_ms=int(rng.choice([1800, 3600, 7200])) * 1000,
        accumulated_window_ms=int(rng.choice([3, 6, 24])) * 3_600_000,
        out_of_contact_ms=int(rng.choice([3, 10, 168])) * 3_600_000,
        default_accuracy_m=float(rng.choice([0, 10])),
    )

    # assignments: subject A wears D1, maybe swaps to D2; D1 may pass to subject B
    zone_ids = tuple(z.zone_id for z in zones)
    a_start = base + int(rng.integers(0, 3)) * 3_600_000
    assignments = []
    if rng.random() < 0.4:
        swap = a_start + int(rng.integers(1, max(2, span_ms // 3_600_000))) * 3_600_000 + int(rng.integers(0, 60)) * 60_000
        assignments.append(Assignment("S-A", "D1", a_start, swap, zone_ids))
        assignments.append(Assignment("S-A", "D2", swap, None, zone_ids))
        if rng.random() < 0.5:
            assignments.append(Assignment("S-B", "D1", swap + 3_600_000, None, zone_ids[:1]))
    else:
        end = None if rng.random() < 0.6 else a_start + span_ms - int(rng.integers(0, 12)) * 3_600_000
        assignments.append(Assignment("S-A", "D1", a_start, end, zone_ids))

    # fixes: per device, a time series with jitter, silences and battery drain
    fixes: list[dict] = []
    row = 1
    for dev in ("D1", "D2", "D3"):
        t = base + int(rng.integers(-3_600_000, 3_600_000))
        end_t = base + span_ms
        batt = float(rng.uniform(10, 100))
        x, y = hx, hy
        mode = 0  # 0 home, 1 away, 2 edge
        stay = 0  # fixes left in the current mode (long stays make missed curfews)
        while t < end_t:
            stay -= 1
            if stay <= 0:
                mode = int(rng.integers(0, 3))
                stay = int(rng.choice([5, 30, 120, 700]))
            if mode == 0:
                x, y = hx + rng.normal(0, 15), hy + rng.normal(0, 15)
            elif mode == 1:
                x, y = hx + rng.uniform(-2000, 2000), hy + rng.uniform(-2000, 2000)
            else:
                ang = rng.uniform(0, 2 * math.pi)
                rad = rng.uniform(0, 450)
                x, y = hx + rad * math.cos(ang), hy + rad * math.sin(ang)
            acc = None if rng.random() < 0.1 else float(rng.choice([0, 5, 20, 50, 120]))
            a_eff = policy.default_accuracy_m if acc is None else acc
            # keep every fix clear of every threshold (d == 0, d == +-a)
            ok = all(min(abs(sd(x, y)), abs(abs(sd(x, y)) - a_eff)) > MARGIN_M for sd in shapes)
            if ok:
                b = None if rng.random() < 0.15 else round(batt, 1)
                lon, lat = _lonlat(x, y)
                fixes.append({"row": row, "device_id": dev, "ts_ms": int(t), "lat": lat, "lon": lon,
                              "accuracy_m": acc, "battery_pct": b})
                row += 1
                if rng.random() < 0.01:  # a duplicate instant
                    fixes.append({**fixes[-1], "row": row, "lat": lat + 1e-4})
                    row += 1
            batt -= rng.uniform(0, 0.5)
            step = int(rng.choice([30_000, 60_000, 60_000, 60_000, 299_000, 300_000, 301_000]))
            u = rng.random()
            if batt < policy.battery_critical_pct + 1 and u < 0.5:
                step = int(rng.integers(20, 300)) * 60_000  # flat: silent until recharged
                batt = 100.0
            elif u < 0.03:
                step = int(rng.integers(10, 240)) * 60_000  # signal loss
            elif batt < 0:
                batt = 100.0
            t += step + int(rng.integers(0, 1000))
    order = rng.permutation(len(fixes))
    fixes = [fixes[i] for i in order]
    for i, f in enumerate(fixes, start=1):
        f["row"] = i

    events = []
    for i in range(int(rng.integers(0, 4))):
        events.append({"row": i + 1, "device_id": str(rng.choice(["D1", "D2", "D9"])),
                       "ts_ms": base + int(rng.integers(0, span_ms)), "event": "strap_tamper"})
    if events and rng.random() < 0.3:
        events.append({**events[0], "row": len(events) + 1})

    as_of = None
    if rng.random() < 0.4:
        as_of = base + int(rng.integers(span_ms // 3, span_ms))
    return Case(fixes, events, assignments, zones, policy, as_of)
