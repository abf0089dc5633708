"""Real data: 1,533 bus fixes on Liverpool route 14 (BODS, naive UK local
time) against the 30 Liverpool wards as exclusion zones.

Every fix's IN/OUT/UNCERTAIN against every ward must equal shapely's answer
(distance to the boundary, sign from `contains`), and the `exclusion_entry`
records `tagtrail detect` writes must be explained by those classes.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from api.cli.main import main
from conftest import DATA
from geofence.classify import IN, OUT, UNCERTAIN, classify_points
from geofence.compile import compile_zones
from geofence.zones import load_zones
from trails.timestamps import parse_timestamp

BUS = DATA / "liverpool_bus_route14_outbound_bods.csv"
WARDS = DATA / "liverpool_wards_2013_martinjc.geojson"
ACCURACY_M = 10.0
LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """Contract inputs built from the two real files."""
    d = tmp_path_factory.mktemp("liverpool")
    wards = json.loads(WARDS.read_text(encoding="utf-8"))
    features = [{"type": "Feature", "id": f["properties"]["WD13CD"],
                 "properties": {"kind": "exclusion"}, "geometry": f["geometry"]}
                for f in wards["features"]]
    (d / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with open(BUS, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(d / "fixes.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["device_id", "ts", "lat", "lon", "accuracy_m"])
        for r in rows:
            # naive UK local time: localise, then write with its UTC offset
            local = datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=LONDON)
            w.writerow([r["vehicle_id"], local.isoformat(), r["latitude"], r["longitude"], ACCURACY_M])
    vehicles = sorted({r["vehicle_id"] for r in rows})
    subjects = [{"subject_id": f"BUS-{v}", "device_id": v, "start": "2026-01-01T00:00:00Z", "end": None,
                 "zones": [f["id"] for f in features]} for v in vehicles]
    (d / "subjects.json").write_text(json.dumps({"subjects": subjects}))
    return d


def _shapely_classes(lon, lat, zones_geojson: Path) -> dict[str, np.ndarray]:
    to_bng = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)
    x, y = to_bng.transform(lon, lat)
    pts = shapely.points(x, y)
    out = {}
    for f in json.loads(zones_geojson.read_text())["features"]:
        geom = shapely.transform(shape(f["geometry"]), lambda xy: np.column_stack(to_bng.transform(xy[:, 0], xy[:, 1])))
        d = shapely.distance(pts, geom.boundary)
        d = np.where(shapely.contains_xy(geom, x, y), d, -d)
        out[f["id"]] = np.where((d > 0) & (d >= ACCURACY_M), IN,
                                np.where((d < 0) & (-d >= ACCURACY_M), OUT, UNCERTAIN))
    return out


def test_every_fix_classified_as_shapely_does(case):
    with open(case / "fixes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lon = np.array([float(r["lon"]) for r in rows])
    lat = np.array([float(r["lat"]) for r in rows])
    want = _shapely_classes(lon, lat, case / "zones.geojson")
    zones = load_zones(case / "zones.geojson")
    compiled = compile_zones(zones, "EPSG:27700")
    to_bng = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)
    x, y = to_bng.transform(lon, lat)
    seen = {IN: 0, OUT: 0, UNCERTAIN: 0}
    for i, z in enumerate(zones):
        got = classify_points(x, y, np.full(x.size, ACCURACY_M), i, compiled)
        np.testing.assert_array_equal(got, want[z.zone_id], err_msg=z.zone_id)
        for k in seen:
            seen[k] += int((got == k).sum())
    assert len(rows) == 1533
    assert seen[IN] > 1000 and seen[UNCERTAIN] > 0  # the route crosses wards and their edges


def test_detect_entries_are_explained_by_shapely(case, tmp_path):
    out = tmp_path / "out"
    assert main(["detect", "--fixes", str(case / "fixes.csv"), "--subjects", str(case / "subjects.json"),
                 "--zones", str(case / "zones.geojson"), "--out", str(out), "--quiet"]) == 0
    records = [json.loads(l) for l in (out / "breaches.jsonl").read_text().splitlines()]
    assert (out / "quarantine.csv").read_text().strip() == "source,row,reason"
    with open(case / "fixes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lon = np.array([float(r["lon"]) for r in rows])
    lat = np.array([float(r["lat"]) for r in rows])
    ts = np.array([parse_timestamp(r["ts"]) for r in rows])
    dev = np.array([r["device_id"] for r in rows])
    classes = _shapely_classes(lon, lat, case / "zones.geojson")
    as_of = ts.max()
    entries = [r for r in records if r["type"] == "exclusion_entry"]
    assert entries, "the bus runs through wards: entries expected"
    for r in entries:
        s, e = parse_timestamp(r["start"]), parse_timestamp(r["end"])
        mine = (dev == r["device_id"])
        # an entry begins and ends with a decisive IN fix (CONTRACT.md, "Geometry")
        assert classes[r["zone_id"]][mine & (ts == s)].tolist() == [IN]
        inside = mine & (ts >= s) & (ts < e)
        assert (classes[r["zone_id"]][inside] != OUT).all()
    # every IN fix with coverage (not the one at as_of) lies inside an entry of its ward
    for zid, cls in classes.items():
        for i in np.flatnonzero((cls == IN) & (ts < as_of)):
            assert any(r["zone_id"] == zid and r["device_id"] == dev[i]
                       and parse_timestamp(r["start"]) <= ts[i] < parse_timestamp(r["end"]) for r in entries), (zid, i)
