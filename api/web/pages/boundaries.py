"""`/console/boundaries.json?bbox=west,south,east,north`: the boundaries the
admin loaded (`api.service.boundaries`), as map context: the features that
meet the box, clipped to it, with their names and a label point each.

Any signed-in user may read them (they are public geography, not anyone's
data, so nothing is audited), but only signed in: the console serves nothing
beyond its static files to a stranger. map.js asks with its view's box
(padded) when the map has no tile background.
"""
from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from api.web.auth import signed_in
from api.web.sessions import SignedIn

__all__ = ["parse_bbox", "router"]

router = APIRouter(include_in_schema=False)


def parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    """``west,south,east,north`` in degrees, west < east and south < north, inside lon/lat ranges; else None."""
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        return None
    return w, s, e, n


@router.get("/console/boundaries.json")
def boundaries(request: Request, me: Annotated[SignedIn, Depends(signed_in)],
               bbox: Annotated[str, Query(max_length=120)] = "") -> Response:
    box = parse_bbox(bbox)
    if box is None:
        return JSONResponse({"detail": "bbox must be west,south,east,north in degrees (WGS84)"}, status_code=422)
    return JSONResponse(request.app.state.boundaries.query(*box), headers={"Cache-Control": "private, max-age=300"})
