"""The zone cache (geofence.zone_cache): a hit gives exactly what parsing and compiling give;
a bad cache file is rebuilt, never trusted; the key follows the content, the CRS and the code."""
from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from api.cli.main import main
from conftest import EXAMPLES
from geofence import zone_cache
from geofence.compile import _ARRAY_FIELDS, compile_zones
from geofence.errors import ZoneError
from geofence.zone_cache import cache_key, load_compiled, read_cache
from geofence.zones import load_zones

CASES = ["inclusion_zone", "exclusion_hole", "curfew_basic", "dst_changes"]


def _same_compiled(a, b) -> bool:
    return a.zone_ids == b.zone_ids and a.crs == b.crs and all(
        np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True) for n in _ARRAY_FIELDS)


def _entry(cache_dir: Path) -> Path:
    (path,) = sorted(cache_dir.glob("zones-*.npz"))
    return path


@pytest.mark.parametrize("case", CASES)
def test_hit_equals_parsing_and_compiling(tmp_path, case):
    path = EXAMPLES / case / "zones.geojson"
    z1, c1, how1 = load_compiled(path, "EPSG:27700", cache_dir=tmp_path)
    z2, c2, how2 = load_compiled(path, "EPSG:27700", cache_dir=tmp_path)
    assert (how1, how2) == ("built", "hit")
    fresh = load_zones(path, crs="EPSG:27700")
    assert z1 == fresh and z2 == fresh  # dataclass equality: ids, kinds, polygons, windows, timezones
    assert _same_compiled(c2, compile_zones(fresh, "EPSG:27700")) and _same_compiled(c1, c2)
    assert all(not getattr(c2, n).flags.writeable for n in _ARRAY_FIELDS)


def _corrupt_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _corrupt_flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _corrupt_array(p: Path) -> None:
    """A valid npz whose vertices changed but whose digest did not: the digest must catch it."""
    with np.load(p) as f:
        entries = {k: f[k] for k in f.files}
    entries["cz_vx"] = entries["cz_vx"] + 1.0
    np.savez(p, **entries)


def _corrupt_pickle(p: Path) -> None:
    """An object array (would need pickle to load): refused, never unpickled."""
    np.savez(p, key=np.array([object()], dtype=object))


def _corrupt_garbage(p: Path) -> None:
    p.write_bytes(b"not a zip at all")


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_flip, _corrupt_array, _corrupt_pickle,
                                     _corrupt_garbage],
                         ids=["truncated", "byte-flipped", "array-changed", "pickled-object", "garbage"])
def test_bad_cache_is_rebuilt_not_trusted(tmp_path, corrupt):
    path = EXAMPLES / "inclusion_zone" / "zones.geojson"
    load_compiled(path, "EPSG:27700", cache_dir=tmp_path)
    corrupt(_entry(tmp_path))
    zones, compiled, how = load_compiled(path, "EPSG:27700", cache_dir=tmp_path)
    assert how == "built"
    fresh = load_zones(path, crs="EPSG:27700")
    assert zones == fresh and _same_compiled(compiled, compile_zones(fresh, "EPSG:27700"))
    assert load_compiled(path, "EPSG:27700", cache_dir=tmp_path)[2] == "hit"  # rewritten whole


def test_entry_of_another_key_is_refused(tmp_path):
    a, b = EXAMPLES / "inclusion_zone" / "zones.geojson", EXAMPLES / "curfew_basic" / "zones.geojson"
    load_compiled(a, "EPSG:27700", cache_dir=tmp_path)
    entry_a = _entry(tmp_path)
    key_b = cache_key(b.read_bytes(), "EPSG:27700")
    assert read_cache(entry_a, key_b, "EPSG:27700") is None
    shutil.move(entry_a, tmp_path / f"zones-{key_b[:32]}.npz")  # a's entry under b's name
    zones, _, how = load_compiled(b, "EPSG:27700", cache_dir=tmp_path)
    assert how == "built" and zones == load_zones(b, crs="EPSG:27700")


def test_key_follows_content_crs_grid_and_code(tmp_path, monkeypatch):
    data = (EXAMPLES / "inclusion_zone" / "zones.geojson").read_bytes()
    k = cache_key(data, "EPSG:27700")
    assert k == cache_key(data, "EPSG:27700")
    assert k != cache_key(data + b" ", "EPSG:27700")
    assert k != cache_key(data, "EPSG:3857")
    assert k != cache_key(data, "EPSG:27700", grid_cells=8)
    monkeypatch.setattr(zone_cache, "code_version", lambda: b"another version of the code")
    assert k != cache_key(data, "EPSG:27700")


def test_changed_zones_file_is_a_miss(tmp_path):
    zones_path = tmp_path / "zones.geojson"
    doc = json.loads((EXAMPLES / "curfew_basic" / "zones.geojson").read_text())
    zones_path.write_text(json.dumps(doc))
    cache = tmp_path / "cache"
    load_compiled(zones_path, "EPSG:27700", cache_dir=cache)
    doc["features"][0]["properties"]["radius_m"] = 123.0
    zones_path.write_text(json.dumps(doc))
    zones, compiled, how = load_compiled(zones_path, "EPSG:27700", cache_dir=cache)
    assert how == "built" and zones[0].radius_m == 123.0 and compiled.radius_m[0] == 123.0


