"""Input bounds from issue 10: reason codes, bounded quarantine values, memory bombs,
out-of-range timestamps in `tagtrail detect`, and zones outside the policy CRS's area
of use on every path that loads zones (files, database, admin API)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from api.cli.main import main
from trails.quarantine import QUARANTINE_TEXT_CHARS, REASON_CODE, REASONS, bounded_text

from conftest import EXAMPLES


# --------------------------------------------------------------------------- reasons
def test_reasons_in_contract_order_with_the_intake_reason():
    assert REASONS == (
        "missing_device", "bad_device", "bad_timestamp", "naive_timestamp", "bad_coordinates", "bad_accuracy",
        "bad_battery", "unknown_event", "future_timestamp", "after_as_of", "unassigned", "duplicate",
    )
    assert [REASON_CODE[r] for r in REASONS] == list(range(12))


# --------------------------------------------------------------------------- bounded_text
def test_bounded_text_keeps_a_prefix_and_says_how_much_was_cut():
    assert QUARANTINE_TEXT_CHARS == 256
    values = pa.array(["D1", "D" * 256, "D" * 257, "\u00e9" * 300, None, ""], pa.string())
    assert bounded_text(values).to_pylist() == [
        "D1", "D" * 256, "D" * 256 + "…[+1 characters]", "\u00e9" * 256 + "…[+44 characters]", None, ""]


def test_bounded_text_of_a_dictionary_never_decodes_the_long_value_per_row():
    huge = "D" * (1 << 20)
    dictionary = pa.DictionaryArray.from_arrays(pa.array(np.zeros(50_000, np.int32)), pa.array([huge]))
    out = bounded_text(pa.chunked_array([dictionary.slice(0, 2), dictionary.slice(2)]))
    assert out.type == pa.string() and len(out) == 50_000
    assert out.nbytes < 50_000 * 300  # 1 MiB per row would be 50 GB
    assert out[0].as_py() == "D" * 256 + "…[+1048320 characters]"


def test_bounded_text_of_other_types_is_their_text():
    assert bounded_text(pa.array([7, None], pa.int64())).to_pylist() == ["7", None]


# --------------------------------------------------------------------------- memory bomb
_BOMB = textwrap.dedent("""
    import json, resource, sys, tempfile
    from pathlib import Path
    import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # an old reader fails here, not the machine
    from trails.ingest import ingest
    from trails.readers import read_fixes
    from trails.store import read_store_quarantine

    mode, tmp = sys.argv[1], Path(sys.argv[2])
    n = 100_000
    ts = pa.array(np.full(n, 1_717_236_000_000), pa.timestamp("ms", tz="UTC"))
    def write(path, device_id):
        pq.write_table(pa.table({"device_id": device_id, "ts": ts, "lat": np.full(n, 51.5), "lon": np.full(n, -0.1)}),
                       path, compression="zstd")
    write(tmp / "warm.parquet", pa.array(["D1"] * n))
    bomb = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["D" * (1 << 20)]))
    write(tmp / "bomb.parquet", bomb)
    if mode == "ingest":
        ingest(tmp / "warm.parquet", home=tmp / "warm-home")  # threads, PROJ: not counted
    else:
        read_fixes(tmp / "warm.parquet")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "ingest":
        summary = ingest(tmp / "bomb.parquet", home=tmp / "home")
        reasons = summary.quarantined
        q = read_store_quarantine(tmp / "home")
        values = sorted(set(q.column("device_id").to_pylist()))
    else:
        fixes, rejected = read_fixes(tmp / "bomb.parquet")
        reasons = rejected.counts()
        values = []
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"file_bytes": (tmp / "bomb.parquet").stat().st_size, "growth_mb": growth_mb,
                      "reasons": reasons, "values": values}))
