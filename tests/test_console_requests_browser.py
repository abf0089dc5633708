"""The access-request journey in the distribution's Chromium
(tests/console_browser.py): a caseworker asks for a trail in UK time and
checks it before sending; an approver narrows and approves it from the
inbox; the caseworker opens the request, sees the fixes with their quality,
and downloads the GeoJSON whose SHA-256 is the one in the audit entry; a
requester cannot open /approvals. axe-core finds no serious or critical
violation on these pages. No request may leave 127.0.0.1 (the `page` fixture).

Its own module, so its own module-scoped browser (console_browser.browser)."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from api_fixtures import VALID_TEXT, api_template  # noqa: F401 (fixture)
from console_browser import screenshot, browser, console_server, page, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def _serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")]


def _switch(page, server, who: str, next_path: str) -> None:
    page.context.clear_cookies()
    sign_in(page, server, who, next_path=next_path)


def _audit(server, action: str) -> list[dict]:
    from api.db.models import AuditEntry

    with server.env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]


def test_caseworker_asks_approver_narrows_caseworker_downloads_the_audited_geojson(page, console_server):
    subject = console_server.env.subjects[0]
    sign_in(page, console_server, "caseworker", next_path="/requests")
    assert page.locator("h1").inner_text() == "Access requests"
    assert _serious(page) == []
    page.click("text=Ask for a trail or attendance")
    page.fill("#subject_id", subject)
    page.click("button:has-text('Continue')")
    page.wait_for_url(f"**/requests/new?subject_id={subject}")
    assert _serious(page) == []
    page.check("#ground-absconded")
    page.check("#kind-trail")
    page.fill("#start_date", "2024-03-05")
    page.fill("#start_time", "00:00")
    page.fill("#end_date", "2024-03-06")
    page.fill("#end_time", "00:00")
    page.fill("#case_reference", "CASE-77")
    page.fill("#justification", VALID_TEXT)
    page.fill("#necessity", "No less intrusive source shows where the wearer was that day.")
    page.click("button:has-text('Check your request')")
    assert page.locator("h1").inner_text() == "Check your request before sending it"
    assert page.locator("#confirm-start time").inner_text() == "5 Mar 2024 00:00 GMT"
    assert page.locator("#too-broad").count() == 0
    assert _serious(page) == []
    page.click("button:has-text('Send request')")
    page.wait_for_url("**/requests/*")
    request_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#request-status").inner_text() == "Waiting for a decision"
    assert _serious(page) == []

    _switch(page, console_server, "approver", "/approvals")
    assert page.locator("h1").inner_text() == "Approvals"
    assert _serious(page) == []
    page.locator(f"#inbox-{request_id} a:has-text('Decide')").click()
    page.wait_for_url(f"**/requests/{request_id}#decide")
    assert _serious(page) == []
    page.check("#outcome-partial_data_provided")
    page.fill("#start_time", "06:00")
    page.fill("#end_date", "2024-03-05")
    page.fill("#end_time", "12:00")
    page.fill("#reason", "Only the morning of the alleged absconding is needed and proportionate.")
    page.click("button:has-text('Record the decision')")
    page.wait_for_url(f"**/requests/{request_id}")
    assert page.locator("#request-status").inner_text() == "Partial data provided"
    assert page.locator("#approved-period").inner_text() == "5 Mar 2024 06:00 GMT to 5 Mar 2024 12:00 GMT"

    _switch(page, console_server, "caseworker", f"/requests/{request_id}")
    assert page.locator("#extract-heading").count() == 1
    rows = page.locator("#extract-items tbody tr")
    assert rows.count() > 0
    qualities = [rows.nth(i).locator("td").nth(4).inner_text() for i in range(rows.count())]
    assert set(qualities) <= {"Decisive", "Uncertain"}
    page.locator("#extract-map .tt-map[data-tt-map-ready='true']").wait_for()  # every fix on the map, by quality
    assert page.locator("#extract-map path.tt-fix").count() == rows.count()
    for q in ("Decisive", "Uncertain"):
        assert page.locator(f"#extract-map path.tt-fix--{q.lower()}").count() == qualities.count(q)
    with_accuracy = sum(rows.nth(i).locator("td").nth(3).inner_text() != "not given" for i in range(rows.count()))
    assert page.locator("#extract-map path.tt-accuracy").count() == with_accuracy  # a circle where one is given
    screenshot(page, "extract")
    assert _serious(page) == []
    with page.expect_download() as info:
        page.click("#downloads a:has-text('Download GEOJSON')")
    data = open(info.value.path(), "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    downloads = [e for e in _audit(console_server, "extract.download") if e["request_id"] == request_id]
    assert [e["channel"] for e in downloads] == ["console", "console"]  # the page view, then the download
    assert downloads[-1]["extract_sha256"] == digest and downloads[-1]["detail"]["format"] == "geojson"
    doc = json.loads(data)
    assert doc["period"] == {"start": "2024-03-05T06:00:00.000Z", "end": "2024-03-05T12:00:00.000Z"}
    assert len(doc["features"]) == rows.count()
    assert [f["properties"]["quality"].capitalize() for f in doc["features"]] == qualities


def test_requester_cannot_open_approvals(page, console_server):
    sign_in(page, console_server, "requester", next_path="/requests")
    assert page.locator(".govuk-service-navigation__link:has-text('Approvals')").count() == 0
    response = page.goto("/approvals")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "You cannot see this page"
    assert _serious(page) == []


def test_new_request_errors_and_the_too_broad_warning_are_accessible(page, console_server):
    subject = console_server.env.subjects[0]
    sign_in(page, console_server, "caseworker", next_path=f"/requests/new?subject_id={subject}")
    page.fill("#start_date", "2024-03-31")
    page.fill("#start_time", "01:30")
    page.click("button:has-text('Check your request')")
    assert "did not happen in the UK" in page.locator(".govuk-error-summary").inner_text()
    assert _serious(page) == []
    page.check("#ground-bail_breach")
    page.fill("#start_date", "2024-02-01")
    page.fill("#start_time", "00:00")
    page.fill("#end_date", "2024-03-06")
    page.fill("#end_time", "00:00")
    page.fill("#justification", VALID_TEXT)
    page.fill("#necessity", "No less intrusive source shows where the wearer was that day.")
    page.click("button:has-text('Check your request')")
    assert page.locator("#too-broad").is_visible()
    assert _serious(page) == []
