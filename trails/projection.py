"""Projection from WGS84 to the working CRS, done once per fix.

CONTRACT.md, "Geometry": ``Transformer.from_crs("EPSG:4326", crs,
always_xy=True)``, PROJ's default operation, no network.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

from .errors import InputError

__all__ = ["transformer_for", "project_lonlat", "check_projected_crs"]


@lru_cache(maxsize=8)
def transformer_for(crs: str) -> Transformer:
    """The contract's WGS84 -> `crs` transformer (cached: building one costs ms)."""
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def check_projected_crs(crs: str) -> None:
    """Raise `InputError` unless `crs` is a projected CRS with metre axes."""
    try:
        c = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, a plain Exception subclass
        raise InputError(f"crs {crs!r} is not a CRS pyproj accepts: {exc}") from None
    if not c.is_projected:
        raise InputError(f"crs {crs!r} is not a projected CRS")
    units = {(ax.unit_name or "").lower() for ax in c.axis_info[:2]}
    if not units or not units <= {"metre", "meter", "m"}:
        raise InputError(f"crs {crs!r} has horizontal axes in {sorted(units)}, not metres")


def project_lonlat(lon: np.ndarray, lat: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Project float64 lon/lat arrays (degrees) to `crs` metres; returns new arrays."""
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    if lon.size == 0:
        return np.zeros(0), np.zeros(0)
    x, y = transformer_for(crs).transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
