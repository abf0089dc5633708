"""The map background, with no internet: an XYZ tile server the deployment
runs (``TAGTRAIL_TILE_URL``), or a local MBTiles file this app serves
(``TAGTRAIL_TILE_FILE``) at ``/tiles/{z}/{x}/{y}``, or neither, when the
maps draw the boundaries the admin loaded as context (`api.service.boundaries`).

MBTiles (the MBTiles 1.3 specification): an SQLite file with a ``tiles``
table (``zoom_level, tile_column, tile_row, tile_data``; rows counted from the
south, TMS, so the XYZ ``y`` the map asks for is flipped) and a ``metadata``
table whose ``format`` is the tiles' image type. Only raster tiles (png, jpg,
webp): Leaflet draws images, not vector tiles. The file is checked when the
settings are made (`check_mbtiles`), so a wrong file stops the service at
start, not at the first map (`api.service.mbtiles`).

Tiles are served without signing in, as /static is: a base map holds no one's
data, and a session check per tile would write the session's idle time once
per tile (twenty writes for one map). Same origin, so the Content-Security-
Policy needs nothing more than 'self'.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Request
from fastapi.responses import Response

from api.service.mbtiles import read_tile

__all__ = ["TILE_ROUTE", "map_tiles", "router"]

router = APIRouter(include_in_schema=False)

#: The tile route map.js is given (Leaflet fills in z, x and y).
TILE_ROUTE = "/tiles/{z}/{x}/{y}"
#: Tiles do not change while the service runs: a browser keeps them a day.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def map_tiles(settings) -> str:
    """What map.js gets as data-tiles: the tile server's URL, this app's tile route, or "" (no background)."""
    if settings.tile_url:
        return settings.tile_url
    return TILE_ROUTE if settings.tile_file is not None else ""


@router.get(TILE_ROUTE)
def tile(request: Request, z: Annotated[int, PathParam(ge=0, le=24)], x: Annotated[int, PathParam(ge=0)],
         y: Annotated[int, PathParam(ge=0)]) -> Response:
    """One tile of the configured MBTiles file; 404 when there is no file or no such tile."""
    settings = request.app.state.settings
    if settings.tile_file is None or x >= 1 << z or y >= 1 << z:
        return Response(status_code=404, headers=_CACHE)
    data = read_tile(settings.tile_file, z, x, y)
    if data is None:
        return Response(status_code=404, headers=_CACHE)
    return Response(content=data, media_type=settings.tile_media_type, headers=_CACHE)
