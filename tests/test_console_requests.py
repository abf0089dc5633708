"""The console's access-request pages (/requests, /requests/new,
/requests/{id}, /approvals) through the app itself (TestClient): the API's
rules (own requests only, never deciding one's own, narrowing, identity
check), CSRF on every form, London time entry across both clock changes, and
audit entries equal to the API's but for their channel. The browser journey
is tests/test_console_requests_browser.py."""
from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import select

from api_fixtures import DAY_MS, VALID_TEXT, api_env, api_template, create_request, decide, ts  # noqa: F401

NECESSITY = "No less intrusive source shows where the wearer was that day."


@pytest.fixture()
def env(api_env):
    return api_env


def sign_in(env, who: str) -> None:
    env.client.cookies.clear()
    r = env.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = env.client.post("/login", data={"token": env.tokens[who], "csrf_token": token, "next": "/"},
                        follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf(env, path: str) -> str:
    r = env.client.get(path)
    assert r.status_code == 200, r.text
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def entries(env, action: str) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]


def without_channel(entry: dict) -> dict:
    """An audit entry's fields but those that differ between any two entries (index, time, chain, channel)."""
    return {k: v for k, v in entry.items() if k not in ("idx", "ts", "ts_ms", "channel")}


def form_for(subject: str, **over) -> dict:
    """The new-request form: 5 Mar 2024 00:00 to 6 Mar 2024 00:00 London (GMT = UTC then)."""
    data = {"subject_id": subject, "kind": "trail", "ground": "absconded", "start_date": "2024-03-05",
            "start_time": "00:00", "end_date": "2024-03-06", "end_time": "00:00", "justification": VALID_TEXT,
            "necessity": NECESSITY, "case_reference": "CASE-1", "urgency": "routine"}
    data.update(over)
    return data


def post_new(env, data: dict, step: str):
    return env.client.post("/requests/new", data={**data, "step": step, "csrf_token": csrf(env, "/requests")},
                           follow_redirects=False)


# ------------------------------------------------------------------ asking

def test_new_request_is_checked_then_sent_and_audited_as_the_api_does(env):
    sign_in(env, "caseworker")
    subject = env.subjects[0]
    r = env.client.get(f"/requests/new?subject_id={subject}")
    assert r.status_code == 200 and 'name="breach"' in r.text  # staff pick the reference from the breaches
    (read,) = entries(env, "breach.read")
    assert read["channel"] == "console" and read["detail"]["include_withdrawn"] is False
    r = post_new(env, form_for(subject), "check")
    assert r.status_code == 200 and "Check your request before sending it" in r.text
    assert 'datetime="2024-03-05T00:00:00.000Z"' in r.text and "5 Mar 2024 00:00 GMT" in r.text
    assert "too broad" not in r.text.lower()
    assert entries(env, "request.create") == []  # checking records nothing
    r = post_new(env, form_for(subject), "send")
    assert r.status_code == 303
    request_id = int(r.headers["location"].rsplit("/", 1)[1])
    via_api = create_request(env, start=ts(1, 0), end=ts(2, 0))
    console, api = entries(env, "request.create")
    assert console["channel"] == "console" and api["channel"] == "api"
    assert without_channel(console) | {"request_id": None, "justification_ref": None} == \
        without_channel(api) | {"request_id": None, "justification_ref": None}
    assert console["request_id"] == request_id and api["request_id"] == via_api["id"]
    page = env.client.get(f"/requests/{request_id}")
    assert page.status_code == 200 and "Waiting for a decision" in page.text


def test_too_broad_warning_is_shown_before_sending(env):
    sign_in(env, "caseworker")
    r = post_new(env, form_for(env.subjects[0], ground="bail_breach", start_date="2024-02-01",
                               end_date="2024-03-06"), "check")
    assert r.status_code == 200 and 'id="too-broad"' in r.text
    assert "longer than the 7 days allowed for this ground" in r.text and "Send it as too broad" in r.text


