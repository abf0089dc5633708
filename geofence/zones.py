"""ZONES.geojson -> validated `Zone` objects.

CONTRACT.md, "Zones": a GeoJSON FeatureCollection in WGS84; each feature has a
non-empty string `id` unique in the file (at most 128 characters, no Cc, Cf or
Cs character), a `Polygon`/`MultiPolygon` geometry
valid in the OGC Simple Features sense as given (never repaired) or a `Point`
with `properties.radius_m` > 0, `properties.kind` in curfew/inclusion/exclusion,
an optional weekly `properties.schedule` (required for curfew) and an optional
IANA `properties.timezone` (default Europe/London). Every position (each
vertex; a circle's centre) lies inside the area of use pyproj reports for the
policy CRS (`parse_zones`'s ``crs``; a CRS without one sets no bound): a zone
with latitude and longitude swapped is refused rather than silently never entered.

Every violation raises `ZoneError` with one line naming the zone (its id, or
``features[i]`` when it has no usable id) and what is wrong.

Rules written down here where the contract is silent:

- A position is ``[lon, lat]`` or ``[lon, lat, z]``; the third value is ignored
  entirely (not even type-checked); four or more values are an error.
- A JSON boolean is never a number; NaN/Infinity literals make the file invalid
  JSON; a key repeated in one JSON object is an error (the file is ambiguous).
- ``days`` may repeat a day (the repeat adds nothing). A schedule window is an
  object with exactly the keys ``days``, ``start`` and ``end`` (a misspelt or
  extra key would otherwise be silently ignored and change the meaning).
- A null ``properties.timezone`` means the default, like an absent one.
- ``properties.radius_m`` on a polygon zone is ignored.
- An empty ``features`` list is valid (no zones).
- An area of use whose west bound is east of its east bound crosses the
  antimeridian (e.g. EPSG:3832): a longitude is inside when it is >= west *or*
  <= east (read literally, ``west <= lon <= east`` would admit nothing).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from trails.errors import InputError
from trails.validate import id_problem

from .errors import ZoneError
from .model import DAY_NAMES, ZONE_KINDS, Policy, Window, Zone

__all__ = [
    "DEFAULT_CRS",
    "DEFAULT_TIMEZONE",
    "load_zones",
    "parse_zones",
    "parse_schedule",
    "check_timezone",
    "read_json",
    "decode_json",
    "load_zones_bytes",
]

DEFAULT_TIMEZONE = "Europe/London"
#: The policy's default CRS (CONTRACT.md, "Policy"): zones are checked against
#: its area of use when no other CRS is given.
DEFAULT_CRS: str = Policy.crs

_HHMM = re.compile(r"[0-9]{2}:[0-9]{2}")
_WINDOW_KEYS = frozenset({"days", "start", "end"})

Ring = tuple[tuple[float, float], ...]


# --------------------------------------------------------------------------- JSON
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; the slow search only when a key repeated
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one object")
            seen.add(key)
    return out


def read_json(path: str | os.PathLike[str], *, error: Callable[[str], InputError]) -> Any:
    """Read one strict JSON document (UTF-8, an optional BOM ignored).

    Raises ``error(message)`` naming the file when it is missing, unreadable,
    not UTF-8 or not JSON (NaN/Infinity literals and repeated keys included).
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise error(f"{name}: file not found") from None
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}") from None
    return decode_json(data, name, error=error)


