"""Projection from WGS84 to the working CRS, done once per fix.

CONTRACT.md, "Geometry": ``Transformer.from_crs("EPSG:4326", crs,
always_xy=True)``, PROJ's default operation, no network.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from trails.errors import InputError

if TYPE_CHECKING:
    from pyproj import Transformer

__all__ = ["STORE_CRS", "transformer_for", "project_lonlat", "check_projected_crs"]

#: The British National Grid (metres): the CRS of the store's ``x``/``y`` (ingest and
#: intake project every fix to it once) and the contract's default policy ``crs``.
STORE_CRS = "EPSG:27700"


@lru_cache(maxsize=8)
def transformer_for(crs: str) -> Transformer:
    """The contract's WGS84 -> `crs` transformer (cached: building one costs ms)."""
    from pyproj import Transformer  # imported on first use: the store path never projects

    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def check_projected_crs(crs: str) -> None:
    """Raise `InputError` unless `crs` is a projected CRS with metre axes."""
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, a plain Exception subclass
        raise InputError(f"crs {crs!r} is not a CRS pyproj accepts: {exc}") from None
    if not c.is_projected:
        raise InputError(f"crs {crs!r} is not a projected CRS")
    units = {(ax.unit_name or "").lower() for ax in c.axis_info[:2]}
    if not units or not units <= {"metre", "meter", "m"}:
        raise InputError(f"crs {crs!r} has horizontal axes in {sorted(units)}, not metres")


def project_lonlat(lon: np.ndarray, lat: np.ndarray, crs: str, *, inplace: bool = False,
                   threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Project float64 lon/lat arrays (degrees) to `crs` metres.

    inplace: overwrite `lon`/`lat` with x/y (they must be writable, contiguous
    float64) and return them: no new arrays, which for tens of millions of
    fixes saves both the memory and the time to first touch it.
    threads: split the work over this many threads (PROJ releases the GIL and
    pyproj >= 3.1 transformers are thread-safe); results are identical.
    """
    if inplace:
        for name, a in (("lon", lon), ("lat", lat)):
            if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.c_contiguous
                    and a.flags.writeable):
                raise ValueError(f"inplace projection needs {name} as a writable contiguous float64 array")
        x, y = lon, lat
    else:
        x = np.array(lon, dtype=np.float64, copy=True, order="C")
        y = np.array(lat, dtype=np.float64, copy=True, order="C")
    n = x.shape[0]
    if n == 0:
        return x, y
    if threads < 2 or n < 200_000:
        _transform_inplace(x, y, crs)
        return x, y
    from concurrent.futures import ThreadPoolExecutor

    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tagtrail-project") as ex:
        futures = [ex.submit(_transform_inplace, x[a:b], y[a:b], crs) for a, b in zip(cuts[:-1], cuts[1:])]
        for f in futures:
            f.result()
    return x, y


#: Below this many points the contract's transformer does it all: the single operation's checks
#: would cost more than they save.
MIN_POINTS_SINGLE_OP = 4096


def _transform_inplace(x: np.ndarray, y: np.ndarray, crs: str) -> None:
    """Project lon/lat in `x`/`y` in place, exactly as `transformer_for(crs)` does.

    Points inside the area of PROJ's single best operation (`trails.projection_op`) go
    through that operation alone (faster, same numbers), after a spot check of this call's
    points against the contract's transformer; the rest, and everything when there is no
    such operation or the check fails, through the contract's transformer.
    """
    tr = transformer_for(crs)
    n = x.shape[0]
    op = None
    if n >= MIN_POINTS_SINGLE_OP:
        from trails.projection_op import SPOT_CHECK, single_operation

        op = single_operation(crs)
    if op is None:
        tr.transform(x, y, inplace=True)
        return
    inside = op.inside(x, y)
    n_in = int(np.count_nonzero(inside))
    if n_in == 0:
        tr.transform(x, y, inplace=True)
        return
    idx = np.flatnonzero(inside) if n_in < n else None
    pick = np.linspace(0, n_in - 1, min(SPOT_CHECK, n_in)).astype(np.int64)
    sample = pick if idx is None else idx[pick]
    if not op.agrees(tr, x[sample], y[sample]):
        tr.transform(x, y, inplace=True)
        return
    if idx is None:
        op.transformer.transform(x, y, inplace=True)
        return
    out = np.flatnonzero(~inside)
    ix, iy = x[idx], y[idx]
    ox, oy = x[out], y[out]
    op.transformer.transform(ix, iy, inplace=True)
    tr.transform(ox, oy, inplace=True)
    x[idx], y[idx] = ix, iy
    x[out], y[out] = ox, oy
