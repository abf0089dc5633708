"""Compiled zones, signed distance and classification kernels (CONTRACT.md "Geometry").

Checked against shapely 2 (distance to the boundary, contains), the analytic
circle formula, the plain-Python twin in ``tests/naive_geometry.py`` and the
exact kernel without prefilters.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import naive_geometry as naive
from geofence import kernels
from geofence.classify import (
    IN,
    OUT,
    UNCERTAIN,
    classify_assignments,
    classify_distance,
    classify_points,
    signed_distance,
)
from geofence.compile import CompiledZones, ZoneXY, compile_zones, compile_zones_xy
from geofence.model import Zone
from trails.jit import njit_parallel, njit_serial, prange
from trails.projection import project_lonlat

WARDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "liverpool_wards_2013_martinjc.geojson"


# ---------------------------------------------------------------- random zones


def star_ring(rng: np.random.Generator, cx: float, cy: float, r_min: float, r_max: float, n: int) -> np.ndarray:
    """A closed star-shaped (usually concave) ring: sorted stratified angles, random radii."""
    ang = 2 * np.pi * (np.arange(n) + rng.uniform(0.05, 0.95, n)) / n
    rad = rng.uniform(r_min, r_max, n)
    ring = np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
    return np.vstack([ring, ring[:1]])


def random_zone(rng: np.random.Generator, kind: str, *, scale: float = 100.0, offset=(0.0, 0.0),
                zone_id: str = "z") -> ZoneXY:
    """`kind`: "star", "holed", "multi" (2-3 disjoint parts, some holed) or "circle"."""
    ox, oy = offset
    if kind == "circle":
        return ZoneXY(zone_id, center_xy=(ox + rng.uniform(-1, 1) * scale, oy), radius_m=scale * rng.uniform(0.1, 1))
    n_parts = int(rng.integers(2, 4)) if kind == "multi" else 1
    polys = []
    for p in range(n_parts):
        cx, cy = ox + 3.0 * scale * p, oy + (scale if p == 2 else 0.0)
        shell = star_ring(rng, cx, cy, 0.5 * scale, scale, int(rng.integers(3, 30)))
        rings = [shell]
        if kind == "holed" or (kind == "multi" and rng.random() < 0.5):
            # a star with stratified angles over >= 8 vertices keeps every edge
            # at >= 0.5 * cos(pi/4) * scale from the centre; the hole stays inside 0.3 * scale
            shell = star_ring(rng, cx, cy, 0.5 * scale, scale, int(rng.integers(8, 30)))
            hole = star_ring(rng, cx, cy, 0.05 * scale, 0.3 * scale, int(rng.integers(3, 12)))[::-1]
            rings = [shell, hole]
        polys.append(rings)
    return ZoneXY(zone_id, polygons=polys)


def to_shapely(zone: ZoneXY):
    if zone.center_xy is not None:
        return shapely.Point(zone.center_xy).buffer(zone.radius_m, quad_segs=256)
    return shapely.MultiPolygon([shapely.Polygon(p[0], p[1:]) for p in zone.polygons])


def sample_points(rng: np.random.Generator, zone: ZoneXY, n_random: int, n_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points over the expanded bbox, points on/near edges, and every vertex."""
    if zone.center_xy is not None:
        cx, cy, r = *zone.center_xy, zone.radius_m
        t = rng.uniform(0, 2 * np.pi, n_random + n_edge)
        rr = np.concatenate([rng.uniform(0, 2 * r, n_random), r * (1 + rng.choice([0, 1e-6, -1e-6, 1e-3], n_edge))])
        return cx + rr * np.cos(t), cy + rr * np.sin(t)
    rings = [np.asarray(r) for p in zone.polygons for r in p]
    allv = np.concatenate(rings)
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    pad = 0.3 * (hi - lo).max()
    xs = [rng.uniform(lo[0] - pad, hi[0] + pad, n_random)]
    ys = [rng.uniform(lo[1] - pad, hi[1] + pad, n_random)]
    segs = np.concatenate([np.column_stack([r[:-1], r[1:]]) for r in rings])  # ax, ay, bx, by
    pick = segs[rng.integers(0, len(segs), n_edge)]
    t = rng.uniform(0, 1, n_edge)
    e = pick[:, 2:] - pick[:, :2]
    normal = np.column_stack([-e[:, 1], e[:, 0]]) / np.hypot(e[:, 0], e[:, 1])[:, None]
    off = rng.choice([0.0, 1e-6, -1e-6, 1e-3, -1e-3, 0.05, -0.05], n_edge) * pad
    p = pick[:, :2] + t[:, None] * e + off[:, None] * normal
    xs += [p[:, 0], allv[:, 0]]
    ys += [p[:, 1], allv[:, 1]]
    return np.concatenate(xs), np.concatenate(ys)


