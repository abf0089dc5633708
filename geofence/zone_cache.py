"""Zones parsed and compiled once per content: a cache keyed by SHA-256 of the inputs.

Reading, validating and compiling thousands of small zones costs about a
second (`geofence.zones`, `geofence.compile`) and gives the same result every
time for the same bytes, the same CRS and the same code. So `load_compiled`
keys a cache file by SHA-256 of: the ZONES.geojson bytes, the CRS, the grid
size, and the code version (the source of every module that shapes the
result, and the versions of pyproj, PROJ, GEOS and NumPy). A hit returns the
zones and their compiled arrays without parsing anything.

A cache is never trusted blindly: the file holds plain arrays (NumPy ``.npz``
read with ``allow_pickle=False``: nothing in it can run), its own key, and a
SHA-256 digest of every entry; a file that cannot be read, has another key or
digest, or does not rebuild into valid objects is ignored and rewritten from
the zones file. Writes are atomic (a temporary file then `os.replace`); a
folder that cannot be written just means no cache.

The digest guards against corruption, not against someone who can write the
cache folder on purpose (they could as well edit ZONES.geojson): keep the
cache in the home or next to the zones, as writable as they are.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from trails.home import private_dir

from .compile import DEFAULT_GRID_CELLS, CompiledZones, _ARRAY_FIELDS, compile_zones
from .model import Window, Zone
from .zones import load_zones, load_zones_bytes

__all__ = ["cache_key", "load_compiled", "read_cache", "write_cache"]

_FORMAT = b"tagtrail-zone-cache 1\n"
#: Modules whose code decides the parsed zones or their compiled arrays.
_CODE = ("geofence/zones.py", "geofence/compile.py", "geofence/kernels.py", "geofence/model.py",
         "geofence/zone_cache.py", "trails/projection.py", "trails/projection_op.py", "trails/validate.py",
         "trails/jit.py")


@lru_cache(maxsize=1)
def code_version() -> bytes:
    """SHA-256 of the code and library versions that shape a cache entry."""
    import pyproj
    import shapely

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(_FORMAT)
    for rel in _CODE:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    libs = (pyproj.__version__, pyproj.proj_version_str, shapely.__version__, shapely.geos_version_string,
            np.__version__)
    h.update("\0".join(libs).encode())
    return h.digest()


def cache_key(zones_bytes: bytes, crs: str, grid_cells: int = DEFAULT_GRID_CELLS) -> str:
    """Hex SHA-256 of everything a cache entry depends on."""
    h = hashlib.sha256(code_version())
    h.update(f"{crs}\0{grid_cells}\0".encode())
    h.update(zones_bytes)
    return h.hexdigest()


# ---------------------------------------------------------------- zones <-> arrays
def _zone_arrays(zones: Sequence[Zone]) -> dict[str, np.ndarray]:
    """Zones (WGS84, as parsed) as flat arrays: metadata JSON, lon/lat and ring/polygon counts."""
    meta, lon, lat, ring_len, poly_rings, zone_polys = [], [], [], [], [], []
    for z in zones:
        windows = None if z.windows is None else [[list(w.days), w.start_min, w.end_min] for w in z.windows]
        meta.append([z.zone_id, z.kind, windows, z.timezone, z.radius_m,
                     None if z.center_lonlat is None else list(z.center_lonlat)])
        zone_polys.append(0 if z.polygons is None else len(z.polygons))
        for poly in z.polygons or ():
            poly_rings.append(len(poly))
            for ring in poly:
                ring_len.append(len(ring))
                for pos in ring:
                    lon.append(pos[0])
                    lat.append(pos[1])
    return {"zone_meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
            "zone_lon": np.asarray(lon, np.float64), "zone_lat": np.asarray(lat, np.float64),
            "zone_ring_len": np.asarray(ring_len, np.int64), "zone_poly_rings": np.asarray(poly_rings, np.int64),
            "zone_polys": np.asarray(zone_polys, np.int64)}


def _zones_from(a: dict[str, np.ndarray]) -> tuple[Zone, ...]:
    """The inverse of `_zone_arrays` (raises on any inconsistency)."""
    meta = json.loads(a["zone_meta"].tobytes().decode())
    lon, lat = a["zone_lon"].tolist(), a["zone_lat"].tolist()
    ring_len, poly_rings, zone_polys = (a[k].tolist() for k in ("zone_ring_len", "zone_poly_rings", "zone_polys"))
    if len(meta) != len(zone_polys) or len(lon) != len(lat) or sum(ring_len) != len(lon) \
            or sum(poly_rings) != len(ring_len) or sum(zone_polys) != len(poly_rings):
        raise ValueError("zone arrays do not add up")
    out, v, r, p = [], 0, 0, 0
    for (zid, kind, windows, tz, radius, center), n_polys in zip(meta, zone_polys):
        polygons = None
        if center is None:
            polys = []
            for n_rings in poly_rings[p:p + n_polys]:
                rings = []
                for n in ring_len[r:r + n_rings]:
                    rings.append(tuple(zip(lon[v:v + n], lat[v:v + n])))
                    v += n
                r += n_rings
                polys.append(tuple(rings))
            p += n_polys
            polygons = tuple(polys)
        wins = None if windows is None else tuple(Window(tuple(d), s, e) for d, s, e in windows)
        out.append(Zone(zone_id=zid, kind=kind, polygons=polygons,
                        center_lonlat=None if center is None else (center[0], center[1]),
                        radius_m=radius, windows=wins, timezone=tz))
    return tuple(out)


def _digest(entries: dict[str, np.ndarray]) -> bytes:
    h = hashlib.sha256()
    for name in sorted(entries):
        arr = np.ascontiguousarray(entries[name])
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.digest()


# ---------------------------------------------------------------- the cache file
def write_cache(path: Path, key: str, zones: Sequence[Zone], compiled: CompiledZones) -> bool:
    """Write the entry atomically; False (and no file) when the folder cannot be written."""
    entries = {**_zone_arrays(zones), **{f"cz_{n}": getattr(compiled, n) for n in _ARRAY_FIELDS},
               "cz_zone_ids": np.frombuffer(json.dumps(list(compiled.zone_ids)).encode(), np.uint8),
               "key": np.frombuffer(key.encode(), np.uint8)}
    entries["digest"] = np.frombuffer(_digest(entries), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **entries)
    try:
        missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
        for d in reversed(missing):  # each new folder 0700 whatever the umask, like every folder of a home
            private_dir(d)
        fd, tmp = tempfile.mkstemp(prefix=".zones-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def read_cache(path: Path, key: str, crs: str) -> tuple[tuple[Zone, ...], CompiledZones] | None:
    """The entry at `path` if it is whole and is for `key`; None otherwise (never raises)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            entries = {name: f[name] for name in f.files}
        digest = entries.pop("digest")
        if entries["key"].tobytes().decode() != key or digest.tobytes() != _digest(entries):
            return None
        zones = _zones_from(entries)
        ids = tuple(json.loads(entries["cz_zone_ids"].tobytes().decode()))
        compiled = CompiledZones(crs=crs, zone_ids=ids, **{n: entries[f"cz_{n}"] for n in _ARRAY_FIELDS})
        if ids != tuple(z.zone_id for z in zones):
            return None
        return zones, compiled
    except Exception:  # unreadable, truncated, foreign or inconsistent: rebuilt by the caller
        return None