""")


@pytest.mark.parametrize("mode", ["ingest", "readers"])
def test_dictionary_encoded_megabyte_device_id_takes_bounded_memory(tmp_path, mode):
    """Issue 10: a few-KB Parquet file whose dictionary-encoded 1 MiB device id repeats
    over 100,000 rows took gigabytes. Now its rows are bad_device, judged on the
    dictionary, and the quarantine keeps 256 characters of the value."""
    run = subprocess.run([sys.executable, "-c", _BOMB, mode, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["file_bytes"] < 10_000
    assert out["reasons"] == {"bad_device": 100_000}
    assert out["growth_mb"] < 300, out
    if mode == "ingest":
        assert out["values"] == ["D" * 256 + "…[+1048320 characters]"]


# --------------------------------------------------------------------------- timestamps in detect
def test_year_10000_fix_is_quarantined_not_fatal(tmp_path):
    """A tag clock reporting 9999-12-31T23:59:59-23:59 (year 10000 in UTC) must not become
    the implicit as_of: the row is bad_timestamp and the others are judged as usual."""
    case = EXAMPLES / "timestamp_range"
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("device_id,ts,lat,lon\n"
                     "D1,2024-06-01T10:00:00Z,51.458827028,-0.115807189\n"
                     "D1,9999-12-31T23:59:59-23:59,51.458827028,-0.115807189\n"
                     "D1,2024-06-01T10:05:00Z,51.458827028,-0.115807189\n")
    out = tmp_path / "out"
    rc = main(["detect", "--fixes", str(fixes), "--subjects", str(case / "subjects.json"),
               "--zones", str(case / "zones.geojson"), "--out", str(out), "--quiet"])
    assert rc == 0
    assert list(csv.reader(open(out / "quarantine.csv"))) == [["source", "row", "reason"], ["fixes", "2", "bad_timestamp"]]
    records = [json.loads(line) for line in (out / "breaches.jsonl").read_text().splitlines()]
    # as_of is the last kept fix, 10:05: one gap from the assignment's start to the first fix
    assert [(r["type"], r["start"], r["end"]) for r in records] == [
        ("no_signal", "2024-06-01T00:00:00.000Z", "2024-06-01T10:00:00.000Z")]


# --------------------------------------------------------------------------- zones in the database and the API
SWAPPED = {"type": "Feature", "id": "HOME-1", "properties": {"kind": "inclusion", "radius_m": 50},
           "geometry": {"type": "Point", "coordinates": [51.5, -0.12]}}
SWAPPED_MESSAGE = ("zone 'HOME-1': coordinates: position [51.5, -0.12] (lon, lat) lies outside the area of use of "
                   "EPSG:27700 (lon -9.01 .. 2.01, lat 49.75 .. 61.01): are latitude and longitude swapped?")


def test_zones_from_the_database_are_checked_against_the_crs(tmp_path):
    from api.db.session import open_database, transaction
    from api.service.detections import load_zones_from_db, save_detection
    from api.settings import Settings
    from geofence.errors import ZoneError
    from geofence.zones import parse_zones

    # stored by a run whose policy CRS (EPSG:3857) covers the Indian Ocean, read back by a
    # service on the default CRS, whose area of use does not
    zones = parse_zones({"type": "FeatureCollection", "features": [SWAPPED]}, crs="EPSG:3857")
    engine, factory = open_database(Settings.from_home(tmp_path / "home"))
    try:
        with transaction(factory) as s:
            save_detection(s, assignments=[], zone_features=[SWAPPED], zones=zones, records=[])
        with factory() as s:
            with pytest.raises(ZoneError, match=r"zone 'HOME-1' \(version 1\).*position \[51.5, -0.12\] \(lon, lat\) "
                                                r"lies outside the area of use of EPSG:27700 .*: are latitude and "
                                                r"longitude swapped\?"):
                load_zones_from_db(s, ["HOME-1"])
            (z,) = load_zones_from_db(s, ["HOME-1"], crs="EPSG:3857")
            assert z.center_lonlat == (51.5, -0.12)
    finally:
        engine.dispose()


from api_fixtures import api_env, api_template  # noqa: E402,F401


def test_admin_zone_upsert_refuses_a_swapped_zone(api_env):
    r = api_env.client.put("/v1/admin/zones/HOME-1", json=SWAPPED, headers=api_env.h("admin"))
    assert r.status_code == 422
    assert r.json()["detail"] == SWAPPED_MESSAGE
