"""The console's sign-in, sessions, CSRF, headers, London times and the audit
channel, through the app itself (TestClient; the browser journeys are in
tests/test_console_browser.py)."""
from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)


@pytest.fixture()
def env(api_env):
    return api_env


def _login_form(client, next_path: str = "/queue"):
    r = client.get("/login", params={"next": next_path})
    assert r.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def sign_in(env, who: str = "caseworker", next_path: str = "/queue"):
    token = _login_form(env.client, next_path)
    r = env.client.post("/login", data={"token": env.tokens[who], "csrf_token": token, "next": next_path},
                        follow_redirects=False)
    assert r.status_code == 303, r.text
    return r


def _csrf(env, path: str = "/queue") -> str:
    r = env.client.get(path)
    assert r.status_code == 200, r.text
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def _entries(env, action: str) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]


def test_signed_out_page_redirects_to_login_with_the_way_back(env):
    r = env.client.get("/queue?priority=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/queue%3Fpriority%3D1"


def test_sign_in_sets_a_strict_httponly_cookie_and_stores_only_its_hash(env):
    from api.db.models import ConsoleSession

    r = sign_in(env)
    assert r.headers["location"] == "/queue"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("tagtrail_session="))
    flags = {p.strip().lower() for p in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags  # plain http here
    session_id = cookie.split(";")[0].split("=", 1)[1]
    with env.session() as s:
        (row,) = s.scalars(select(ConsoleSession)).all()
    assert row.id_sha256 == hashlib.sha256(session_id.encode()).hexdigest() and row.ended_ms is None
    assert env.client.get("/queue").status_code == 200
    (entry,) = _entries(env, "console.sign_in")
    assert entry["actor"] == "cw-1" and entry["channel"] == "console"


def test_cookie_is_secure_over_https(env):
    from fastapi.testclient import TestClient

    client = TestClient(env.app, base_url="https://testserver")
    r = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = client.post("/login", data={"token": env.tokens["caseworker"], "csrf_token": token},
                    follow_redirects=False)
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("tagtrail_session="))
    assert "secure" in {p.strip().lower() for p in cookie.split(";")}


def test_wrong_token_revoked_user_and_feed_cannot_sign_in(env):
    for token in ("not-a-token", env.tokens["revoked"], env.tokens["feed"]):
        csrf = _login_form(env.client)
        r = env.client.post("/login", data={"token": token, "csrf_token": csrf}, follow_redirects=False)
        assert r.status_code == 401 and "Enter a valid access token" in r.text
        assert "tagtrail_session" not in r.headers.get("set-cookie", "")


def test_login_without_its_csrf_token_is_403(env):
    _login_form(env.client)
    r = env.client.post("/login", data={"token": env.tokens["caseworker"]}, follow_redirects=False)
    assert r.status_code == 403
    r = env.client.post("/login", data={"token": env.tokens["caseworker"], "csrf_token": "x" * 43},
                        follow_redirects=False)
    assert r.status_code == 403


def test_post_without_or_with_a_wrong_csrf_token_is_403_and_changes_nothing(env):
    from api.db.models import BreachRow

    sign_in(env)
    with env.session() as s:
        b = s.scalars(select(BreachRow).where(BreachRow.status == "new")).first()
    for data in ({"status": "actioned"}, {"status": "actioned", "csrf_token": "0" * 64}):
        r = env.client.post(f"/queue/{b.breach_id}/status", data=data, follow_redirects=False)
        assert r.status_code == 403 and "security token" in r.text
        r = env.client.post("/logout", data={k: v for k, v in data.items() if k != "status"}, follow_redirects=False)
        assert r.status_code == 403
    with env.session() as s:
        assert s.get(BreachRow, b.breach_id).status == "new"
    assert env.client.get("/queue").status_code == 200  # still signed in


