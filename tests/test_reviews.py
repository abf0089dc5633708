"""Issue 13, section 4: owners and reviews over HTTP. Every wearer on
monitoring has a review due every 91 days from the start or the last review;
the due and overdue lists, the summary a review rests on (kept with it), the
outcomes (end_monitoring ends the assignment now), and the report against
the inspectorate's 1% bar for wearers without an owner. Expectations by hand
from wearers this module adds with known start times."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from trails.timestamps import DAY_MS, format_ms, parse_timestamp as parse_ms

H = 3_600_000


@pytest.fixture()
def env(api_env):
    return api_env


def _add_wearer(env, subject: str, start_ms: int) -> None:
    from api.db.models import AssignmentRow

    with env.session() as s:
        s.add(AssignmentRow(subject_id=subject, device_id=f"D-{subject}", start_ms=start_ms, end_ms=None,
                            zones_json="[]", chain_start_ms=start_ms, zone_versions_json="{}"))
        s.commit()


def _add_breach(env, subject: str, t: int, n: int) -> str:
    from api.db.models import BreachRow

    bid = hashlib.sha256(f"review:{subject}:{n}".encode()).hexdigest()[:16]
    with env.session() as s:
        s.add(BreachRow(breach_id=bid, kind="breach", type="curfew_absence", subject_id=subject,
                        device_id=f"D-{subject}", zone_id=None, start=format_ms(t), end=format_ms(t + H), start_ms=t,
                        end_ms=t + H, duration_s=3600.0, priority=2, first_seen_ms=t, updated_ms=t, status="new"))
        s.commit()
    return bid


def _by_subject(rows: list[dict]) -> dict[str, dict]:
    return {r["subject_id"]: r for r in rows}


def test_due_overdue_review_and_end_monitoring(env):
    t = env.clock()
    _add_wearer(env, "S-REV-LATE", t - 100 * DAY_MS + H)  # due 91 days after: 9 days less an hour ago
    _add_wearer(env, "S-REV-NEW", t - 10 * DAY_MS)  # due in 81 days
    b1, b2 = _add_breach(env, "S-REV-LATE", t - 50 * DAY_MS, 1), _add_breach(env, "S-REV-LATE", t - 40 * DAY_MS, 2)
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": "S-REV-LATE", "breach_ids": [b1], "received": format_ms(t - 30 * DAY_MS), "channel": "phone",
        "text": "I was at A&E with my daughter."})
    env.client.post(f"/v1/mitigations/{r.json()['id']}/decision", headers=env.h("caseworker"),
                    json={"outcome": "accepted", "reason": "The hospital confirmed the attendance."})

    overdue = _by_subject(env.client.get("/v1/reviews/overdue", headers=env.h("approver")).json())
    assert overdue["S-REV-LATE"]["days_overdue"] == 9 and "S-REV-NEW" not in overdue
    assert overdue["S-REV-LATE"]["due"] == format_ms(t - 9 * DAY_MS + H)
    soon = _by_subject(env.client.get("/v1/reviews/due?within_days=14", headers=env.h("caseworker")).json())
    assert "S-REV-LATE" in soon and "S-REV-NEW" not in soon
    later = _by_subject(env.client.get("/v1/reviews/due?within_days=90", headers=env.h("caseworker")).json())
    assert later["S-REV-NEW"]["due"] == format_ms(t + 81 * DAY_MS) and later["S-REV-NEW"]["days_overdue"] == 0

    summary = env.client.get("/v1/subjects/S-REV-LATE/review-summary", headers=env.h("caseworker")).json()
    assert summary["breaches_by_type"] == {"curfew_absence": 2} and summary["excused"] == [b1]
    assert summary["mitigations"] == {"accepted": 1} and summary["attendance"] == {}  # no curfew zone
    assert summary["device_faults"] == {"faults": [], "breaches": {}} and summary["welfare_notes"] == []
    r = env.client.post("/v1/subjects/S-REV-LATE/reviews", headers=env.h("caseworker"), json={"outcome": "continue"})
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["period_start"] == format_ms(t - 100 * DAY_MS + H)
    assert review["summary"]["breaches_by_type"] == {"curfew_absence": 2} and b2 not in review["summary"]["excused"]
    overdue = _by_subject(env.client.get("/v1/reviews/overdue", headers=env.h("approver")).json())
    assert "S-REV-LATE" not in overdue  # the next is due 91 days after this review

    assert env.client.post("/v1/subjects/S-REV-NEW/reviews", headers=env.h("caseworker"),
                           json={"outcome": "end_monitoring"}).status_code == 422  # needs a reason
    r = env.client.post("/v1/subjects/S-REV-NEW/reviews", headers=env.h("caseworker"),
                        json={"outcome": "end_monitoring", "reason": "Bail conditions varied by the tribunal."})
    assert r.status_code == 201
    ended_at = r.json()["period_end"]
    with env.session() as s:
        from api.db.models import AssignmentRow

        (row,) = s.scalars(select(AssignmentRow).where(AssignmentRow.subject_id == "S-REV-NEW")).all()
        assert format_ms(row.end_ms) == ended_at  # detection stops at the decision
    r = env.client.get("/v1/subjects/S-REV-NEW/review-summary", headers=env.h("caseworker"))
    assert r.status_code == 422 and "not on monitoring" in r.json()["detail"]
    with env.session() as s:
        from api.db.models import AuditEntry

        entries = [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(
            AuditEntry.action.in_(["review.decide", "assignment.change"])).order_by(AuditEntry.idx))]
    assert [(e["action"], e["detail"].get("outcome")) for e in entries] == [
        ("review.decide", "continue"), ("assignment.change", None), ("review.decide", "end_monitoring")]
    assert entries[0]["detail"]["on_time"] is False and entries[2]["detail"]["on_time"] is True


def test_owners_and_the_one_percent_report(env):
    t = env.clock()
    for k in range(3):
        _add_wearer(env, f"S-OWN-{k}", t - (95 + k) * DAY_MS + H)  # 4, 5 and 6 days overdue (less an hour)
    before = env.client.get("/v1/reports/reviews", headers=env.h("auditor")).json()
    r = env.client.put("/v1/subjects/S-OWN-0/owner", headers=env.h("admin"), json={"owner": "cw-1"})
    assert r.status_code == 200, r.text
    assert env.client.put("/v1/subjects/S-OWN-1/owner", headers=env.h("admin"),
                          json={"owner": "ap-1"}).status_code == 422  # an approver is not a caseworker
    after = env.client.get("/v1/reports/reviews", headers=env.h("auditor")).json()
    assert after["on_monitoring"] == before["on_monitoring"]
    assert after["without_owner"] == before["without_owner"] - 1
    assert after["without_owner_share"] == round(after["without_owner"] / after["on_monitoring"], 4)
    assert after["without_owner_bar"] == 0.01
    assert after["reviews_overdue"]["1-30 days"] >= 3
    owned = _by_subject(env.client.get("/v1/reviews/overdue", headers=env.h("caseworker")).json())
    assert owned["S-OWN-0"]["owner"] == "cw-1" and owned["S-OWN-1"]["owner"] is None
    assert [owned[f"S-OWN-{k}"]["days_overdue"] for k in range(3)] == [4, 5, 6]


def test_the_report_reads_each_past_month_as_it_stood(env):
    """At the end of last month (after t0, before now) W1 had an owner and W2 not, and W3's review was
    overdue; by now W2 has an owner and W3 has been reviewed. The month's row keeps what stood then."""
    t0 = env.clock()
    for subject, days in (("S-HIST-1", 5), ("S-HIST-2", 5), ("S-HIST-3", 100)):
        _add_wearer(env, subject, t0 - days * DAY_MS)
    assert env.client.put("/v1/subjects/S-HIST-1/owner", headers=env.h("admin"), json={"owner": "cw-1"}).status_code == 200
    env.clock.offset_ms += 40 * DAY_MS  # at least one month end passes
    assert env.client.put("/v1/subjects/S-HIST-2/owner", headers=env.h("admin"), json={"owner": "cw-2"}).status_code == 200
    assert env.client.post("/v1/subjects/S-HIST-3/reviews", headers=env.h("caseworker"),
                           json={"outcome": "continue"}).status_code == 201
    report = env.client.get("/v1/reports/reviews", headers=env.h("auditor")).json()
    last_month = report["months"][-2]
    assert t0 < parse_ms(last_month["at"]) < env.clock() and last_month["month"] == last_month["at"][:7]
    assert report["months"][-1]["month"] == report["as_of"][:7]
    assert last_month["on_monitoring"] == report["on_monitoring"]
    assert last_month["without_owner"] == report["without_owner"] + 1  # S-HIST-2, owned only since
    assert sum(last_month["reviews_overdue"].values()) == sum(report["reviews_overdue"].values()) + 1  # S-HIST-3
    assert last_month["over_bar"] and last_month["month"] in report["months_over_bar"]
    assert last_month["without_owner_share"] == round(last_month["without_owner"] / last_month["on_monitoring"], 4)
    assert report["months"][0]["month"] <= format_ms(t0 - 100 * DAY_MS)[:7]  # from the first assignment's month
