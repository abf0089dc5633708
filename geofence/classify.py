"""Classify fixes against compiled zones: IN / OUT / UNCERTAIN (CONTRACT.md, "Geometry").

Public wrappers around `geofence.kernels`: they coerce dtypes, check shapes
and values, and raise `TypeError` / `ValueError` naming the argument; the
compiled kernels then assume valid input.

For a fix at p with accuracy a >= 0 and zone Z, d is the distance from p to
the boundary of Z, positive inside (circle: ``radius_m - |p - centre|``):
IN (2) if ``d > 0 and d >= a``; OUT (0) if ``d < 0 and -d >= a``;
UNCERTAIN (1) otherwise (so a point on the boundary is UNCERTAIN).
"""
from __future__ import annotations

import numpy as np

from .compile import CompiledZones
from .kernels import (
    IN,
    OUT,
    UNCERTAIN,
    _classify_assignments,
    _classify_points,
    _count_invalid_fixes,
    _signed_distances,
)

__all__ = [
    "OUT",
    "UNCERTAIN",
    "IN",
    "signed_distance",
    "classify_points",
    "classify_distance",
    "classify_assignments",
]


def _float_array(name: str, value, n: int | None = None) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} values, expected {n}")
    return a


def _int_array(name: str, value) -> np.ndarray:
    a = np.asarray(value)
    if a.size == 0 and a.dtype.kind == "f":  # a bare [] is float64 to numpy
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu" or not np.can_cast(a.dtype, np.int64, "safe"):
        raise TypeError(f"{name} must be an integer array that fits int64, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = _fixes(x, y, 0.0)
    return x, y


def _fixes(x, y, accuracy_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 x, y, accuracy_m (a scalar accuracy applies to every fix)."""
    x = _float_array("x", x)
    n = x.shape[0]
    y = _float_array("y", y, n)
    a = np.asarray(accuracy_m)
    if a.ndim == 0 and a.dtype.kind in "biuf":
        a = np.full(n, a, dtype=np.float64)
    a = _float_array("accuracy_m", a, n)
    if n and _count_invalid_fixes(x, y, a):  # one compiled pass; numpy only to name the culprit
        bad_xy = ~(np.isfinite(x) & np.isfinite(y))
        if bad_xy.any():
            i = int(np.flatnonzero(bad_xy)[0])
            raise ValueError(f"x/y must be finite; point {i} is ({x[i]}, {y[i]})")
        i = int(np.flatnonzero(~(a >= 0.0))[0])
        # NaN included: callers substitute the policy's default_accuracy_m first
        raise ValueError(f"accuracy_m must be >= 0 and not NaN; accuracy_m[{i}]={a[i]}")
    return x, y, a


def _zone(zone_index, compiled: CompiledZones) -> int:
    if not isinstance(compiled, CompiledZones):
        raise TypeError(f"compiled must be a CompiledZones, got {type(compiled).__name__}")
    if isinstance(zone_index, bool) or not isinstance(zone_index, (int, np.integer)):
        raise TypeError(f"zone_index must be an int, got {type(zone_index).__name__}")
    if not 0 <= zone_index < compiled.n_zones:
        raise ValueError(f"zone_index={int(zone_index)} is not in [0, {compiled.n_zones})")
    return int(zone_index)


def signed_distance(x, y, zone_index: int, compiled: CompiledZones) -> np.ndarray:
    """Exact signed distance (metres) from each point to the boundary of one zone.

    Parameters
    ----------
    x, y : array_like of float, shape (n,)
        Points in the zones' CRS; finite.
    zone_index : int
        Compiled zone index (``compiled.index_of(zone_id)``).
    compiled : CompiledZones

    Returns
    -------
    float64 ndarray, shape (n,)
        Positive inside, negative outside, 0.0 on the boundary.

    Raises
    ------
    TypeError, ValueError
        Non-numeric or mis-shaped input, non-finite points, bad zone index.

    Examples
    --------
    >>> from geofence.compile import ZoneXY, compile_zones_xy
    >>> sq = [[(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]]
    >>> cz = compile_zones_xy([ZoneXY("sq", polygons=[sq])])
    >>> signed_distance([5, 10, 13, 0], [5, 5, 14, 0], 0, cz).tolist()  # centre, edge, outside, vertex
    [5.0, 0.0, -5.0, 0.0]
    >>> signed_distance([], [], 0, cz).shape
    (0,)
    """
    z = _zone(zone_index, compiled)
    x, y = _xy(x, y)
    out = np.empty(x.shape[0], dtype=np.float64)
    if x.shape[0]:
        _signed_distances(x, y, z, compiled.arrays(), out)
    return out


def classify_distance(d, accuracy_m) -> np.ndarray:
    """Codes from signed distances (vectorised contract rule, no geometry).

    >>> classify_distance([5.0, 5.0, 0.0, -3.0, -3.0], [5.0, 6.0, 0.0, 3.0, 3.5]).tolist()
    [2, 1, 1, 0, 1]
    """
    d = np.asarray(d, dtype=np.float64)
    a = np.asarray(accuracy_m, dtype=np.float64)
    return np.where((d > 0) & (d >= a), IN, np.where((d < 0) & (-d >= a), OUT, UNCERTAIN)).astype(np.int8)


def classify_points(x, y, accuracy_m, zone_index: int, compiled: CompiledZones) -> np.ndarray:
    """IN / OUT / UNCERTAIN code of each point with respect to one zone.

    Parameters
    ----------
    x, y : array_like of float, shape (n,)
        Fix positions in the zones' CRS; finite.
    accuracy_m : float or array_like of float, shape (n,)
        Accuracy radius >= 0 (NaN is rejected: substitute the policy's
        ``default_accuracy_m`` first).
    zone_index : int
    compiled : CompiledZones

    Returns
    -------
    int8 ndarray, shape (n,)
        ``OUT`` = 0, ``UNCERTAIN`` = 1, ``IN`` = 2.

    Examples
    --------
    >>> from geofence.compile import ZoneXY, compile_zones_xy
    >>> sq = [[(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]]
    >>> cz = compile_zones_xy([ZoneXY("sq", polygons=[sq])])
    >>> classify_points([5, 5, 10, 20, 12], [5, 5, 5, 5, 5], [5, 5.5, 0, 10, 3], 0, cz).tolist()
    [2, 1, 1, 0, 1]
    """
    z = _zone(zone_index, compiled)
    x, y, acc = _fixes(x, y, accuracy_m)
    out = np.empty(x.shape[0], dtype=np.int8)
    if x.shape[0]:
        _classify_points(x, y, acc, z, compiled.arrays(), out)
    return out


def classify_assignments(
    x, y, accuracy_m, fix_offsets, zone_offsets, zone_idx, compiled: CompiledZones
) -> tuple[np.ndarray, np.ndarray]:
    """Codes of every (zone, fix) pair of every assignment, in parallel over assignments.

    Parameters
    ----------
    x, y, accuracy_m : array_like of float, shape (n_fixes,)
        All fixes, assignment by assignment (CSR by `fix_offsets`).
    fix_offsets : array_like of int, shape (n_assignments + 1,)
        Assignment a's fixes are ``fix_offsets[a]:fix_offsets[a+1]``; starts
        at 0, non-decreasing, ends at n_fixes.
    zone_offsets : array_like of int, shape (n_assignments + 1,)
        Assignment a's zones are ``zone_idx[zone_offsets[a]:zone_offsets[a+1]]``.
    zone_idx : array_like of int
        Compiled zone indices.
    compiled : CompiledZones

    Returns
    -------
    codes : int8 ndarray
        Assignment a's j-th zone and i-th fix is
        ``codes[out_offsets[a] + j * nf_a + i]`` with ``nf_a`` its fix count.
    out_offsets : int64 ndarray, shape (n_assignments + 1,)

    Examples
    --------
    >>> from geofence.compile import ZoneXY, compile_zones_xy
    >>> cz = compile_zones_xy([ZoneXY("c", center_xy=(0, 0), radius_m=10)])
    >>> codes, off = classify_assignments([0, 20, 9], [0, 0, 0], 0.0, [0, 2, 2, 3], [0, 1, 1, 2], [0, 0], cz)
    >>> codes.tolist(), off.tolist()  # assignment 1 has no fixes
    ([2, 0, 2], [0, 2, 2, 3])
    """
    if not isinstance(compiled, CompiledZones):
        raise TypeError(f"compiled must be a CompiledZones, got {type(compiled).__name__}")
    x, y, acc = _fixes(x, y, accuracy_m)
    n_fixes = x.shape[0]
    fix_offsets = _int_array("fix_offsets", fix_offsets)
    zone_offsets = _int_array("zone_offsets", zone_offsets)
    zone_idx = _int_array("zone_idx", zone_idx)
    _check_offsets("fix_offsets", fix_offsets, n_fixes)
    if zone_offsets.shape != fix_offsets.shape:
        raise ValueError(f"zone_offsets has {zone_offsets.shape[0]} entries, fix_offsets {fix_offsets.shape[0]}")
    _check_offsets("zone_offsets", zone_offsets, zone_idx.shape[0])
    if zone_idx.size and not (zone_idx.min() >= 0 and zone_idx.max() < compiled.n_zones):
        bad = int(np.flatnonzero((zone_idx < 0) | (zone_idx >= compiled.n_zones))[0])
        raise ValueError(f"zone_idx[{bad}]={zone_idx[bad]} is not in [0, {compiled.n_zones})")
    n_pairs = np.diff(fix_offsets) * np.diff(zone_offsets)
    out_offsets = np.zeros(fix_offsets.shape[0], dtype=np.int64)
    np.cumsum(n_pairs, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.int8)
    if out.size:
        _classify_assignments(x, y, acc, fix_offsets, zone_offsets, zone_idx, out_offsets, compiled.arrays(), out)
    return out, out_offsets


def _check_offsets(name: str, off: np.ndarray, total: int) -> None:
    if off.shape[0] < 1:
        raise ValueError(f"{name} must have at least one entry (0)")
    if off[0] != 0 or off[-1] != total:
        raise ValueError(f"{name} must start at 0 and end at {total}; got first={int(off[0])}, last={int(off[-1])}")
    if off.shape[0] > 1 and (np.diff(off) < 0).any():
        i = int(np.flatnonzero(np.diff(off) < 0)[0])
        raise ValueError(f"{name} must be non-decreasing; {name}[{i}]={off[i]} > {name}[{i + 1}]={off[i + 1]}")
