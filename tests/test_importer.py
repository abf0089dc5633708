"""geofence.importer and `tagtrail zones import|check`."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from api.cli.main import main
from geofence.errors import ZoneError
from geofence.importer import import_zones, write_zones
from geofence.zones import load_zones, parse_zones

SHARED = Path(__file__).resolve().parents[2] / "shared"
WARDS = SHARED / "data" / "liverpool_wards_2013_martinjc.geojson"
NIGHT = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "19:00", "end": "07:00"}]

# Two adjacent squares and a bow-tie in British National Grid metres (central London).
X0, Y0 = 530_000.0, 180_000.0
LEFT = box(X0, Y0, X0 + 100, Y0 + 100)
RIGHT = box(X0 + 100, Y0, X0 + 200, Y0 + 100)
FAR = box(X0 + 1000, Y0, X0 + 1100, Y0 + 100)
BOWTIE = Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100), (X0, Y0)])


def layer(tmp_path, geoms, name="zones.gpkg", crs="EPSG:27700", **columns):
    path = tmp_path / name
    gpd.GeoDataFrame(columns, geometry=list(geoms), crs=crs).to_file(path)
    return path


# --------------------------------------------------------------- good paths
def test_liverpool_wards_by_ward_code(tmp_path):
    fc = import_zones(WARDS, kind="exclusion", id_field="WD13CD")
    src = json.loads(WARDS.read_text())
    assert [f["id"] for f in fc["features"]] == [f["properties"]["WD13CD"] for f in src["features"]]
    zones = write_zones(fc, tmp_path / "out" / "zones.geojson")
    assert len(zones) == 30 and all(z.kind == "exclusion" and z.windows is None for z in zones)
    assert load_zones(tmp_path / "out" / "zones.geojson") == zones
    # Already WGS84: the same shapes come back (rings may be re-oriented per RFC 7946).
    for f_src, z in zip(src["features"], zones):
        a = shapely.geometry.shape(f_src["geometry"])
        b = shapely.Polygon(z.polygons[0][0], z.polygons[0][1:])
        assert a.equals(b)
        assert shapely.Polygon(z.polygons[0][0]).exterior.is_ccw
    assert fc["features"][0]["properties"]["WD13NM"] == "Allerton and Hunts Cross"


@pytest.mark.parametrize("name", ["zones.gpkg", "zones.shp"], ids=["geopackage", "shapefile"])
def test_british_national_grid_comes_back_to_wgs84(tmp_path, name):
    lonlat = Polygon([(-0.12, 51.50), (-0.11, 51.50), (-0.11, 51.505), (-0.12, 51.505), (-0.12, 51.50)])
    bng = gpd.GeoSeries([lonlat], crs="EPSG:4326").to_crs("EPSG:27700").iloc[0]
    path = layer(tmp_path, [bng], name=name, case_ref=["CASE-1"])
    fc = import_zones(path, kind="curfew", id_field="case_ref", schedule=json.dumps(NIGHT), timezone="Europe/London")
    (z,) = parse_zones(fc)
    assert z.zone_id == "CASE-1" and z.kind == "curfew" and z.timezone == "Europe/London"
    got = np.array(z.polygons[0][0])
    want = np.array(lonlat.exterior.coords)
    if not shapely.Polygon(want).exterior.is_ccw:
        want = want[::-1]
    # same vertices (possibly starting elsewhere after re-orientation)
    assert got.shape == want.shape
    dist = np.abs(got[:-1, None, :] - want[None, :-1, :]).max(axis=2).min(axis=1)
    assert dist.max() < 1e-6
    assert fc["features"][0]["properties"]["schedule"] == NIGHT


def test_default_ids_from_id_field_or_row(tmp_path):
    fc = import_zones(layer(tmp_path, [LEFT, FAR]), kind="inclusion")
    assert [f["id"] for f in fc["features"]] == ["zone-1", "zone-2"]
    fc = import_zones(layer(tmp_path, [LEFT, FAR], name="ids.gpkg", id=[7, 8]), kind="inclusion")
    assert [f["id"] for f in fc["features"]] == ["7", "8"]


def test_dissolve_merges_adjacent_squares(tmp_path):
    path = layer(tmp_path, [LEFT, RIGHT, FAR], site=["A", "A", "B"], name_=["l", "r", "f"])
    fc = import_zones(path, kind="exclusion", dissolve_by="site")
    assert [f["id"] for f in fc["features"]] == ["A", "B"]
    a = shapely.geometry.shape(fc["features"][0]["geometry"])
    assert a.geom_type == "Polygon" and a.is_valid and len(a.interiors) == 0
    assert fc["features"][0]["properties"] == {"site": "A", "kind": "exclusion"}
    zones = write_zones(fc, tmp_path / "z.geojson")
    assert [len(z.polygons) for z in zones] == [1, 1]


def test_adjacent_parts_without_dissolve_are_refused(tmp_path):
    path = layer(tmp_path, [MultiPolygon([LEFT, RIGHT])], id=["P1"])
    with pytest.raises(ZoneError, match=r"zone 'P1' \(row 1\): invalid geometry in EPSG:27700"):
        import_zones(path, kind="exclusion")


def test_schedule_from_file(tmp_path):
    sched = tmp_path / "schedule.json"
    sched.write_text(json.dumps(NIGHT))
    fc = import_zones(layer(tmp_path, [LEFT]), kind="curfew", schedule=str(sched), timezone="America/New_York")
    (z,) = parse_zones(fc)
    assert z.windows[0].start_min == 19 * 60 and z.timezone == "America/New_York"


# -------------------------------------------------------------------- errors
ERRORS = [
    # (id, geometries, columns, import options, fragment)
    ("bowtie-named-by-id", [LEFT, BOWTIE], {"id": ["OK", "EXC-bowtie"]}, {}, "zone 'EXC-bowtie' (row 2): invalid geometry in EPSG:27700: Self-intersection"),
    ("bowtie-named-by-row", [BOWTIE], {}, {}, "zone 'zone-1' (row 1): invalid geometry"),
    ("line-geometry", [LineString([(X0, Y0), (X0 + 1, Y0 + 1)])], {}, {}, "zone 'zone-1' (row 1): geometry is LineString"),
    ("duplicate-ids", [LEFT, FAR], {"ref": ["X", "X"]}, {"id_field": "ref"}, "zone 'X': id used by rows 1, 2"),
    ("empty-id", [LEFT], {"ref": [""]}, {"id_field": "ref"}, "row 1: field 'ref' is empty"),
    ("null-id", [LEFT], {"ref": [None]}, {"id_field": "ref"}, "row 1: field 'ref' is empty"),
    ("id-field-missing", [LEFT], {"ref": ["a"]}, {"id_field": "code"}, "--id-field: "),
    ("dissolve-field-missing", [LEFT], {"ref": ["a"]}, {"dissolve_by": "site"}, "--dissolve-by: "),
    ("id-and-dissolve-conflict", [LEFT], {"ref": ["a"]}, {"id_field": "ref", "dissolve_by": "site"}, "conflicts with --dissolve-by"),
    ("unknown-kind", [LEFT], {}, {"kind": "zone"}, "--kind must be one of"),
    ("curfew-without-schedule", [LEFT], {}, {"kind": "curfew"}, "--kind curfew needs --schedule"),
    ("schedule-not-json", [LEFT], {}, {"schedule": "19:00-07:00"}, "--schedule: '19:00-07:00' is neither JSON nor a readable file"),
    ("schedule-bad-window", [LEFT], {}, {"schedule": '[{"days": ["mon"], "start": "7pm", "end": "07:00"}]'}, "--schedule: schedule[0].start must be two-digit"),
    ("schedule-empty", [LEFT], {}, {"schedule": "[]"}, "--schedule: schedule is an empty list"),
    ("timezone-bad-case", [LEFT], {}, {"timezone": "europe/london"}, "--timezone: timezone 'europe/london' is not in the IANA"),
]


@pytest.mark.parametrize(("geoms", "columns", "options", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_import_errors_name_the_item(tmp_path, geoms, columns, options, fragment):
    path = layer(tmp_path, geoms, **columns)
    options = {"kind": "exclusion", **options}
    with pytest.raises(ZoneError) as info:
        import_zones(path, **options)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_unreadable_sources(tmp_path):
    with pytest.raises(ZoneError, match="nope.gpkg: file not found"):
        import_zones(tmp_path / "nope.gpkg", kind="exclusion")
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a geopackage")
    with pytest.raises(ZoneError, match="junk.gpkg: cannot read as a vector layer"):
        import_zones(junk, kind="exclusion")


def test_empty_layer_is_refused(tmp_path):
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs="EPSG:27700").to_file(path)
    with pytest.raises(ZoneError, match="empty.gpkg: the layer has no features"):
        import_zones(path, kind="exclusion")


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_layer_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame({"id": ["a"]}, geometry=[LEFT]).to_file(path)
    with pytest.raises(ZoneError, match="has no CRS"):
        import_zones(path, kind="exclusion")


# ------------------------------------------------------------------------ CLI
def test_cli_import_and_check(tmp_path, capsys):
    out = tmp_path / "zones.geojson"
    rc = main(["zones", "import", str(WARDS), "--kind", "inclusion", "--id-field", "WD13CD", "--out", str(out)])
    assert rc == 0 and "wrote 30 inclusion zone(s)" in capsys.readouterr().out
    assert len(load_zones(out)) == 30
    assert main(["zones", "check", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("30 zone(s) valid")


def test_cli_error_is_one_line_and_writes_nothing(tmp_path, capsys):
    path = layer(tmp_path, [BOWTIE], id=["EXC-bowtie"])
    out = tmp_path / "zones.geojson"
    rc = main(["zones", "import", str(path), "--kind", "exclusion", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 1 and "zone 'EXC-bowtie' (row 1): invalid geometry" in err
    assert list(tmp_path.glob("zones.geojson*")) == []


def test_cli_check_bad_zone_example(capsys):
    rc = main(["zones", "check", str(SHARED / "contract" / "examples" / "bad_zone" / "zones.geojson")])
    assert rc == 1 and "zone 'EXC-bowtie': invalid geometry" in capsys.readouterr().err  # the check failed: 1


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["zones", "import", "--help"])
    assert "tagtrail zones import wards.geojson --kind exclusion" in capsys.readouterr().out


# ----------------------------------------------------- area of use of the policy CRS
# A square near Westminster written (lat, lon) instead of (lon, lat) and labelled WGS84.
SWAPPED = Polygon([(51.50, -0.12), (51.50, -0.11), (51.505, -0.11), (51.505, -0.12), (51.50, -0.12)])
BNG_AREA = "the area of use of EPSG:27700 (lon -9.01 .. 2.01, lat 49.75 .. 61.01)"
# Wellington, in New Zealand Transverse Mercator metres
WLG = box(1_748_000, 5_427_000, 1_748_100, 5_427_100)


def test_import_of_swapped_axes_is_refused(tmp_path):
    path = layer(tmp_path, [SWAPPED], name="swapped.geojson", crs="EPSG:4326", id=["HOME-1"])
    with pytest.raises(ZoneError) as info:
        import_zones(path, kind="exclusion")
    assert str(info.value) == (f"zone 'HOME-1': coordinates[0][0]: position [51.5, -0.12] (lon, lat) lies outside "
                               f"{BNG_AREA}: are latitude and longitude swapped?")


def test_import_checks_against_the_given_policy_crs(tmp_path):
    path = layer(tmp_path, [WLG], crs="EPSG:2193", id=["WLG"])
    with pytest.raises(ZoneError, match="lies outside the area of use of EPSG:27700"):
        import_zones(path, kind="exclusion")  # the default policy CRS
    fc = import_zones(path, kind="exclusion", crs="EPSG:2193")
    (z,) = write_zones(fc, tmp_path / "zones.geojson", crs="EPSG:2193")
    assert z.zone_id == "WLG" and 174 < z.polygons[0][0][0][0] < 175


def test_cli_import_and_check_use_the_policy_crs(tmp_path, capsys):
    path = layer(tmp_path, [WLG], crs="EPSG:2193", id=["WLG"])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"crs": "EPSG:2193"}))
    out = tmp_path / "zones.geojson"
    assert main(["zones", "import", str(path), "--kind", "exclusion", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "zone 'WLG': coordinates[0][0]: position [" in err and BNG_AREA in err and not out.exists()
    assert main(["zones", "import", str(path), "--kind", "exclusion", "--policy", str(policy), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["zones", "check", str(out), "--policy", str(policy)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 zone(s) valid")
    assert main(["zones", "check", str(out)]) == 1  # the check failed: 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zone 'WLG': coordinates[0][0]: position [" in err and BNG_AREA in err


def test_cli_check_zone_swapped_example(capsys):
    rc = main(["zones", "check", str(SHARED / "contract" / "examples" / "zone_swapped" / "zones.geojson")])
    err = capsys.readouterr().err
    assert rc == 1 and err.endswith(f"zone 'S1-home': coordinates: position [51.458827028, -0.115807189] (lon, lat) "
                                    f"lies outside {BNG_AREA}: are latitude and longitude swapped?\n")
