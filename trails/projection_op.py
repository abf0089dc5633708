"""PROJ's own single operation for the points inside its area of use.

`Transformer.from_crs("EPSG:4326", crs, always_xy=True)` (the contract's
transformer, CONTRACT.md "Geometry") holds every candidate operation and,
for each point, PROJ picks one (`pj_get_suggested_operation`: among the
instantiable, onshore candidates whose area of use holds the point, the one
with the best accuracy). Doing that choice per point costs about a quarter of
the projection time. When one candidate is strictly more accurate than every
other instantiable candidate, PROJ picks it for every point inside its area
of use, so for those points that one operation, chosen through pyproj
(`TransformerGroup`, in PROJ's own order) and built from the PROJ pipeline
string PROJ gives for it (`Transformer.from_pipeline`), gives the same
numbers: no projection maths is written here.

It is never trusted blindly: the operation is used only after it gave
bit-identical results to the contract's transformer on a grid of probe
points over its whole area (once per CRS), and each call also checks a
sample of its own points against the contract's transformer; any difference
sends every point through the contract's transformer.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyproj import Transformer

__all__ = ["SingleOperation", "single_operation"]

#: Degrees kept clear of the operation's area bounds: points this close to an edge go through
#: the contract's transformer (PROJ's own bounds test may round differently from ours).
EDGE_MARGIN_DEG = 1e-6
#: Probe points per side of the grid checked once per CRS.
PROBE_SIDE = 48
#: Points of each call checked against the contract's transformer.
SPOT_CHECK = 64


@dataclass(frozen=True)
class SingleOperation:
    """One PROJ operation and the lon/lat box (degrees, inclusive) where it equals the contract's choice."""

    transformer: "Transformer"
    west: float
    south: float
    east: float
    north: float
    description: str

    def inside(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean mask of the points this operation projects (NaN is never inside)."""
        return (lon >= self.west) & (lon <= self.east) & (lat >= self.south) & (lat <= self.north)

    def agrees(self, contract: "Transformer", lon: np.ndarray, lat: np.ndarray) -> bool:
        """Whether this operation and `contract` give bit-identical x/y for these points."""
        x1, y1 = np.array(lon, np.float64), np.array(lat, np.float64)
        x2, y2 = x1.copy(), y1.copy()
        contract.transform(x1, y1, inplace=True)
        self.transformer.transform(x2, y2, inplace=True)
        return bool(np.array_equal(x1, x2, equal_nan=True) and np.array_equal(y1, y2, equal_nan=True))


def _best_candidate(crs: str):
    """The instantiable candidate strictly more accurate than every other one, or None."""
    from pyproj.transformer import TransformerGroup

    with warnings.catch_warnings():  # "best transformation is not available" (a missing grid): expected
        warnings.simplefilter("ignore")
        group = TransformerGroup("EPSG:4326", crs, always_xy=True)
    scored = [(t.accuracy, i, t) for i, t in enumerate(group.transformers) if t.accuracy is not None and t.accuracy >= 0]
    if not scored:
        return None
    scored.sort(key=lambda s: (s[0], s[1]))
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        return None  # a tie: PROJ would break it by area per point; not ours to guess
    return scored[0][2]


@lru_cache(maxsize=8)
def single_operation(crs: str) -> SingleOperation | None:
    """The single operation for `crs` and its box, or None when there is no safe one.

    None when: no candidate is strictly the most accurate; it has no area of
    use, or one crossing the antimeridian; or it differs from the contract's
    transformer on any probe point (a `PROBE_SIDE` x `PROBE_SIDE` grid over
    the box, its corners and edges included).
    """
    from trails.projection import transformer_for

    best = _best_candidate(crs)
    area = None if best is None else best.area_of_use
    if area is None or area.west > area.east or not best.definition:
        return None
    from pyproj import Transformer

    # rebuilt from PROJ's own pipeline string of the operation: a transformer taken from the
    # group shares one PROJ object between threads (not thread-safe); one made from a pipeline
    # is rebuilt per thread by pyproj
    single = Transformer.from_pipeline(best.definition)
    op = SingleOperation(single, area.west + EDGE_MARGIN_DEG, area.south + EDGE_MARGIN_DEG,
                         area.east - EDGE_MARGIN_DEG, area.north - EDGE_MARGIN_DEG, best.description)
    if not (op.west < op.east and op.south < op.north):
        return None
    glon, glat = np.meshgrid(np.linspace(op.west, op.east, PROBE_SIDE), np.linspace(op.south, op.north, PROBE_SIDE))
    if not op.agrees(transformer_for(crs), glon.ravel(), glat.ravel()):
        return None
    return op