def test_nonexistent_london_time_in_march_is_refused_with_a_clear_message(env):
    sign_in(env, "caseworker")
    r = post_new(env, form_for(env.subjects[0], start_date="2024-03-31", start_time="01:30",
                               end_date="2024-04-01", end_time="00:00"), "check")
    assert r.status_code == 422, r.text
    summary = re.search(r'govuk-error-summary__list">(.*?)</ul>', r.text, re.S).group(1)
    assert "01:30 on 31 March 2024 did not happen in the UK: the clocks went forward" in summary, summary
    r = post_new(env, form_for(env.subjects[0], start_date="2024-03-31", start_time="00:30",
                               end_date="2024-03-31", end_time="02:30"), "check")
    assert r.status_code == 200  # either side of the gap: 00:30 GMT and 02:30 BST, one hour apart
    assert 'datetime="2024-03-31T00:30:00.000Z"' in r.text and 'datetime="2024-03-31T01:30:00.000Z"' in r.text
    assert "31 Mar 2024 02:30 BST" in r.text


def test_ambiguous_london_time_in_october_is_asked_about_then_resolved(env):
    sign_in(env, "caseworker")
    data = form_for(env.subjects[0], start_date="2024-10-27", start_time="01:30", end_date="2024-10-28",
                    end_time="00:00")
    r = post_new(env, data, "check")
    assert r.status_code == 422 and "happened twice" in r.text
    assert "The first: 27 Oct 2024 01:30 BST" in r.text and "The second: 27 Oct 2024 01:30 GMT" in r.text
    first = post_new(env, {**data, "start_occurrence": "first"}, "check")
    second = post_new(env, {**data, "start_occurrence": "second"}, "check")
    assert 'datetime="2024-10-27T00:30:00.000Z"' in first.text  # 01:30 BST
    assert 'datetime="2024-10-27T01:30:00.000Z"' in second.text  # 01:30 GMT, an hour later
    assert 'name="start_occurrence" value="second"' in second.text  # carried to the send step


def test_london_input_parses_both_changes():
    from api.web.london_input import LocalTimeError, is_ambiguous, london_fields, parse_london

    assert parse_london("2024-03-31", "00:59") == 1_711_846_740_000  # GMT
    assert parse_london("2024-03-31", "02:00") == 1_711_846_800_000  # BST: one minute later
    with pytest.raises(LocalTimeError, match="did not happen"):
        parse_london("2024-03-31", "01:00")
    amb = is_ambiguous("2024-10-27", "01:00")
    assert (amb.first_ms, amb.second_ms) == (1_729_987_200_000, 1_729_990_800_000)
    assert parse_london("2024-10-27", "01:00") == amb.first_ms  # the contract's reading: the first
    assert parse_london("2024-10-27", "01:00", "second") == amb.second_ms
    assert london_fields(amb.second_ms) == ("2024-10-27", "01:00", "second")
    assert is_ambiguous("2024-10-27", "02:00") is None
    with pytest.raises(LocalTimeError, match="like 19:00"):
        parse_london("2024-10-27", "7pm")


def test_requester_errors_on_a_new_request_are_masked_and_audited(env):
    sign_in(env, "requester")
    r = env.client.get("/requests/new?subject_id=nobody")
    assert 'name="breach"' not in r.text  # requesters cannot read breaches
    r = post_new(env, form_for("nobody"), "send")
    assert r.status_code == 403
    assert "This request was refused; the EM Hub can tell you why: quote reference A-" in r.text
    assert "no monitoring record" not in r.text
    (refused,) = [e for e in entries(env, "access.refused") if e["detail"]["operation"] == "create_access_request"]
    assert refused["channel"] == "console" and refused["detail"]["status"] == 404
    assert f"A-{refused['idx']}" in r.text
    api = env.client.post("/v1/access-requests", json={**_api_body("nobody")}, headers=env.h("requester"))
    assert api.status_code == 403 and "quote reference A-" in api.json()["detail"]
    console, via_api = [e for e in entries(env, "access.refused") if e["detail"]["operation"] == "create_access_request"]
    assert (console["channel"], via_api["channel"]) == ("console", "api")
    assert {k: v for k, v in without_channel(console).items() if k != "detail"} == \
        {k: v for k, v in without_channel(via_api).items() if k != "detail"}
    assert console["detail"] | {"target": None} == via_api["detail"] | {"target": None}


