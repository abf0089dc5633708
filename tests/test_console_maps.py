"""Console maps with no internet (issue 12), through the app itself
(TestClient; the browser checks are tests/test_console_maps_browser.py):

- the extract map on /requests/{id}: built from the very extract bytes the page
  view audited (one extract.download entry, the GeoJSON download's SHA-256);
- a local MBTiles background (TAGTRAIL_TILE_FILE): checked when the settings
  are made, served at /tiles/{z}/{x}/{y} with the TMS row flip, its format's
  content type and a cache header, 404 for a missing tile;
- boundaries for context: `tagtrail boundaries load` and the /admin upload
  (each bad feature named, nothing loaded), audited, and served to signed-in
  users clipped to a bbox. Boundary files are read in place from ../shared/data.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
from shapely.geometry import box, shape

from api_fixtures import api_env, api_template, create_request, decide, ts  # noqa: F401 (fixtures)
from test_console_requests import csrf, entries, sign_in

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
LIVERPOOL = DATA / "liverpool_wards_2013_martinjc.geojson"
WESTMINSTER = DATA / "westminster_wards_2013_martinjc.geojson"
ENGLAND = DATA / "england_lad_2024_buc.geojson"


@pytest.fixture()
def env(api_env):
    return api_env


def png(rgb: tuple[int, int, int], size: int = 4) -> bytes:
    """A minimal truecolour PNG (RFC 2083), written by hand: signature, IHDR, one IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))  # filter byte 0 per row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], fmt: str = "png") -> Path:
    """An MBTiles file: `tiles` keyed by (zoom, column, TMS row), as the specification stores them."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
        db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test"), ("format", fmt)])
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", [(z, x, r, d) for (z, x, r), d in tiles.items()])
    return path


# ------------------------------------------------------------------ the extract map

def test_extract_map_is_built_from_the_audited_extract_bytes(env):
    made = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, made["id"]).status_code == 200
    sign_in(env, "caseworker")
    page = env.client.get(f"/requests/{made['id']}").text
    (shown,) = entries(env, "extract.download")  # the page view: one entry, no second read audited
    block = json.loads(re.search(r'id="extract-map-data">(.*?)</script>', page, re.DOTALL).group(1))
    assert 'data-tt-map="#extract-map-data"' in page and "tt-legend__decisive" in page
    download = env.client.get(f"/requests/{made['id']}/extract?format=geojson").content
    assert hashlib.sha256(download).hexdigest() == shown["extract_sha256"]  # the same bytes as the view
    fixes = json.loads(download)["features"]
    # every fix of the file on the map, once, with its own time, position, accuracy and quality
    drawn = {}
    for f in block["features"]:
        p = f["properties"]
        assert p["role"] == "fix" and len(p["n"]) == len(p["ts"]) == len(f["geometry"]["coordinates"])
        for k, n in enumerate(p["n"]):
            drawn[n] = (p["ts"][k], f["geometry"]["coordinates"][k], p["accuracy_m"][k], p["quality"])
    assert sorted(drawn) == list(range(1, len(fixes) + 1)) and fixes
    for n, f in enumerate(fixes, start=1):
        assert drawn[n] == (f["properties"]["ts"], f["geometry"]["coordinates"], f["properties"]["accuracy_m"],
                            f["properties"]["quality"])
    assert len(entries(env, "extract.download")) == 2  # the view, then the download: nothing else


# ------------------------------------------------------------------ MBTiles

def test_tile_file_is_checked_when_the_settings_are_made(tmp_path, monkeypatch):
    from api.settings import Settings
    from trails.errors import InputError

    home = tmp_path / "h"
    home.mkdir()
    good = mbtiles(tmp_path / "ok.mbtiles", {(0, 0, 0): png((1, 2, 3))})
    (tmp_path / "text.mbtiles").write_text("not a database at all, just text " * 10)
    vector = mbtiles(tmp_path / "vector.mbtiles", {}, fmt="pbf")
    monkeypatch.setenv("TAGTRAIL_TILE_FILE", str(good))
    assert Settings.from_home(home).tile_file == good.resolve()
    assert Settings.from_home(home).tile_media_type == "image/png"
    for bad, why in ((tmp_path / "missing.mbtiles", "no such file"), (tmp_path / "text.mbtiles", "not an MBTiles"),
                     (vector, "not a raster image")):
        monkeypatch.setenv("TAGTRAIL_TILE_FILE", str(bad))
        with pytest.raises(InputError, match=why):
            Settings.from_home(home)
    monkeypatch.setenv("TAGTRAIL_TILE_FILE", str(good))
    monkeypatch.setenv("TAGTRAIL_TILE_URL", "https://tiles.example/{z}/{x}/{y}.png")
    with pytest.raises(InputError, match="not both"):
        Settings.from_home(home)


def test_tiles_are_served_with_the_tms_row_flipped(env, tmp_path):
    from api.web.tiles import map_tiles

    red, blue = png((255, 0, 0)), png((0, 0, 255))
    # XYZ (z=2, x=1, y=0) is the top row: TMS row 2**2 - 1 - 0 = 3; XYZ (2, 1, 3) is TMS row 0
    path = mbtiles(tmp_path / "t.mbtiles", {(2, 1, 3): red, (2, 1, 0): blue})
    env.app.state.settings = env.app.state.settings.model_copy(update={"tile_file": path})
    r = env.client.get("/tiles/2/1/0")
    assert r.status_code == 200 and r.content == red and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert env.client.get("/tiles/2/1/3").content == blue
    assert env.client.get("/tiles/2/2/0").status_code == 404  # no such tile
    assert env.client.get("/tiles/2/4/0").status_code == 404  # outside the zoom's grid
    assert env.client.get("/tiles/2/1/-1").status_code == 422
    assert map_tiles(env.app.state.settings) == "/tiles/{z}/{x}/{y}"  # what every map is given as data-tiles
    jpeg = mbtiles(tmp_path / "j.mbtiles", {(0, 0, 0): b"\xff\xd8\xff\xe0jpeg"}, fmt="jpg")
    env.app.state.settings = env.app.state.settings.model_copy(update={"tile_file": jpeg})
    assert env.client.get("/tiles/0/0/0").headers["content-type"] == "image/jpeg"
    env.app.state.settings = env.app.state.settings.model_copy(update={"tile_file": None})
    assert env.client.get("/tiles/0/0/0").status_code == 404  # no file: no tiles


# ------------------------------------------------------------------ boundaries

def _names_meeting(path: Path, prop: str, bbox: tuple[float, float, float, float]) -> set[str]:
    """The names of the ORIGINAL file's features meeting `bbox` (shapely on the file as given)."""
    doc = json.loads(path.read_text())
    return {f["properties"][prop] for f in doc["features"] if shape(f["geometry"]).intersects(box(*bbox))}


