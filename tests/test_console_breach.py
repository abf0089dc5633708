"""`/breaches/{breach_id}` in the console: the record in words, its evidence
(only the fixes of its own window plus coverage), its history, the audit
entries (the API's get_breach, channel console; the evidence as a
consultation on ground bail_breach) and the `breach_evidence` setting,
through the app itself (TestClient; the browser journey is in
tests/test_console_breach_browser.py)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from breach_records import add_curfew_record
from test_console_session import sign_in


@pytest.fixture()
def env(api_env):
    return api_env


_entries = audit_entries

def _breach(env):
    """The curfew record `add_curfew_record` adds (once per test home)."""
    from api.db.models import BreachRow

    env.app.state.stream.flush()  # detection's pending pass is done before the record is added (not withdrawn)
    with env.session() as s:
        found = s.scalars(select(BreachRow).where(BreachRow.type == "curfew_absence")).first()
        if found is None:
            found = s.get(BreachRow, add_curfew_record(s, env.home))
        s.expunge(found)
        return found


def _data_url(html: str) -> str:
    return re.search(r'data-tt-map="(/breaches/[^"#]+/evidence\.json\?t=[^"#]+)#map"', html).group(1)


def _shown_times(html: str) -> list[str]:
    table = html.split('id="fixes"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<time datetime="([^"]+)"', table)


def test_page_explains_the_record_in_london_time_with_the_policy_thresholds(env):
    b = _breach(env)
    sign_in(env)
    r = env.client.get(f"/breaches/{b.breach_id}")
    assert r.status_code == 200, r.text
    assert "Curfew absence, wearer " + b.subject_id in r.text
    assert "Curfew grace in the policy in force: 15 min." in r.text
    assert "Priority 2: an absence or entry long enough to count." in r.text
    assert f'<time datetime="{b.start}"' in r.text and " GMT</time>" in r.text  # March 2024: GMT
    assert f"Zone {b.zone_id}" in r.text and 'id="zone-schedule"' in r.text and "Europe/London time" in r.text
    url = _data_url(r.text)
    assert f'data-tt-map="{url}#map"' in r.text and f'data-tt-timeline="{url}#timeline"' in r.text
    assert "<script>" not in r.text and "application/json" not in r.text  # no inline script; the data is a URL


def test_evidence_is_only_the_fixes_of_the_window_plus_coverage(env):
    from api.service.breach_evidence import read_evidence  # noqa: F401 (the page's reader; checked independently)
    from api.service.stream.detector_state import home_policy
    from trails.store import read_store_fixes
    from trails.timestamps import format_ms

    b = _breach(env)
    cov = home_policy(env.home).coverage_ms
    every = read_store_fixes(env.home, devices=[b.device_id]).ts_ms
    expected = [format_ms(int(t)) for t in np.sort(every) if b.start_ms - cov <= t <= b.end_ms + cov]
    outside = int(np.sum((every < b.start_ms - cov) | (every > b.end_ms + cov)))
    assert expected and outside > 0  # the device has fixes the page must leave out
    sign_in(env)
    r = env.client.get(f"/breaches/{b.breach_id}")
    assert _shown_times(r.text) == expected
    got = env.client.get(_data_url(r.text))
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    data = got.json()["map"]
    fixes = [f for f in data["features"] if f["properties"]["role"] == "fix"]
    zones = [f for f in data["features"] if f["properties"]["role"] == "zone"]
    assert len(zones) == 1
    assert sorted(t for f in fixes for t in f["properties"]["ts"]) == expected  # the map: the same fixes
    assert all(len(f["geometry"]["coordinates"]) == len(f["properties"]["n"]) for f in fixes)
    assert {f["properties"]["state"] for f in fixes} <= {"IN", "OUT", "UNCERTAIN"}
    timeline = got.json()["timeline"]
    assert len(timeline["t"]) == len(expected) == len(timeline["battery"]) == len(timeline["state"])


def test_the_fix_table_is_paged_and_every_fix_is_on_some_page(env, monkeypatch):
    from api.web.pages import breach

    b = _breach(env)
    sign_in(env)
    everything = _shown_times(env.client.get(f"/breaches/{b.breach_id}").text)
    monkeypatch.setattr(breach, "FIX_PAGE", 7)
    pages, k = [], 1
    while True:
        html = env.client.get(f"/breaches/{b.breach_id}?fixes={k}").text
        pages.append(_shown_times(html))
        if "Later fixes" not in html:
            break
        k += 1
    assert len(pages) == -(-len(everything) // 7) > 1 and all(len(p) == 7 for p in pages[:-1])
    assert [t for p in pages for t in p] == everything
    assert f"{len(everything)} fixes from" in html  # the summary counts them all


def test_states_are_the_geofence_classification_of_the_records_zone(env):
    from api.service.breach_evidence import breach_zone
    from api.service.stream.detector_state import home_policy
    from geofence.classify import classify_points
    from geofence.compile import compile_zones
    from trails.store import read_store_fixes

    b = _breach(env)
    policy = home_policy(env.home)
    with env.session() as s:
        zone = breach_zone(s, b, policy)
    f = read_store_fixes(env.home, start_ms=b.start_ms - policy.coverage_ms, end_ms=b.end_ms + policy.coverage_ms + 1,
                         devices=[b.device_id])
    compiled = compile_zones([zone], policy.crs)
    acc = np.where(np.isnan(f.accuracy_m), policy.default_accuracy_m, f.accuracy_m)
    codes = classify_points(f.x, f.y, acc, compiled.index_of(zone.zone_id), compiled)
    sign_in(env)
    r = env.client.get(f"/breaches/{b.breach_id}")
    shown = re.findall(r'<tr class="govuk-table__row" data-state="([A-Z]*)"', r.text)
    assert shown == [("OUT", "UNCERTAIN", "IN")[c] for c in codes[np.argsort(f.ts_ms, kind="stable")]]


def test_audit_is_the_apis_get_breach_plus_channel_and_the_evidence_consultation(env):
    b = _breach(env)
    assert env.client.get(f"/v1/breaches/{b.breach_id}", headers=env.h("caseworker")).status_code == 200
    sign_in(env)
    assert env.client.get(f"/breaches/{b.breach_id}").status_code == 200
    api, console = _entries(env, "breach.read")[-2:]
    assert api["channel"] == "api" and console["channel"] == "console"
    varying = {"ts", "ts_ms", "idx", "channel"}  # when, where in the log, which way in: nothing else differs
    assert set(api) == set(console)
    assert {k: v for k, v in api.items() if k not in varying} == {k: v for k, v in console.items() if k not in varying}
    (ev,) = _entries(env, "breach.evidence")
    assert ev["ground"] == "bail_breach" and ev["justification_ref"] == f"breach:{b.breach_id}"
    assert ev["channel"] == "console" and ev["actor"] == "cw-1"
    assert ev["subject"] == env.app.state.audit.pseudonym(b.subject_id) and b.subject_id not in json.dumps(ev)
    assert ev["detail"]["breach_id"] == b.breach_id and ev["detail"]["n_fixes"] > 0 and ev["detail"]["coverage_s"] == 300


def test_breach_evidence_request_shows_no_fixes_and_audits_no_consultation(env):
    env.app.state.settings = env.app.state.settings.model_copy(update={"breach_evidence": "request"})
    b = _breach(env)
    sign_in(env)
    r = env.client.get(f"/breaches/{b.breach_id}")
    assert r.status_code == 200
    assert 'id="evidence-request"' in r.text and "request access" in r.text
    assert 'id="fixes"' not in r.text and "evidence.json" not in r.text and "data-tt-timeline" not in r.text
    assert _entries(env, "breach.evidence") == [] and len(_entries(env, "breach.read")) == 1


def test_request_access_link_prefills_the_new_request_with_wearer_ground_and_breach(env):
    """With evidence by request only, the breach page's link opens /requests/new with the
    wearer, the ground `bail_breach` and this record already chosen (nothing is sent)."""
    env.app.state.settings = env.app.state.settings.model_copy(update={"breach_evidence": "request"})
    b = _breach(env)
    sign_in(env)
    page = env.client.get(f"/breaches/{b.breach_id}").text
    href = re.search(r'href="(/requests/new\?[^"]+)"', page).group(1).replace("&amp;", "&")
    form = env.client.get(href)
    assert form.status_code == 200
    assert re.search(r'name="subject_id"[^>]*value="' + re.escape(b.subject_id) + '"', form.text)
    assert re.search(r'id="ground-bail_breach"[^>]*checked', form.text)
    assert re.search(r'<option value="' + re.escape(b.breach_id) + r'" selected>', form.text)
    assert not re.search(r'id="ground-absconded"[^>]*checked', form.text)


def test_setting_comes_from_settings_json_and_is_validated(tmp_path):
    from api.settings import Settings
    from trails.errors import InputError

    assert Settings.from_home(tmp_path).breach_evidence == "window"
    (tmp_path / "settings.json").write_text(json.dumps({"breach_evidence": "request"}))
    assert Settings.from_home(tmp_path).breach_evidence == "request"
    (tmp_path / "settings.json").write_text(json.dumps({"breach_evidence": "everything"}))
    with pytest.raises(InputError, match="breach_evidence"):
        Settings.from_home(tmp_path)


def test_unknown_breach_is_a_404_page(env):
    sign_in(env)
    r = env.client.get("/breaches/00000000000000ff")
    assert r.status_code == 404 and "breach 00000000000000ff not found" in r.text
    assert env.client.get("/breaches/NOT-AN-ID").status_code in (404, 422)


@pytest.mark.parametrize("who", ["caseworker", "approver", "auditor", "admin"])
def test_staff_roles_see_the_page(env, who):
    sign_in(env, who)
    assert env.client.get(f"/breaches/{_breach(env).breach_id}").status_code == 200


def test_requesters_are_refused_like_the_api_and_the_refusal_is_audited(env):
    sign_in(env, "requester")
    r = env.client.get(f"/breaches/{_breach(env).breach_id}")
    assert r.status_code == 403
    refused = _entries(env, "access.refused")[-1]
    assert refused["detail"]["operation"] == "get_breach" and refused["channel"] == "console"
    assert _entries(env, "breach.read") == []


def test_status_with_note_and_assign_appear_in_the_history(env):
    b = _breach(env)
    sign_in(env)
    page = env.client.get(f"/breaches/{b.breach_id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = env.client.post(f"/breaches/{b.breach_id}/assign", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/breaches/{b.breach_id}#history"
    r = env.client.post(f"/breaches/{b.breach_id}/status", data={"csrf_token": token, "status": "in_review",
                                                                 "note": "Called the wearer."})
    assert r.status_code == 200
    history = r.text.split('id="history-list"', 1)[1].split("</ol>", 1)[0]
    assert "cw-1 moved it from New to New, assigned to cw-1." in history
    assert "moved it from New to In review, assigned to cw-1. Note: <q>Called the wearer.</q>" in history
    assert 'id="record-assignee">cw-1<' in r.text
    r = env.client.post(f"/breaches/{b.breach_id}/status", data={"status": "actioned"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token


def test_queue_rows_link_to_the_record(env):
    sign_in(env)
    r = env.client.get("/queue")
    ids = re.findall(r'<tr class="govuk-table__row" id="breach-([0-9a-f]{16})"', r.text)
    assert ids and all(f'href="/breaches/{i}"' in r.text for i in ids)


def test_the_map_data_is_the_audited_consultation_and_nothing_else(env):
    """The data URL serves exactly the fixes the page's one breach.evidence entry names (their digest), to
    the session that saw the page, and adds no audit entry; any other use is refused and audited."""
    from api.web.evidence_link import fixes_digest

    b = _breach(env)
    sign_in(env)
    url = _data_url(env.client.get(f"/breaches/{b.breach_id}").text)
    got = env.client.get(url)
    assert got.status_code == 200
    (ev,) = _entries(env, "breach.evidence")  # the page's, and only it: the data read is that consultation
    fixes = [f for f in got.json()["map"]["features"] if f["properties"]["role"] == "fix"]
    assert sum(len(f["properties"]["n"]) for f in fixes) == ev["detail"]["n_fixes"] == len(got.json()["timeline"]["t"])
    assert len(ev["detail"]["fixes_sha256"]) == 64 and ev["detail"]["fixes_sha256"] != fixes_digest()
    refused_before = len(_entries(env, "access.refused"))
    token = url.split("?t=")[1]
    expires, mac = token.split(".")
    for bad in (f"{expires}.{'0' * 64}", "", f"{int(expires) - 10**6}.{mac}", "x.y"):
        r = env.client.get(f"/breaches/{b.breach_id}/evidence.json?t={bad}")
        assert r.status_code == 403 and "features" not in r.text and "timeline" not in r.text, bad
    assert len(_entries(env, "access.refused")) == refused_before + 4
    assert len(_entries(env, "breach.evidence")) == 1
    env.client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                                env.client.get("/queue").text).group(1)})
    sign_in(env)  # a new session: the old page's link is not its own
    assert env.client.get(url).status_code == 403
