"""The database side of the trends release (`api.service.trends` is the rule).

Reads breach records (kind ``breach``, not withdrawn) and turns each into a
plain onset tuple ``(month, area, wearer, type, start_ms)``:

- ``month``: the UTC month of the record's start (the first 7 characters of
  its ``start``, which the contract writes in UTC), as the breaches report.
- ``area``: the district (a feature of the boundary file the admin loaded,
  `api.service.boundaries`) containing the centre of the wearer's curfew zone
  under the assignment segment in force at the record's start: a Point zone's
  centre, a polygon's point on surface. Several curfew zones: the one with
  the smallest id. No curfew zone, a zone whose centre is in no district, or
  no boundary file loaded: ``NOT_PLACED``, one pooled national row, protected
  by the same rules. A fix coordinate is never used, and no position leaves
  this module: only the district's name.

The wearer id stays inside the process: the rule needs it to count distinct
wearers, the release never holds it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import Point, shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow, BreachRow, ZoneRow, ZoneVersion
from api.service.boundaries import boundaries_path
from api.service.trends import Onset

__all__ = ["NOT_PLACED", "Districts", "month_span", "read_onsets"]

#: The area of a record whose wearer has no curfew zone, or one outside every loaded district.
NOT_PLACED = "not placed"


@dataclass(frozen=True)
class Districts:
    """The loaded release geography: names and polygons (WGS84), queried by point."""

    names: tuple[str, ...]
    geoms: tuple[Any, ...]
    tree: Any

    @classmethod
    def load(cls, home: Path) -> Districts:
        """HOME's boundary file (`tagtrail boundaries load`); empty when none is loaded."""
        path = boundaries_path(home)
        if not path.exists():
            return cls((), (), None)
        doc = json.loads(path.read_bytes())
        geoms = tuple(shape(f["geometry"]) for f in doc["features"])
        return cls(tuple(f["properties"]["name"] for f in doc["features"]), geoms, shapely.STRtree(list(geoms)))

    def areas(self) -> tuple[str, ...]:
        """The release's rows: every district (sorted, names once) and `NOT_PLACED`, whatever the data."""
        return (*sorted(set(self.names)), NOT_PLACED)

    def locate(self, lon: float, lat: float) -> str:
        """The district containing (lon, lat); the first by file order on a shared edge; `NOT_PLACED` if none."""
        if self.tree is None:
            return NOT_PLACED
        hits = sorted(int(i) for i in self.tree.query(Point(lon, lat), predicate="intersects"))
        return self.names[hits[0]] if hits else NOT_PLACED


def _centre(feature_json: str) -> tuple[float, float] | None:
    """A zone's centre (lon, lat): a circle's centre, a polygon's point on surface; None if unreadable."""
    try:
        geom = shape(json.loads(feature_json)["geometry"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if geom.is_empty:
        return None
    p = geom if geom.geom_type == "Point" else geom.point_on_surface()
    return float(p.x), float(p.y)


def _curfew_centres(session: Session) -> tuple[dict[tuple[str, int], tuple[float, float]],
                                                dict[str, tuple[float, float]]]:
    """Centres of curfew zones: by (zone id, version), and by zone id for the current version."""
    versioned = {(z, v): c for z, v, f in session.execute(
        select(ZoneVersion.zone_id, ZoneVersion.version, ZoneVersion.feature_json).where(ZoneVersion.kind == "curfew"))
        if (c := _centre(f)) is not None}
    current = {z: c for z, f in session.execute(select(ZoneRow.zone_id, ZoneRow.feature_json)
                                                .where(ZoneRow.kind == "curfew")) if (c := _centre(f)) is not None}
    return versioned, current


def _home_areas(session: Session, districts: Districts) -> dict[str, list[tuple[int, int | None, str]]]:
    """subject -> [(start_ms, end_ms, area)] per assignment segment: the district of its curfew zone."""
    versioned, current = _curfew_centres(session)
    out: dict[str, list[tuple[int, int | None, str]]] = {}
    for row in session.scalars(select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)):
        versions = json.loads(row.zone_versions_json or "{}")
        centre = None
        for zone_id in sorted(json.loads(row.zones_json or "[]")):
            v = versions.get(zone_id)
            centre = versioned.get((zone_id, v)) if v is not None else current.get(zone_id)
            if centre is not None:
                break
        area = districts.locate(*centre) if centre is not None else NOT_PLACED
        out.setdefault(row.subject_id, []).append((row.start_ms, row.end_ms, area))
    return out


def _area_at(segments: list[tuple[int, int | None, str]], t_ms: int) -> str:
    for start, end, area in segments:
        if start <= t_ms and (end is None or t_ms < end):
            return area
    return NOT_PLACED


def read_onsets(session: Session, districts: Districts, *, first_month: str | None = None,
                last_month: str | None = None) -> list[Onset]:
    """Every live breach onset (kind breach, not withdrawn) with its month and area, months inclusive."""
    month = func.substr(BreachRow.start, 1, 7)
    conds = [BreachRow.kind == "breach", BreachRow.status != "withdrawn"]
    if first_month is not None:
        conds.append(month >= first_month)
    if last_month is not None:
        conds.append(month <= last_month)
    homes = _home_areas(session, districts)
    q = select(month, BreachRow.subject_id, BreachRow.type, BreachRow.start_ms).where(*conds)
    return [(m, _area_at(homes.get(subject, []), start_ms), subject, type_, int(start_ms))
            for m, subject, type_, start_ms in session.execute(q)]


def month_span(session: Session) -> tuple[str, str] | None:
    """The first and last UTC month holding a live breach onset (None: there is none)."""
    month = func.substr(BreachRow.start, 1, 7)
    lo, hi = session.execute(select(func.min(month), func.max(month))
                             .where(BreachRow.kind == "breach", BreachRow.status != "withdrawn")).one()
    return None if lo is None else (lo, hi)
