"""The breach page in the distribution's Chromium (tests/console_browser.py):
a caseworker opens a record from the queue, the map draws the zone and one
marker per fix shown, the timeline draws, assigning and a status change with
a note appear in the history; axe-core finds no serious or critical
violation. No request may leave 127.0.0.1 and no CSP violation may be
reported (the `page` fixture). Its own module: the browser fixture is per
module (see tests/console_browser.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from api_fixtures import api_template  # noqa: F401 (fixture)
from breach_records import add_curfew_record
from console_browser import screenshot, browser, console_server, page, sign_in  # noqa: F401 (fixtures)
from test_console_browser import _serious

pytestmark = pytest.mark.slow


def _curfew_record(server) -> tuple[str, str]:
    from api.db.models import BreachRow

    server.env.app.state.stream.flush()  # detection's pending pass first: the added record is not withdrawn
    with server.env.session() as s:
        bid = add_curfew_record(s, server.env.home)
        return bid, s.get(BreachRow, bid).subject_id


def test_caseworker_opens_a_breach_sees_map_and_timeline_and_works_it(page, console_server):
    bid, subject = _curfew_record(console_server)
    data_requests: list[str] = []
    page.on("request", lambda r: data_requests.append(r.url) if "/evidence.json" in r.url else None)
    sign_in(page, console_server, "caseworker", next_path=f"/queue?wearer={subject}&priority=2")
    page.locator(f"#breach-{bid} a[href='/breaches/{bid}']").click()
    page.wait_for_url(f"**/breaches/{bid}")
    assert page.locator("h1").inner_text().startswith("Curfew absence, wearer ")

    n = page.locator("#fixes tbody tr[data-state]").count()
    assert n > 10
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    assert page.locator(".tt-map path.tt-zone").count() == 1  # the zone as drawn geometry (SVG)
    assert page.locator(".tt-map path.tt-fix").count() == n  # one marker per fix in the table
    states = page.locator("#fixes tbody tr[data-state]").evaluate_all("rows => rows.map(r => r.dataset.state)")
    for state in ("IN", "OUT", "UNCERTAIN"):
        assert page.locator(f".tt-map path.tt-fix--{state.lower()}").count() == states.count(state)
    page.locator(".tt-timeline[data-tt-timeline-ready='true'] canvas").wait_for()
    assert len(data_requests) == 1  # map and timeline share one fetch of the page's data link
    screenshot(page, "breach")
    assert _serious(page) == []

    page.click("button:has-text('Assign to me')")
    page.wait_for_url(f"**/breaches/{bid}#history")
    assert page.locator("#record-assignee").inner_text() == "cw-1"
    page.select_option("#status", "in_review")
    page.fill("#note", "Wearer says the tag was charging downstairs")
    page.click("button:has-text('Change status')")
    page.wait_for_url(f"**/breaches/{bid}#history")
    history = page.locator("#history-list").inner_text()
    assert "to In review, assigned to cw-1. Note: " in history
    assert "Wearer says the tag was charging downstairs" in history
    assert page.locator("#record-status").inner_text() == "In review"
