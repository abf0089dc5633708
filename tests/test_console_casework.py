"""Issue 13 in the console: /casework (what the Hub owes wearers), the
wearer's casework page (/subjects/{id}/casework: escalation, mitigations,
review, welfare notes, owner and language) with its forms, /devices (the
register, faults and recalls, the health report), the fault decision on the
breach page, and /admin/notifications. Through the app itself (TestClient);
the browser journey is tests/test_console_casework_browser.py.

Every page reads through the API's service functions with the API's audit
entries (channel console); every form makes the API's change with the API's
audit entry; a refused form is shown at the form with the API's status and
audited as ``access.refused``. Expectations by hand from wearers, breaches
and faults this module adds."""
from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from test_console_session import _csrf, sign_in
from test_reviews import _add_breach, _add_wearer
from trails.timestamps import DAY_MS, format_ms


@pytest.fixture()
def env(api_env):
    return api_env


def _post(env, path: str, data: dict, files=None, csrf_from: str = "/casework"):
    return env.client.post(path, data={**data, "csrf_token": _csrf(env, csrf_from)}, files=files,
                           follow_redirects=False)


def _wearer(env, subject: str, days: int = 100, breaches: int = 3) -> list[str]:
    """A wearer on monitoring since `days` days less an hour ago, with `breaches` breaches 20, 19, ... days ago."""
    t = env.clock()
    _add_wearer(env, subject, t - days * DAY_MS + 3_600_000)
    return [_add_breach(env, subject, t - (20 - k) * DAY_MS, k) for k in range(breaches)]


def test_casework_lists_what_is_owed_and_reads_like_the_api(env):
    ids = _wearer(env, "S-CW-LATE", days=100)  # its review was due 9 days less an hour ago: 9 days overdue
    _wearer(env, "S-CW-NEW", days=10, breaches=0)  # due in 81 days: not listed
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": "S-CW-LATE", "breach_ids": ids[:1], "received": format_ms(env.clock() - 30 * DAY_MS),
        "channel": "letter", "text": "My tag was charging."})
    mid = r.json()["id"]
    sign_in(env, "caseworker")
    page = env.client.get("/casework")
    assert page.status_code == 200
    row = re.search(rf'<tr class="govuk-table__row" id="mitigation-{mid}">(.*?)</tr>', page.text, re.S).group(1)
    assert "S-CW-LATE" in row and "Overdue" in row  # 30 days ago: past 20 working days
    review = re.search(r'<tr class="govuk-table__row" id="review-S-CW-LATE">(.*?)</tr>', page.text, re.S).group(1)
    assert "Overdue" in review and ">9</td>" in review
    assert 'id="review-S-CW-NEW"' not in page.text
    (lst,) = [e for e in audit_entries(env, "mitigation.list") if e.get("channel") == "console"]
    assert lst["detail"] == {"status": "pending", "overdue": False, "ids": [mid]}
    (rev,) = [e for e in audit_entries(env, "review.list") if e.get("channel") == "console"]
    assert rev["detail"]["due_within_days"] == 14 and rev["detail"]["count"] >= 1
    assert '<a class="govuk-service-navigation__link" href="/casework"' in page.text


def test_mitigation_recorded_decided_and_answered_from_the_wearer_page(env):
    ids = _wearer(env, "S-CW-M")
    sign_in(env, "caseworker")
    page = env.client.get("/subjects/S-CW-M/casework")
    assert page.status_code == 200 and all(f'id="about-{b}"' in page.text for b in ids)
    assert "<title>Casework for wearer S-CW-M - tagtrail</title>" in page.text
    scan = b"%PDF-1.4 a scanned hospital letter"
    r = _post(env, "/subjects/S-CW-M/casework/mitigations",
              {"received_date": "2026-11-30", "received_time": "10:15", "channel": "letter",
               "text": "I was in hospital that night.", "breach_ids": ids[:2]},
              files=[("attachments", ("letter.pdf", scan, "application/pdf"))])
    assert r.status_code == 303 and r.headers["location"].endswith("/casework?saved=mitigation#mitigations")
    (m,) = env.client.get("/v1/mitigations?subject_id=S-CW-M", headers=env.h("approver")).json()
    assert m["breach_ids"] == sorted(ids[:2]) and m["channel"] == "letter"
    assert m["attachments"] == [{"name": "letter.pdf", "sha256": hashlib.sha256(scan).hexdigest()}]
    assert m["received"] == "2026-11-30T10:15:00.000Z"  # GMT in November
    (rec,) = audit_entries(env, "mitigation.record")
    assert rec["channel"] == "console" and rec["actor"] == "cw-1"
    # a decision without a reason is refused at its form, 422, audited like the API's refusal
    r = _post(env, f"/subjects/S-CW-M/casework/mitigations/{m['id']}/decision", {"outcome": "accepted"})
    assert r.status_code == 422 and f'id="decision-{m["id"]}-error"' in r.text and "give the reason" in r.text
    refused = audit_entries(env, "access.refused")[-1]
    assert refused["detail"]["operation"] == "decide_mitigation" and refused["channel"] == "console"
    r = _post(env, f"/subjects/S-CW-M/casework/mitigations/{m['id']}/decision",
              {"outcome": "accepted", "reason": "The hospital confirmed the admission."})
    assert r.status_code == 303
    letter = env.client.get(f"/subjects/S-CW-M/casework/mitigations/{m['id']}/letter")
    assert letter.status_code == 200 and "The hospital confirmed the admission." in letter.text
    assert audit_entries(env, "mitigation.letter")[-1]["detail"]["letter_sha256"] == \
        hashlib.sha256(letter.content).hexdigest() == letter.headers["x-letter-sha256"]
    # the excused records no longer count: one unexcused breach left, so the first warning
    page = env.client.get("/subjects/S-CW-M/casework?saved=decision")
    assert "The decision on the mitigation is recorded." in page.text
    proposal = re.search(r'<div class="govuk-inset-text" id="proposal">(.*?)</div>', page.text, re.S).group(1)
    assert "warning letter 1" in proposal and ids[2] in proposal and ids[0] not in proposal
    assert env.client.get("/subjects/S-OTHER/casework/mitigations/" f"{m['id']}/letter").status_code == 404


