"""Console maps with no internet, in the distribution's Chromium
(tests/console_browser.py: no request may leave 127.0.0.1, no CSP violation):

- no tile background: the boundaries the admin loaded (England's local
  authority districts, ../shared/data, read in place) are drawn with their
  names in a pane under the data, fetched for the map's bbox only;
- a local MBTiles file (TAGTRAIL_TILE_FILE): the tiles the map asks for load
  from 127.0.0.1 as images, and no boundaries are fetched.
Its own module: the browser fixture is per module."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from shapely.geometry import Point, shape

from api_fixtures import api_template  # noqa: F401 (fixture)
from breach_records import add_curfew_record
from console_browser import browser, console_server, page, sign_in  # noqa: F401 (fixtures)
from test_console_browser import _serious
from test_console_maps import ENGLAND, mbtiles, png

pytestmark = pytest.mark.slow


def _record(server) -> str:
    """A curfew record on a simulated wearer (tests/breach_records.py)."""
    server.env.app.state.stream.flush()  # detection's pending pass first: the added record is not withdrawn
    with server.env.session() as s:
        return add_curfew_record(s, server.env.home)


def test_boundaries_give_context_under_the_data_when_there_are_no_tiles(page, console_server):
    from api.cli.main import main

    assert main(["boundaries", "load", "--home", str(console_server.env.home), str(ENGLAND)]) == 0
    bid = _record(console_server)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/console/boundaries.json" in r.url else None)
    sign_in(page, console_server, "caseworker", next_path=f"/breaches/{bid}")
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    page.locator(".tt-map[data-tt-boundaries]").wait_for()
    labels = page.locator(".tt-map .tt-boundary-label").all_inner_texts()
    drawn = page.locator(".tt-map path.tt-boundary").count()
    assert int(page.locator(".tt-map").get_attribute("data-tt-boundaries")) == len(labels) == drawn > 0
    # the district of the first fix is among them (from the original file, point in polygon)
    fixes = page.evaluate("""async () => {
        const url = document.querySelector('.tt-map').dataset.ttMap.split('#')[0];
        const d = await (await fetch(url)).json();
        return d.map.features.filter(f => f.properties.role === 'fix').flatMap(f => f.geometry.coordinates); }""")
    doc = json.loads(Path(ENGLAND).read_text())
    homes = {f["properties"]["name"] for f in doc["features"] for x, y in fixes[:1]
             if shape(f["geometry"]).contains(Point(x, y))}
    assert homes and homes <= set(labels), (homes, labels[:10])
    assert len(labels) < 296  # only what is near the data, not the whole file
    assert all("bbox=" in u for u in asked) and asked
    # under the data: the boundary pane is below the overlay pane the fixes are drawn in
    z = page.evaluate("""() => [getComputedStyle(document.querySelector('.leaflet-tt-context-pane')).zIndex,
                                getComputedStyle(document.querySelector('.leaflet-overlay-pane')).zIndex]""")
    assert int(z[0]) < int(z[1])
    assert page.locator(".tt-legend__boundary").count() == 1
    assert _serious(page) == []


def test_a_local_mbtiles_file_is_the_background_served_from_127_0_0_1(page, console_server, tmp_path):
    path = mbtiles(tmp_path / "bg.mbtiles", {})
    env = console_server.env
    env.app.state.settings = env.app.state.settings.model_copy(update={"tile_file": path})
    bid = _record(console_server)
    wanted: list[str] = []
    page.on("request", lambda r: wanted.append(r.url) if "/tiles/" in r.url else None)
    sign_in(page, console_server, "caseworker", next_path=f"/breaches/{bid}")
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    page.wait_for_load_state("networkidle")
    assert wanted, "the map asked for no tiles"
    tiles = {}
    for url in wanted:
        z, x, y = (int(v) for v in url.split("/tiles/")[1].split("/"))
        tiles[(z, x, (1 << z) - 1 - y)] = png((200, 220, 240))  # stored as MBTiles stores them: TMS rows
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", [(z, x, r, d) for (z, x, r), d in tiles.items()])
    loaded: list[tuple[str, int, str]] = []
    page.on("response", lambda r: loaded.append((r.url, r.status, r.headers.get("content-type", "")))
            if "/tiles/" in r.url else None)
    page.reload()
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    page.locator(".tt-map img.leaflet-tile-loaded").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert page.locator(".tt-map img.leaflet-tile-loaded").count() == len(tiles)
    assert loaded and all(u.startswith(console_server.url + "/tiles/") and s in (200, 304) for u, s, _ in loaded)
    assert {t for _, s, t in loaded if s == 200} == {"image/png"}
    assert page.locator(".tt-map[data-tt-boundaries]").count() == 0  # tiles: no boundary context
    assert page.locator(".tt-map").get_attribute("data-tiles") == "/tiles/{z}/{x}/{y}"
