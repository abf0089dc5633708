"""Issue 13, section 7: `GET /v1/reports/casework` per UTC month, derived by
hand from casework this module does through the API (a record actioned, two
mitigations, one decided in time and one late, a letter, a review)."""
from __future__ import annotations

import csv
import io

import pytest

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from trails.timestamps import DAY_MS, format_ms


@pytest.fixture()
def env(api_env):
    return api_env


def test_casework_by_month_in_json_csv_and_xlsx(env):
    from openpyxl import load_workbook

    subject = env.subjects[0]
    queue = env.client.get(f"/v1/breaches/queue?subject_id={subject}&limit=5", headers=env.h("caseworker")).json()
    bid = queue["items"][0]["breach_id"]
    assert env.client.post(f"/v1/breaches/{bid}/status", headers=env.h("caseworker"),
                           json={"status": "actioned", "note": "Warning letter sent."}).status_code == 200
    now = env.clock()
    body = {"subject_id": subject, "breach_ids": [bid], "channel": "letter", "text": "I was in hospital."}
    on_time = env.client.post("/v1/mitigations", headers=env.h("caseworker"),
                              json={**body, "received": format_ms(now - DAY_MS)}).json()
    late = env.client.post("/v1/mitigations", headers=env.h("caseworker"),
                           json={**body, "received": format_ms(now - 60 * DAY_MS)}).json()  # 20 working days passed
    for m in (on_time, late):
        env.client.post(f"/v1/mitigations/{m['id']}/decision", headers=env.h("caseworker"),
                        json={"outcome": "rejected", "reason": "No evidence of an admission was sent."})
    r = env.client.post(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"),
                        json={"step": "warning_letter_1", "reason": "A first warning, as agreed at the case meeting."})
    assert r.status_code == 201, r.text
    month, received_late = format_ms(now)[:7], format_ms(now - 60 * DAY_MS)[:7]

    report = env.client.get("/v1/reports/casework", headers=env.h("auditor")).json()
    rows = {r["measure"]: r["months"] for r in report["rows"]}
    assert rows["breaches actioned"][month] == 1
    assert rows["mitigations received"][month] == 1 and rows["mitigations received"][received_late] == 1
    assert rows["mitigations decided in time"][month] == 1 and rows["mitigations decided late"][month] == 1
    assert rows["letters: warning_letter_1"][month] == 1
    assert "median hours from detection to first action" in rows
    assert report["now"]["on_monitoring"] >= 1 and set(report["now"]) == {
        "as_of", "on_monitoring", "reviews_overdue", "wearers_without_owner"}
    assert subject not in str(report)  # counts only
    # this month's end is now: the month rows agree with the figures as at now
    assert rows["reviews overdue at month end"][month] == report["now"]["reviews_overdue"]
    assert rows["wearers without an owner at month end"][month] == report["now"]["wearers_without_owner"]

    text = env.client.get("/v1/reports/casework?format=csv", headers=env.h("auditor")).text
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["measure", *report["months"]]
    assert ["letters: warning_letter_1", *("1" if m == month else "0" for m in report["months"])] in table
    xlsx = env.client.get("/v1/reports/casework?format=xlsx", headers=env.h("auditor"))
    sheet = load_workbook(io.BytesIO(xlsx.content))["casework"]
    assert [c.value for c in sheet[1]] == ["measure", *report["months"]]
