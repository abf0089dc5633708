"""Reading a local MBTiles file (the MBTiles 1.3 specification): an SQLite
file with a ``tiles`` table (``zoom_level, tile_column, tile_row,
tile_data``; rows counted from the south, TMS) and a ``metadata`` table
whose ``format`` names the tiles' image type. Read-only connections, one per
call (a tile is one indexed lookup; nothing is shared between threads).
`api.settings` checks the file (`check_mbtiles`), `api.web.tiles` serves it.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

__all__ = ["MEDIA_TYPES", "check_mbtiles", "read_tile"]

#: MBTiles metadata ``format`` -> the Content-Type the tiles are served with.
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
_TILE_COLUMNS = {"zoom_level", "tile_column", "tile_row", "tile_data"}


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def check_mbtiles(path: Path) -> str:
    """The media type of `path`'s tiles; ValueError naming what is wrong (not a file, not SQLite, no
    tiles table, a format that is not a raster image)."""
    if not path.is_file():
        raise ValueError(f"tile_file (TAGTRAIL_TILE_FILE) {path}: no such file")
    try:
        with closing(_connect(path)) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(tiles)")}
            meta = dict(db.execute("SELECT name, value FROM metadata").fetchall())
    except sqlite3.Error as exc:
        raise ValueError(f"tile_file {path}: not an MBTiles file (SQLite with tiles and metadata tables): {exc}") from None
    if not _TILE_COLUMNS <= columns:
        raise ValueError(f"tile_file {path}: the tiles table needs columns {sorted(_TILE_COLUMNS)}")
    fmt = str(meta.get("format", "")).lower()
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"tile_file {path}: metadata format {fmt or '(none)'!r} is not a raster image "
                         f"({', '.join(sorted(MEDIA_TYPES))}); vector tiles cannot be drawn")
    return MEDIA_TYPES[fmt]


def read_tile(path: Path, z: int, x: int, y: int) -> bytes | None:
    """The tile at XYZ (z, x, y), or None; MBTiles rows count from the south (TMS)."""
    with closing(_connect(path)) as db:
        row = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                         (z, x, (1 << z) - 1 - y)).fetchone()
    return None if row is None else bytes(row[0])