def decode_json(data: bytes, name: str, *, error: Callable[[str], InputError]) -> Any:
    """`read_json` on bytes already read (`name` names them in messages)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise error(f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # from the hooks above
        raise error(f"{name}: not valid JSON: {exc}") from None
    except RecursionError:
        raise error(f"{name}: not valid JSON: nested too deeply") from None


# --------------------------------------------------------------------- scalars
_NUMBER_TYPES = (int, float)


def _is_number(value: Any) -> bool:
    """A JSON number (never a bool: JSON decodes only exact int, float and bool)."""
    return type(value) in _NUMBER_TYPES or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=1)
def _available_timezones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: Any, label: str, *, error: type[InputError] = ZoneError) -> str:
    """Return `name` if it is an IANA tz database name (case-sensitive), else raise.

    `zoneinfo.ZoneInfo` alone is not enough: on a case-insensitive file
    system it loads ``europe/london`` too, so the name is also checked against
    `zoneinfo.available_timezones()`.
    """
    import zoneinfo

    if not isinstance(name, str) or not name:
        raise error(f"{label}: timezone must be a non-empty string, got {_describe(name)}")
    if name not in _available_timezones():
        raise error(f"{label}: timezone {name!r} is not in the IANA tz database (names are case-sensitive)")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise error(f"{label}: timezone {name!r} cannot be loaded") from None
    return name


def _parse_hhmm(value: Any, where: str, *, error: type[InputError]) -> int:
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise error(f"{where} must be two-digit 'HH:MM', got {_describe(value)}")
    hours, minutes = int(value[:2]), int(value[3:])
    if hours > 23 or minutes > 59:
        raise error(f"{where} {value!r} is not a time from 00:00 to 23:59")
    return hours * 60 + minutes


def parse_schedule(value: Any, label: str, *, error: type[InputError] = ZoneError) -> tuple[Window, ...]:
    """Validate a non-empty list of weekly windows (CONTRACT.md, "Zones").

    Parameters
    ----------
    value
        The decoded JSON value of ``properties.schedule`` (not None).
    label
        Names the zone in messages, e.g. ``"zone 'S1-home'"``.

    Returns
    -------
    tuple of Window
        One per window, in the given order; ``days`` as sorted distinct day
        numbers (0 = Monday).
    """
    if not isinstance(value, list):
        raise error(f"{label}: schedule must be a list of windows, got {_describe(value)}")
    if not value:
        raise error(f"{label}: schedule is an empty list (omit it or give at least one window)")
    windows = []
    for i, win in enumerate(value):
        where = f"{label}: schedule[{i}]"
        if not isinstance(win, dict):
            raise error(f"{where} must be an object with days, start and end, got {_describe(win)}")
        missing = sorted(_WINDOW_KEYS - win.keys())
        if missing:
            raise error(f"{where} lacks {', '.join(missing)}")
        extra = sorted(win.keys() - _WINDOW_KEYS)
        if extra:
            raise error(f"{where} has unknown key(s) {', '.join(map(repr, extra))}")
        days = win["days"]
        if not isinstance(days, list) or not days:
            raise error(f"{where}.days must be a non-empty list of mon..sun, got {_describe(days)}")
        day_idx = set()
        for day in days:
            if not isinstance(day, str) or day not in DAY_NAMES:
                raise error(f"{where}.days: {_describe(day)} is not one of {' '.join(DAY_NAMES)}")
            day_idx.add(DAY_NAMES.index(day))
        start = _parse_hhmm(win["start"], f"{where}.start", error=error)
        end = _parse_hhmm(win["end"], f"{where}.end", error=error)
        windows.append(Window(days=tuple(sorted(day_idx)), start_min=start, end_min=end))
    return tuple(windows)


# ------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Area:
    """Where positions may lie: the policy CRS's area of use, in WGS84 degrees."""

    west: float
    south: float
    east: float
    north: float
    label: str  # names the CRS and its bounds in messages

    @property
    def fast(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) for the inline check; crossing the antimeridian takes the full check."""
        if self.west > self.east:
            return (math.inf, math.inf, -math.inf, -math.inf)  # nothing passes: see `holds`
        return (self.west, self.south, self.east, self.north)

    def holds(self, lon: float, lat: float) -> bool:
        inside_lon = (self.west <= lon <= self.east) if self.west <= self.east else (lon >= self.west or lon <= self.east)
        return inside_lon and self.south <= lat <= self.north


_WORLD = _Area(-180.0, -90.0, 180.0, 90.0, "WGS84")


@lru_cache(maxsize=8)
def _area_of_use(crs: str) -> _Area:
    """`pyproj.CRS(crs).area_of_use` as an `_Area` (the whole world when the CRS has none)."""
    from pyproj import CRS

    try:
        area = CRS.from_user_input(crs).area_of_use
    except Exception as exc:  # pyproj raises CRSError, a plain Exception subclass
        raise ZoneError(f"crs {crs!r} is not a CRS pyproj accepts: {exc}") from None
    if area is None:
        return _WORLD
    return _Area(area.west, area.south, area.east, area.north,
                 f"the area of use of {crs} (lon {area.west:g} .. {area.east:g}, lat {area.south:g} .. {area.north:g})")


def _position(pos: Any, where: str, area: _Area = _WORLD) -> tuple[float, float]:
    if not isinstance(pos, list) or not 2 <= len(pos) <= 3:
        raise ZoneError(f"{where} must be [lon, lat] (optionally a third value), got {_describe(pos)}")
    lon, lat = pos[0], pos[1]
    if not _is_number(lon) or not _is_number(lat):
        raise ZoneError(f"{where}: lon and lat must be numbers, got {_describe(pos)}")
    lon, lat = float(lon), float(lat)
    if not -180.0 <= lon <= 180.0:
        raise ZoneError(f"{where}: lon {lon!r} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise ZoneError(f"{where}: lat {lat!r} is outside [-90, 90]")
    if not area.holds(lon, lat):
        hint = ": are latitude and longitude swapped?" if area.holds(lat, lon) else ""
        raise ZoneError(f"{where}: position [{lon!r}, {lat!r}] (lon, lat) lies outside {area.label}{hint}")
    return lon, lat


def _ring(value: Any, where: str, area: _Area = _WORLD) -> Ring:
    if not isinstance(value, list):
        raise ZoneError(f"{where} must be a list of positions, got {_describe(value)}")
    if len(value) < 4:
        raise ZoneError(f"{where} has {len(value)} positions; a ring needs at least 4")
    west, south, east, north = area.fast
    out = []
    for j, pos in enumerate(value):
        # fast path for the usual [lon, lat] of two JSON numbers inside the area; anything else
        # gets the full check and its message
        if (type(pos) is list and len(pos) in (2, 3) and type(pos[0]) in _NUMBER_TYPES
                and type(pos[1]) in _NUMBER_TYPES and west <= pos[0] <= east and south <= pos[1] <= north):
            out.append((float(pos[0]), float(pos[1])))
        else:
            out.append(_position(pos, f"{where}[{j}]", area))
    ring = tuple(out)
    if ring[0] != ring[-1]:
        raise ZoneError(f"{where} is not closed: first position {list(ring[0])} != last {list(ring[-1])}")
    return ring


def _polygon(value: Any, where: str, area: _Area) -> tuple[Ring, ...]:
    if not isinstance(value, list) or not value:
        raise ZoneError(f"{where} must be a non-empty list of rings, got {_describe(value)}")
    return tuple(_ring(r, f"{where}[{k}]", area) for k, r in enumerate(value))


def _check_valid(polygons: tuple[tuple[Ring, ...], ...], multi: bool, label: str) -> None:
    parts = [shapely.Polygon(p[0], p[1:]) for p in polygons]
    geom = shapely.MultiPolygon(parts) if multi else parts[0]
    if not shapely.is_valid(geom):
        raise ZoneError(f"{label}: invalid geometry: {_readable_reason(shapely.is_valid_reason(geom))}")


class _PendingValidity:
    """Polygon zones whose OGC validity is still to be checked, in file order.

    Building one shapely geometry per zone costs more than the rest of parsing a
    small zone, so the checks are batched: every geometry is built from flat
    coordinates and offsets (`shapely.from_ragged_array`, GeoArrow layout) and
    tested in one `shapely.is_valid` call per geometry type. The first invalid
    zone in file order is then reported by `_check_valid` itself, so messages are
    exactly those of checking zone by zone; `parse_zones` checks what is pending
    before raising any later error, so the first error in file order still wins.
    """

    def __init__(self) -> None:
        self.items: list[tuple[int, tuple[tuple[Ring, ...], ...], bool, str]] = []

    def add(self, index: int, polygons: tuple[tuple[Ring, ...], ...], multi: bool, label: str) -> None:
        self.items.append((index, polygons, multi, label))

    def check(self) -> None:
        """Raise `_check_valid`'s error for the first invalid pending zone; then nothing is pending."""
        items, self.items = self.items, []
        bad = [k for multi in (False, True) for k in self._invalid([i for i, it in enumerate(items) if it[2] == multi],
                                                                   items, multi)]
        if bad:
            _, polygons, multi, label = items[min(bad)]
            _check_valid(polygons, multi, label)

    @staticmethod
    def _invalid(which: list[int], items, multi: bool) -> list[int]:
        """Positions (in `items`) of the invalid geometries among `which`."""
        if not which:
            return []
        coords: list[tuple[float, float]] = []
        ring_off, poly_off, geom_off = [0], [0], [0]
        for k in which:
            for poly in items[k][1]:
                for ring in poly:
                    coords.extend(ring)
                    ring_off.append(len(coords))
                poly_off.append(len(ring_off) - 1)
            geom_off.append(len(poly_off) - 1)
        xy = np.asarray(coords, np.float64).reshape(-1, 2)
        offsets = (np.asarray(ring_off, np.int64), np.asarray(poly_off, np.int64))
        if multi:
            geoms = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, xy, offsets + (np.asarray(geom_off, np.int64),))
        else:
            geoms = shapely.from_ragged_array(shapely.GeometryType.POLYGON, xy, offsets)
        valid = shapely.is_valid(geoms)
        return [which[j] for j in np.flatnonzero(~valid).tolist()]