def shapely_signed(zone: ZoneXY, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|d| from shapely, inside from shapely contains) in plain projected coordinates."""
    g = to_shapely(zone)
    dist = shapely.distance(shapely.points(x, y), g.boundary)
    return dist, shapely.contains_xy(g, x, y)


SCALES = st.sampled_from([1.0, 100.0, 10_000.0])
OFFSETS = st.sampled_from([(0.0, 0.0), (345_000.0, 390_000.0), (-1e4, 2e6)])


# ------------------------------------------------------- signed distance vs shapely


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["star", "holed", "multi"]),
       scale=SCALES, offset=OFFSETS)
def test_signed_distance_matches_shapely(seed, kind, scale, offset):
    rng = np.random.default_rng(seed)
    zone = random_zone(rng, kind, scale=scale, offset=offset)
    cz = compile_zones_xy([zone])
    x, y = sample_points(rng, zone, 30, 30)
    d = signed_distance(x, y, 0, cz)
    dist, inside = shapely_signed(zone, x, y)
    np.testing.assert_allclose(np.abs(d), dist, rtol=1e-9, atol=1e-7)
    clear = dist > 1e-9 * max(1.0, scale)
    assert ((d > 0) == inside)[clear].all()
    verts = np.concatenate([np.asarray(r) for p in zone.polygons for r in p])
    assert (signed_distance(verts[:, 0], verts[:, 1], 0, cz) == 0.0).all()  # on a vertex: 0, UNCERTAIN


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=SCALES, offset=OFFSETS)
def test_circle_signed_distance_is_analytic(seed, scale, offset):
    rng = np.random.default_rng(seed)
    zone = random_zone(rng, "circle", scale=scale, offset=offset)
    cz = compile_zones_xy([zone])
    x, y = sample_points(rng, zone, 30, 20)
    d = signed_distance(x, y, 0, cz)
    cx, cy = zone.center_xy
    np.testing.assert_allclose(d, zone.radius_m - np.hypot(x - cx, y - cy), rtol=1e-12, atol=1e-9 * scale)
    # Point.buffer is a 1024-gon: it deviates from the circle by r * (1 - cos(pi / 1024))
    sag = zone.radius_m * (1 - math.cos(math.pi / 1024)) * 2
    g = to_shapely(zone)
    clear = np.abs(d) > sag
    assert ((d > 0) == shapely.contains_xy(g, x, y))[clear].all()


@pytest.mark.parametrize(
    "x, y, expected",
    [
        pytest.param(5.0, 5.0, -3.0, id="in-hole-centre"),
        pytest.param(2.0, 5.0, 0.0, id="on-hole-edge"),
        pytest.param(2.0, 2.0, 0.0, id="on-hole-vertex"),
        pytest.param(1.0, 5.0, 1.0, id="between-shell-and-hole"),
        pytest.param(0.0, 0.0, 0.0, id="on-shell-vertex"),
        pytest.param(10.0, 7.0, 0.0, id="on-shell-edge"),
        pytest.param(13.0, 14.0, -5.0, id="outside-corner"),
        pytest.param(25.0, 5.0, 5.0, id="second-part-centre"),
    ],
)
def test_signed_distance_table(x, y, expected):
    shell = [(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]
    hole = [(2, 2), (2, 8), (8, 8), (8, 2), (2, 2)]
    part2 = [(20, 0), (30, 0), (30, 10), (20, 10), (20, 0)]
    cz = compile_zones_xy([ZoneXY("z", polygons=[[shell, hole], [part2]])])
    assert signed_distance([x], [y], 0, cz)[0] == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------- prefilter == exact


@njit_serial
def _classify_one(px, py, acc, z, za):
    """Code of one fix against zone `z` through the same prefilters as
    `geofence.kernels._classify_run`, one call per fix (no hoisting): the
    cross-check that hoisting changed nothing. Tests only."""
    if not (math.isfinite(px) and math.isfinite(py) and acc >= 0.0):
        return UNCERTAIN
    if za.is_circle[z]:
        dx = px - za.cx[z]
        dy = py - za.cy[z]
        return kernels._code(za.radius_m[z] - math.sqrt(dx * dx + dy * dy), acc)
    g = kernels._grid_params(z, za)
    c = kernels._bbox_code(px, py, acc, g)
    if c == kernels._UNDECIDED:
        k = kernels._cell_index(px, py, g)
        if k >= 0:
            c = kernels._cell_code(za.cell_dmin[k], za.cell_dmax[k], acc)
    if c == kernels._UNDECIDED:
        d = kernels._polygon_signed_distance(px, py, za.zone_ring_offsets[z], za.zone_ring_offsets[z + 1],
                                             za.vx, za.vy, za.ring_offsets)
        c = kernels._code(d, acc)
    return c


@njit_parallel
def _classify_points_one_by_one(x, y, acc, z, za, out):
    """`geofence.classify.classify_points` through `_classify_one` (tests only)."""
    for i in prange(x.shape[0]):
        out[i] = _classify_one(x[i], y[i], acc[i], z, za)


def _tricky_accuracies(rng, cz: CompiledZones, z: int, x, y) -> np.ndarray:
    """Accuracies at and around |d| and the cell bounds, plus random ones."""
    d = signed_distance(x, y, z, cz)
    n = x.shape[0]
    cand = [np.abs(d), rng.uniform(0, 2, n) * np.abs(d), np.zeros(n)]
    if cz.grid_nx[z]:
        fx = np.floor((x - cz.grid_x0[z]) / cz.grid_cell[z]).astype(np.int64)
        fy = np.floor((y - cz.grid_y0[z]) / cz.grid_cell[z]).astype(np.int64)
        ok = (fx >= 0) & (fx < cz.grid_nx[z]) & (fy >= 0) & (fy < cz.grid_ny[z])
        k = cz.grid_offsets[z] + np.where(ok, fy * cz.grid_nx[z] + fx, 0)
        lo, hi = cz.cell_dmin[k], cz.cell_dmax[k]
        cand += [np.where(ok, np.abs(lo), 1.0), np.where(ok, np.abs(hi), 1.0)]
    a = np.choose(rng.integers(0, len(cand), n), cand)
    wiggle = rng.choice([0.0, 1.0, -1.0, 1e-12, -1e-12], n) * np.maximum(a, 1e-300)
    return np.maximum(a + wiggle * rng.choice([0, 1], n), 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_prefilter_equals_exact_distance(seed):
    rng = np.random.default_rng(seed)
    zones = [random_zone(rng, k, scale=s, offset=o, zone_id=f"{k}{i}")
             for i, (k, s, o) in enumerate([("star", 100.0, (0, 0)), ("holed", 30.0, (345_000.0, 390_000.0)),
                                            ("multi", 1000.0, (0, 0)), ("circle", 50.0, (1e5, 1e5)),
                                            ("star", 1.0, (0, 0))])]
    for grid_cells in (64, 3):
        cz = compile_zones_xy(zones, grid_cells=grid_cells)
        for z, zone in enumerate(zones):
            x, y = sample_points(rng, zone, 2000, 500)
            acc = _tricky_accuracies(rng, cz, z, x, y)
            want = classify_distance(signed_distance(x, y, z, cz), acc)
            got = classify_points(x, y, acc, z, cz)
            np.testing.assert_array_equal(got, want)
            one = np.empty_like(got)
            _classify_points_one_by_one(x, y, acc, z, cz.arrays(), one)
            np.testing.assert_array_equal(one, want)
            # every zone, at both grid sizes, was tried with fixes of all three codes
            assert np.bincount(want, minlength=3).min() > 0, (zone.zone_id, grid_cells, np.bincount(want))


@pytest.mark.parametrize("seed", range(3))
def test_kernels_match_plain_python_twin(seed):
    rng = np.random.default_rng(100 + seed)
    zones = [random_zone(rng, k, scale=50.0, offset=(3e5, 4e5), zone_id=k)
             for k in ("star", "holed", "multi", "circle")]
    cz = compile_zones_xy(zones)
    for z, zone in enumerate(zones):
        x, y = sample_points(rng, zone, 150, 50)
        acc = rng.exponential(10.0, x.shape[0])
        d = signed_distance(x, y, z, cz)
        d_twin = np.array([naive.signed_distance(px, py, zone) for px, py in zip(x, y)])
        np.testing.assert_allclose(d, d_twin, rtol=1e-9, atol=1e-7)
        codes = classify_points(x, y, acc, z, cz)
        twin = np.array([naive.classify(v, a) for v, a in zip(d_twin, acc)])
        near = (np.abs(np.abs(d_twin) - acc) < 1e-6) | (np.abs(d_twin) < 1e-6)
        np.testing.assert_array_equal(codes[~near], twin[~near])


# ------------------------------------------------------- assignments (CSR)


@pytest.mark.parametrize("seed", range(4))
def test_classify_assignments_equals_per_zone_loop(seed):
    rng = np.random.default_rng(200 + seed)
    kinds = ["star", "holed", "multi", "circle"]
    zones = [random_zone(rng, kinds[i % 4], scale=40.0, offset=(0, 0), zone_id=f"z{i}") for i in range(7)]
    cz = compile_zones_xy(zones, grid_cells=16)
    n_assign = int(rng.integers(1, 12))
    nf = rng.integers(0, 300, n_assign) * (rng.random(n_assign) > 0.2)  # some assignments without fixes
    nz = rng.integers(0, 4, n_assign) * (rng.random(n_assign) > 0.2)  # some without zones
    fix_offsets = np.concatenate([[0], np.cumsum(nf)])
    zone_offsets = np.concatenate([[0], np.cumsum(nz)])
    zone_idx = rng.integers(0, len(zones), zone_offsets[-1])
    n = fix_offsets[-1]
    x, y = rng.uniform(-150, 250, n), rng.uniform(-150, 150, n)
    acc = rng.exponential(8.0, n)
    codes, out_offsets = classify_assignments(x, y, acc, fix_offsets, zone_offsets, zone_idx, cz)
    assert out_offsets.tolist() == np.concatenate([[0], np.cumsum(nf * nz)]).tolist()
    for a in range(n_assign):
        f = slice(fix_offsets[a], fix_offsets[a + 1])
        for j, z in enumerate(zone_idx[zone_offsets[a]:zone_offsets[a + 1]]):
            got = codes[out_offsets[a] + j * nf[a]: out_offsets[a] + (j + 1) * nf[a]]
            np.testing.assert_array_equal(got, classify_points(x[f], y[f], acc[f], int(z), cz))


def test_classify_assignments_empty_layouts():
    cz = compile_zones_xy([ZoneXY("c", center_xy=(0.0, 0.0), radius_m=10.0)])
    codes, off = classify_assignments([], [], [], [0], [0], [], cz)
    assert codes.dtype == np.int8 and codes.size == 0 and off.tolist() == [0]
    codes, off = classify_assignments([1.0], [0.0], 0.0, [0, 0, 1], [0, 1, 1], [0], cz)
    assert codes.size == 0 and off.tolist() == [0, 0, 0]
    codes, off = classify_assignments([1.0, 10.0, 30.0], [0.0] * 3, [0.0, 0.0, 5.0], [0, 3], [0, 2], [0, 0], cz)
    assert codes.tolist() == [IN, UNCERTAIN, OUT, IN, UNCERTAIN, OUT] and off.tolist() == [0, 6]


# ------------------------------------------------------- real zones


def _ward_zones() -> list[Zone]:
    doc = json.loads(WARDS.read_text())
    zones = []
    for f in doc["features"]:
        g = f["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        polygons = tuple(tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in poly) for poly in polys)
        zones.append(Zone(f["properties"]["WD13CD"], "exclusion", polygons, None, None, None))
    return zones


@pytest.mark.skipif(not WARDS.exists(), reason="shared data not present")
def test_liverpool_wards_match_shapely():
    zones = _ward_zones()
    cz = compile_zones(zones, "EPSG:27700")
    assert cz.zone_ids == tuple(z.zone_id for z in zones)
    rng = np.random.default_rng(7)
    lo, hi = cz.bbox[:, :2].min(axis=0), cz.bbox[:, 2:].max(axis=0)
    n = 4000
    x, y = rng.uniform(lo[0], hi[0], n), rng.uniform(lo[1], hi[1], n)
    acc = rng.exponential(40.0, n)
    for z, zone in enumerate(zones):
        polys = []
        for poly in zone.polygons:
            rings = []
            for ring in poly:
                rx, ry = project_lonlat(np.array([p[0] for p in ring]), np.array([p[1] for p in ring]), "EPSG:27700")
                rings.append(np.column_stack([rx, ry]))
            polys.append(shapely.Polygon(rings[0], rings[1:]))
        g = shapely.MultiPolygon(polys)
        dist = shapely.distance(shapely.points(x, y), g.boundary)
        inside = shapely.contains_xy(g, x, y)
        want = classify_distance(np.where(inside, dist, -dist), acc)
        got = classify_points(x, y, acc, z, cz)
        clear = np.abs(dist - acc) > 1e-6
        np.testing.assert_array_equal(got[clear], want[clear])
        assert (got == IN).sum() > 0 or (got == OUT).all()


def test_grid_only_for_polygons_with_enough_edges():
    from geofence.compile import GRID_MIN_EDGES

    def ngon(n):
        a = np.linspace(0, 2 * np.pi, n + 1)
        ring = np.column_stack([100 * np.cos(a), 100 * np.sin(a)])
        ring[-1] = ring[0]
        return ZoneXY(f"n{n}", polygons=[[ring]])

    cz = compile_zones_xy([ngon(GRID_MIN_EDGES - 1), ngon(GRID_MIN_EDGES)])
    assert cz.grid_nx.tolist()[0] == 0 and cz.grid_nx[1] > 0 and cz.grid_ny[1] > 0


def test_compile_zones_projects_circle_and_keeps_order():
    poly = ((((-2.99, 53.40), (-2.98, 53.40), (-2.98, 53.41), (-2.99, 53.40)),),)
    zones = [Zone("b-circle", "curfew", None, (-2.98, 53.40), 50.0, None),
             Zone("a-poly", "exclusion", poly, None, None, None)]
    cz = compile_zones(zones, "EPSG:27700")
    assert cz.zone_ids == ("b-circle", "a-poly") and cz.index_of("a-poly") == 1
    cx, cy = project_lonlat(np.array([-2.98]), np.array([53.40]), "EPSG:27700")
    assert (cz.cx[0], cz.cy[0], cz.radius_m[0]) == (cx[0], cy[0], 50.0)
    assert cz.is_circle.tolist() == [True, False] and math.isnan(cz.cx[1])
    assert cz.zone_ring_offsets.tolist() == [0, 0, 1] and cz.ring_offsets.tolist() == [0, 4]
    assert (cz.vx[0], cz.vy[0]) == (cz.vx[3], cz.vy[3])  # closed
    assert cz.grid_nx[0] == 0 and cz.grid_nx[1] == 0  # circles and small polygons need no grid
    assert classify_points([cx[0]], [cy[0] + 30.0], 10.0, 0, cz).tolist() == [IN]
    with pytest.raises(KeyError, match="'nope'"):
        cz.index_of("nope")


# ------------------------------------------------------- structure and input checks


def test_compiled_arrays_are_read_only_and_laid_out():
    sq = [(0, 0), (4, 0), (4, 4), (0, 4), (0, 0)]
    hole = [(1, 1), (1, 2), (2, 2), (1, 1)]
    cz = compile_zones_xy([ZoneXY("a", polygons=[[sq, hole]]), ZoneXY("c", center_xy=(9, 9), radius_m=1),
                           ZoneXY("b", polygons=[[sq]])])
    assert cz.ring_offsets.tolist() == [0, 5, 9, 14]
    assert cz.zone_ring_offsets.tolist() == [0, 2, 2, 3]
    assert cz.bbox.tolist()[1] == [8.0, 8.0, 10.0, 10.0]
    assert cz.grid_offsets[1] == cz.grid_offsets[2]  # circles have no grid
    for name in kernels.ZoneArrays._fields:
        arr = getattr(cz, name)
        assert not arr.flags.writeable, name
    assert (cz.cell_dmin <= cz.cell_dmax).all()


@pytest.mark.parametrize(
    "zone, match",
    [
        pytest.param(ZoneXY("o", polygons=[[[(0, 0), (1, 0), (1, 1), (0, 1)]]]), "not closed", id="open-ring"),
        pytest.param(ZoneXY("s", polygons=[[[(0, 0), (1, 0), (0, 0)]]]), ">= 4", id="short-ring"),
        pytest.param(ZoneXY("n", polygons=[[[(0, 0), (np.nan, 0), (1, 1), (0, 0)]]]), "non-finite", id="nan"),
        pytest.param(ZoneXY("r", center_xy=(0, 0), radius_m=0.0), "radius_m", id="zero-radius"),
        pytest.param(ZoneXY("b", polygons=[], center_xy=(0, 0), radius_m=1.0), "exactly one", id="both"),
        pytest.param(ZoneXY("e"), "exactly one", id="neither"),
    ],
)
def test_compile_rejects_bad_geometry(zone, match):
    with pytest.raises(ValueError, match=match):
        compile_zones_xy([zone])


def test_compile_rejects_duplicates_and_wrong_types():
    c = ZoneXY("c", center_xy=(0, 0), radius_m=1)
    with pytest.raises(ValueError, match="duplicate"):
        compile_zones_xy([c, c])
    with pytest.raises(TypeError, match="not a ZoneXY"):
        compile_zones_xy([{"zone_id": "c"}])
    with pytest.raises(TypeError, match="not a Zone"):
        compile_zones([c], "EPSG:27700")


@pytest.fixture(scope="module")
def unit_square():
    return compile_zones_xy([ZoneXY("sq", polygons=[[[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]]])])


@pytest.mark.parametrize(
    "args, exc, match",
    [
        pytest.param(([0.5], [0.5, 0.5], 0.0, 0), ValueError, "y has 2", id="length-mismatch"),
        pytest.param(([np.nan], [0.5], 0.0, 0), ValueError, "finite", id="nan-x"),
        pytest.param(([0.5], [0.5], -1.0, 0), ValueError, "accuracy_m", id="negative-accuracy"),
        pytest.param(([0.5], [0.5], np.nan, 0), ValueError, "NaN", id="nan-accuracy"),
        pytest.param(([0.5], [0.5], 0.0, 1), ValueError, "zone_index=1", id="zone-out-of-range"),
        pytest.param(([0.5], [0.5], 0.0, 0.0), TypeError, "zone_index", id="float-zone"),
        pytest.param((["a"], [0.5], 0.0, 0), TypeError, "x must be", id="string-x"),
        pytest.param(([[0.5]], [[0.5]], 0.0, 0), ValueError, "1-D", id="2d"),
    ],
)
def test_classify_points_rejects_bad_input(unit_square, args, exc, match):
    x, y, acc, z = args
    with pytest.raises(exc, match=match):
        classify_points(x, y, acc, z, unit_square)


@pytest.mark.parametrize(
    "fo, zo, zi, match",
    [
        pytest.param([0, 1], [0, 1], [0], "end at 2", id="fix-offsets-short"),
        pytest.param([1, 2], [0, 1], [0], "start at 0", id="fix-offsets-start"),
        pytest.param([0, 2, 1, 2], [0, 0, 0, 0], [], "non-decreasing", id="decreasing"),
        pytest.param([0, 2], [0, 0, 0], [], "zone_offsets has 3", id="offset-lengths"),
        pytest.param([0, 2], [0, 1], [5], "zone_idx", id="zone-idx-range"),
    ],
)
def test_classify_assignments_rejects_bad_layout(unit_square, fo, zo, zi, match):
    with pytest.raises(ValueError, match=match):
        classify_assignments([0.5, 0.6], [0.5, 0.5], 0.0, fo, zo, zi, unit_square)
    with pytest.raises(TypeError, match="fix_offsets"):
        classify_assignments([0.5], [0.5], 0.0, [0.0, 1.0], [0, 0], [], unit_square)


def test_boundary_points_are_uncertain_even_with_zero_accuracy(unit_square):
    x = [0.0, 0.5, 1.0, 0.5, 0.5, 2.0]
    y = [0.0, 0.0, 0.5, 0.5, 1.0 + 1e-9, 0.5]
    assert classify_points(x, y, 0.0, 0, unit_square).tolist() == [UNCERTAIN, UNCERTAIN, UNCERTAIN, IN, OUT, OUT]
    assert classify_points([], [], 0.0, 0, unit_square).dtype == np.int8