def _api_body(subject: str) -> dict:
    return {"subject_id": subject, "kind": "trail", "ground": "absconded", "start": ts(1, 0), "end": ts(2, 0),
            "justification": VALID_TEXT, "necessity": NECESSITY, "reference": "CASE-1"}


# ------------------------------------------------------------------ reading

def test_requesters_see_only_their_own_requests(env):
    mine = create_request(env, "requester")
    theirs = create_request(env, "probation")
    staff = create_request(env, "caseworker")
    sign_in(env, "requester")
    r = env.client.get("/requests")
    assert r.status_code == 200
    assert f'id="request-{mine["id"]}"' in r.text
    assert f'id="request-{theirs["id"]}"' not in r.text and f'id="request-{staff["id"]}"' not in r.text
    (listed,) = entries(env, "request.list")
    assert listed["channel"] == "console" and listed["detail"]["request_ids"] == [mine["id"]]
    r = env.client.get(f"/requests/{theirs['id']}")
    assert r.status_code == 403 and "quote reference A-" in r.text and "not yours" not in r.text
    r = env.client.get("/requests/999999")
    assert r.status_code == 403 and "quote reference A-" in r.text  # whether an id exists is not told
    assert env.client.get("/approvals").status_code == 403


def test_request_page_read_is_audited_like_the_api(env):
    made = create_request(env, "caseworker")
    sign_in(env, "caseworker")
    assert env.client.get(f"/requests/{made['id']}").status_code == 200
    assert env.client.get(f"/v1/access-requests/{made['id']}", headers=env.h("caseworker")).status_code == 200
    console, api = entries(env, "request.read")
    assert (console["channel"], api["channel"]) == ("console", "api")
    assert without_channel(console) == without_channel(api)


# ------------------------------------------------------------------ deciding

def _decide_form(env, request_id: int, **data):
    token = csrf(env, f"/requests/{request_id}")
    return env.client.post(f"/requests/{request_id}/decision", data={"csrf_token": token, **data},
                           follow_redirects=False)


def test_approver_never_decides_their_own_request(env):
    from api.access.users import add_user, revoke_user
    from api.db.models import AccessRequest

    made = create_request(env, "caseworker")
    with env.session() as s:  # the same person (cw-1) back with an approver's account
        revoke_user(s, env.app.state.audit, name="cw-1")
        _, token = add_user(s, env.app.state.audit, name="CW-1", role="approver", org="home office")
        s.commit()
    env.tokens["cw-1 as approver"] = token
    sign_in(env, "cw-1 as approver")
    page = env.client.get(f"/requests/{made['id']}")
    assert page.status_code == 200 and 'id="own-request"' in page.text
    assert 'action="/requests/%d/decision"' % made["id"] not in page.text
    inbox = env.client.get("/approvals")
    assert "You made it: another approver decides" in inbox.text
    r = _decide_form(env, made["id"], outcome="data_provided", reason=VALID_TEXT)
    assert r.status_code == 403 and "the approver is never the requester" in r.text
    with env.session() as s:
        assert s.get(AccessRequest, made["id"]).status == "pending"
    refused = [e for e in entries(env, "access.refused") if e["detail"]["operation"] == "decide_access_request"]
    assert [(e["channel"], e["detail"]["status"]) for e in refused] == [("console", 403)]


def test_approver_narrows_the_period_in_london_time(env):
    made = create_request(env, "caseworker", start=ts(1, 0), end=ts(2, 0))  # 5 Mar 00:00 to 6 Mar 00:00 GMT
    sign_in(env, "approver")
    common = {"outcome": "partial_data_provided", "reason": VALID_TEXT, "start_date": "2024-03-05",
              "end_date": "2024-03-05"}
    r = _decide_form(env, made["id"], **common, start_time="00:00", end_time="23:00")  # removes too little
    assert r.status_code == 422 and "must remove at least" in r.text
    r = _decide_form(env, made["id"], **common, start_time="06:00", end_time="12:00")
    assert r.status_code == 303 and r.headers["location"] == f"/requests/{made['id']}"
    api = env.client.get(f"/v1/access-requests/{made['id']}", headers=env.h("approver")).json()
    assert (api["outcome"], api["approved_start"], api["approved_end"]) == (
        "partial_data_provided", "2024-03-05T06:00:00.000Z", "2024-03-05T12:00:00.000Z")
    (decided,) = entries(env, "request.decide")
    assert decided["channel"] == "console" and decided["detail"]["approved_start"] == "2024-03-05T06:00:00.000Z"
    r = _decide_form(env, made["id"], outcome="data_provided", reason=VALID_TEXT)
    assert r.status_code == 409 and "is decided, not pending" in r.text