def _readable_reason(reason: str) -> str:
    """GEOS ``'Self-intersection[x y]'`` -> ``'Self-intersection at or near point x y'``."""
    m = re.fullmatch(r"(.*?)\[(.*)\]", reason)
    return f"{m.group(1)} at or near point {m.group(2)}" if m else reason


def _validity(polygons, multi: bool, label: str, pending: "_PendingValidity | None", index: int) -> None:
    """Check now, or leave it to `pending` (checked in a batch before any later error)."""
    if pending is None:
        _check_valid(polygons, multi, label)
    else:
        pending.add(index, polygons, multi, label)


# ---------------------------------------------------------------------- zones
def _parse_feature(feature: Any, label: str, schedules: dict[str, tuple[Window, ...]] | None = None,
                   area: _Area = _WORLD, pending: "_PendingValidity | None" = None, index: int = 0) -> Zone:
    if feature.get("type") != "Feature":
        raise ZoneError(f"{label}: type must be 'Feature', got {_describe(feature.get('type'))}")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ZoneError(f"{label}: properties must be an object, got {_describe(props)}")
    kind = props.get("kind")
    if kind not in ZONE_KINDS:
        raise ZoneError(f"{label}: kind must be one of {', '.join(ZONE_KINDS)}, got {_describe(kind)}")

    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        raise ZoneError(f"{label}: geometry must be a Polygon, MultiPolygon or Point, got {_describe(geometry)}")
    gtype = geometry.get("type")
    if "coordinates" not in geometry:
        raise ZoneError(f"{label}: geometry has no coordinates")
    coords = geometry["coordinates"]
    polygons = center = radius = None
    if gtype == "Polygon":
        polygons = (_polygon(coords, f"{label}: coordinates", area),)
        _validity(polygons, False, label, pending, index)
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise ZoneError(f"{label}: MultiPolygon coordinates must be a non-empty list of polygons")
        polygons = tuple(_polygon(p, f"{label}: coordinates[{k}]", area) for k, p in enumerate(coords))
        _validity(polygons, True, label, pending, index)
    elif gtype == "Point":
        center = _position(coords, f"{label}: coordinates", area)
        radius = props.get("radius_m")
        if not _is_number(radius) or not math.isfinite(radius) or radius <= 0:
            raise ZoneError(f"{label}: a Point zone needs properties.radius_m, a finite number > 0, got {_describe(radius)}")
        radius = float(radius)
    else:
        raise ZoneError(f"{label}: geometry type must be Polygon, MultiPolygon or Point, got {_describe(gtype)}")

    schedule = props.get("schedule")
    windows = None
    if schedule is not None:
        # most wearers share a few schedules: parse each distinct one once (a failure is
        # never cached, so its message still names this zone)
        key = repr(schedule) if schedules is not None else None
        windows = schedules.get(key) if key is not None else None
        if windows is None:
            windows = parse_schedule(schedule, label)
            if key is not None:
                schedules[key] = windows
    if kind == "curfew" and windows is None:
        raise ZoneError(f"{label}: a curfew zone needs a schedule")
    tz = props.get("timezone")
    tz = DEFAULT_TIMEZONE if tz is None else check_timezone(tz, label)
    return Zone(
        zone_id=feature["id"],
        kind=kind,
        polygons=polygons,
        center_lonlat=center,
        radius_m=radius,
        windows=windows,
        timezone=tz,
    )


