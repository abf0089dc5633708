"""`/subjects/{subject_id}` in the console and its API counterparts
(``GET /v1/subjects/{id}``, ``.../compliance``), through the app itself
(TestClient; the browser journey is tests/test_console_subject_browser.py).

The compliance expectations are derived by hand from a wearer this module
builds with known behaviour (`hand_wearer`): a 100 m curfew zone 19:00-07:00
London time, worn from 00:00 on 4 March to 00:00 on 7 March 2024, fixes
every minute at its centre on the first night, 5 km away on the second, none
on the third. In March 2024 London is on GMT, so the windows are
19:00Z-07:00Z, and the assignment cuts the first (it starts at 00:00, inside
the night of the 3rd: 7 h without a fix) and the last (5 h)."""
from __future__ import annotations

import hashlib
import json
import re

import pytest
from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from breach_records import add_curfew_record
from sqlalchemy import select
from test_console_session import sign_in

HAND = "S-HAND-1"
DEVICE = "D-HAND-1"
ZONE = "Z-HAND-1"
CENTRE = (-2.98, 53.40)  # lon, lat: Liverpool
H = 3600


@pytest.fixture()
def env(api_env):
    return api_env


_entries = audit_entries

def _fixes(day: int, lat: float, lon: float) -> list[dict]:
    """One fix a minute from 18:00Z on 2024-03-(4+day) to 08:00Z the next day."""
    from trails.timestamps import format_ms, parse_timestamp

    t0 = parse_timestamp(f"2024-03-{4 + day:02d}T18:00:00Z")
    return [{"device_id": DEVICE, "ts": format_ms(t0 + k * 60_000), "lat": lat, "lon": lon, "accuracy_m": 10.0,
             "battery_pct": 80.0} for k in range(14 * 60 + 1)]


def add_hand_wearer(env) -> None:
    """The wearer of the module docstring: assignment 2024-03-04T00:00Z to 2024-03-07T00:00Z, the zone, and
    the fixes sent by the feed through the API (the stream moves them into the store)."""
    from api.db.models import AssignmentRow, ZoneRow, ZoneVersion

    feature = {"type": "Feature", "id": ZONE, "geometry": {"type": "Point", "coordinates": list(CENTRE)},
               "properties": {"kind": "curfew", "radius_m": 100.0, "schedule": [
                   {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "19:00", "end": "07:00"}]}}
    text = json.dumps(feature)
    start, end = 1_709_510_400_000, 1_709_769_600_000  # 2024-03-04T00:00Z, 2024-03-07T00:00Z
    with env.session() as s:
        s.add(ZoneRow(zone_id=ZONE, kind="curfew", feature_json=text, version=1))
        s.add(ZoneVersion(zone_id=ZONE, version=1, kind="curfew", feature_json=text,
                          sha256=hashlib.sha256(text.encode()).hexdigest(), created_ms=start))
        s.add(AssignmentRow(subject_id=HAND, device_id=DEVICE, start_ms=start, end_ms=end,
                            zones_json=json.dumps([ZONE]), chain_start_ms=start,
                            zone_versions_json=json.dumps({ZONE: 1})))
        s.commit()
    away = (CENTRE[1] + 0.045, CENTRE[0])  # 5 km north
    fixes = _fixes(0, CENTRE[1], CENTRE[0]) + _fixes(1, *away)
    for k in range(0, len(fixes), 500):
        r = env.client.post("/v1/fixes", json={"fixes": fixes[k:k + 500]}, headers=env.h("feed"))
        assert r.status_code == 200 and r.json()["fixes"]["accepted"] == len(fixes[k:k + 500]), r.text
    env.app.state.stream.flush()


#: The windows by hand (module docstring): (start, end, status, home_s, absent_s, unknown_s).
HAND_WINDOWS = [
    ("2024-03-04T00:00:00.000Z", "2024-03-04T07:00:00.000Z", "unknown", 0, 0, 7 * H),  # the night it starts in
    ("2024-03-04T19:00:00.000Z", "2024-03-05T07:00:00.000Z", "home", 12 * H, 0, 0),
    ("2024-03-05T19:00:00.000Z", "2024-03-06T07:00:00.000Z", "absent", 0, 12 * H, 0),
    ("2024-03-06T19:00:00.000Z", "2024-03-07T00:00:00.000Z", "unknown", 0, 0, 5 * H),  # the assignment ends at 00:00
]


# ------------------------------------------------------------------ the API