def test_invalid_zones_raise_the_same_error_and_cache_nothing(tmp_path):
    path = EXAMPLES / "bad_zone" / "zones.geojson"
    with pytest.raises(ZoneError) as plain:
        load_zones(path, crs="EPSG:27700")
    with pytest.raises(ZoneError) as cached:
        load_compiled(path, "EPSG:27700", cache_dir=tmp_path / "cache")
    assert str(cached.value) == str(plain.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_unwritable_folder_means_no_cache(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    zones, _, how = load_compiled(EXAMPLES / "curfew_basic" / "zones.geojson", "EPSG:27700",
                                  cache_dir=blocker / "cache")
    assert how == "built, not cached" and zones


def test_cache_files_are_private(tmp_path):
    import os

    cache = tmp_path / "cache" / "zones"
    old = os.umask(0o022)  # a library caller's umask: new folders are still 0700, files 0600
    try:
        load_compiled(EXAMPLES / "curfew_basic" / "zones.geojson", "EPSG:27700", cache_dir=cache)
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(_entry(cache).stat().st_mode) == 0o600
    assert not list(cache.glob(".zones-*"))  # no temporary file left behind


def _detect(case: Path, out: Path, *extra: str) -> None:
    args = ["detect", "--fixes", str(case / "fixes.csv"), "--subjects", str(case / "subjects.json"),
            "--zones", str(case / "zones.geojson"), "--out", str(out), "--quiet", *extra]
    assert main(args) == 0


@pytest.mark.parametrize("case", CASES)
def test_detect_records_identical_with_and_without_cache(tmp_path, case, capsys):
    home = tmp_path / "home"
    home.mkdir()
    d = EXAMPLES / case
    _detect(d, tmp_path / "plain", "--no-zone-cache", "--home", str(home))
    assert not (home / "cache").exists()
    _detect(d, tmp_path / "built", "--home", str(home), "--timings")
    assert "load+compile zones (built)" in capsys.readouterr().err
    _detect(d, tmp_path / "hit", "--home", str(home), "--timings")
    assert "load+compile zones (hit)" in capsys.readouterr().err
    for name in ("breaches.jsonl", "quarantine.csv"):
        plain = (tmp_path / "plain" / name).read_bytes()
        assert (tmp_path / "built" / name).read_bytes() == plain
        assert (tmp_path / "hit" / name).read_bytes() == plain


def test_detect_without_a_home_writes_no_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAGTRAIL_HOME", raising=False)
    case = tmp_path / "case"
    shutil.copytree(EXAMPLES / "curfew_basic", case)
    before = sorted(p.name for p in case.iterdir())
    _detect(case, tmp_path / "out")
    assert sorted(p.name for p in case.iterdir()) == before
    assert not (tmp_path / "data").exists()


def test_detect_zone_cache_option(tmp_path):
    cache = tmp_path / "zc"
    _detect(EXAMPLES / "curfew_basic", tmp_path / "out", "--zone-cache", str(cache))
    assert len(list(cache.glob("zones-*.npz"))) == 1


def _square(x0: float, y0: float, d: float = 0.001) -> list[list[float]]:
    return [[x0, y0], [x0 + d, y0], [x0 + d, y0 + d], [x0, y0 + d], [x0, y0]]


def _bowtie(x0: float, y0: float, d: float = 0.001) -> list[list[float]]:
    return [[x0, y0], [x0 + d, y0 + d], [x0 + d, y0], [x0, y0 + d], [x0, y0]]


def _feature(zid: str, coords, kind: str = "exclusion", gtype: str = "Polygon") -> dict:
    return {"type": "Feature", "id": zid, "geometry": {"type": gtype, "coordinates": coords},
            "properties": {"kind": kind}}


@pytest.mark.parametrize("features, message", [
    ([_feature("A", [_square(-1.0, 52.0)]), _feature("B", [_bowtie(-1.0, 52.0)]), _feature("C", [_bowtie(-1.1, 52.0)])],
     "zone 'B': invalid geometry: Self-intersection"),
    ([_feature("A", [_bowtie(-1.0, 52.0)]), _feature("B", [_square(-1.0, 52.0)], kind="nope")],
     "zone 'A': invalid geometry"),  # the earlier invalid geometry wins over a later error
    ([_feature("A", [_square(-1.0, 52.0)]), _feature("B", [_square(-1.0, 52.0)], kind="nope")],
     "zone 'B': kind must be one of"),
    ([_feature("M", [[_square(-1.0, 52.0)], [_square(-1.0005, 52.0)]], gtype="MultiPolygon"),
      _feature("P", [_bowtie(-1.0, 52.0)])],
     "zone 'M': invalid geometry"),  # overlapping parts of a MultiPolygon, before a bad polygon
], ids=["second-of-two-invalid", "invalid-before-bad-kind", "bad-kind-only", "multipolygon-overlap-first"])
def test_batched_validity_reports_the_first_error_in_file_order(features, message):
    from geofence.zones import parse_zones

    with pytest.raises(ZoneError) as exc:
        parse_zones({"type": "FeatureCollection", "features": features})
    assert message in str(exc.value)
