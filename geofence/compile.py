"""Zones -> flat projected arrays for the kernels (vertices, ring/zone offsets, bbox, grid).

Layout (GeoArrow style, CONTRACT.md "Geometry"): all ring vertices of all
zones in `vx`, `vy` (rings closed, first == last); ring r is
``ring_offsets[r]:ring_offsets[r+1]``; zone z owns rings
``zone_ring_offsets[z]:zone_ring_offsets[z+1]`` (shells and holes of all
parts; circles own none). Compiled zone i is input zone i.

Each polygon zone also gets a square-cell grid over its bounding box
expanded by a margin, with per-cell lower/upper bounds of the signed
distance, so most fixes are classified without touching an edge
(`geofence.kernels._classify_run`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from trails.projection import check_projected_crs, project_lonlat

from .errors import ZoneError
from .kernels import ZoneArrays, _fill_cell_bounds
from .model import Zone

__all__ = ["ZoneXY", "CompiledZones", "compile_zones", "compile_zones_xy", "DEFAULT_GRID_CELLS"]

DEFAULT_GRID_CELLS = 64
_MIN_GRID_SIDE = 32
#: Polygons with fewer edges get no grid: their exact distance costs a few
#: tens of ns, no more than a cell lookup, while their grid would cost
#: ~1000 exact distances to build (most wearers' home polygons are this small).
GRID_MIN_EDGES = 24
_GRID_MARGIN_FRACTION = 0.25  # grid covers bbox expanded by this fraction of its longer side

Ring = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class ZoneXY:
    """One zone already in CRS metres: exactly one of `polygons` and
    (`center_xy`, `radius_m`).

    `polygons` is a sequence of polygons, each a sequence of rings (shell
    first, then holes), each ring a closed sequence of ``(x, y)`` positions.
    """

    zone_id: str
    polygons: Sequence[Sequence[Ring]] | None = None
    center_xy: tuple[float, float] | None = None
    radius_m: float | None = None


_ARRAY_FIELDS = ZoneArrays._fields


@dataclass(frozen=True, eq=False)
class CompiledZones:
    """Read-only flat arrays of n_zones zones in one projected CRS.

    Attributes
    ----------
    crs : str or None
        The CRS of all coordinates (None from `compile_zones_xy`).
    zone_ids : tuple of str
        ``zone_ids[i]`` is the id of compiled zone i (= input zone i).
    zone_index : Mapping[str, int]
        zone id -> compiled index.
    vx, vy : float64 (n_vertices,)
        Ring vertices, rings closed.
    ring_offsets : int64 (n_rings + 1,)
    zone_ring_offsets : int64 (n_zones + 1,)
    is_circle : bool (n_zones,)
    cx, cy, radius_m : float64 (n_zones,)
        Circle centre and radius in CRS metres; NaN for polygons.
    bbox : float64 (n_zones, 4)
        minx, miny, maxx, maxy (circles: centre +- radius).
    tol_m : float64 (n_zones,)
        Slack (metres) by which the prefilters must clear a threshold to
        decide; covers floating-point error, so prefiltered codes equal the
        exact ones.
    grid_nx, grid_ny : int64 (n_zones,)
        Grid cells along x and y (0 for circles and when grids are off).
    grid_x0, grid_y0, grid_cell : float64 (n_zones,)
        Grid origin (lower-left corner) and square cell size.
    grid_offsets : int64 (n_zones + 1,)
        Zone z's cells are ``grid_offsets[z]:grid_offsets[z+1]``, row-major
        (``iy * grid_nx[z] + ix``).
    cell_dmin, cell_dmax : float64 (n_cells,)
        Lower and upper bounds of the signed distance anywhere in the cell:
        d(centre) -+ (half the cell diagonal + tol_m).
    """

    crs: str | None
    zone_ids: tuple[str, ...]
    vx: np.ndarray
    vy: np.ndarray
    ring_offsets: np.ndarray
    zone_ring_offsets: np.ndarray
    is_circle: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    radius_m: np.ndarray
    bbox: np.ndarray
    tol_m: np.ndarray
    grid_nx: np.ndarray
    grid_ny: np.ndarray
    grid_x0: np.ndarray
    grid_y0: np.ndarray
    grid_cell: np.ndarray
    grid_offsets: np.ndarray
    cell_dmin: np.ndarray
    cell_dmax: np.ndarray
    zone_index: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.zone_ids)
        for name in _ARRAY_FIELDS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"CompiledZones.{name} must be a numpy array, got {type(arr).__name__}")
            if arr.flags.writeable:  # never freeze the caller's array: copy it first
                arr = np.array(arr, copy=True, order="C")
                arr.flags.writeable = False
                object.__setattr__(self, name, arr)
        for name in ("is_circle", "cx", "cy", "radius_m", "tol_m", "grid_nx", "grid_ny",
                     "grid_x0", "grid_y0", "grid_cell"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"CompiledZones.{name} has shape {getattr(self, name).shape}, expected ({n},)")
        for name in ("zone_ring_offsets", "grid_offsets"):
            if getattr(self, name).shape != (n + 1,):
                raise ValueError(f"CompiledZones.{name} has shape {getattr(self, name).shape}, expected ({n + 1},)")
        if self.bbox.shape != (n, 4):
            raise ValueError(f"CompiledZones.bbox has shape {self.bbox.shape}, expected ({n}, 4)")
        index = {zid: i for i, zid in enumerate(self.zone_ids)}
        if len(index) != n:
            dup = sorted({z for z in self.zone_ids if self.zone_ids.count(z) > 1})
            raise ValueError(f"duplicate zone ids: {dup}")
        object.__setattr__(self, "zone_index", MappingProxyType(index))

    @property
    def n_zones(self) -> int:
        return len(self.zone_ids)

    def index_of(self, zone_id: str) -> int:
        """Compiled index of `zone_id` (KeyError naming it if unknown)."""
        try:
            return self.zone_index[zone_id]
        except KeyError:
            raise KeyError(f"zone {zone_id!r} is not compiled") from None

    def arrays(self) -> ZoneArrays:
        """The arrays as the kernels take them."""
        return ZoneArrays(*(getattr(self, name) for name in _ARRAY_FIELDS))


def compile_zones(zones: Sequence[Zone], crs: str, *, grid_cells: int = DEFAULT_GRID_CELLS) -> CompiledZones:
    """Project `zones` (WGS84) to `crs` and compile them; compiled zone i is ``zones[i]``.

    Parameters
    ----------
    zones : sequence of Zone
        Validated zones (`geofence.zones`), in any order; ids must be distinct.
    crs : str
        Projected CRS with metre axes (policy ``crs``).
    grid_cells : int, keyword-only
        Maximum grid cells along a polygon zone's longer side; 0 turns the
        grid prefilter off.

    Returns
    -------
    CompiledZones

    Raises
    ------
    TypeError
        An item is not a `Zone`.
    ZoneError
        A zone's position does not project to finite coordinates.
    trails.errors.InputError
        `crs` is not a projected metre CRS.

    Notes
    -----
    CONTRACT.md "Geometry": vertices and centres are projected with
    `trails.projection.project_lonlat`; edges are straight lines in `crs`;
    ``radius_m`` is used as is, in CRS metres.
    """
    zones = tuple(zones)
    for i, z in enumerate(zones):
        if not isinstance(z, Zone):
            raise TypeError(f"zones[{i}] is a {type(z).__name__}, not a Zone")
    check_projected_crs(crs)
    # one projection call for every position of every zone
    lon: list[float] = []
    lat: list[float] = []
    for z in zones:
        if z.is_circle:
            lon.append(z.center_lonlat[0])
            lat.append(z.center_lonlat[1])
        else:
            for poly in z.polygons:
                for ring in poly:
                    for pos in ring:
                        lon.append(pos[0])
                        lat.append(pos[1])
    px, py = project_lonlat(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64), crs)
    out: list[ZoneXY] = []
    k = 0
    for z in zones:
        if z.is_circle:
            c = (float(px[k]), float(py[k]))
            k += 1
            if not (math.isfinite(c[0]) and math.isfinite(c[1])):
                raise ZoneError(f"zone {z.zone_id!r}: centre {z.center_lonlat} does not project to {crs}")
            out.append(ZoneXY(z.zone_id, center_xy=c, radius_m=z.radius_m))
            continue
        polys = []
        for poly in z.polygons:
            rings = []
            for ring in poly:
                n = len(ring)
                rx, ry = px[k:k + n], py[k:k + n]
                k += n
                if not (np.isfinite(rx).all() and np.isfinite(ry).all()):
                    raise ZoneError(f"zone {z.zone_id!r}: a vertex does not project to {crs}")
                ring = np.empty((n, 2))
                ring[:, 0] = rx
                ring[:, 1] = ry
                rings.append(ring)
            polys.append(rings)
        out.append(ZoneXY(z.zone_id, polygons=polys))
    return _compile(out, crs, grid_cells)


def compile_zones_xy(zones: Sequence[ZoneXY], *, grid_cells: int = DEFAULT_GRID_CELLS) -> CompiledZones:
    """Compile zones already in projected coordinates (no projection; ``crs`` None).

    Same layout and semantics as `compile_zones`; handy for tests and for
    callers that project themselves. Raises TypeError / ValueError naming
    the zone for malformed geometry (ring open or under 4 positions,
    non-finite coordinates, radius not > 0, neither or both of polygons
    and circle).

    Examples
    --------
    >>> sq = [[(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]]
    >>> cz = compile_zones_xy([ZoneXY("sq", polygons=[sq]),
    ...                        ZoneXY("c", center_xy=(0, 0), radius_m=5)])
    >>> cz.zone_ids, cz.index_of("c"), int(cz.ring_offsets[-1])
    (('sq', 'c'), 1, 5)
    """
    zones = tuple(zones)
    for i, z in enumerate(zones):
        if not isinstance(z, ZoneXY):
            raise TypeError(f"zones[{i}] is a {type(z).__name__}, not a ZoneXY")
    return _compile(zones, None, grid_cells)


def _check_zone(z: ZoneXY) -> list[np.ndarray] | None:
    """Validated rings (float64 (n, 2) arrays) of a polygon zone, None for a circle."""
    if not isinstance(z.zone_id, str):
        raise TypeError(f"zone id {z.zone_id!r} is a {type(z.zone_id).__name__}, not a str")
    has_poly = z.polygons is not None
    has_circle = z.center_xy is not None or z.radius_m is not None
    if has_poly == has_circle:
        raise ValueError(f"zone {z.zone_id!r}: give exactly one of polygons and (center_xy, radius_m)")
    if has_circle:
        if z.center_xy is None or z.radius_m is None:
            raise ValueError(f"zone {z.zone_id!r}: a circle needs both center_xy and radius_m")
        try:
            cx, cy = (float(v) for v in z.center_xy)
        except (TypeError, ValueError):
            raise ValueError(f"zone {z.zone_id!r}: center_xy={z.center_xy!r} is not a finite (x, y)") from None
        r = float(z.radius_m)
        if not (math.isfinite(cx) and math.isfinite(cy)):
            raise ValueError(f"zone {z.zone_id!r}: center_xy={z.center_xy!r} is not a finite (x, y)")
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"zone {z.zone_id!r}: radius_m={r!r} is not a finite number > 0")
        return None
    if len(z.polygons) == 0:
        raise ValueError(f"zone {z.zone_id!r}: no polygons")
    rings = []
    for p, poly in enumerate(z.polygons):
        if len(poly) == 0:
            raise ValueError(f"zone {z.zone_id!r}: polygon {p} has no rings")
        for r, ring in enumerate(poly):
            a = np.asarray(ring, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 4:
                raise ValueError(f"zone {z.zone_id!r}: polygon {p} ring {r} is not >= 4 (x, y) positions")
            if not math.isfinite(float(a.sum())) and not np.isfinite(a).all():  # one reduction when finite
                raise ValueError(f"zone {z.zone_id!r}: polygon {p} ring {r} has non-finite coordinates")
            if a[0, 0] != a[-1, 0] or a[0, 1] != a[-1, 1]:
                raise ValueError(f"zone {z.zone_id!r}: polygon {p} ring {r} is not closed")
            rings.append(a)
    return rings


def _tol(scale: float) -> float:
    """Prefilter slack for coordinates and extents up to `scale` metres.

    About 2**-36 relative (~ 10^4 ulps): far above the rounding error of the
    distance arithmetic, far below anything a threshold could care about.
    """
    return 1e-9 + scale * 2.0**-36


def _compile(zones: Sequence[ZoneXY], crs: str | None, grid_cells: int) -> CompiledZones:
    if isinstance(grid_cells, bool) or not isinstance(grid_cells, (int, np.integer)) or grid_cells < 0:
        raise ValueError(f"grid_cells={grid_cells!r} must be an int >= 0")
    grid_cells = int(grid_cells)
    n = len(zones)
    ids = tuple(z.zone_id for z in zones)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ring_len: list[int] = []
    zone_ring_offsets = np.zeros(n + 1, dtype=np.int64)
    is_circle = np.zeros(n, dtype=bool)
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    radius = np.full(n, np.nan)
    bbox = np.zeros((n, 4))
    tol = np.zeros(n)
    grid_nx = np.zeros(n, dtype=np.int64)
    grid_ny = np.zeros(n, dtype=np.int64)
    grid_x0 = np.zeros(n)
    grid_y0 = np.zeros(n)
    grid_cell = np.ones(n)
    grid_offsets = np.zeros(n + 1, dtype=np.int64)
    for i, z in enumerate(zones):
        rings = _check_zone(z)
        if rings is None:
            is_circle[i] = True
            cx[i], cy[i] = (float(v) for v in z.center_xy)
            radius[i] = r = float(z.radius_m)
            bbox[i] = (cx[i] - r, cy[i] - r, cx[i] + r, cy[i] + r)
            tol[i] = _tol(max(abs(cx[i]), abs(cy[i])) + r)
            zone_ring_offsets[i + 1] = zone_ring_offsets[i]
            grid_offsets[i + 1] = grid_offsets[i]
            continue
        allv = np.concatenate(rings)
        minx, miny = allv.min(axis=0)
        maxx, maxy = allv.max(axis=0)
        bbox[i] = (minx, miny, maxx, maxy)
        side = max(maxx - minx, maxy - miny)
        tol[i] = _tol(float(np.abs(allv).max()) + side)
        for a in rings:
            xs.append(a[:, 0])
            ys.append(a[:, 1])
            ring_len.append(a.shape[0])
        zone_ring_offsets[i + 1] = zone_ring_offsets[i] + len(rings)
        n_edges = sum(a.shape[0] - 1 for a in rings)
        n_side = min(grid_cells, max(_MIN_GRID_SIDE, math.ceil(4.0 * math.sqrt(n_edges))))
        if n_edges < GRID_MIN_EDGES:
            n_side = 0
        if n_side > 0 and side > 0:
            margin = _GRID_MARGIN_FRACTION * side
            cell = (side + 2 * margin) / n_side
            grid_nx[i] = min(n_side, max(1, math.ceil((maxx - minx + 2 * margin) / cell)))
            grid_ny[i] = min(n_side, max(1, math.ceil((maxy - miny + 2 * margin) / cell)))
            grid_x0[i] = minx - margin
            grid_y0[i] = miny - margin
            grid_cell[i] = cell
        grid_offsets[i + 1] = grid_offsets[i] + grid_nx[i] * grid_ny[i]
    vx = np.concatenate(xs) if xs else np.zeros(0)
    vy = np.concatenate(ys) if ys else np.zeros(0)
    ring_offsets = np.zeros(len(ring_len) + 1, dtype=np.int64)
    np.cumsum(ring_len, out=ring_offsets[1:])
    n_cells = int(grid_offsets[-1])
    cell_dmin = np.zeros(n_cells)
    cell_dmax = np.zeros(n_cells)
    parts = dict(
        vx=vx, vy=vy, ring_offsets=ring_offsets, zone_ring_offsets=zone_ring_offsets,
        is_circle=is_circle, cx=cx, cy=cy, radius_m=radius, bbox=bbox, tol_m=tol,
        grid_nx=grid_nx, grid_ny=grid_ny, grid_x0=grid_x0, grid_y0=grid_y0,
        grid_cell=grid_cell, grid_offsets=grid_offsets,
        cell_dmin=np.zeros(0), cell_dmax=np.zeros(0),
    )
    for a in parts.values():
        a.flags.writeable = False
    if n_cells:
        gridded = np.flatnonzero(grid_nx > 0).astype(np.int64)
        _fill_cell_bounds(ZoneArrays(**parts), gridded, cell_dmin, cell_dmax)
    cell_dmin.flags.writeable = False
    cell_dmax.flags.writeable = False
    parts["cell_dmin"] = cell_dmin
    parts["cell_dmax"] = cell_dmax
    return CompiledZones(crs=crs, zone_ids=ids, **parts)
