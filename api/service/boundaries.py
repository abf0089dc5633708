"""Boundaries for map context: local authorities, wards, whatever the admin
loads, with their names, drawn under a map's data when there is no tile
background (no internet, no tile server: a caseworker still sees which ward a
fix is in).

The admin loads a GeoJSON FeatureCollection of polygons (WGS84 lon/lat, as
GeoJSON is; a file naming another CRS is refused) with `tagtrail boundaries
load FILE --name-property NAME` or the /admin page. Every feature is checked
and every problem named per item ("feature 3 ('Anfield'): ..."), as the zones
upload does; one bad feature and nothing is loaded. What is kept, in
HOME/boundaries/boundaries.geojson (replaced whole, atomically, private), is
per feature only its name, its geometry (simplified by `SIMPLIFY_DEG`, more
when a feature is still over `MAX_VERTICES` vertices: context, not evidence)
and its bounding box. Loading replaces the previous file and is audited
(``boundaries.load``: how many features, from which property, the SHA-256 of
what was stored).

`BoundaryIndex` answers a bounding box with the features that meet it,
clipped to it, each with a label point inside the clipped part: a page fetches
only what is near its data (`/console/boundaries.json?bbox=...`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import box, mapping, shape

from trails.errors import InputError

__all__ = ["MAX_SERVED", "MAX_VERTICES", "SIMPLIFY_DEG", "BoundaryError", "BoundaryIndex", "BoundaryLoad",
           "audit_load", "boundaries_path", "parse_boundaries", "store_boundaries"]

#: Simplification tolerance in degrees (about 7-11 m in the UK): invisible at the zooms context is seen at.
SIMPLIFY_DEG = 1e-4
#: A feature still over this many vertices is simplified harder (x4 tolerance, until it is not).
MAX_VERTICES = 5000
#: Most features one bbox answer holds (a whole-country view still gets an answer, not megabytes).
MAX_SERVED = 400
_LONLAT_CRS = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "EPSG:4326",
               "urn:ogc:def:crs:EPSG::4326"}


class BoundaryError(InputError):
    """A boundary file that cannot be loaded; `problems` lists (item, why) for each bad item."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{item}: {why}" for item, why in problems[:20])
                         + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))


@dataclass(frozen=True)
class BoundaryLoad:
    """What `store_boundaries` kept."""

    n_features: int
    vertices_given: int
    vertices_kept: int
    sha256: str
    path: Path


def boundaries_path(home: Path) -> Path:
    return Path(home) / "boundaries" / "boundaries.geojson"


def _label(i: int, feature: Any, name_property: str) -> str:
    name = feature.get("properties", {}).get(name_property) if isinstance(feature, dict) else None
    return f"feature {i + 1} ({name!r})" if isinstance(name, str) else f"feature {i + 1}"


def _one(feature: Any, name_property: str):
    """(name, shapely geometry) of one feature, or ValueError saying what is wrong with it."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("not a GeoJSON Feature")
    props = feature.get("properties") or {}
    name = props.get(name_property) if isinstance(props, dict) else None
    if not isinstance(name, str) or not name.strip():
        has = ", ".join(sorted(map(str, props))[:8]) if isinstance(props, dict) and props else "none"
        raise ValueError(f"no text property {name_property!r} (the name to show; its properties: {has})")
    g = feature.get("geometry")
    if not isinstance(g, dict) or g.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValueError("the geometry must be a Polygon or MultiPolygon")
    try:
        geom = shape(g)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"the geometry cannot be read: {exc}") from None
    x0, y0, x1, y1 = geom.bounds if not geom.is_empty else (math.nan,) * 4
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise ValueError("coordinates must be longitude -180..180 and latitude -90..90 (WGS84), and not empty")
    if not geom.is_valid:
        raise ValueError(f"the polygon is not valid ({shapely.is_valid_reason(geom)})")
    return name.strip(), geom


def parse_boundaries(doc: Any, name_property: str) -> list[tuple[str, Any]]:
    """(name, geometry) per feature of `doc`; `BoundaryError` naming every bad item."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise BoundaryError([("file", "a boundary file is a GeoJSON FeatureCollection with a list 'features'")])
    crs = ((doc.get("crs") or {}).get("properties") or {}).get("name") if isinstance(doc.get("crs"), dict) else None
    if crs is not None and crs not in _LONLAT_CRS:
        raise BoundaryError([("file", f"coordinates must be WGS84 longitude/latitude (GeoJSON), not {crs!r}")])
    kept, problems = [], []
    for i, feature in enumerate(doc["features"]):
        try:
            kept.append(_one(feature, name_property))
        except ValueError as exc:
            problems.append((_label(i, feature, name_property), str(exc)))
    if problems or not kept:
        raise BoundaryError(problems or [("file", "it holds no features")])
    return kept


