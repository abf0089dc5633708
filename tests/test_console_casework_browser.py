"""Issue 13's casework in the distribution's Chromium (tests/console_browser.py):
a caseworker goes from a breach record to the wearer's casework, records the
wearer's mitigation with an attachment (only its SHA-256 is kept), accepts
it, takes the step the ladder then proposes and downloads its letter, and
decides the overdue review; an admin records a batch recall on /devices and
the caseworker confirms the fault on the record. axe-core finds no serious
or critical violation on any of these pages; no request leaves 127.0.0.1 and
no CSP violation is reported (the `page` fixture). Its own module: the
browser fixture is per module."""
from __future__ import annotations

import hashlib
import json

import pytest
from api_fixtures import api_template  # noqa: F401 (fixture)
from console_browser import browser, console_server, page, screenshot, sign_in  # noqa: F401 (fixtures)
from test_console_browser import _serious
from test_reviews import _add_breach, _add_wearer
from trails.timestamps import DAY_MS, format_ms

pytestmark = pytest.mark.slow


def test_a_caseworker_works_a_wearers_case_end_to_end(page, console_server, tmp_path):
    env = console_server.env
    env.app.state.stream.flush()
    t = env.clock()
    _add_wearer(env, "S-BR-1", t - 100 * DAY_MS + 3_600_000)  # review 9 days overdue
    ids = [_add_breach(env, "S-BR-1", t - (20 - k) * DAY_MS, k) for k in range(3)]
    sign_in(page, console_server, "caseworker", next_path=f"/breaches/{ids[0]}")
    page.click("#casework-link")
    page.wait_for_url("**/subjects/S-BR-1/casework")
    assert "warning letter 2" in page.locator("#proposal").inner_text()  # three unexcused breaches
    assert _serious(page) == []

    scan = tmp_path / "gp-letter.pdf"
    scan.write_bytes(b"%PDF-1.4 the GP's letter")
    page.click("#new-mitigation summary")
    page.fill("#received-date", format_ms(t - DAY_MS)[:10])
    page.fill("#received-time", "09:30")
    page.select_option("#channel", "email")
    page.fill("#mitigation-text", "I was ill on both nights; my GP's letter is attached.")
    page.check(f"#about-{ids[0]}")
    page.check(f"#about-{ids[1]}")
    page.set_input_files("#attachments", str(scan))
    page.click("button:has-text('Record the mitigation')")
    page.wait_for_url("**/casework?saved=mitigation*")
    assert page.locator("#casework-saved").inner_text().strip().endswith("The mitigation is recorded.")
    (m,) = env.client.get("/v1/mitigations?subject_id=S-BR-1", headers=env.h("approver")).json()
    assert m["attachments"] == [{"name": "gp-letter.pdf", "sha256": hashlib.sha256(scan.read_bytes()).hexdigest()}]

    page.check(f"#accept-{m['id']}")
    page.fill(f"#reason-{m['id']}", "The GP's letter covers both nights.")
    page.click(f"button:has-text('Record the decision')")
    page.wait_for_url("**/casework?saved=decision*")
    proposal = page.locator("#proposal").inner_text()
    assert "warning letter 1" in proposal and ids[2] in proposal and ids[0] not in proposal  # one counts now
    page.click("button:has-text('Record the escalation decision')")  # the proposal is preselected
    page.wait_for_url("**/casework?saved=escalation*")
    with page.expect_download() as download:
        page.click("#decision-table a:has-text('Download the letter')")
    letter = download.value.path().read_bytes()
    assert b"FIRST WARNING" in letter and ids[2].encode() in letter
    (d,) = env.client.get("/v1/subjects/S-BR-1/escalation", headers=env.h("caseworker")).json()["decisions"]
    assert hashlib.sha256(letter).hexdigest() == d["letter_sha256"]

    assert "Overdue" in page.locator("#review-due").inner_text()
    page.fill("#note-text", "Caring for his mother after her operation.")
    page.click("button:has-text('Save the note')")
    page.wait_for_url("**/casework?saved=note*")
    page.check("#outcome-continue")
    page.click("button:has-text('Record the review')")
    page.wait_for_url("**/casework?saved=review*")
    assert "Overdue" not in page.locator("#review-due").inner_text()
    assert _serious(page) == []
    screenshot(page, "casework")
    page.goto("/casework")
    assert page.locator("h1").inner_text() == "Casework"
    assert _serious(page) == []
    screenshot(page, "casework-list")


def test_an_admin_records_a_recall_and_the_caseworker_confirms_it(page, console_server):
    env = console_server.env
    env.app.state.stream.flush()
    t = env.clock()
    _add_wearer(env, "S-BR-2", t - 30 * DAY_MS)
    bid = _add_breach(env, "S-BR-2", t - 5 * DAY_MS, 0)
    sign_in(page, console_server, "admin", next_path="/devices")
    page.click("#new-device summary")
    for name, value in (("device_id", "D-S-BR-2"), ("serial", "SN-77"), ("model", "GT-3"), ("batch", "B-77")):
        page.fill(f"#register-{name}", value)
    page.click("button:has-text('Add the device')")
    page.wait_for_url("**/devices?saved=device*")
    page.click("#new-fault summary")
    page.check("#scope-batch")
    page.fill("#target", "B-77")
    page.fill("#start-date", format_ms(t - 7 * DAY_MS)[:10])
    page.fill("#fault-description", "Batch B-77 recalled: the charging contacts corrode.")
    page.click("button:has-text('Record the fault')")
    page.wait_for_url("**/devices?saved=fault*")
    assert "Batch B-77 (recall)" in page.locator("#fault-table").inner_text()
    assert _serious(page) == []
    screenshot(page, "devices")
    page.click("#health-link")
    page.wait_for_url("**/devices/health")
    assert page.locator("h1").inner_text() == "Device health"
    assert _serious(page) == []
    screenshot(page, "device-health")
    page.goto("/admin/notifications?status=dead")
    assert page.locator("h1").inner_text() == "Notifications"
    assert _serious(page) == []
    screenshot(page, "notifications")

    page.context.clear_cookies()
    sign_in(page, console_server, "caseworker", next_path=f"/breaches/{bid}")
    assert "Suspected equipment fault" in page.locator("#record-fault").inner_text()
    page.click("#fault-decision summary")
    page.check("#fault-confirmed")
    page.fill("#fault-reason", "The tag is in the recalled batch.")
    page.click("#fault-decision button:has-text('Record the decision')")
    page.wait_for_url(f"**/breaches/{bid}*")
    assert "Equipment fault confirmed" in page.locator("#record-fault").inner_text()
    r = env.client.get("/v1/subjects/S-BR-2/escalation", headers=env.h("caseworker"))
    assert json.loads(r.text)["counted"] == []  # a confirmed fault never counts
