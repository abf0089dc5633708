"""`tagtrail zones import`: any polygon layer geopandas reads -> ZONES.geojson.

Reads Shapefile, GeoPackage, GeoJSON or anything else GDAL/pyogrio reads, in
any CRS; checks every geometry as given (never repairs); optionally
dissolves rows that share a field value (adjacent wards -> one polygon);
reprojects to WGS84 (EPSG:4326) with pyproj's default operation; and builds a
FeatureCollection that `geofence.zones.parse_zones` accepts, which
`write_zones` writes and re-validates from disk with `load_zones`.

Rules:

- A row is named by its id when it has one, and always by its 1-based row
  number in the layer (``zone 'E05000886' (row 3)``).
- Ids: the `id_field` column if given; else a column named ``id`` if the
  layer has one; else ``zone-<row>``. With `dissolve_by` the ids are that
  field's values (so `id_field`, if also given, must name the same field).
  Integer-valued numbers become their decimal text; a missing or empty id,
  or a repeated one, is an error.
- Geometry must be Polygon or MultiPolygon (Z dropped), non-empty and valid in
  its own CRS, and valid again in WGS84 after reprojection. A layer without a
  CRS is refused rather than guessed at.
- Output rings follow RFC 7946 (exterior counter-clockwise, holes clockwise).
- The result must lie inside the area of use of the policy CRS the zones will
  be used with (`crs`, default EPSG:27700; `parse_zones`): a layer whose
  coordinates were mislabelled (a wrong .prj, swapped axes) is refused here
  rather than at the first `tagtrail detect`.
- Other attributes are kept as properties (values that are not JSON
  scalars are written as text), except that ``kind``, ``schedule``,
  ``timezone`` and ``radius_m`` always come from the options. After a
  dissolve only the dissolve field is kept (the other attributes of merged
  rows may disagree).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from .errors import ZoneError
from .model import ZONE_KINDS, Zone
from .zones import DEFAULT_CRS, check_timezone, load_zones, parse_schedule, parse_zones, read_json

__all__ = ["import_zones", "write_zones", "read_schedule_option"]

_RESERVED = frozenset({"kind", "schedule", "timezone", "radius_m"})
_POLYGONAL = ("Polygon", "MultiPolygon")


def read_schedule_option(value: Any) -> list[Any]:
    """A schedule given as a decoded list, a JSON text, or a path to a JSON file.

    Validated like ``properties.schedule`` in ZONES.geojson (errors name
    ``--schedule``); returned as the decoded list, to be written as given.
    """
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if Path(text).is_file():
            value = read_json(text, error=ZoneError)
        else:
            try:
                value = json.loads(text)
            except ValueError:
                raise ZoneError(f"--schedule: {text[:60]!r} is neither JSON nor a readable file") from None
    parse_schedule(value, "--schedule")
    return value


def _json_scalar(value: Any) -> Any:
    """An attribute value as JSON: None for missing, numbers and strings as such, else text."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _id_text(value: Any) -> str | None:
    """A field value as a zone id: text as is, integral numbers as decimal text."""
    value = _json_scalar(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _listify(obj: Any) -> Any:
    if isinstance(obj, (tuple, list)):
        return [_listify(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    return obj


def _geometry_json(geom: Any) -> dict[str, Any]:
    # `mapping` gives Python floats (full precision), unlike a text writer.
    return _listify(shapely.geometry.mapping(geom))


def _check_geometry(geom: Any, label: str, crs_name: str) -> None:
    if geom is None or shapely.is_empty(geom):
        raise ZoneError(f"{label}: has no geometry")
    if geom.geom_type not in _POLYGONAL:
        raise ZoneError(f"{label}: geometry is {geom.geom_type}; only Polygon or MultiPolygon can be imported")
    if not shapely.is_valid(geom):
        reason = shapely.is_valid_reason(geom)
        raise ZoneError(f"{label}: invalid geometry in {crs_name}: {reason} (fix the source; it is never repaired)")


def _check_options(kind: str, schedule: Any, timezone: str | None, id_field: str | None,
                   dissolve_by: str | None) -> list | None:
    """`import_zones`' options checked before the file is read; returns the schedule's windows
    (None without a schedule)."""
    if kind not in ZONE_KINDS:
        raise ZoneError(f"--kind must be one of {', '.join(ZONE_KINDS)}, got {kind!r}")
    windows = None if schedule is None else read_schedule_option(schedule)
    if kind == "curfew" and windows is None:
        raise ZoneError("--kind curfew needs --schedule")
    if timezone is not None:
        check_timezone(timezone, "--timezone")
    if id_field is not None and dissolve_by is not None and id_field != dissolve_by:
        raise ZoneError(f"--id-field {id_field!r} conflicts with --dissolve-by {dissolve_by!r}: dissolved zones take their ids from the dissolve field")
    return windows


def _read_layer(name: str, layer: str | int | None):
    """The layer as a GeoDataFrame: refused (ZoneError naming the file) when missing,
    unreadable, empty or without a CRS (never guessed)."""
    import geopandas as gpd

    if not Path(name).exists():
        raise ZoneError(f"{name}: file not found")
    try:
        gdf = gpd.read_file(name, **({} if layer is None else {"layer": layer}))
    except Exception as exc:  # pyogrio/GDAL raise several unrelated types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZoneError(f"{name}: cannot read as a vector layer: {first}") from None
    if len(gdf) == 0:
        raise ZoneError(f"{name}: the layer has no features")
    if gdf.crs is None:
        raise ZoneError(f"{name}: the layer has no CRS (e.g. a Shapefile without .prj); refusing to guess")
    return gdf


def import_zones(
    src: str | os.PathLike[str],
    *,
    kind: str,
    id_field: str | None = None,
    schedule: Any = None,
    dissolve_by: str | None = None,
    timezone: str | None = None,
    layer: str | int | None = None,
    crs: str = DEFAULT_CRS,
) -> dict[str, Any]:
    """Read a polygon layer and return a valid ZONES.geojson FeatureCollection.

    Parameters
    ----------
    src
        Any vector file geopandas can read (Shapefile, GeoPackage, GeoJSON...).
    kind
        ``curfew``, ``inclusion`` or ``exclusion`` for every zone.
    id_field
        Column holding zone ids (default: ``id`` if present, else ``zone-<row>``).
    schedule
        Weekly windows for every zone: a decoded list, a JSON text or a path to
        a JSON file; required for ``curfew``.
    dissolve_by
        Merge the rows that share this field's value into one zone each, id =
        the value (adjacent areas become one polygon).
    timezone
        IANA name written to every zone (default: none written, which means
        Europe/London).
    layer
        Layer name or index for multi-layer sources (default: the first).
    crs
        The policy CRS the zones are for: every position must lie inside its
        area of use (`parse_zones`).

    Returns
    -------
    dict
        A GeoJSON FeatureCollection (WGS84) that `parse_zones` accepts.

    Raises
    ------
    ZoneError
        Naming the file, option, or feature (id and row) and what is wrong.
    """
    import geopandas as gpd

    windows = _check_options(kind, schedule, timezone, id_field, dissolve_by)
    name = os.fspath(src)
    gdf = _read_layer(name, layer)
    crs_name = gdf.crs.to_string()
    geoms = [shapely.force_2d(g) if g is not None else None for g in gdf.geometry.array]
    attrs = gdf.drop(columns=gdf.geometry.name)
    n_rows = len(gdf)

    key = dissolve_by if dissolve_by is not None else id_field
    if key is not None and key not in attrs.columns:
        opt = "--dissolve-by" if dissolve_by is not None else "--id-field"
        raise ZoneError(f"{opt}: {name} has no field {key!r} (fields: {', '.join(map(str, attrs.columns))})")
    if key is None and "id" in attrs.columns:
        key = "id"
    if key is None:
        ids: list[str | None] = [f"zone-{r + 1}" for r in range(n_rows)]
    else:
        ids = [_id_text(v) for v in attrs[key].tolist()]

    labels = []
    for r, zid in enumerate(ids):
        label = f"row {r + 1}" if not zid else f"zone {zid!r} (row {r + 1})"
        labels.append(label)
        if not zid:
            raise ZoneError(f"{label}: field {key!r} is empty; every zone needs an id")
        _check_geometry(geoms[r], label, crs_name)

    rows: dict[str, list[int]] = {}
    for r, zid in enumerate(ids):
        rows.setdefault(zid, []).append(r)
    if dissolve_by is None:
        for zid, members in rows.items():
            if len(members) > 1:
                raise ZoneError(
                    f"zone {zid!r}: id used by rows {', '.join(str(m + 1) for m in members)}; "
                    "ids must be unique (or merge them with --dissolve-by)"
                )
        out_geoms = geoms
        out_props = [{k: _json_scalar(v) for k, v in rec.items()} for rec in attrs.to_dict("records")]
    else:
        out_geoms, out_props = [], []
        for zid, members in rows.items():
            merged = shapely.union_all([geoms[m] for m in members]) if len(members) > 1 else geoms[members[0]]
            where = f"zone {zid!r} (rows {', '.join(str(m + 1) for m in members)})"
            _check_geometry(merged, where, crs_name)
            out_geoms.append(merged)
            out_props.append({dissolve_by: _json_scalar(attrs[dissolve_by].iloc[members[0]])})
        ids = list(rows)
        labels = [f"zone {zid!r}" for zid in ids]

    projected = gpd.GeoSeries(out_geoms, crs=gdf.crs).to_crs("EPSG:4326")
    features = []
    for zid, label, geom, props in zip(ids, labels, projected.array, out_props):
        geom = shapely.orient_polygons(geom, exterior_cw=False)
        if not shapely.is_valid(geom):
            raise ZoneError(f"{label}: invalid geometry after reprojection to WGS84: {shapely.is_valid_reason(geom)}")
        properties = {k: v for k, v in props.items() if k not in _RESERVED}
        properties["kind"] = kind
        if windows is not None:
            properties["schedule"] = windows
        if timezone is not None:
            properties["timezone"] = timezone
        features.append({"type": "Feature", "id": zid, "properties": properties, "geometry": _geometry_json(geom)})
    collection = {"type": "FeatureCollection", "features": features}
    parse_zones(collection, source=name, crs=crs)  # the result must be a valid ZONES.geojson
    return collection


def write_zones(collection: dict[str, Any], out: str | os.PathLike[str], *,
                crs: str = DEFAULT_CRS) -> tuple[Zone, ...]:
    """Write a FeatureCollection to `out` atomically, re-validated from disk.

    The file is written beside `out` under a temporary name, read back with
    `load_zones` (against `crs`'s area of use), and only then renamed to
    `out`; on any error `out` is left as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # One feature per line: compact, yet diffs stay readable.
            head = {k: v for k, v in collection.items() if k != "features"}
            fh.write(json.dumps(head, ensure_ascii=False, allow_nan=False)[:-1])
            fh.write(', "features": [\n')
            feats = collection.get("features", [])
            for i, feature in enumerate(feats):
                fh.write(json.dumps(feature, ensure_ascii=False, allow_nan=False))
                fh.write(",\n" if i + 1 < len(feats) else "\n")
            fh.write("]}\n")
        zones = load_zones(tmp, crs=crs)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zones
