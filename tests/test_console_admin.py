"""The console's /admin page (issue 12): users (the token shown once and
working; revoke), zones and subjects uploads through the API's service steps
with an error per item and nothing applied when any fails, the policy in
force, continuous detection's status; roles and audit entries (TestClient)."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from test_console_session import sign_in


@pytest.fixture()
def env(api_env):
    sign_in(api_env, "admin", "/admin")
    return api_env


def _csrf(env) -> str:
    r = env.client.get("/admin")
    assert r.status_code == 200, r.text
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def _all(env) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]


def _zone(zone_id: str, radius=50, lon=-2.9) -> dict:
    return {"type": "Feature", "id": zone_id, "properties": {"kind": "exclusion", "radius_m": radius},
            "geometry": {"type": "Point", "coordinates": [lon, 53.4]}}


def _upload(env, what: str, doc) -> object:
    body = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    return env.client.post(f"/admin/{what}", data={"csrf_token": _csrf(env)},
                           files={"file": (f"{what}.json", body, "application/json")})


def test_admin_page_shows_users_policy_and_detection_status(env):
    r = env.client.get("/admin")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "cw-1" in r.text and "police-1" in r.text
    policy = r.text[r.text.index('id="policy"'):]
    assert "coverage" in policy and "300 s (300,000 ms)" in policy  # the default coverage_ms
    status = env.app.state.stream.status(env.session())
    stream = r.text[r.text.index('id="stream-status"'):]
    assert f"{status['pending_fixes']} fixes, {status['pending_events']} events" in stream


def test_added_users_token_is_shown_once_and_works(env):
    r = env.client.post("/admin/users", data={"csrf_token": _csrf(env), "name": "cw-new", "role": "caseworker"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = re.search(r'<code class="tt-wrap tt-token">([^<]+)</code>', r.text).group(1)
    assert env.client.get("/v1/breaches/queue?limit=1", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert token not in env.client.get("/admin").text
    (entry,) = [e for e in _all(env) if e["action"] == "user.add" and e["detail"]["name"] == "cw-new"]
    assert entry["actor"] == "ad-1" and entry["channel"] == "console"


def test_add_user_errors_are_shown(env):
    r = env.client.post("/admin/users", data={"csrf_token": _csrf(env), "name": "x", "role": "requester",
                                              "org": "a bank"})
    assert r.status_code == 422 and "external agency" in r.text


def test_revoke_stops_the_token(env):
    r = env.client.post(f"/admin/users/{env.user_ids['caseworker2']}/revoke", data={"csrf_token": _csrf(env)})
    assert r.status_code == 200
    assert env.client.get("/v1/breaches/queue", headers=env.h("caseworker2")).status_code == 401
    (entry,) = [e for e in _all(env) if e["action"] == "user.revoke" and e.get("channel") == "console"]
    assert entry["detail"]["name"] == "cw-2" and entry["channel"] == "console" and entry["actor"] == "ad-1"


def test_zones_upload_applies_from_now_as_the_api_does(env):
    from api.db.models import ZoneRow, ZoneVersion

    r = _upload(env, "zones", {"type": "FeatureCollection", "features": [_zone("Z-UP-1"), _zone("Z-UP-2", 80)]})
    assert r.status_code == 200, r.text
    assert "feature 1 (&#39;Z-UP-1&#39;): added (version 1)" in r.text
    with env.session() as s:
        assert set(s.scalars(select(ZoneRow.zone_id).where(ZoneRow.zone_id.like("Z-UP-%")))) == {"Z-UP-1", "Z-UP-2"}
        (v,) = s.scalars(select(ZoneVersion).where(ZoneVersion.zone_id == "Z-UP-1")).all()
        assert v.effective_from_ms is not None and abs(v.effective_from_ms - env.clock()) < 60_000
    adds = [e for e in _all(env) if e["action"] == "zone.add"]
    assert len(adds) == 2 and {e["channel"] for e in adds} == {"console"}
    assert adds[0]["detail"]["zone"] == env.app.state.audit.pseudonym("zone:Z-UP-1")  # never the zone id itself


def test_invalid_items_are_each_named_and_nothing_is_applied(env):
    from api.db.models import ZoneRow

    bad = _zone("Z-BAD-2")
    bad["properties"]["radius_m"] = -5
    r = _upload(env, "zones", {"type": "FeatureCollection", "features": [_zone("Z-OK-1"), bad, {"type": "Feature"}]})
    assert r.status_code == 422
    summary = r.text[r.text.index('id="upload-result"'):r.text.index("</ul>", r.text.index('id="upload-result"'))]
    items = re.findall(r"<li><a [^>]+>([^<]+)</a></li>", summary)
    assert [i.split(":")[0] for i in items] == ["feature 2 (&#39;Z-BAD-2&#39;)", "feature 3 (None)"]
    assert "radius" in items[0] and "id" in items[1]
    with env.session() as s:
        assert s.scalar(select(ZoneRow).where(ZoneRow.zone_id == "Z-OK-1")) is None
    assert not [e for e in _all(env) if e["action"] == "zone.add"]


def test_subjects_upload_per_item_and_applied(env):
    from api.db.models import AssignmentRow

    assert _upload(env, "zones", {"type": "FeatureCollection", "features": [_zone("Z-S-1")]}).status_code == 200
    good = {"subject_id": "S-UP-1", "device_id": "D-UP-1", "start": "2099-01-01T00:00:00Z", "zones": ["Z-S-1"]}
    unknown_zone = {"subject_id": "S-UP-2", "device_id": "D-UP-2", "start": "2099-01-01T00:00:00Z",
                    "zones": ["Z-NOPE"]}
    r = _upload(env, "subjects", {"subjects": [good, unknown_zone]})
    assert r.status_code == 422 and "assignment 2 (&#39;S-UP-2&#39;)" in r.text and "Z-NOPE" in r.text
    assert "assignment 1 (" not in r.text[r.text.index('id="upload-result"'):r.text.index("</ul>")]
    with env.session() as s:
        assert s.scalar(select(AssignmentRow).where(AssignmentRow.subject_id == "S-UP-1")) is None
    r = _upload(env, "subjects", {"subjects": [good]})
    assert r.status_code == 200 and "assignment 1 (&#39;S-UP-1&#39;): added" in r.text
    with env.session() as s:
        assert s.scalar(select(AssignmentRow.device_id).where(AssignmentRow.subject_id == "S-UP-1")) == "D-UP-1"
    (entry,) = [e for e in _all(env) if e["action"] == "assignment.add"]
    assert entry["subject"] == env.app.state.audit.pseudonym("S-UP-1") and entry["channel"] == "console"


def test_a_file_that_is_not_json_or_not_a_collection_is_refused(env):
    r = _upload(env, "zones", b"{not json")
    assert r.status_code == 422 and "not JSON" in r.text
    r = _upload(env, "subjects", {"zones": []})
    assert r.status_code == 422 and "SUBJECTS.json" in r.text


def test_auditor_gets_the_403_page_and_forms_need_csrf(env):
    r = env.client.post("/admin/users", data={"name": "x", "role": "caseworker"})
    assert r.status_code == 403 and "security token" in r.text
    env.client.post("/logout", data={"csrf_token": _csrf(env)})
    sign_in(env, "auditor", "/audit")
    r = env.client.get("/admin")
    assert r.status_code == 403 and "You cannot see this page" in r.text