def test_api_compliance_is_the_hand_derived_windows(env):
    add_hand_wearer(env)
    r = env.client.get(f"/v1/subjects/{HAND}/compliance?from=2024-03-04&to=2024-03-08", headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    body = r.json()
    got = [(w["window_start"], w["window_end"], w["status"], w["home_s"], w["absent_s"], w["unknown_s"])
           for w in body["windows"]]
    assert got == HAND_WINDOWS
    assert {w["zone_id"] for w in body["windows"]} == {ZONE}
    assert body["counts"] == {"home": 1, "absent": 1, "unknown": 2}
    assert body["counts_by_zone"] == {ZONE: {"home": 1, "absent": 1, "unknown": 2}}
    assert (body["start"], body["end"]) == ("2024-03-04T00:00:00.000Z", "2024-03-09T00:00:00.000Z")  # London days
    assert not re.search(r'"(lat|lon|coordinates|x|y)"', r.text)  # no positions
    (entry,) = _entries(env, "subject.compliance")
    assert entry["channel"] == "api" and entry["actor"] == "cw-1"
    assert entry["subject"] == env.app.state.audit.pseudonym(HAND) and HAND not in json.dumps(entry)
    assert entry["detail"] == {"start": "2024-03-04T00:00:00.000Z", "end": "2024-03-09T00:00:00.000Z",
                               "as_of": entry["detail"]["as_of"], "windows": 4,
                               "counts": {"home": 1, "absent": 1, "unknown": 2}}


def test_api_compliance_refuses_a_long_or_backwards_period_and_an_unknown_wearer(env):
    h = env.h("caseworker")
    r = env.client.get(f"/v1/subjects/{env.subjects[0]}/compliance?from=2024-01-01&to=2024-06-01", headers=h)
    assert (r.status_code, r.json()["detail"]) == (422, "a compliance summary covers at most 92 days")
    r = env.client.get(f"/v1/subjects/{env.subjects[0]}/compliance?from=2024-03-06&to=2024-03-04", headers=h)
    assert r.status_code == 422 and "is empty" in r.json()["detail"]
    r = env.client.get("/v1/subjects/S-NOBODY/compliance", headers=h)
    assert (r.status_code, r.json()) == (404, {"detail": "wearer 'S-NOBODY' is not in the database"})
    assert _entries(env, "subject.compliance") == []  # nothing was read


def test_api_subject_summary_lists_the_segments_and_zone_versions(env):
    add_hand_wearer(env)
    r = env.client.get(f"/v1/subjects/{HAND}", headers=env.h("approver"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["assignments"] == [{"subject_id": HAND, "device_id": DEVICE, "start": "2024-03-04T00:00:00.000Z",
                                    "segment_start": "2024-03-04T00:00:00.000Z", "end": "2024-03-07T00:00:00.000Z",
                                    "zones": [ZONE], "zone_versions": {ZONE: 1}}]
    (zone,) = body["zones"]
    assert (zone["zone_id"], zone["version"], zone["kind"]) == (ZONE, 1, "curfew")
    assert zone["feature"]["geometry"]["coordinates"] == list(CENTRE)
    (entry,) = _entries(env, "subject.read")
    assert entry["channel"] == "api" and entry["actor"] == "ap-1" and ZONE not in json.dumps(entry)
    assert len(entry["detail"]["segment_ids"]) == 1 and entry["detail"]["zones"][0]["version"] == 1


# ------------------------------------------------------------------ the page

def _page(env, path: str, who: str = "caseworker"):
    sign_in(env, who, next_path=path)
    return env.client.get(path)


def _table(html: str, table_id: str) -> str:
    return html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]


def test_page_shows_assignments_zones_and_the_hand_derived_compliance(env):
    add_hand_wearer(env)
    r = _page(env, f"/subjects/{HAND}?from=2024-03-04&to=2024-03-08")
    assert r.status_code == 200, r.text
    html = r.text
    assert "<h1 class=\"govuk-heading-l\">Wearer S-HAND-1</h1>" in html
    assignments = _table(html, "assignment-table")
    assert DEVICE in assignments and f"{ZONE} (version 1)" in assignments
    assert re.findall(r"<time[^>]*>([^<]+)</time>", assignments) == ["4 Mar 2024 00:00 GMT", "7 Mar 2024 00:00 GMT"]
    assert f"Zone {ZONE} (version 1)" in html
    assert ("Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday: 19:00 to 07:00 the next day "
            "(Europe/London time)") in html
    data = json.loads(re.search(r'id="subject-map-data">(.*?)</script>', html, re.DOTALL).group(1))
    (zone,) = data["features"]
    assert zone["properties"]["role"] == "zone" and zone["properties"]["radius_m"] == 100.0
    assert zone["geometry"] == {"type": "Point", "coordinates": list(CENTRE)}
    windows = _table(html, "compliance-windows")
    assert re.findall(r'data-status="(\w+)"', windows) == ["unknown", "home", "absent", "unknown"]
    assert re.findall(r"<time[^>]*>([^<]+)</time>", windows) == [
        "4 Mar 2024 00:00 GMT", "4 Mar 2024 07:00 GMT",
        "4 Mar 2024 19:00 GMT", "5 Mar 2024 07:00 GMT", "5 Mar 2024 19:00 GMT", "6 Mar 2024 07:00 GMT",
        "6 Mar 2024 19:00 GMT", "7 Mar 2024 00:00 GMT"]
    assert ">12 h 00 min<" in windows and ">5 h 00 min<" in windows and ">7 h 00 min<" in windows
    counts = _table(html, "compliance-counts")
    assert re.findall(r'data-status="(\w+)">(\d+)<', counts) == [("home", "1"), ("absent", "1"), ("unknown", "2")] * 2
    section = html.split('id="compliance"', 1)[1].split('id="breaches"', 1)[0]
    assert "53.4" not in section and "-2.98" not in section  # no coordinates in the compliance summary
    assert "<script>" not in html  # data blocks only (CSP)


def test_page_reads_are_audited_exactly_like_the_api(env):
    """Each section's entry equals its API counterpart's but for when, where in the log and the channel."""
    add_hand_wearer(env)
    h = env.h("auditor")
    calls = [("subject.read", f"/v1/subjects/{HAND}"),
             ("subject.compliance", f"/v1/subjects/{HAND}/compliance?from=2024-03-04&to=2024-03-08"),
             ("breach.queue.read", (f"/v1/breaches/queue?subject_id={HAND}&status=actioned&status=in_review"
                                    f"&status=new&status=withdrawn&limit=20")),
             ("request.list", f"/v1/access-requests?subject_id={HAND}&limit=50"),
             ("audit.read", f"/v1/audit/entries?wearer={env.app.state.audit.pseudonym(HAND)}&limit=20")]
    for _, url in calls:
        assert env.client.get(url, headers=h).status_code == 200, url
    assert _page(env, f"/subjects/{HAND}?from=2024-03-04&to=2024-03-08", "auditor").status_code == 200
    varying = {"ts", "ts_ms", "idx", "channel"}
    for action, url in calls:
        api, console = _entries(env, action)[-2:]
        assert (api["channel"], console["channel"]) == ("api", "console"), action
        if action == "audit.read":  # the console's page of the log holds the API's read too: the ids differ
            assert api["detail"] == console["detail"] and api["actor"] == console["actor"] == "au-1"
            continue
        if action == "subject.compliance":  # judged as at the moment of the read: that is its `ts`
            assert api["detail"].pop("as_of") == api["ts"] and console["detail"].pop("as_of") == console["ts"]
        assert {k: v for k, v in api.items() if k not in varying} == \
               {k: v for k, v in console.items() if k not in varying}, action


def test_consultations_are_shown_to_the_auditor_only(env):
    add_hand_wearer(env)
    assert env.client.get(f"/v1/subjects/{HAND}", headers=env.h("approver")).status_code == 200  # ap-1 consults
    html = _page(env, f"/subjects/{HAND}", "auditor").text
    rows = _table(html, "consulted-table")
    assert "ap-1 (approver)" in rows and "home office" in rows and "<code>subject.read</code>" in rows
    assert "au-1 (auditor)" in rows  # the page's own reads are listed too
    assert re.findall(r"<td[^>]*>(api|console)</td>", rows)[-1] == "api"  # the oldest: ap-1 through the API
    env.client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)})
    for who in ("caseworker", "approver"):
        page = _page(env, f"/subjects/{HAND}", who).text
        assert 'id="consulted"' not in page and "Who consulted" not in page
    assert all(e["actor"] == "au-1" for e in _entries(env, "audit.read"))