def test_decision_is_audited_as_the_api_decides(env):
    a = create_request(env, "caseworker")
    b = create_request(env, "caseworker")
    sign_in(env, "approver")
    assert _decide_form(env, a["id"], outcome="rejected_other", reason=VALID_TEXT).status_code == 303
    assert decide(env, b["id"], outcome="rejected_other", reason=VALID_TEXT).status_code == 200
    console, api = entries(env, "request.decide")
    assert (console["channel"], api["channel"]) == ("console", "api")
    assert set(console) == set(api) and set(console["detail"]) == set(api["detail"])
    assert console["detail"]["outcome"] == api["detail"]["outcome"] == "rejected_other"


def test_external_request_needs_the_identity_check_first(env):
    made = create_request(env, "requester")
    sign_in(env, "approver")
    page = env.client.get(f"/requests/{made['id']}")
    assert 'id="identity"' in page.text and 'id="decide"' not in page.text
    r = _decide_form(env, made["id"], outcome="rejected_other", reason=VALID_TEXT)
    assert r.status_code == 409 and "confirm their identity" in r.text
    token = csrf(env, f"/requests/{made['id']}")
    r = env.client.post(f"/requests/{made['id']}/identity-check",
                        data={"csrf_token": token, "note": "Called back on the force switchboard and checked the card"},
                        follow_redirects=False)
    assert r.status_code == 303
    (checked,) = entries(env, "request.identity_check")
    assert checked["channel"] == "console"
    page = env.client.get(f"/requests/{made['id']}")
    assert 'id="decide"' in page.text


def test_every_request_form_needs_its_csrf_token(env):
    made = create_request(env, "caseworker")
    sign_in(env, "approver")
    for path, data in ((f"/requests/{made['id']}/decision", {"outcome": "rejected_other", "reason": VALID_TEXT}),
                       (f"/requests/{made['id']}/identity-check", {"note": VALID_TEXT})):
        r = env.client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403 and "security token" in r.text
    sign_in(env, "caseworker")
    for path, data in (("/requests/new", {**form_for(env.subjects[0]), "step": "send"}),
                       (f"/requests/{made['id']}/withdraw", {})):
        r = env.client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403 and "security token" in r.text
    with env.session() as s:
        from api.db.models import AccessRequest

        assert [r.status for r in s.scalars(select(AccessRequest))] == ["pending"]


def test_approvals_inbox_orders_by_urgency_then_respond_by(env):
    late = create_request(env, "caseworker", respond_by="2030-01-02T00:00:00Z")
    urgent = create_request(env, "caseworker", urgency="urgent")
    soon = create_request(env, "caseworker", respond_by="2030-01-01T00:00:00Z")
    none = create_request(env, "caseworker")
    sign_in(env, "approver")
    r = env.client.get("/approvals")
    assert r.status_code == 200
    order = [int(m) for m in re.findall(r'id="inbox-(\d+)"', r.text)]
    assert order == [urgent["id"], soon["id"], late["id"], none["id"]]
    sign_in(env, "caseworker")
    r = env.client.get("/approvals")
    assert r.status_code == 403 and "You cannot see this page" in r.text


# ------------------------------------------------------------------ the extract

