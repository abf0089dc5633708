"""Console journeys in the distribution's Chromium (tests/console_browser.py):
sign-in, the queue's filters and changes, refusals, security headers and
accessibility (axe-core: no serious or critical violation). No request may
leave 127.0.0.1 (checked by the `page` fixture)."""
from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from api_fixtures import api_template  # noqa: F401 (fixture)
from console_browser import screenshot, browser, console_server, page, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def _open_breach(server):
    from api.db.models import BreachRow

    with server.env.session() as s:
        return s.scalars(select(BreachRow).where(BreachRow.status == "new")
                         .order_by(BreachRow.priority, BreachRow.breach_id)).first()


def test_signed_out_user_is_sent_to_login_and_back(page, console_server):
    page.goto("/queue?priority=2")
    assert page.url == f"{console_server.url}/login?next=/queue%3Fpriority%3D2"
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill("#token", console_server.env.tokens["caseworker"])
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/queue?priority=2")
    assert page.locator("#f-priority").input_value() == "2"


def test_caseworker_filters_assigns_and_moves_a_breach_with_a_note(page, console_server):
    b = _open_breach(console_server)
    sign_in(page, console_server, "caseworker")
    assert page.locator("h1").inner_text() == "Breach queue"
    page.fill("#f-wearer", b.subject_id)
    page.select_option("#f-priority", str(b.priority))
    page.click("button:has-text('Apply filters')")
    page.wait_for_url(re.compile(rf"/queue\?priority={b.priority}&.*wearer={b.subject_id}$"))  # a plain GET form
    rows = page.locator("tbody tr")
    assert rows.count() >= 1
    assert all(b.subject_id in rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count()))
    row = page.locator(f"#breach-{b.breach_id}")
    assert row.locator("time").first.get_attribute("datetime").endswith("Z")
    assert row.locator("time").first.inner_text().endswith(("GMT", "BST"))
    screenshot(page, "queue")

    url_before = page.url
    row.locator("button:has-text('Assign to me')").click()  # htmx: the row is swapped, the page stays
    page.locator(f"#breach-{b.breach_id} td:nth-child(7):has-text('cw-1')").wait_for()
    assert page.url == url_before
    row = page.locator(f"#breach-{b.breach_id}")
    row.locator("summary:has-text('Change status')").click()  # the form folds away: rows stay one line high
    row.locator("select[name=status]").select_option("in_review")
    row.locator("textarea[name=note]").fill("Spoke to the wearer: car broke down, checking with the garage")
    row.locator("button:has-text('Save status')").click()
    page.locator(f"#breach-{b.breach_id} .govuk-tag:has-text('In review')").wait_for()
    assert page.url == url_before

    r = httpx.get(f"{console_server.url}/v1/breaches/{b.breach_id}", headers=console_server.env.h("caseworker"))
    assert r.status_code == 200
    history = [(h["to_status"], h["assignee"], h["note"], h["user"]) for h in r.json()["history"]]
    assert history == [("new", "cw-1", None, "cw-1"),
                       ("in_review", "cw-1", "Spoke to the wearer: car broke down, checking with the garage", "cw-1")]


def test_status_change_works_without_javascript(browser, console_server):
    b = _open_breach(console_server)
    context = browser.new_context(base_url=console_server.url, java_script_enabled=False)
    try:
        p = context.new_page()
        sign_in(p, console_server, "caseworker", next_path=f"/queue?wearer={b.subject_id}")
        row = p.locator(f"#breach-{b.breach_id}")
        row.locator("summary:has-text('Change status')").click()
        row.locator("select[name=status]").select_option("actioned")
        row.locator("textarea[name=note]").fill("no further action")
        row.locator("button:has-text('Save status')").click()
        p.wait_for_load_state()
        assert p.url.endswith(f"/queue?wearer={b.subject_id}#breach-{b.breach_id}")
        p.goto(f"/queue?wearer={b.subject_id}&status=actioned")
        assert p.locator(f"#breach-{b.breach_id} .govuk-tag").inner_text() == "Actioned"
    finally:
        context.close()


def test_requester_gets_the_403_page(page, console_server):
    sign_in(page, console_server, "requester", next_path="/")
    response = page.goto("/queue")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "You cannot see this page"
    assert page.locator(".govuk-service-navigation__link:has-text('Queue')").count() == 0


def test_a_form_without_its_csrf_token_is_refused(page, console_server):
    b = _open_breach(console_server)
    sign_in(page, console_server, "caseworker", next_path=f"/queue?wearer={b.subject_id}")
    row = page.locator(f"#breach-{b.breach_id}")
    row.locator("form[action$='/status'] input[name=csrf_token]").evaluate("el => el.remove()")
    row.locator("form[action$='/status']").evaluate("form => form.removeAttribute('hx-post')")
    with page.expect_navigation():
        row.locator("form[action$='/status']").evaluate("form => form.submit()")
    assert page.locator("h1").inner_text() == "This form could not be sent"
    with console_server.env.session() as s:
        from api.db.models import BreachRow

        assert s.get(BreachRow, b.breach_id).status == "new"


def test_security_headers_on_pages(page, console_server):
    response = page.goto("/login")
    h = response.headers
    assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer"
    assert h["content-security-policy"].startswith("default-src 'self'; script-src 'self';")
    sign_in(page, console_server, "caseworker")
    response = page.goto("/queue")
    assert response.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def _serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")]


def test_login_and_queue_have_no_serious_accessibility_violations(page, console_server):
    page.goto("/login")
    assert _serious(page) == []
    sign_in(page, console_server, "caseworker")
    assert page.locator("h1").inner_text() == "Breach queue"
    assert _serious(page) == []
    page.goto("/queue?status=withdrawn")
    assert _serious(page) == []
