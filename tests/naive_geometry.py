"""Plain-Python twin of `geofence.kernels` (slow and obvious; CONTRACT.md "Geometry").

Works on `ZoneXY` geometry directly (not on compiled arrays): loop over every
segment of every ring, point-in-polygon by counting crossings.
"""
from __future__ import annotations

import math

from geofence.compile import ZoneXY

OUT, UNCERTAIN, IN = 0, 1, 2


def point_segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Euclidean distance from P to segment AB."""
    ex, ey = bx - ax, by - ay
    l2 = ex * ex + ey * ey
    if l2 == 0.0:
        return math.hypot(px - ax, py - ay)
    t = ((px - ax) * ex + (py - ay) * ey) / l2
    t = max(0.0, min(1.0, t))
    return math.hypot(px - (ax + t * ex), py - (ay + t * ey))


def rings_of(zone: ZoneXY) -> list[list[tuple[float, float]]]:
    return [[(float(x), float(y)) for x, y in ring] for poly in zone.polygons for ring in poly]


def signed_distance(px: float, py: float, zone: ZoneXY) -> float:
    """Distance to the boundary (all rings), positive inside (even-odd rule)."""
    if zone.center_xy is not None:
        return zone.radius_m - math.hypot(px - zone.center_xy[0], py - zone.center_xy[1])
    best = math.inf
    crossings = 0
    for ring in rings_of(zone):
        for (ax, ay), (bx, by) in zip(ring[:-1], ring[1:]):
            best = min(best, point_segment_distance(px, py, ax, ay, bx, by))
            if (ay > py) != (by > py):
                x_at_py = ax + (py - ay) * (bx - ax) / (by - ay)
                if px < x_at_py:
                    crossings += 1
    if best == 0.0:
        return 0.0
    return best if crossings % 2 == 1 else -best


def classify(d: float, accuracy_m: float) -> int:
    """The contract's rule on a signed distance."""
    if d > 0 and d >= accuracy_m:
        return IN
    if d < 0 and -d >= accuracy_m:
        return OUT
    return UNCERTAIN