def test_logout_ends_the_session_on_the_server(env):
    sign_in(env)
    cookie = env.client.cookies.get("tagtrail_session")
    r = env.client.post("/logout", data={"csrf_token": _csrf(env)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    env.client.cookies.set("tagtrail_session", cookie)  # a copy of the old cookie is no use
    assert env.client.get("/queue", follow_redirects=False).status_code == 303
    (entry,) = _entries(env, "console.sign_out")
    assert entry["actor"] == "cw-1" and entry["channel"] == "console"


def test_session_ends_after_the_idle_timeout_and_not_before(env):
    sign_in(env)
    idle_ms = env.app.state.settings.console_idle_s * 1000
    assert idle_ms == 30 * 60 * 1000  # the default
    env.clock.offset_ms += idle_ms - 5_000
    assert env.client.get("/queue", follow_redirects=False).status_code == 200  # used: the idle time restarts
    env.clock.offset_ms += idle_ms - 5_000
    assert env.client.get("/queue", follow_redirects=False).status_code == 200
    env.clock.offset_ms += idle_ms + 1_000
    r = env.client.get("/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    env.clock.offset_ms = 0  # back in time does not revive it: it was ended
    assert env.client.get("/queue", follow_redirects=False).status_code == 303


def test_session_ends_twelve_hours_after_sign_in_however_busy(env):
    sign_in(env)
    assert env.app.state.settings.console_max_s == 12 * 3600  # the default
    for _ in range(24):  # a request every 29 min 50 s: never idle, for 11 h 56 min
        env.clock.offset_ms += 29 * 60_000 + 50_000
        assert env.client.get("/queue", follow_redirects=False).status_code == 200
    env.clock.offset_ms += 5 * 60_000  # 12 h 1 min after sign-in
    r = env.client.get("/queue", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_ended_sessions_are_deleted_a_day_later_when_someone_signs_in(env):
    from api.db.models import ConsoleSession

    sign_in(env)
    env.client.post("/logout", data={"csrf_token": _csrf(env)})
    sign_in(env, "approver")  # an idle one: never signed out
    env.client.cookies.clear()
    with env.session() as s:
        assert s.query(ConsoleSession).count() == 2
    env.clock.offset_ms += 86_400_000 - 60_000  # not yet a day
    sign_in(env, "auditor")
    env.client.cookies.clear()
    with env.session() as s:
        assert s.query(ConsoleSession).count() == 3
    env.clock.offset_ms += 2 * 60_000  # a day and a minute: the first two go
    sign_in(env, "caseworker2")
    with env.session() as s:
        assert s.query(ConsoleSession).count() == 2
    assert len(_entries(env, "console.sign_in")) == 4  # the audit log keeps every sign-in


def test_revoking_the_user_ends_their_session(env):
    from api.access.users import revoke_user

    sign_in(env)
    with env.session() as s:
        revoke_user(s, env.app.state.audit, name="cw-1")
        s.commit()
    assert env.client.get("/queue", follow_redirects=False).status_code == 303


def test_next_never_leaves_the_site(env):
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = sign_in(env, next_path=evil)
        assert r.headers["location"] == "/"


def test_requester_gets_the_403_page_and_the_refusal_is_audited(env):
    sign_in(env, "requester")
    r = env.client.get("/queue")
    assert r.status_code == 403 and "You cannot see this page" in r.text
    (entry,) = [e for e in _entries(env, "access.refused") if e["detail"]["operation"] == "breach_queue"]
    assert entry["actor"] == "police-1" and entry["channel"] == "console" and entry["detail"]["status"] == 403


def test_security_headers_on_console_static_and_api(env):
    sign_in(env)
    for path in ("/login", "/queue", "/static/console.css", "/healthz", "/no-such-page"):
        h = env.client.get(path).headers
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp and "unsafe-inline" not in csp, path
        assert "http" not in csp  # no remote origin without a tile server
        assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer", path


def test_tile_server_origin_is_the_only_remote_origin_and_only_for_images(api_template, tmp_path, monkeypatch):
    from api_fixtures import close_env, copy_env

    monkeypatch.setenv("TAGTRAIL_TILE_URL", "https://tiles.hub.internal:8443/osm/{z}/{x}/{y}.png")
    env = copy_env(api_template, tmp_path / "home")
    try:
        csp = env.client.get("/login").headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["img-src"] == "'self' data: https://tiles.hub.internal:8443"
        assert [d for d, v in directives.items() if "tiles" in v] == ["img-src"]
    finally:
        close_env(env)


def test_pages_have_no_inline_script_or_style(env):
    sign_in(env)
    for path in ("/login", "/queue", "/queue?status=withdrawn"):
        html = env.client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\sstyle=", html) and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


def test_london_time_names_the_offset_with_utc_on_hover():
    from api.service.london import london_time
    from api.web.london import time_element

    march = 1_709_510_400_000 + 6 * 86_400_000 + 19 * 3_600_000  # 2024-03-10T19:00Z: still GMT
    assert london_time(march).text == "10 Mar 2024 19:00 GMT"
    summer = 1_717_268_400_000  # 2024-06-01T19:00Z = 20:00 BST
    assert london_time(summer).text == "1 Jun 2024 20:00 BST"
    assert str(time_element(summer)) == ('<time datetime="2024-06-01T19:00:00.000Z" title="UTC 2024-06-01 19:00:00">'
                                         '1 Jun 2024 20:00 BST</time>')
    # the spring change (31 Mar 2024 01:00Z) and the autumn one (27 Oct 2024 01:00Z)
    assert london_time(1_711_846_800_000 - 1).text == "31 Mar 2024 00:59 GMT"
    assert london_time(1_711_846_800_000).text == "31 Mar 2024 02:00 BST"
    assert london_time(1_729_990_800_000 - 1).text == "27 Oct 2024 01:59 BST"
    assert london_time(1_729_990_800_000).text == "27 Oct 2024 01:00 GMT"


def test_queue_read_and_status_change_audit_as_the_api_does_with_their_channel(env):
    from api.db.models import BreachRow

    with env.session() as s:
        b = s.scalars(select(BreachRow).where(BreachRow.status == "new").order_by(BreachRow.breach_id)).first()
    sign_in(env)
    csrf = _csrf(env, f"/queue?wearer={b.subject_id}")
    r = env.client.post(f"/queue/{b.breach_id}/status", data={"csrf_token": csrf, "status": "in_review",
                                                                "note": "called the wearer", "back": "priority=2"},
                        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/queue?priority=2#breach-{b.breach_id}"
    api = env.client.get("/v1/breaches/queue", params={"subject_id": b.subject_id}, headers=env.h("caseworker"))
    assert api.status_code == 200
    reads = _entries(env, "breach.queue.read")
    console, via_api = reads[0], reads[-1]
    assert console["channel"] == "console" and via_api["channel"] == "api"
    assert console["subject"] == via_api["subject"]
    assert set(console["detail"]) == set(via_api["detail"])
    (change,) = _entries(env, "breach.status")
    assert change["channel"] == "console" and change["detail"]["to"] == {"status": "in_review", "assignee": None}
    assert change["detail"]["note_sha256"] == hashlib.sha256(b"called the wearer").hexdigest()
    history = env.client.get(f"/v1/breaches/{b.breach_id}", headers=env.h("caseworker")).json()["history"]
    assert [(h["to_status"], h["note"], h["user"]) for h in history] == [("in_review", "called the wearer", "cw-1")]


def test_queue_refuses_an_unknown_filter_instead_of_ignoring_it(env):
    sign_in(env)
    r = env.client.get("/queue?colour=red&priority=9")
    assert r.status_code == 400
    assert "the queue has no filter &#39;colour&#39;" in r.text and "priority must be 1, 2, 3 or 4" in r.text


#: What each role's menu lists, in order, written out from the role prose in
#: api/access/permissions.py (who works the queue, who asks, who decides, who oversees).
MENUS = {
    "caseworker": ["Queue", "Casework", "Devices", "Requests"],
    "approver": ["Queue", "Casework", "Devices", "Requests", "Approvals", "Reports"],
    "auditor": ["Queue", "Casework", "Devices", "Requests", "Reports", "Audit"],
    "admin": ["Queue", "Casework", "Devices", "Requests", "Reports", "Audit", "Admin"],
    "requester": ["Requests"],
}


@pytest.mark.parametrize("who", sorted(MENUS))
def test_each_role_sees_its_menu_and_starts_on_its_first_page(env, who):
    """The service navigation lists the pages the role may open, and / sends the role to the first."""
    sign_in(env, who, next_path="/requests")
    r = env.client.get("/requests")
    assert r.status_code == 200
    labels = re.findall(r'class="govuk-service-navigation__link" href="[^"]+"[^>]*>\s*(?:<strong[^>]*>)?([^<]+?)\s*<',
                        r.text)
    assert labels == MENUS[who]
    start = env.client.get("/", follow_redirects=False)
    assert start.status_code == 303 and start.headers["location"] == {"Queue": "/queue", "Requests": "/requests"}[
        MENUS[who][0]]


def test_a_refused_change_shows_the_error_page_with_who_is_signed_in(env):
    """A change the service refuses after its transaction was rolled back still gets the error
    page (404 here), with the menu and the signed-in name: no server error."""
    sign_in(env)
    r = env.client.post("/queue/0123456789abcdef/assign", data={"csrf_token": _csrf(env)}, follow_redirects=False)
    assert r.status_code == 404
    assert "<title>No such record - tagtrail</title>" in r.text
    assert "breach 0123456789abcdef not found" in r.text
    assert "cw-1 (caseworker)" in r.text
    r = env.client.get("/breaches/0123456789abcdef")
    assert r.status_code == 404 and "cw-1 (caseworker)" in r.text
