"""Fix-zone classification throughput: tagtrail kernels vs shapely 2 (vectorised).

~2000 assignments, each ~5000 fixes and 1-2 zones (a 50 m circle and/or a
small polygon around the home); fixes mostly 0-5 km from home. Prints
classifications per second for both and their ratio (no asserts).

    .venv/bin/python benchmarks/classify.py [--assignments N] [--threads T] [--seed S]
"""
from __future__ import annotations

import argparse
import math
import time

import numba
import numpy as np
import shapely

from geofence.classify import IN, OUT, UNCERTAIN, classify_assignments
from geofence.compile import ZoneXY, compile_zones_xy


def _home_polygon(rng: np.random.Generator, hx: float, hy: float) -> list:
    """A star-shaped polygon of 6-16 vertices, 15-60 m radius, around (hx, hy)."""
    n = int(rng.integers(6, 17))
    ang = 2 * np.pi * (np.arange(n) + rng.uniform(0.1, 0.9, n)) / n
    rad = rng.uniform(15.0, 60.0, n)
    ring = np.column_stack([hx + rad * np.cos(ang), hy + rad * np.sin(ang)])
    ring = np.vstack([ring, ring[:1]])
    return [[ring]]


def make_workload(n_assign: int, seed: int):
    rng = np.random.default_rng(seed)
    zones: list[ZoneXY] = []
    fix_counts = rng.integers(4000, 6001, n_assign)
    zone_lists = []
    homes = np.column_stack([rng.uniform(330_000, 350_000, n_assign), rng.uniform(380_000, 400_000, n_assign)])
    for a in range(n_assign):
        hx, hy = homes[a]
        kinds = [("circle",), ("poly",), ("circle", "poly")][int(rng.integers(0, 3))]
        idx = []
        for k in kinds:
            zid = f"A{a}-{k}"
            if k == "circle":
                zones.append(ZoneXY(zid, center_xy=(hx, hy), radius_m=50.0))
            else:
                zones.append(ZoneXY(zid, polygons=_home_polygon(rng, hx, hy)))
            idx.append(len(zones) - 1)
        zone_lists.append(idx)
    n_fix = int(fix_counts.sum())
    owner = np.repeat(np.arange(n_assign), fix_counts)
    # 30 % at home (within 80 m), 70 % spread 0-5 km away
    at_home = rng.random(n_fix) < 0.3
    r = np.where(at_home, rng.uniform(0, 80, n_fix), 5000 * np.sqrt(rng.random(n_fix)))
    t = rng.uniform(0, 2 * np.pi, n_fix)
    x = homes[owner, 0] + r * np.cos(t)
    y = homes[owner, 1] + r * np.sin(t)
    acc = rng.lognormal(math.log(12.0), 0.8, n_fix)
    fix_offsets = np.zeros(n_assign + 1, dtype=np.int64)
    np.cumsum(fix_counts, out=fix_offsets[1:])
    zone_offsets = np.zeros(n_assign + 1, dtype=np.int64)
    np.cumsum([len(z) for z in zone_lists], out=zone_offsets[1:])
    zone_idx = np.concatenate([np.asarray(z, dtype=np.int64) for z in zone_lists])
    return zones, x, y, acc, fix_offsets, zone_offsets, zone_idx


def shapely_codes(zones, x, y, acc, fix_offsets, zone_offsets, zone_idx, assignments) -> np.ndarray:
    """The same classification with shapely 2 vectorised per (assignment, zone)."""
    geoms = []
    for z in zones:
        if z.center_xy is not None:
            geoms.append(shapely.Point(z.center_xy).buffer(z.radius_m, quad_segs=64))
        else:
            geoms.append(shapely.MultiPolygon([shapely.Polygon(p[0], p[1:]) for p in z.polygons]))
    for g in geoms:
        shapely.prepare(g)
    bounds = [g.boundary for g in geoms]
    out = []
    for a in assignments:
        sl = slice(fix_offsets[a], fix_offsets[a + 1])
        pts = shapely.points(x[sl], y[sl])
        for j in zone_idx[zone_offsets[a]:zone_offsets[a + 1]]:
            dist = shapely.distance(pts, bounds[j])
            inside = shapely.contains_xy(geoms[j], x[sl], y[sl])
            d = np.where(inside, dist, -dist)
            a_ = acc[sl]
            out.append(np.where((d > 0) & (d >= a_), IN, np.where((d < 0) & (-d >= a_), OUT, UNCERTAIN)))
    return np.concatenate(out).astype(np.int8) if out else np.zeros(0, np.int8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assignments", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shapely-assignments", type=int, default=100, help="subset timed for shapely")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)

    t0 = time.perf_counter()
    zones, x, y, acc, fo, zo, zi = make_workload(args.assignments, args.seed)
    t1 = time.perf_counter()
    cz = compile_zones_xy(zones)
    t2 = time.perf_counter()
    codes, out_off = classify_assignments(x, y, acc, fo, zo, zi, cz)  # warm-up / JIT
    n_pairs = codes.size
    best = math.inf
    for _ in range(args.repeat):
        s = time.perf_counter()
        codes, out_off = classify_assignments(x, y, acc, fo, zo, zi, cz)
        best = min(best, time.perf_counter() - s)
    rate = n_pairs / best

    sub = range(min(args.shapely_assignments, args.assignments))
    s = time.perf_counter()
    ref = shapely_codes(zones, x, y, acc, fo, zo, zi, sub)
    t_shp = time.perf_counter() - s
    rate_shp = ref.size / t_shp
    mine = codes[: out_off[len(sub)]]
    agree = float((mine == ref).mean()) if ref.size else 1.0

    counts = np.bincount(codes, minlength=3)
    print(f"workload: {args.assignments} assignments, {x.size:,} fixes, {len(zones)} zones, "
          f"{n_pairs:,} fix-zone pairs (built in {t1 - t0:.2f} s)")
    print(f"compile_zones_xy: {t2 - t1:.3f} s, {int(cz.grid_offsets[-1]):,} grid cells")
    print(f"codes OUT/UNCERTAIN/IN: {counts[0]:,} / {counts[1]:,} / {counts[2]:,}")
    print(f"tagtrail ({args.threads} threads): {best * 1e3:.1f} ms, {rate / 1e6:.0f} M classifications/s")
    print(f"shapely 2 vectorised (1 thread, {len(sub)} assignments, {ref.size:,} pairs): "
          f"{t_shp * 1e3:.0f} ms, {rate_shp / 1e6:.2f} M classifications/s")
    print(f"ratio: {rate / rate_shp:.0f}x; agreement with shapely on the subset: {agree:.6f} "
          f"(shapely circles are 256-gon approximations)")


if __name__ == "__main__":
    main()