def test_approved_extract_page_and_downloads_are_audited_like_the_api(env):
    made = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, made["id"]).status_code == 200
    sign_in(env, "caseworker")
    page = env.client.get(f"/requests/{made['id']}")
    assert page.status_code == 200 and 'id="extract-items"' in page.text and 'id="extract-map"' in page.text
    for fmt in ("geojson", "csv", "gpx"):
        assert f'href="/requests/{made["id"]}/extract?format={fmt}"' in page.text
    r = env.client.get(f"/requests/{made['id']}/extract?format=geojson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-extract-sha256"] == digest
    n_fixes = len(json.loads(r.content)["features"])
    assert page.text.count("Decisive") + page.text.count(">Uncertain<") >= n_fixes > 0
    api = env.client.get(f"/v1/access-requests/{made['id']}/extract", headers=env.h("caseworker"))
    assert api.status_code == 200 and hashlib.sha256(api.content).hexdigest() == digest
    shown, downloaded, via_api = entries(env, "extract.download")
    assert [e["channel"] for e in (shown, downloaded, via_api)] == ["console", "console", "api"]
    assert shown["extract_sha256"] == downloaded["extract_sha256"] == via_api["extract_sha256"] == digest
    assert without_channel(shown) == without_channel(downloaded) == without_channel(via_api)
    sign_in(env, "caseworker2")  # another caseworker reads the request, but gets no extract
    page = env.client.get(f"/requests/{made['id']}")
    assert page.status_code == 200 and 'id="extract-items"' not in page.text
    assert env.client.get(f"/requests/{made['id']}/extract").status_code == 403


def test_requests_page_shows_mine_by_default_and_all_on_asking(env):
    mine = create_request(env, "caseworker")
    other = create_request(env, "caseworker2")
    sign_in(env, "caseworker")
    r = env.client.get("/requests")
    assert f'id="request-{mine["id"]}"' in r.text and f'id="request-{other["id"]}"' not in r.text
    r = env.client.get("/requests?show=all")
    assert f'id="request-{mine["id"]}"' in r.text and f'id="request-{other["id"]}"' in r.text
    assert [e["detail"]["request_ids"] for e in entries(env, "request.list")] == [[mine["id"]],
                                                                                  [other["id"], mine["id"]]]
    sign_in(env, "auditor")  # a role that does not ask sees all
    r = env.client.get("/requests")
    assert f'id="request-{other["id"]}"' in r.text


def test_requester_withdraws_their_own_pending_request_only(env):
    mine = create_request(env, "caseworker")
    theirs = create_request(env, "caseworker2")
    sign_in(env, "caseworker")
    token = csrf(env, f"/requests/{mine['id']}")
    r = env.client.post(f"/requests/{theirs['id']}/withdraw", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403 and "only the user who made access request" in r.text
    r = env.client.post(f"/requests/{mine['id']}/withdraw", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    api = env.client.get(f"/v1/access-requests/{mine['id']}", headers=env.h("caseworker")).json()
    assert api["status"] == "withdrawn"
    (withdrawn,) = entries(env, "request.withdraw")
    assert withdrawn["channel"] == "console" and withdrawn["request_id"] == mine["id"]
    r = env.client.post(f"/requests/{mine['id']}/withdraw", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 409 and "is withdrawn, not pending" in r.text


def test_request_pages_have_no_inline_script_or_style_and_expired_extracts_are_not_shown(env):
    made = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, made["id"]).status_code == 200
    sign_in(env, "caseworker")
    paths = ("/requests", f"/requests/new?subject_id={env.subjects[0]}", f"/requests/{made['id']}")
    for path in paths:
        html = env.client.get(path).text
        assert not re.search(r'<script(?![^>]*\b(src=|type="application/json"))', html), path  # data blocks run nothing
        assert not re.search(r"\sstyle=", html) and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path
    env.clock.offset_ms += env.app.state.settings.approval_ttl_s * 1000 + 1000
    sign_in(env, "caseworker")  # the old session timed out long ago
    page = env.client.get(f"/requests/{made['id']}")
    assert 'id="extract-problem"' in page.text and "The approval expired" in page.text
    assert 'id="extract-items"' not in page.text and len(entries(env, "extract.download")) == 1
    r = env.client.get(f"/requests/{made['id']}/extract")
    assert r.status_code == 410 and "expired" in r.text