def load_compiled(zones_path: str | os.PathLike[str], crs: str, *, cache_dir: Path | None,
                  grid_cells: int = DEFAULT_GRID_CELLS) -> tuple[tuple[Zone, ...], CompiledZones, str]:
    """ZONES.geojson parsed and compiled for `crs` (compiled zone i is zone i), through the cache.

    Returns (zones, compiled, how): `how` is ``"hit"``, ``"built"`` (and cached),
    ``"built, not cached"`` (folder not writable) or ``"no cache"`` (`cache_dir` None).
    Errors are `load_zones`'s, with the same messages: a file with an error is never cached.
    """
    if cache_dir is None:
        zones = load_zones(zones_path, crs=crs)
        return zones, compile_zones(zones, crs, grid_cells=grid_cells), "no cache"
    try:
        data = Path(zones_path).read_bytes()
    except OSError:
        data = None  # load_zones reports it with its own message
    key = None if data is None else cache_key(data, crs, grid_cells)
    path = None if key is None else Path(cache_dir) / f"zones-{key[:32]}.npz"
    if path is not None and path.exists():
        hit = read_cache(path, key, crs)
        if hit is not None:
            return hit[0], hit[1], "hit"
    # parsed from the very bytes that were hashed: a file changed meanwhile cannot be cached under the old key
    zones = load_zones(zones_path, crs=crs) if data is None else load_zones_bytes(data, os.fspath(zones_path), crs=crs)
    compiled = compile_zones(zones, crs, grid_cells=grid_cells)
    if path is None:
        return zones, compiled, "no cache"
    return zones, compiled, "built" if write_cache(path, key, zones, compiled) else "built, not cached"