def test_cli_loads_boundaries_naming_each_bad_feature_and_audits_the_load(env, capsys):
    from api.cli.main import main

    home = str(env.home)
    assert main(["boundaries", "load", "--home", home, str(LIVERPOOL)]) == 2  # no "name" property in ward files
    err = capsys.readouterr().err
    assert err.count("no text property 'name'") == 30 and "feature 30:" in err and "WD13NM" in err
    assert not (env.home / "boundaries" / "boundaries.geojson").exists()
    assert main(["boundaries", "load", "--home", home, str(LIVERPOOL), "--name-property", "WD13NM"]) == 0
    assert "loaded 30 boundaries" in capsys.readouterr().out
    stored = (env.home / "boundaries" / "boundaries.geojson").read_bytes()
    (load,) = entries(env, "boundaries.load")
    assert load["detail"]["n_features"] == 30 and load["detail"]["name_property"] == "WD13NM"
    assert load["detail"]["sha256"] == hashlib.sha256(stored).hexdigest() and load["actor"] is None
    assert (env.home / "boundaries" / "boundaries.geojson").stat().st_mode & 0o077 == 0


def test_boundaries_json_is_for_signed_in_users_and_clipped_to_the_bbox(env):
    from api.cli.main import main

    assert main(["boundaries", "load", "--home", str(env.home), str(WESTMINSTER), "--name-property", "WD13NM"]) == 0
    around = (-0.162, 51.511, -0.156, 51.515)  # Marble Arch, where Hyde Park, Bryanston and West End wards meet
    path = "/console/boundaries.json?bbox=" + ",".join(map(str, around))
    r = env.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    sign_in(env, "requester")  # any role: it is geography, not anyone's data
    doc = env.client.get(path).json()
    names = {f["properties"]["name"] for f in doc["features"]}
    assert names == _names_meeting(WESTMINSTER, "WD13NM", around)
    assert {"Hyde Park", "Bryanston and Dorset Square", "West End"} <= names and "St James's" not in names
    for f in doc["features"]:
        x0, y0, x1, y1 = shape(f["geometry"]).bounds
        assert around[0] - 1e-9 <= x0 and x1 <= around[2] + 1e-9 and around[1] - 1e-9 <= y0 and y1 <= around[3] + 1e-9
        lon, lat = f["properties"]["label_at"]
        assert shape(f["geometry"]).buffer(1e-9).contains(box(lon, lat, lon, lat).centroid)
    assert env.client.get("/console/boundaries.json?bbox=10,51,-1,52").status_code == 422  # west > east
    assert env.client.get("/console/boundaries.json?bbox=1,2,3").status_code == 422
    assert env.client.get("/console/boundaries.json?bbox=0,60,1,61").json()["features"] == []  # nothing there


