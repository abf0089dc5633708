"""The wearer's page in the distribution's Chromium (tests/console_browser.py):
a caseworker follows the wearer link from a breach record to
/subjects/{id}, the map draws each of the wearer's zones as its geometry
(one SVG path per zone), the compliance table is there, and axe-core finds
no serious or critical violation; the auditor's view (with the audit log's
consultations) too. No request may leave 127.0.0.1 and no CSP violation may
be reported (the `page` fixture). Its own module: the browser fixture is per
module (see tests/console_browser.py)."""
from __future__ import annotations

import pytest
from api_fixtures import api_template  # noqa: F401 (fixture)
from breach_records import add_curfew_record
from console_browser import screenshot, browser, console_server, page, sign_in  # noqa: F401 (fixtures)
from test_console_browser import _serious

pytestmark = pytest.mark.slow


def test_caseworker_opens_the_wearer_page_from_a_record_and_auditor_sees_consultations(page, console_server):
    from api.db.models import BreachRow
    from api.service.detections import load_assignments

    server = console_server
    server.env.app.state.stream.flush()
    with server.env.session() as s:
        bid = add_curfew_record(s, server.env.home)
        who = s.get(BreachRow, bid).subject_id
        n_zones = len({k for a in load_assignments(s, who) for k in a.zones})
    assert n_zones >= 1
    sign_in(page, server, "caseworker", next_path=f"/breaches/{bid}")
    page.click("#wearer-link")
    page.wait_for_url(f"**/subjects/{who}")
    assert page.locator("h1").inner_text() == f"Wearer {who}"
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    assert page.locator(".tt-map path.tt-zone").count() == n_zones
    page.fill("#from", "2024-03-04")
    page.fill("#to", "2024-03-06")
    page.click("button:has-text('Show this period')")
    page.wait_for_url(f"**/subjects/{who}?from=2024-03-04&to=2024-03-06*")
    assert page.locator("#compliance-windows tbody tr").count() >= 3  # a curfew window each night
    assert page.locator(f"#breach-{bid} a[href='/breaches/{bid}']").count() == 1
    assert page.locator("#consulted").count() == 0  # caseworkers do not read the audit log
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    assert _serious(page) == []

    page.context.clear_cookies()
    sign_in(page, server, "auditor", next_path=f"/subjects/{who}")
    page.locator(".tt-map[data-tt-map-ready='true']").wait_for()
    consulted = page.locator("#consulted-table").inner_text()
    assert "cw-1 (caseworker)" in consulted and "subject.compliance" in consulted
    assert _serious(page) == []
    screenshot(page, "subject")
