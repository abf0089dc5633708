"""`GET /v1/audit/entries` and the console's /audit page (issue 12): newest
first, filters (actor, action, wearer pseudonym, London dates or RFC 3339),
paging, the read itself audited; the latest checkpoint; "verify now" runs
`tagtrail audit verify`'s check and shows a tampered row (TestClient; the
browser journey is in tests/test_console_browser_oversight.py)."""
from __future__ import annotations

import json
import re
import sqlite3

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from test_console_session import sign_in

SPRING = "2024-03-31"  # the clocks go forward: the London day is 23 hours long


@pytest.fixture()
def env(api_env):
    return api_env


def _all(env) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]


def _get(env, who="auditor", **params):
    r = env.client.get("/v1/audit/entries", params=params, headers=env.h(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_entries_newest_first_with_total_and_paging(env):
    before = _all(env)
    body = _get(env, limit=3)
    assert body["total"] == len(before) and body["limit"] == 3 and body["offset"] == 0
    assert [e["idx"] for e in body["entries"]] == [len(before) - 1, len(before) - 2, len(before) - 3]
    assert body["entries"][0] == before[-1]  # the entry's own JSON, as hashed
    second = _get(env, limit=3, offset=3)  # the first read is now the newest entry
    assert second["total"] == len(before) + 1
    assert [e["idx"] for e in second["entries"]] == [len(before) - 3, len(before) - 4, len(before) - 5]


def test_filters_by_actor_action_and_wearer(env):
    audit = env.app.state.audit
    subject = env.subjects[0]
    r = env.client.get(f"/v1/subjects/{subject}/breaches", headers=env.h("caseworker"))
    assert r.status_code == 200
    mine = _get(env, actor="cw-1")
    assert mine["total"] >= 1 and {e["actor"] for e in mine["entries"]} == {"cw-1"}
    created = _get(env, action="user.add")
    assert created["total"] == sum(1 for e in _all(env) if e["action"] == "user.add") > 0
    assert {e["action"] for e in created["entries"]} == {"user.add"}
    wearer = audit.pseudonym(subject)
    about = _get(env, wearer=wearer)
    assert about["total"] >= 1 and {e["subject"] for e in about["entries"]} == {wearer}
    assert _get(env, wearer=audit.pseudonym("S-NOBODY"))["total"] == 0


def test_london_dates_cover_the_whole_uk_day_including_the_clock_change(env):
    from api.db.models import User

    audit = env.app.state.audit
    # 23:30 UTC on 30 March is 23:30 GMT (30th); 23:30 UTC on 31 March is 00:30 BST on 1 April.
    times = {"2024-03-30T23:30:00Z": "before", "2024-03-31T00:00:00Z": "first", "2024-03-31T22:59:59.999Z": "last",
             "2024-03-31T23:00:00Z": "after"}
    from trails.timestamps import parse_timestamp

    with env.session() as s:
        actor = s.scalar(select(User).where(User.name == "ad-1"))
        for t, label in times.items():
            audit.append(s, action="test.clock", actor=actor, now_ms=parse_timestamp(t), detail={"label": label})
        s.commit()
    day = _get(env, action="test.clock", **{"from": SPRING, "to": SPRING})
    assert [e["detail"]["label"] for e in day["entries"]] == ["last", "first"]
    instants = _get(env, action="test.clock", **{"from": "2024-03-31T00:00:00+00:00", "to": "2024-03-31T23:00:00Z"})
    assert [e["detail"]["label"] for e in instants["entries"]] == ["last", "first"]


@pytest.mark.parametrize("params,needle", [
    ({"wearer": "S-000001"}, "pseudonym"), ({"from": "31/03/2024"}, "neither a date"),
    ({"from": "2024-04-02", "to": "2024-04-01"}, "before"), ({"limit": 0}, "limit"), ({"colour": "red"}, "colour"),
])
def test_bad_filters_are_422_naming_the_problem(env, params, needle):
    r = env.client.get("/v1/audit/entries", params=params, headers=env.h("auditor"))
    assert r.status_code == 422 and needle in r.text


def test_reading_entries_is_audited_with_its_filters(env):
    _get(env, "admin", action="user.add", limit=7)
    last = _all(env)[-1]
    assert last["action"] == "audit.read" and last["actor"] == "ad-1" and last["channel"] == "api"
    assert last["detail"] == {"read": "entries", "action": "user.add", "limit": 7, "offset": 0}


def test_caseworker_cannot_read_the_log(env):
    r = env.client.get("/v1/audit/entries", headers=env.h("caseworker"))
    assert r.status_code == 403


# ------------------------------------------------------------------------- the console page
def test_audit_page_lists_filters_and_shows_the_checkpoint(env):
    sign_in(env, "auditor", "/audit")
    r = env.client.get("/audit", params={"action": "user.add"})
    assert r.status_code == 200
    shown = re.findall(r'<td class="govuk-table__cell tt-action">([^<]+)</td>', r.text)
    assert shown and set(shown) == {"user.add"}
    idx = [int(i) for i in re.findall(r'id="entry-(\d+)"', r.text)]
    assert idx == sorted(idx, reverse=True)
    assert "Latest signed checkpoint" in r.text and env.app.state.audit.latest_checkpoint()["root"] in r.text
    assert re.search(r"<time datetime=\"[^\"]+Z\" title=\"UTC [^\"]+\">\d+ \w+ \d{4} \d\d:\d\d (GMT|BST)</time>",
                     r.text)
    last = _all(env)[-1]
    assert last["action"] == "audit.read" and last["channel"] == "console" and last["actor"] == "au-1"
    assert last["detail"] == {"read": "entries", "action": "user.add", "limit": 50, "offset": 0}


def test_audit_page_same_list_as_the_api(env):
    api = _get(env, actor="cw-1")
    sign_in(env, "admin", "/audit")
    r = env.client.get("/audit", params={"actor": "cw-1"})
    assert r.status_code == 200
    assert [int(i) for i in re.findall(r'id="entry-(\d+)"', r.text)] == [e["idx"] for e in api["entries"]]


def test_audit_page_refuses_unknown_filters_and_bad_dates(env):
    sign_in(env, "auditor", "/audit")
    r = env.client.get("/audit", params={"colour": "red"})
    assert r.status_code == 400 and "no filter" in r.text
    r = env.client.get("/audit", params={"from": "yesterday"})
    assert r.status_code == 400 and "neither a date" in r.text


def test_caseworker_gets_the_403_page(env):
    sign_in(env, "caseworker", "/queue")
    r = env.client.get("/audit")
    assert r.status_code == 403 and "You cannot see this page" in r.text
    assert "/audit" not in re.findall(r'govuk-service-navigation__link" href="([^"]+)"', r.text)


def _csrf(env, path="/audit") -> str:
    r = env.client.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def test_verify_now_passes_on_an_intact_log_and_is_audited(env):
    sign_in(env, "auditor", "/audit")
    r = env.client.post("/audit/verify", data={"csrf_token": _csrf(env)})
    assert r.status_code == 200
    assert "The audit log checks out" in r.text and "OK: " in r.text
    verify = [e for e in _all(env) if e["action"] == "audit.read" and e["detail"]["read"] == "verify"]
    assert len(verify) == 1 and verify[0]["detail"]["ok"] is True and verify[0]["channel"] == "console"


def test_verify_now_without_csrf_is_403(env):
    sign_in(env, "auditor", "/audit")
    r = env.client.post("/audit/verify", data={})
    assert r.status_code == 403 and "security token" in r.text


def test_verify_now_detects_a_tampered_row(env):
    from api.audit.verify import verify_log

    sign_in(env, "auditor", "/audit")
    csrf = _csrf(env)
    k = next(e["idx"] for e in _all(env) if e["action"] == "user.add")
    con = sqlite3.connect(env.home / "tagtrail.db")  # what an attacker with file access can do
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE idx = ?", (k,))
    con.commit()
    con.close()
    r = env.client.post("/audit/verify", data={"csrf_token": csrf})
    assert r.status_code == 200
    assert "failed verification" in r.text
    with env.session() as s:  # the same check as `tagtrail audit verify`, word for word
        expected = verify_log(env.app.state.settings, s, now_ms=env.clock())
    assert not expected.ok and expected.first_bad_index == k
    assert f"FAILED: {expected.message}" in r.text.replace("&#39;", "'")
    assert f'href="#entry-{k}"' in r.text
