"""Issue 15, the wearer's own data: a subject access request (kind sar,
ground sar_or_legal), approved like any other, answered with one package
(fixes as CSV and GeoJSON, breach records with casework, every consultation
and disclosure from the audit log, the exemptions applied with their
reasons), due one month after receipt, extendable once to three months,
and reported. Expectations by hand."""
from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template, audit_entries, create_request, decide, request_body, ts  # noqa: F401
from trails.timestamps import format_ms, parse_timestamp


@pytest.fixture()
def env(api_env):
    return api_env


def _at(env, when: str) -> None:
    """Move the service's clock so that now is `when`."""
    env.clock.offset_ms = 0
    env.clock.offset_ms = parse_timestamp(when) - env.clock()


def _sar(env, **change) -> dict:
    return create_request(env, kind="sar", ground="sar_or_legal", reference=None, **change)


def _package(env, request_id: int) -> dict[str, bytes]:
    r = env.client.get(f"/v1/access-requests/{request_id}/extract?format=zip", headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    return {n: z.read(n) for n in z.namelist()}


def test_deadline_is_one_calendar_month_then_three_when_extended(env):
    _at(env, "2026-01-31T10:00:00Z")  # 31 January: February has no 31st, so its last day
    req = _sar(env)
    assert req["respond_by"] == "2026-03-01T00:00:00.000Z"  # the end of 28 February (GMT)
    r = env.client.post(f"/v1/access-requests/{req['id']}/extend", headers=env.h("caseworker"),
                        json={"reason": "Large volume of records across several devices to review."})
    assert r.status_code == 403
    r = env.client.post(f"/v1/access-requests/{req['id']}/extend", headers=env.h("approver"),
                        json={"reason": "Large volume of records across several devices to review."})
    assert r.status_code == 200 and r.json()["respond_by"] == "2026-04-30T23:00:00.000Z"  # end of 30 April: midnight BST
    assert r.json()["extended_at"] is not None
    again = env.client.post(f"/v1/access-requests/{req['id']}/extend", headers=env.h("approver"),
                            json={"reason": "And again, because it is still a very large request."})
    assert again.status_code == 409
    trail = create_request(env)
    assert env.client.post(f"/v1/access-requests/{trail['id']}/extend", headers=env.h("approver"),
                           json={"reason": "Large volume of records across several devices."}).status_code == 422
    (entry,) = audit_entries(env, "request.extend")
    assert entry["detail"]["respond_by"] == "2026-04-30T23:00:00.000Z" and entry["request_id"] == req["id"]
    bad = env.client.post("/v1/access-requests", headers=env.h("caseworker"), json={
        **request_body(env.subjects[0]), "kind": "sar"})
    assert bad.status_code == 422 and "ground sar_or_legal" in bad.json()["detail"]


def test_the_package_holds_the_fixes_records_consultations_and_exemptions(env):
    from api.db.models import AssignmentRow, BreachRow
    from trails.store import read_store_fixes

    subject = env.subjects[0]
    start, end = ts(1, 0), ts(2, 0)
    withheld = _sar(env, start=start, end=end)
    r = decide(env, withheld["id"], exemptions=[{"part": "consultations",
                                                 "reason": "Disclosure would prejudice a police investigation."}])
    assert r.status_code == 200, r.text
    assert r.json()["exemptions"] == [{"part": "consultations",
                                       "reason": "Disclosure would prejudice a police investigation."}]
    files = _package(env, withheld["id"])
    assert sorted(files) == ["README.txt", "exemptions.json", "fixes.csv", "fixes.geojson", "records.json"]
    assert json.loads(files["exemptions.json"])[0]["part"] == "consultations"
    assert b"Withheld (see exemptions.json): consultations." in files["README.txt"]

    full = _sar(env, start=start, end=end)
    assert decide(env, full["id"]).status_code == 200
    files = _package(env, full["id"])
    assert sorted(files) == ["README.txt", "consultations.csv", "exemptions.json", "fixes.csv", "fixes.geojson",
                             "records.json"]
    lo, hi = parse_timestamp(start), parse_timestamp(end)
    with env.session() as s:
        devices = sorted({a.device_id for a in s.scalars(select(AssignmentRow).where(
            AssignmentRow.subject_id == subject))})
        want_records = [b.breach_id for b in s.scalars(select(BreachRow).where(
            BreachRow.subject_id == subject, BreachRow.start_ms >= lo, BreachRow.start_ms < hi)
            .order_by(BreachRow.start_ms, BreachRow.breach_id))]
    fixes = read_store_fixes(env.home, start_ms=lo, end_ms=hi, devices=devices)
    rows = list(csv.DictReader(io.StringIO(files["fixes.csv"].decode())))
    assert len(rows) == len(fixes) > 0 and {r["ts"] for r in rows} == {format_ms(int(t)) for t in fixes.ts_ms}
    assert len(json.loads(files["fixes.geojson"])["features"]) == len(rows)
    records = json.loads(files["records.json"])
    assert [b["breach_id"] for b in records["breach_records"]] == want_records
    assert set(records) == {"breach_records", "mitigations", "letters_and_escalation", "reviews", "welfare_notes"}
    seen = list(csv.DictReader(io.StringIO(files["consultations.csv"].decode())))
    downloads = [r for r in seen if r["action"] == "extract.download"]
    assert [(r["who"], r["organisation"], r["ground"], r["request"], r["period_start"]) for r in downloads] == [
        ("cw-1", "home office", "sar_or_legal", str(withheld["id"]), start.replace("Z", ".000Z"))]
    assert any(r["action"] == "request.decide" and r["who"] == "ap-1" for r in seen)
    assert "lat" not in files["consultations.csv"].decode().split("\n")[0]
    trail = create_request(env)
    r = decide(env, trail["id"], exemptions=[{"part": "fixes", "reason": "Not a subject access request at all."}])
    assert r.status_code == 422 and "only with a subject access request" in r.json()["detail"]


def test_the_report_counts_subject_access_against_the_deadline(env):
    _at(env, "2026-01-10T10:00:00Z")
    answered = _sar(env)
    decide(env, answered["id"])
    late = _sar(env)
    _sar(env)  # still open
    _at(env, "2026-03-01T10:00:00Z")  # past every one-month deadline
    decide(env, late["id"])
    report = env.client.get("/v1/reports/access-requests", headers=env.h("auditor")).json()
    assert report["subject_access"] == {"received": 3, "answered_in_time": 1, "answered_late": 1, "open": 1,
                                        "open_overdue": 1, "withdrawn": 0, "extended": 0}
    assert "sar" in report["columns"]


def test_the_console_offers_the_package_to_the_requester(env):
    from test_console_session import sign_in

    req = _sar(env)
    decide(env, req["id"])
    sign_in(env, "caseworker")
    page = env.client.get(f"/requests/{req['id']}")
    assert page.status_code == 200 and f'href="/requests/{req["id"]}/extract?format=zip"' in page.text
    assert audit_entries(env, "extract.download") == []  # offering it releases nothing
    r = env.client.get(f"/requests/{req['id']}/extract?format=zip")
    assert r.status_code == 200 and r.content.startswith(b"PK")
    (entry,) = audit_entries(env, "extract.download")
    assert entry["channel"] == "console" and entry["detail"]["format"] == "zip"