def test_access_requests_about_the_wearer_are_listed_with_links(env):
    from api_fixtures import create_request

    req = create_request(env, "caseworker")  # about env.subjects[0]
    html = _page(env, f"/subjects/{env.subjects[0]}").text
    rows = _table(html, "request-table")
    assert f'href="/requests/{req["id"]}"' in rows and "cw-1 (home office)" in rows
    other = _page(env, f"/subjects/{env.subjects[1]}").text
    assert f'href="/requests/{req["id"]}"' not in other


def test_breach_history_is_paged_and_links_each_record(env, monkeypatch):
    from api.db.models import BreachRow
    from api.web.pages import subject

    who = env.subjects[0]
    with env.session() as s:
        ids = sorted(s.scalars(select(BreachRow.breach_id).where(BreachRow.subject_id == who)))
    assert len(ids) > 3
    monkeypatch.setattr(subject, "PAGE_SIZE", 3)
    seen, k = [], 1
    while True:
        html = _page(env, f"/subjects/{who}?breaches={k}").text if k == 1 else env.client.get(
            f"/subjects/{who}?breaches={k}").text
        seen += re.findall(r'<tr class="govuk-table__row" id="breach-([0-9a-f]{16})"', html)
        if "More records" not in html:
            break
        k += 1
    assert k == -(-len(ids) // 3) and sorted(seen) == ids
    assert all(f'href="/breaches/{b}"' in env.client.get(f"/subjects/{who}?breaches={1 + i // 3}").text
               for i, b in enumerate(seen[:4]))


def test_requester_gets_the_403_page_audited_and_an_unknown_wearer_the_404_page(env):
    r = _page(env, f"/subjects/{env.subjects[0]}", "requester")
    assert r.status_code == 403 and "You cannot see this page" in r.text and env.subjects[0] not in r.text
    refused = _entries(env, "access.refused")[-1]
    assert refused["actor"] == "police-1" and refused["detail"]["operation"] == "get_subject"
    assert refused["channel"] == "console"
    r = _page(env, "/subjects/S-NOBODY", "caseworker")
    assert r.status_code == 404 and "No such wearer" in r.text
    assert _entries(env, "subject.read") == []


def test_bad_query_is_a_400_page_naming_it_and_a_bad_period_is_shown_on_the_page(env):
    r = _page(env, f"/subjects/{env.subjects[0]}?from=4/3/2024&sort=1")
    assert r.status_code == 400
    assert "the page takes no parameter &#39;sort&#39;" in r.text and "from must be a date written" in r.text
    r = env.client.get(f"/subjects/{env.subjects[0]}?from=2024-01-01&to=2024-06-01")
    assert r.status_code == 200 and "a compliance summary covers at most 92 days" in r.text
    assert 'id="compliance-windows"' not in r.text


def test_queue_breach_and_request_pages_link_to_the_wearer(env):
    from api.db.models import BreachRow

    env.app.state.stream.flush()
    with env.session() as s:
        bid = add_curfew_record(s, env.home)
        who = s.get(BreachRow, bid).subject_id
    href = f'href="/subjects/{who}"'
    assert href in _page(env, f"/queue?wearer={who}&status=all").text
    assert href in env.client.get(f"/breaches/{bid}").text
    from api_fixtures import create_request

    req = create_request(env, "caseworker")
    assert f'href="/subjects/{env.subjects[0]}"' in env.client.get(f"/requests/{req['id']}").text
    requester_req = create_request(env, "requester")
    page = _page(env, f"/requests/{requester_req['id']}", "requester").text
    assert "/subjects/" not in page  # a requester is never offered the wearer's page


def test_attendance_extract_judges_by_the_homes_policy(env):
    """An approved attendance extract uses HOME/policy.json, not the defaults (it was a bug: extracts
    used the default policy while the wearer page used the home's). By hand: on the second night a fix
    a minute 5 km away; with the default coverage (300 s) each fix covers the minute to the next, so
    the 12 h window is 12 h absent; with ``coverage_s: 30`` each of the 720 fixes from 19:00 to 06:59
    covers 30 s of it, so 6 h absent and 6 h unknown."""
    add_hand_wearer(env)
    body = {"subject_id": HAND, "kind": "attendance", "ground": "absconded", "start": "2024-03-05T12:00:00Z",
            "end": "2024-03-06T12:00:00Z", "justification": "The wearer's attendance on the night of the "
            "alleged absconding is needed to confirm or rule it out.",
            "necessity": "No less intrusive source shows whether the wearer was home that night.",
            "reference": "CASE-9", "urgency": "routine"}
    r = env.client.post("/v1/access-requests", json=body, headers=env.h("caseworker"))
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = env.client.post(f"/v1/access-requests/{rid}/decision", headers=env.h("approver"), json={
        "outcome": "data_provided", "reason": "Necessary and proportionate for the stated ground and period."})
    assert r.status_code == 200, r.text

    def night() -> tuple:
        ex = env.client.get(f"/v1/access-requests/{rid}/extract", headers=env.h("caseworker"))
        assert ex.status_code == 200, ex.text
        (w,) = [w for w in ex.json()["windows"] if w["window_start"] == "2024-03-05T19:00:00.000Z"]
        return w["status"], w["home_s"], w["absent_s"], w["unknown_s"]

    assert night() == ("absent", 0, 12 * H, 0)
    (env.home / "policy.json").write_text(json.dumps({"coverage_s": 30}))
    assert night() == ("absent", 0, 6 * H, 6 * H)


def test_zones_are_named_with_their_article():
    from api.service.record_words import zone_kind_text

    assert [zone_kind_text(k) for k in ("curfew", "inclusion", "exclusion")] == [
        "a curfew zone", "an inclusion zone", "an exclusion zone"]