def _simplified(geom):
    tol = SIMPLIFY_DEG
    out = geom.simplify(tol, preserve_topology=True)
    while shapely.get_num_coordinates(out) > MAX_VERTICES:
        tol *= 4
        out = geom.simplify(tol, preserve_topology=True)
    return out


def store_boundaries(home: Path, items: list[tuple[str, Any]],
                     before_replace: Callable[[BoundaryLoad], None] = lambda load: None) -> BoundaryLoad:
    """Write `items` (from `parse_boundaries`) as HOME's boundary file, replacing the previous one.
    `before_replace` runs once the new file is written but before it replaces the old (the caller's
    audit entry: if it fails, the old file stays)."""
    features, given, kept = [], 0, 0
    for name, geom in items:
        small = _simplified(geom)
        given += int(shapely.get_num_coordinates(geom))
        kept += int(shapely.get_num_coordinates(small))
        features.append({"type": "Feature", "bbox": [round(v, 6) for v in small.bounds],
                         "properties": {"name": name}, "geometry": mapping(shapely.set_precision(small, 1e-6))})
    data = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":")).encode("utf-8")
    path = boundaries_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    load = BoundaryLoad(len(features), given, kept, hashlib.sha256(data).hexdigest(), path)
    try:
        before_replace(load)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return load


def audit_load(session, audit, actor, load: BoundaryLoad, name_property: str, *, now_ms: int | None = None) -> None:
    """The ``boundaries.load`` entry (CLI and console alike; flushed here, the caller commits)."""
    audit.append(session, action="boundaries.load", actor=actor, now_ms=now_ms,
                 detail={"n_features": load.n_features, "name_property": name_property, "sha256": load.sha256,
                         "vertices": load.vertices_kept})
    session.flush()


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]
    names: list[str]
    geoms: list[Any]
    tree: Any


class BoundaryIndex:
    """HOME's boundary file, read again when it changes (mtime and size), queried by bounding box.
    One immutable snapshot at a time, swapped whole: safe for the server's threads."""

    def __init__(self, home: Path) -> None:
        self.path = boundaries_path(home)
        self._loaded: _Loaded | None = None

    def _fresh(self) -> _Loaded | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._loaded = None
            return None
        loaded = self._loaded
        if loaded is None or loaded.stamp != (st.st_mtime_ns, st.st_size):
            doc = json.loads(self.path.read_bytes())
            geoms = [shape(f["geometry"]) for f in doc["features"]]
            loaded = _Loaded((st.st_mtime_ns, st.st_size), [f["properties"]["name"] for f in doc["features"]],
                             geoms, shapely.STRtree(geoms))
            self._loaded = loaded
        return loaded

    def count(self) -> int:
        """How many boundaries are loaded (0: none)."""
        loaded = self._fresh()
        return 0 if loaded is None else len(loaded.names)

    def query(self, west: float, south: float, east: float, north: float) -> dict:
        """The features meeting the box, clipped to it, each with ``name`` and ``label_at`` ([lon, lat]
        inside the clipped part); at most `MAX_SERVED` (the largest first)."""
        loaded = self._fresh()
        features = []
        if loaded is not None:
            hits = [int(i) for i in loaded.tree.query(box(west, south, east, north), predicate="intersects")]
            clipped = [(i, shapely.clip_by_rect(loaded.geoms[i], west, south, east, north)) for i in hits]
            clipped = sorted(((i, g) for i, g in clipped if not g.is_empty), key=lambda t: -t[1].area)[:MAX_SERVED]
            for i, g in sorted(clipped, key=lambda t: t[0]):
                p = g.representative_point()
                features.append({"type": "Feature", "geometry": mapping(g),
                                 "properties": {"role": "boundary", "name": loaded.names[i],
                                                "label_at": [round(p.x, 6), round(p.y, 6)]}})
        return {"type": "FeatureCollection", "features": features}