def test_ladder_step_review_note_and_language_from_the_wearer_page(env):
    ids = _wearer(env, "S-CW-L")
    sign_in(env, "caseworker")
    r = _post(env, "/subjects/S-CW-L/casework/escalation", {"step": "", "reason": ""})
    assert r.status_code == 422 and 'id="escalation-error"' in r.text  # overriding the proposal needs a reason
    assert _post(env, "/subjects/S-CW-L/casework/escalation", {"step": "warning_letter_2"}).status_code == 303
    (d,) = env.client.get("/v1/subjects/S-CW-L/escalation", headers=env.h("caseworker")).json()["decisions"]
    assert (d["proposed_step"], d["step"]) == ("warning_letter_2", "warning_letter_2")  # three breaches
    letter = env.client.get(f"/subjects/S-CW-L/casework/escalations/{d['id']}/letter")
    assert "SECOND WARNING" in letter.text and all(b in letter.text for b in ids)
    assert hashlib.sha256(letter.content).hexdigest() == d["letter_sha256"]

    assert _post(env, "/subjects/S-CW-L/casework/language", {"tag": "not a tag"}).status_code == 422
    assert _post(env, "/subjects/S-CW-L/casework/language", {"tag": "cy"}).status_code == 303
    assert _post(env, "/subjects/S-CW-L/casework/welfare-notes",
                 {"text": "Lost his job; rent arrears."}).status_code == 303
    page = env.client.get("/subjects/S-CW-L/casework")
    assert "Language cy where a template exists" in page.text and "Lost his job; rent arrears." in page.text
    assert "Overdue" in re.search(r'id="review-due">(.*?)</p>', page.text, re.S).group(1)
    summary = re.search(r'<dl class="govuk-summary-list" id="review-summary">(.*?)</dl>', page.text, re.S).group(1)
    assert "curfew absence: 3" in summary and "1 in the period" in summary
    r = _post(env, "/subjects/S-CW-L/casework/review", {"outcome": "vary_conditions"})
    assert r.status_code == 422 and "needs a reason" in r.text
    assert _post(env, "/subjects/S-CW-L/casework/review", {"outcome": "continue"}).status_code == 303
    (decided,) = audit_entries(env, "review.decide")
    assert decided["channel"] == "console" and decided["detail"]["on_time"] is False
    assert "No review is due" not in env.client.get("/subjects/S-CW-L/casework").text  # the next, 91 days on


def test_roles_see_their_parts_and_the_admin_sets_the_owner(env):
    _wearer(env, "S-CW-R", breaches=1)
    sign_in(env, "approver")
    page = env.client.get("/subjects/S-CW-R/casework")
    assert page.status_code == 200 and "/casework/escalation" not in page.text and "/casework/review" not in page.text
    assert env.client.get("/subjects/S-NOBODY/casework").status_code == 404
    sign_in(env, "requester")
    assert env.client.get("/subjects/S-CW-R/casework").status_code == 403
    assert env.client.get("/casework").status_code == 403 and env.client.get("/devices").status_code == 403
    sign_in(env, "admin")
    assert _post(env, "/subjects/S-CW-R/casework/owner", {"name": "cw-2"}, csrf_from="/admin").status_code == 303
    assert 'id="owner">cw-2</dd>' in env.client.get("/subjects/S-CW-R/casework").text
    sign_in(env, "caseworker")
    assert _post(env, "/subjects/S-CW-R/casework/owner", {"name": "cw-1"}).status_code == 403