def parse_zones(obj: Any, *, source: str = "ZONES.geojson", crs: str = DEFAULT_CRS) -> tuple[Zone, ...]:
    """Validate a decoded ZONES.geojson document; zones in file order.

    Parameters
    ----------
    obj
        The decoded document.
    source
        Names the document in messages about the whole of it.
    crs
        The policy CRS: every position must lie inside its area of use
        (``pyproj.CRS(crs).area_of_use``; a CRS without one sets no bound).
        Callers that have a policy pass ``policy.crs``.

    Raises
    ------
    ZoneError
        One line naming the zone (or ``features[i]``) and what is wrong.
    """
    area = _area_of_use(crs)
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        raise ZoneError(f"{source}: not a GeoJSON FeatureCollection")
    features = obj.get("features")
    if not isinstance(features, list):
        raise ZoneError(f"{source}: features must be a list")
    zones: list[Zone] = []
    seen: dict[str, int] = {}
    schedules: dict[str, tuple[Window, ...]] = {}
    pending = _PendingValidity()
    try:
        for i, feature in enumerate(features):
            if not isinstance(feature, dict):
                raise ZoneError(f"features[{i}]: not a GeoJSON Feature object")
            zid = feature.get("id")
            if not isinstance(zid, str) or not zid:
                raise ZoneError(f"features[{i}]: id must be a non-empty string, got {_describe(zid)}")
            problem = id_problem(zid)
            if problem is not None:
                raise ZoneError(f"features[{i}]: id {_describe(zid)} {problem}")
            label = f"zone {zid!r}"
            if zid in seen:
                raise ZoneError(f"{label}: duplicate id (features[{seen[zid]}] and features[{i}])")
            seen[zid] = i
            zones.append(_parse_feature(feature, label, schedules, area, pending, i))
    except ZoneError:
        pending.check()  # an invalid geometry earlier in the file is the first error
        raise
    pending.check()
    return tuple(zones)


def load_zones(path: str | os.PathLike[str], *, crs: str = DEFAULT_CRS) -> tuple[Zone, ...]:
    """Read and validate ZONES.geojson (CONTRACT.md, "Zones"); zones in file order.

    `crs` is the policy CRS whose area of use every position must lie in
    (see `parse_zones`): `tagtrail detect` loads the policy first and passes
    ``policy.crs``.

    Raises
    ------
    ZoneError
        The file is missing, unreadable or not JSON (message names the file),
        or a zone breaks a rule (message names the zone).

    Examples
    --------
    A bow-tie polygon is refused, never repaired::

        ZoneError: zone 'EXC-bowtie': invalid geometry: Self-intersection at or near point -0.11507 51.45926
    """
    return parse_zones(read_json(path, error=ZoneError), source=os.fspath(path), crs=crs)


def load_zones_bytes(data: bytes, name: str, *, crs: str = DEFAULT_CRS) -> tuple[Zone, ...]:
    """`load_zones` on the bytes of ZONES.geojson already read (`name` names the file)."""
    return parse_zones(decode_json(data, name, error=ZoneError), source=name, crs=crs)
