"""Numba kernels: signed distance to a zone's boundary and IN/OUT/UNCERTAIN codes.

The kernels read the flat arrays of `geofence.compile.CompiledZones`, passed as
one `ZoneArrays` named tuple (so no kernel has a long positional argument
list). They assume valid input and never raise; the public wrappers that check
input live in `geofence.classify`. Every kernel has a plain-Python twin in
``tests/naive_geometry.py``.

Rule (CONTRACT.md, "Geometry"): for a fix at p with accuracy a and a zone Z,
d is the distance from p to the boundary of Z (all rings), positive inside Z,
negative outside (circle: ``d = radius_m - |p - centre|``).
IN if ``d > 0 and d >= a``; OUT if ``d < 0 and -d >= a``; else UNCERTAIN.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trails.jit import njit_parallel, njit_serial, prange

__all__ = ["OUT", "UNCERTAIN", "IN", "ZoneArrays"]

OUT = 0
UNCERTAIN = 1
IN = 2


class ZoneArrays(NamedTuple):
    """The arrays of compiled zones, in the layout the kernels read.

    See `geofence.compile.CompiledZones` for the meaning of each field.
    """

    vx: np.ndarray  # float64 (n_vertices,), rings closed
    vy: np.ndarray
    ring_offsets: np.ndarray  # int64 (n_rings + 1,)
    zone_ring_offsets: np.ndarray  # int64 (n_zones + 1,)
    is_circle: np.ndarray  # bool (n_zones,)
    cx: np.ndarray  # float64 (n_zones,), NaN for polygons
    cy: np.ndarray
    radius_m: np.ndarray
    bbox: np.ndarray  # float64 (n_zones, 4): minx, miny, maxx, maxy
    tol_m: np.ndarray  # float64 (n_zones,): floating-point slack of the prefilters
    grid_nx: np.ndarray  # int64 (n_zones,), 0 = no grid
    grid_ny: np.ndarray
    grid_x0: np.ndarray  # float64 (n_zones,)
    grid_y0: np.ndarray
    grid_cell: np.ndarray
    grid_offsets: np.ndarray  # int64 (n_zones + 1,) into cell_dmin / cell_dmax
    cell_dmin: np.ndarray  # float64 (n_cells,): lower bound of d in the cell
    cell_dmax: np.ndarray  # float64 (n_cells,): upper bound of d in the cell


@njit_serial
def _code(d, acc):
    """Contract code of signed distance `d` for accuracy `acc` (NaN -> UNCERTAIN)."""
    if d > 0.0 and d >= acc:
        return IN
    if d < 0.0 and -d >= acc:
        return OUT
    return UNCERTAIN


@njit_serial
def _polygon_signed_distance(px, py, r0, r1, vx, vy, ring_offsets):
    """Signed distance from (px, py) to the rings ``r0:r1``; inside by even-odd crossings.

    Branch-free per edge: the distance to segment AB is ``|W - t E|`` with
    ``E = B - A``, ``W = P - A`` and ``t = clamp(W.E / E.E, 0, 1)``; the edge
    crosses the horizontal ray from P to +x when A and B lie on opposite sides
    of ``y = py`` (half-open, so horizontal edges never count) and P is left of
    the edge, which is the sign of ``cross(W, E)`` (no division). Returns 0.0
    on the boundary (sign irrelevant: d = 0 is UNCERTAIN for any accuracy).
    """
    best = math.inf
    inside = False
    for r in range(r0, r1):
        for k in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            ax = vx[k]
            ay = vy[k]
            bx = vx[k + 1]
            by = vy[k + 1]
            ex = bx - ax
            ey = by - ay
            wx = px - ax
            wy = py - ay
            cr = wx * ey - wy * ex
            inside ^= ((ay > py) != (by > py)) & ((cr < 0.0) == (ey > 0.0))
            l2 = ex * ex + ey * ey
            t = (wx * ex + wy * ey) / l2 if l2 > 0.0 else 0.0  # l2 == 0: repeated vertex
            t = min(max(t, 0.0), 1.0)
            qx = wx - t * ex
            qy = wy - t * ey
            best = min(best, qx * qx + qy * qy)
    d = math.sqrt(best)
    if d == 0.0:
        return 0.0
    return d if inside else -d


@njit_serial
def _signed_distance(px, py, z, za):
    """Exact signed distance from (px, py) to zone `z` (NaN for a non-finite point)."""
    if not (math.isfinite(px) and math.isfinite(py)):
        return math.nan
    if za.is_circle[z]:
        dx = px - za.cx[z]
        dy = py - za.cy[z]
        return za.radius_m[z] - math.sqrt(dx * dx + dy * dy)
    return _polygon_signed_distance(
        px, py, za.zone_ring_offsets[z], za.zone_ring_offsets[z + 1], za.vx, za.vy, za.ring_offsets
    )


_UNDECIDED = -1


@njit_serial
def _grid_params(z, za):
    """Zone z's prefilter scalars as one by-value tuple (no arrays, no refcounts).

    (minx, miny, maxx, maxy, tol_m, grid_x0, grid_y0, grid_cell, grid_nx, grid_ny, first cell)
    """
    return (
        za.bbox[z, 0], za.bbox[z, 1], za.bbox[z, 2], za.bbox[z, 3], za.tol_m[z],
        za.grid_x0[z], za.grid_y0[z], za.grid_cell[z],
        za.grid_nx[z], za.grid_ny[z], za.grid_offsets[z],
    )


@njit_serial
def _bbox_code(px, py, acc, g):
    """OUT if the bounding box alone proves it, else `_UNDECIDED` (scalars only).

    The boundary is at least the bbox distance e away, so d <= -e; decides
    only when e clears the threshold by ``tol_m``. `g` is `_grid_params`.
    (Early exits, not selects: measured faster, most fixes are far away.)
    """
    minx, miny, maxx, maxy, tol = g[0], g[1], g[2], g[3], g[4]
    ex = max(minx - px, px - maxx, 0.0)
    ey = max(miny - py, py - maxy, 0.0)
    if ex > 0.0 or ey > 0.0:
        lb = max(ex, ey) - tol  # lower bound of e without a sqrt
        if lb > 0.0 and lb >= acc:
            return OUT
        e = math.sqrt(ex * ex + ey * ey) - tol
        if e > 0.0 and e >= acc:
            return OUT
    return _UNDECIDED


@njit_serial
def _cell_index(px, py, g):
    """Flat index of the grid cell holding (px, py), or -1 off the grid (or no grid)."""
    x0, y0, cell, nx, ny, k0 = g[5], g[6], g[7], g[8], g[9], g[10]
    fx = (px - x0) / cell
    fy = (py - y0) / cell
    if fx >= 0.0 and fx < nx and fy >= 0.0 and fy < ny:  # also false for nx == 0
        return k0 + int(fy) * nx + int(fx)
    return -1


@njit_serial
def _cell_code(lo, hi, acc):
    """Code decided by a cell's bounds ``lo <= d <= hi`` alone, else `_UNDECIDED`.

    The stored bounds already include ``tol_m``, so a decided code equals
    ``_code(<exact d>, acc)`` for every point of the cell.
    """
    if lo > 0.0 and lo >= acc:
        return IN
    if hi < 0.0 and -hi >= acc:
        return OUT
    if hi < acc and lo > -acc:  # -a < d < a in the whole cell: neither IN nor OUT
        return UNCERTAIN
    return _UNDECIDED


@njit_serial
def _classify_run(x, y, acc, f0, nf, z, za, out, o):
    """Codes of fixes ``f0:f0+nf`` against zone `z` into ``out[o:o+nf]``.

    Per fix: a non-finite point or an accuracy that is negative or NaN is
    UNCERTAIN; else the bounding box, then the grid cell, then the exact
    distance decide, so the code equals ``_code(_signed_distance(...), acc)``
    (tests/test_kernels.py checks this against a one-fix-at-a-time kernel).
    The zone's scalars and arrays are hoisted out of the loop: arrays are
    read here, never passed to the per-fix prefilter helpers, because Numba
    reference-counts array arguments and that costs ~20 ns per call where it
    is not pruned.
    """
    if za.is_circle[z]:
        _classify_circle_run(x, y, acc, f0, nf, za.cx[z], za.cy[z], za.radius_m[z], out, o)
        return
    g = _grid_params(z, za)
    cell_dmin = za.cell_dmin
    cell_dmax = za.cell_dmax
    r0 = za.zone_ring_offsets[z]
    r1 = za.zone_ring_offsets[z + 1]
    vx = za.vx
    vy = za.vy
    ring_offsets = za.ring_offsets
    for i in range(nf):
        px = x[f0 + i]
        py = y[f0 + i]
        a = acc[f0 + i]
        if not (math.isfinite(px) and math.isfinite(py) and a >= 0.0):
            out[o + i] = UNCERTAIN
            continue
        c = _bbox_code(px, py, a, g)
        if c == _UNDECIDED:
            k = _cell_index(px, py, g)
            if k >= 0:
                c = _cell_code(cell_dmin[k], cell_dmax[k], a)
        if c == _UNDECIDED:
            c = _code(_polygon_signed_distance(px, py, r0, r1, vx, vy, ring_offsets), a)
        out[o + i] = c


@njit_serial
def _classify_circle_run(x, y, acc, f0, nf, cx, cy, radius_m, out, o):
    """Codes of fixes ``f0:f0+nf`` against one circle into ``out[o:o+nf]`` (branch-light)."""
    for i in range(nf):
        px = x[f0 + i]
        py = y[f0 + i]
        a = acc[f0 + i]
        dx = px - cx
        dy = py - cy
        d = radius_m - math.sqrt(dx * dx + dy * dy)
        # NaN d or NaN a compare false -> UNCERTAIN; a < 0 is caught below
        c = UNCERTAIN
        if d > 0.0 and d >= a:
            c = IN
        if d < 0.0 and -d >= a:
            c = OUT
        if not (a >= 0.0):
            c = UNCERTAIN
        out[o + i] = c


@njit_parallel
def _classify_assignments(x, y, acc, fix_offsets, zone_offsets, zone_idx, out_offsets, za, out):
    """Codes of every (zone, fix) pair of every assignment.

    Assignment a has fixes ``fix_offsets[a]:fix_offsets[a+1]`` of the global
    `x`, `y`, `acc` and zones ``zone_idx[zone_offsets[a]:zone_offsets[a+1]]``;
    its j-th zone and i-th fix go to ``out[out_offsets[a] + j * nf_a + i]``.
    Each parallel iteration writes only its own assignment's slice.
    """
    n_assign = fix_offsets.shape[0] - 1
    for a in prange(n_assign):
        f0 = fix_offsets[a]
        nf = fix_offsets[a + 1] - f0
        j0 = zone_offsets[a]
        base = out_offsets[a]
        for jj in range(j0, zone_offsets[a + 1]):
            _classify_run(x, y, acc, f0, nf, zone_idx[jj], za, out, base + (jj - j0) * nf)


_BLOCK = 4096


@njit_parallel
def _classify_points(x, y, acc, z, za, out):
    """Codes of all points against one zone (prefilters on), in parallel blocks."""
    n = x.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        f0 = b * _BLOCK
        _classify_run(x, y, acc, f0, min(_BLOCK, n - f0), z, za, out, f0)


@njit_parallel
def _signed_distances(x, y, z, za, out):
    """Exact signed distances of all points to one zone."""
    for i in prange(x.shape[0]):
        out[i] = _signed_distance(x[i], y[i], z, za)


@njit_parallel
def _fill_cell_bounds(za, polygon_zone_idx, cell_dmin, cell_dmax):
    """Cell bounds of the grids of `polygon_zone_idx` (compile time).

    d at the cell centre comes from the exact kernel; since signed distance is
    1-Lipschitz, d anywhere in the cell lies within half the cell diagonal of
    it. The bounds are widened by ``tol_m`` for floating-point slack (in the
    centre's d, the fix's d and which cell a fix falls into).
    """
    for q in prange(polygon_zone_idx.shape[0]):
        z = polygon_zone_idx[q]
        nx = za.grid_nx[z]
        ny = za.grid_ny[z]
        cell = za.grid_cell[z]
        half_diag = 0.5 * cell * math.sqrt(2.0)
        slack = half_diag + za.tol_m[z]
        k0 = za.grid_offsets[z]
        for iy in range(ny):
            cy = za.grid_y0[z] + (iy + 0.5) * cell
            for ix in range(nx):
                cx = za.grid_x0[z] + (ix + 0.5) * cell
                dc = _signed_distance(cx, cy, z, za)
                k = k0 + iy * nx + ix
                cell_dmin[k] = dc - slack
                cell_dmax[k] = dc + slack


@njit_parallel
def _count_invalid_fixes(x, y, acc):
    """Number of fixes with a non-finite x or y or an accuracy that is not >= 0 (NaN)."""
    n_bad = 0
    for i in prange(x.shape[0]):
        if not (math.isfinite(x[i]) and math.isfinite(y[i]) and acc[i] >= 0.0):
            n_bad += 1
    return n_bad
