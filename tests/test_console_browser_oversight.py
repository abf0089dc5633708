"""Oversight pages in the distribution's Chromium (tests/console_browser.py):
an auditor finds entries in /audit filtered by action and runs "verify now";
the /reports charts are drawn from the page's JSON by the static module; and
axe-core finds no serious or critical violation on /audit, /reports and
/admin. No request may leave 127.0.0.1 and no CSP violation may be reported
(the `page` fixture). The browser is this module's own (`browser` is
module-scoped: see console_browser.py)."""
from __future__ import annotations

import re

import pytest

from api_fixtures import api_template  # noqa: F401 (fixture)
from console_browser import screenshot, browser, console_server, page, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def _serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")]


def test_auditor_finds_entries_by_action_and_runs_verify(page, console_server):
    sign_in(page, console_server, "auditor", "/audit")
    assert page.locator("h1").inner_text() == "Audit log"
    page.select_option("#f-action", "console.sign_in")
    page.click("button:has-text('Apply filters')")
    page.wait_for_url(re.compile(r"/audit\?.*action=console\.sign_in"))  # the GET form: works without JS
    actions = page.locator("td.tt-action").all_inner_texts()
    assert actions and set(actions) == {"console.sign_in"}
    assert page.locator("tbody tr").first.locator("td").nth(2).inner_text() == "au-1 (auditor)"  # newest first
    assert page.locator("#checkpoint").is_visible()
    page.click("button:has-text('Verify now')")
    page.wait_for_url("**/audit/verify")
    result = page.locator("#verify-result")
    assert "checks out" in result.inner_text() and "OK: " in result.inner_text()
    screenshot(page, "audit")
    assert _serious(page) == []


def test_reports_charts_are_drawn_and_pages_are_accessible(page, console_server):
    sign_in(page, console_server, "admin", "/reports")
    assert page.locator("h1").inner_text() == "Reports"
    page.wait_for_selector("#breaches-chart canvas")
    assert page.locator("#breaches-chart .tt-legend li").count() == page.locator(
        "#breaches-table tbody tr").count() - 2  # one colour per type; not the total and withdrawn rows
    page.wait_for_selector("#requests-chart canvas")
    assert page.locator("#requests-chart .tt-legend li").all_inner_texts() == ["trail", "attendance", "sar"]
    assert _serious(page) == []
    screenshot(page, "reports")
    page.goto("/audit")
    assert _serious(page) == []
    page.goto("/admin")
    assert page.locator("h1").inner_text() == "Admin"
    assert _serious(page) == []
    screenshot(page, "admin")