def test_admin_uploads_boundaries_all_or_nothing_with_an_error_per_feature(env):
    doc = json.loads(ENGLAND.read_text())
    broken = json.loads(json.dumps(doc))
    broken["features"][3]["geometry"] = {"type": "Point", "coordinates": [0, 51]}
    del broken["features"][7]["properties"]["name"]
    broken["features"][9]["geometry"]["coordinates"][0][0][0] = [200.0, 51.0]
    sign_in(env, "admin")
    token = csrf(env, "/admin")
    r = env.client.post("/admin/boundaries", data={"csrf_token": token, "name_property": "name"},
                        files={"file": ("lad.geojson", json.dumps(broken).encode(), "application/geo+json")})
    assert r.status_code == 422 and "The boundaries file was not applied" in r.text
    names = [f["properties"].get("name") for f in doc["features"]]
    assert f"feature 4 ({names[3]!r}): the geometry must be a Polygon or MultiPolygon" in r.text.replace("&#39;", "'")
    assert "feature 8: no text property &#39;name&#39;" in r.text
    assert f"feature 10 ({names[9]!r}): coordinates must be longitude" in r.text.replace("&#39;", "'")
    assert not (env.home / "boundaries").exists() and entries(env, "boundaries.load") == []
    r = env.client.post("/admin/boundaries", data={"csrf_token": token, "name_property": "name"},
                        files={"file": ("lad.geojson", ENGLAND.read_bytes(), "application/geo+json")})
    assert r.status_code == 200 and "296 boundaries" in r.text and 'id="boundaries-status">296 loaded' in r.text
    (load,) = entries(env, "boundaries.load")
    assert load["channel"] == "console" and load["actor"] == "ad-1" and load["detail"]["n_features"] == 296
    sign_in(env, "caseworker")
    r = env.client.post("/admin/boundaries", data={"csrf_token": csrf(env, "/queue")},
                        files={"file": ("lad.geojson", ENGLAND.read_bytes(), "application/geo+json")})
    assert r.status_code == 403