def test_a_recall_from_the_devices_page_then_confirmed_on_the_record(env):
    t = env.clock()
    _add_wearer(env, "S-CW-D", t - 30 * DAY_MS)
    inside = _add_breach(env, "S-CW-D", t - 10 * DAY_MS, 0)
    sign_in(env, "admin")
    assert _post(env, "/devices/register", {"device_id": "D-S-CW-D", "serial": "SN-9", "model": "GT-3",
                                            "batch": "B-RECALL"}, csrf_from="/devices").status_code == 303
    r = _post(env, "/devices/faults", {"scope": "batch", "target": "B-NONE", "start_date": "2026-01-01",
                                       "description": "x"}, csrf_from="/devices")
    assert r.status_code == 422 and 'id="fault-error"' in r.text and "no device of batch" in r.text
    start = format_ms(t - 12 * DAY_MS)[:10]
    r = _post(env, "/devices/faults", {"scope": "batch", "target": "B-RECALL", "start_date": start,
                                       "description": "Batch recalled: charging fault."}, csrf_from="/devices")
    assert r.status_code == 303
    page = env.client.get("/devices?saved=fault")
    assert "Batch B-RECALL (recall)" in page.text and "Still open" in page.text
    (fault,) = audit_entries(env, "device.fault")
    assert fault["channel"] == "console" and fault["detail"]["batch"] == "B-RECALL"
    health = env.client.get("/devices/health")
    assert health.status_code == 200 and "Suspect batches" in health.text
    (read,) = [e for e in audit_entries(env, "report.read") if e["detail"]["report"] == "device-health"]
    assert read["channel"] == "console" and read["detail"]["to"][:10] == format_ms(env.clock())[:10]
    sign_in(env, "caseworker")
    page = env.client.get(f"/breaches/{inside}")
    assert 'id="fault-decision"' in page.text and "Suspected equipment fault" in page.text
    r = env.client.post(f"/breaches/{inside}/equipment-fault", data={
        "decision": "fault_confirmed", "reason": "In the recalled batch.", "csrf_token": _csrf(env, "/queue")},
        follow_redirects=False)
    assert r.status_code == 303
    assert "Equipment fault confirmed" in env.client.get(f"/breaches/{inside}").text
    (decided,) = audit_entries(env, "breach.equipment_fault")
    assert decided["channel"] == "console"


def test_the_admin_sees_the_dead_letters(env):
    from api.db.models import Notification

    with env.session() as s:
        for n, status in enumerate(("sent", "dead")):
            s.add(Notification(breach_id=f"{n:016x}", version="v", channel="webhook", status=status, attempts=5,
                               payload_json='{"type": "strap_tamper", "priority": 1}', next_attempt_ms=0,
                               created_ms=env.clock(), last_error="HTTPError: 500" if status == "dead" else None))
        s.commit()
        ids = list(s.scalars(select(Notification.id).order_by(Notification.id)))
    sign_in(env, "admin")
    page = env.client.get("/admin/notifications?status=dead")
    assert page.status_code == 200 and f'id="notification-{ids[1]}"' in page.text
    assert f'id="notification-{ids[0]}"' not in page.text and "HTTPError: 500" in page.text
    (read,) = audit_entries(env, "notification.list")
    assert read["detail"] == {"status": "dead", "ids": [ids[1]]} and read["channel"] == "console"
    sign_in(env, "caseworker")
    assert env.client.get("/admin/notifications").status_code == 403


def test_the_wearer_period_pack_from_the_casework_page(env):
    from api.db.models import BreachRow

    with env.session() as s:
        b = s.scalars(select(BreachRow).where(BreachRow.kind == "breach", BreachRow.status != "withdrawn")
                      .order_by(BreachRow.start_ms)).first()
    day = format_ms(b.start_ms)[:10]  # March 2024: London is on UTC
    sign_in(env, "auditor")
    page = env.client.get(f"/subjects/{b.subject_id}/casework")
    assert f'action="/subjects/{b.subject_id}/casework/evidence.pdf"' in page.text
    r = env.client.get(f"/subjects/{b.subject_id}/casework/evidence.pdf?from={day}&to={day}")
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    (entry,) = audit_entries(env, "subject.evidence_pack")
    assert entry["channel"] == "console" and b.breach_id in [bid for bid, _ in entry["detail"]["records"]]
    assert entry["detail"]["document_sha256"] == hashlib.sha256(r.content).hexdigest()
    r = env.client.get(f"/subjects/{b.subject_id}/casework/evidence.pdf?from=&to=")
    assert r.status_code == 422 and "give the first and the last day" in r.text
