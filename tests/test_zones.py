"""geofence.zones: ZONES.geojson loading and every contract input error."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from geofence.errors import ZoneError
from geofence.model import Window
from geofence.zones import check_timezone, load_zones, parse_zones
from trails.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
#: examples whose ZONES.geojson is the input error they show
BAD_ZONE_EXAMPLES = ("bad_zone", "zone_swapped")
GOOD_EXAMPLES = sorted(
    p.parent.name for p in EXAMPLES.glob("*/zones.geojson") if p.parent.name not in BAD_ZONE_EXAMPLES
)

SQUARE = [[0.0, 51.0], [0.01, 51.0], [0.01, 51.01], [0.0, 51.01], [0.0, 51.0]]
HOLE = [[0.002, 51.002], [0.002, 51.004], [0.004, 51.004], [0.004, 51.002], [0.002, 51.002]]
NIGHT = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "19:00", "end": "07:00"}]


def feature(zid="Z1", kind="exclusion", geometry=None, **props):
    props = {"kind": kind, **props}
    return {
        "type": "Feature",
        "id": zid,
        "properties": props,
        "geometry": geometry if geometry is not None else {"type": "Polygon", "coordinates": [SQUARE]},
    }


def write(tmp_path, obj, name="zones.geojson"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


# ------------------------------------------------------------------ examples
@pytest.mark.parametrize("example", GOOD_EXAMPLES)
def test_contract_examples_load(example):
    zones = load_zones(EXAMPLES / example / "zones.geojson")
    raw = json.loads((EXAMPLES / example / "zones.geojson").read_text())
    assert [z.zone_id for z in zones] == [f["id"] for f in raw["features"]]


def test_bad_zone_example_names_the_bowtie():
    with pytest.raises(ZoneError) as info:
        load_zones(EXAMPLES / "bad_zone" / "zones.geojson")
    msg = str(info.value)
    assert msg.startswith("zone 'EXC-bowtie': invalid geometry: Self-intersection at or near point")
    assert "\n" not in msg
    assert isinstance(info.value, InputError)


# -------------------------------------------------------------- good shapes
def test_polygon_with_hole_drops_third_value(tmp_path):
    shell = [p + [12.5] for p in SQUARE]
    z = load_zones(write(tmp_path, fc(feature(geometry={"type": "Polygon", "coordinates": [shell, HOLE]}))))[0]
    assert z.polygons is not None and len(z.polygons) == 1 and len(z.polygons[0]) == 2
    assert z.polygons[0][0][0] == (0.0, 51.0)
    assert all(len(p) == 2 and isinstance(p[0], float) for ring in z.polygons[0] for p in ring)
    assert z.center_lonlat is None and z.radius_m is None and z.windows is None
    assert z.timezone == "Europe/London"


def test_multipolygon_touching_at_a_point_is_valid(tmp_path):
    other = [[0.01, 51.01], [0.02, 51.01], [0.02, 51.02], [0.01, 51.02], [0.01, 51.01]]
    geom = {"type": "MultiPolygon", "coordinates": [[SQUARE], [other]]}
    z = load_zones(write(tmp_path, fc(feature(geometry=geom))))[0]
    assert len(z.polygons) == 2


def test_point_curfew_with_schedule_and_timezone(tmp_path):
    f = feature(
        "home", "curfew", {"type": "Point", "coordinates": [-0.1, 51.5, 3]},
        radius_m=50, schedule=NIGHT + [{"days": ["sat", "sat"], "start": "00:00", "end": "00:00"}],
        timezone="America/New_York",
    )
    z = load_zones(write(tmp_path, fc(f)))[0]
    assert z.is_circle and z.center_lonlat == (-0.1, 51.5) and z.radius_m == 50.0
    assert z.windows == (Window(tuple(range(7)), 1140, 420), Window((5,), 0, 0))
    assert z.timezone == "America/New_York"


def test_file_order_and_empty_collection(tmp_path):
    zones = load_zones(write(tmp_path, fc(feature("b"), feature("a", kind="inclusion"))))
    assert [z.zone_id for z in zones] == ["b", "a"]
    assert load_zones(write(tmp_path, fc(), "empty.geojson")) == ()


def test_null_schedule_and_timezone_mean_defaults(tmp_path):
    z = load_zones(write(tmp_path, fc(feature(schedule=None, timezone=None))))[0]
    assert z.windows is None and z.timezone == "Europe/London"


# ----------------------------------------------------------------- errors
def _poly(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


BOWTIE = [[0.0, 51.0], [0.01, 51.01], [0.01, 51.0], [0.0, 51.01], [0.0, 51.0]]
OUTSIDE_HOLE = [[0.02, 51.02], [0.02, 51.03], [0.03, 51.03], [0.03, 51.02], [0.02, 51.02]]
ADJACENT = [[0.01, 51.0], [0.02, 51.0], [0.02, 51.01], [0.01, 51.01], [0.01, 51.0]]
OVERLAP = [[0.005, 51.0], [0.02, 51.0], [0.02, 51.01], [0.005, 51.01], [0.005, 51.0]]


def _with(**changes):
    """A one-feature collection with `changes` applied (props via 'props', None deletes)."""
    f = feature("Z1")
    for key, value in changes.items():
        if key == "props":
            for pk, pv in value.items():
                if pv is _DEL:
                    f["properties"].pop(pk, None)
                else:
                    f["properties"][pk] = pv
        elif value is _DEL:
            f.pop(key, None)
        else:
            f[key] = value
    return fc(f)


_DEL = object()

BAD = [
    # (id, document, fragment of the message)
    ("not-a-feature-collection", {"type": "Feature"}, "not a GeoJSON FeatureCollection"),
    ("features-not-list", {"type": "FeatureCollection", "features": {}}, "features must be a list"),
    ("feature-not-object", fc(7), "features[0]: not a GeoJSON Feature"),
    ("id-missing", _with(id=_DEL), "features[0]: id must be a non-empty string"),
    ("id-empty", _with(id=""), "features[0]: id must be a non-empty string"),
    ("id-number", _with(id=7), "features[0]: id must be a non-empty string"),
    ("id-duplicate", fc(feature("Z1"), feature("Z1")), "zone 'Z1': duplicate id (features[0] and features[1])"),
    ("feature-type", _with(type="Thing"), "zone 'Z1': type must be 'Feature'"),
    ("properties-null", _with(properties=None), "zone 'Z1': properties must be an object"),
    ("kind-missing", _with(props={"kind": _DEL}), "zone 'Z1': kind must be one of"),
    ("kind-unknown", _with(props={"kind": "Curfew"}), "zone 'Z1': kind must be one of"),
    ("geometry-null", _with(geometry=None), "zone 'Z1': geometry must be"),
    ("geometry-linestring", _with(geometry={"type": "LineString", "coordinates": SQUARE}), "zone 'Z1': geometry type must be"),
    ("geometry-no-coordinates", _with(geometry={"type": "Polygon"}), "zone 'Z1': geometry has no coordinates"),
    ("polygon-no-rings", _with(geometry=_poly()), "zone 'Z1': coordinates must be a non-empty list of rings"),
    ("ring-too-short", _with(geometry=_poly(SQUARE[:2] + [SQUARE[0]])), "zone 'Z1': coordinates[0] has 3 positions"),
    ("ring-not-closed", _with(geometry=_poly(SQUARE[:4] + [[0.0, 51.005]])), "zone 'Z1': coordinates[0] is not closed"),
    ("position-one-value", _with(geometry=_poly([[0.0]] + SQUARE[1:])), "zone 'Z1': coordinates[0][0] must be [lon, lat]"),
    ("position-four-values", _with(geometry=_poly([[0.0, 51.0, 1, 2]] + SQUARE[1:])), "coordinates[0][0] must be [lon, lat]"),
    ("position-string", _with(geometry=_poly([["0", 51.0]] + SQUARE[1:])), "zone 'Z1': coordinates[0][0]: lon and lat must be numbers"),
    ("position-bool", _with(geometry=_poly([[True, 51.0]] + SQUARE[1:])), "zone 'Z1': coordinates[0][0]: lon and lat must be numbers"),
    ("lon-out-of-range", _with(geometry=_poly([[180.5, 51.0]] + SQUARE[1:4] + [[180.5, 51.0]])), "zone 'Z1': coordinates[0][0]: lon 180.5 is outside"),
    ("lat-out-of-range", _with(geometry=_poly([[0.0, 90.5]] + SQUARE[1:4] + [[0.0, 90.5]])), "zone 'Z1': coordinates[0][0]: lat 90.5 is outside"),
    ("bowtie", _with(geometry=_poly(BOWTIE)), "zone 'Z1': invalid geometry: Self-intersection"),
    ("hole-outside-shell", _with(geometry=_poly(SQUARE, OUTSIDE_HOLE)), "zone 'Z1': invalid geometry: Hole lies outside shell"),
    ("zero-area-ring", _with(geometry=_poly([[0.0, 51.0], [0.01, 51.0], [0.0, 51.0], [0.0, 51.0]])), "zone 'Z1': invalid geometry"),
    ("multipolygon-adjacent-parts", _with(geometry={"type": "MultiPolygon", "coordinates": [[SQUARE], [ADJACENT]]}), "zone 'Z1': invalid geometry"),
    ("multipolygon-overlapping-parts", _with(geometry={"type": "MultiPolygon", "coordinates": [[SQUARE], [OVERLAP]]}), "zone 'Z1': invalid geometry"),
    ("multipolygon-empty", _with(geometry={"type": "MultiPolygon", "coordinates": []}), "zone 'Z1': MultiPolygon coordinates must be a non-empty list"),
    ("point-no-radius", _with(geometry={"type": "Point", "coordinates": [0.0, 51.0]}), "zone 'Z1': a Point zone needs properties.radius_m"),
    ("point-radius-zero", _with(geometry={"type": "Point", "coordinates": [0.0, 51.0]}, props={"radius_m": 0}), "radius_m, a finite number > 0, got 0"),
    ("point-radius-negative", _with(geometry={"type": "Point", "coordinates": [0.0, 51.0]}, props={"radius_m": -5}), "zone 'Z1': a Point zone needs properties.radius_m"),
    ("point-radius-bool", _with(geometry={"type": "Point", "coordinates": [0.0, 51.0]}, props={"radius_m": True}), "got True"),
    ("point-radius-string", _with(geometry={"type": "Point", "coordinates": [0.0, 51.0]}, props={"radius_m": "50"}), "got '50'"),
    ("point-bad-position", _with(geometry={"type": "Point", "coordinates": [0.0, 95.0]}, props={"radius_m": 5}), "zone 'Z1': coordinates: lat 95.0 is outside"),
    ("curfew-without-schedule", _with(props={"kind": "curfew"}), "zone 'Z1': a curfew zone needs a schedule"),
    ("schedule-empty-list", _with(props={"schedule": []}), "zone 'Z1': schedule is an empty list"),
    ("schedule-not-list", _with(props={"schedule": {"days": ["mon"]}}), "zone 'Z1': schedule must be a list"),
    ("window-not-object", _with(props={"schedule": ["19:00-07:00"]}), "zone 'Z1': schedule[0] must be an object"),
    ("window-missing-end", _with(props={"schedule": [{"days": ["mon"], "start": "19:00"}]}), "zone 'Z1': schedule[0] lacks end"),
    ("window-unknown-key", _with(props={"schedule": [{**NIGHT[0], "timezone": "UTC"}]}), "zone 'Z1': schedule[0] has unknown key(s) 'timezone'"),
    ("days-empty", _with(props={"schedule": [{**NIGHT[0], "days": []}]}), "zone 'Z1': schedule[0].days must be a non-empty list"),
    ("days-string", _with(props={"schedule": [{**NIGHT[0], "days": "mon"}]}), "zone 'Z1': schedule[0].days must be a non-empty list"),
    ("day-unknown", _with(props={"schedule": [{**NIGHT[0], "days": ["Mon"]}]}), "zone 'Z1': schedule[0].days: 'Mon' is not one of"),
    ("start-one-digit-hour", _with(props={"schedule": [{**NIGHT[0], "start": "7:00"}]}), "zone 'Z1': schedule[0].start must be two-digit 'HH:MM'"),
    ("start-24", _with(props={"schedule": [{**NIGHT[0], "start": "24:00"}]}), "zone 'Z1': schedule[0].start '24:00' is not a time"),
    ("end-minute-60", _with(props={"schedule": [{**NIGHT[0], "end": "07:60"}]}), "zone 'Z1': schedule[0].end '07:60' is not a time"),
    ("end-with-seconds", _with(props={"schedule": [{**NIGHT[0], "end": "07:00:00"}]}), "zone 'Z1': schedule[0].end must be two-digit"),
    ("end-trailing-newline", _with(props={"schedule": [{**NIGHT[0], "end": "07:00\n"}]}), "zone 'Z1': schedule[0].end must be two-digit"),
    ("end-non-ascii-digits", _with(props={"schedule": [{**NIGHT[0], "end": "٠٧:00"}]}), "zone 'Z1': schedule[0].end must be two-digit"),
    ("end-number", _with(props={"schedule": [{**NIGHT[0], "end": 700}]}), "zone 'Z1': schedule[0].end must be two-digit"),
    ("timezone-unknown", _with(props={"timezone": "Europe/Atlantis"}), "zone 'Z1': timezone 'Europe/Atlantis' is not in the IANA"),
    ("timezone-wrong-case", _with(props={"timezone": "europe/london"}), "zone 'Z1': timezone 'europe/london' is not in the IANA"),
    ("timezone-empty", _with(props={"timezone": ""}), "zone 'Z1': timezone must be a non-empty string"),
    ("timezone-number", _with(props={"timezone": 1}), "zone 'Z1': timezone must be a non-empty string"),
]


@pytest.mark.parametrize(("doc", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_input_errors_name_the_zone(tmp_path, doc, fragment):
    with pytest.raises(ZoneError) as info:
        load_zones(write(tmp_path, copy.deepcopy(doc)))
    msg = str(info.value)
    assert fragment in msg
    assert "\n" not in msg


FILE_ERRORS = [
    ("missing", None, "file not found"),
    ("not-json", "{nope", "not valid JSON"),
    ("nan-literal", '{"type": "FeatureCollection", "features": [], "x": NaN}', "NaN is not valid JSON"),
    ("duplicate-key", '{"type": "FeatureCollection", "features": [], "features": []}', "duplicate key 'features'"),
    ("not-utf8", b"\xff\xfe{}", "not valid UTF-8"),
    ("directory", "DIR", "cannot read"),
]


@pytest.mark.parametrize(("content", "fragment"), [f[1:] for f in FILE_ERRORS], ids=[f[0] for f in FILE_ERRORS])
def test_file_errors_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "zones.geojson"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ZoneError) as info:
        load_zones(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_radius_overflowing_to_infinity_is_refused(tmp_path):
    doc = fc(feature(geometry={"type": "Point", "coordinates": [0.0, 51.0]}, radius_m=123.25))
    path = write(tmp_path, json.dumps(doc).replace("123.25", "1e400"))
    with pytest.raises(ZoneError, match=r"zone 'Z1': a Point zone needs properties.radius_m.*got inf"):
        load_zones(path)


def test_bom_is_ignored(tmp_path):
    path = tmp_path / "zones.geojson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(fc(feature())).encode())
    assert load_zones(path)[0].zone_id == "Z1"


@pytest.mark.parametrize("name", ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe"])
def test_check_timezone_accepts_iana_names(name):
    assert check_timezone(name, "zone 'x'") == name


# ------------------------------------------------------------------ area of use of the policy CRS
# EPSG:27700's area of use as pyproj reports it: lon -9.01 .. 2.01, lat 49.75 .. 61.01
BNG_AREA = "the area of use of EPSG:27700 (lon -9.01 .. 2.01, lat 49.75 .. 61.01)"


def _circle(lon, lat, zid="HOME-1"):
    return feature(zid, kind="inclusion", geometry={"type": "Point", "coordinates": [lon, lat]}, radius_m=50)


def test_swapped_circle_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ZoneError) as info:
        load_zones(write(tmp_path, fc(_circle(51.5, -0.12))))
    assert str(info.value) == (f"zone 'HOME-1': coordinates: position [51.5, -0.12] (lon, lat) lies outside "
                               f"{BNG_AREA}: are latitude and longitude swapped?")
    assert isinstance(info.value, InputError)


def test_polygon_vertex_outside_the_area_is_named(tmp_path):
    # Paris: outside Great Britain, and swapping it does not help either (no hint)
    ring = [[2.0, 48.8], [2.01, 48.8], [2.01, 48.81], [2.0, 48.81], [2.0, 48.8]]
    with pytest.raises(ZoneError) as info:
        load_zones(write(tmp_path, fc(feature("Z1"), feature("PARIS", geometry=_poly(ring)))))
    assert str(info.value) == f"zone 'PARIS': coordinates[0][0]: position [2.0, 48.8] (lon, lat) lies outside {BNG_AREA}"
    # one vertex out is enough (the last vertex closes the ring, so the second one here)
    ring = [list(p) for p in SQUARE]
    ring[1] = [2.5, 51.0]
    with pytest.raises(ZoneError, match=r"zone 'Z1': coordinates\[0\]\[1\]: position \[2.5, 51.0\]"):
        parse_zones(fc(feature("Z1", geometry=_poly(ring))))


def test_area_of_use_follows_the_policy_crs(tmp_path):
    path = write(tmp_path, fc(_circle(174.78, -41.29, "WLG")))  # Wellington
    with pytest.raises(ZoneError, match="lies outside the area of use of EPSG:27700"):
        load_zones(path)  # the default policy CRS
    (z,) = load_zones(path, crs="EPSG:2193")  # New Zealand Transverse Mercator
    assert z.center_lonlat == (174.78, -41.29)
    with pytest.raises(ZoneError, match="lies outside the area of use of EPSG:2193"):
        parse_zones(fc(_circle(-0.12, 51.5)), crs="EPSG:2193")
    # a CRS without an area of use sets no bound
    (z,) = parse_zones(fc(_circle(174.78, -41.29)), crs="+proj=utm +zone=30 +datum=WGS84 +units=m")
    assert z.zone_id == "HOME-1"


def test_area_of_use_across_the_antimeridian(tmp_path):
    # EPSG:3832 (PDC Mercator): west 98.69 > east -68, i.e. the area wraps through 180
    for lon in (179.0, -179.0, 120.0, -70.0):
        assert parse_zones(fc(_circle(lon, 0.0)), crs="EPSG:3832")
    with pytest.raises(ZoneError, match="lies outside the area of use of EPSG:3832"):
        parse_zones(fc(_circle(0.0, 0.0)), crs="EPSG:3832")


@pytest.mark.parametrize("zid,problem", [
    ("Z" * 129, "is 129 characters long (at most 128)"),
    ("Z\u200b1", "holds U+200B (ZERO WIDTH SPACE) at character 2: control, format and surrogate characters are not allowed"),
    ("Z\t1", "holds U+0009 (category Cc) at character 2: control, format and surrogate characters are not allowed"),
], ids=["long", "zero-width-space", "tab"])
def test_zone_id_rule(zid, problem):
    with pytest.raises(ZoneError) as info:
        parse_zones(fc(feature("OK"), feature(zid)))
    shown = repr(zid) if len(repr(zid)) <= 60 else repr(zid)[:57] + "..."
    assert str(info.value) == f"features[1]: id {shown} {problem}"
    assert parse_zones(fc(feature("Z" * 128)))  # 128 is allowed
