"""After the audit log fails an integrity check the service fails closed
(issue 10 item 9): nothing is released or changed (503, saying why) until an
operator acts, and /healthz and /v1/audit/checkpoint say so instead of serving
a stale checkpoint with 200."""
from __future__ import annotations

import pytest

from api_fixtures import api_env, api_template, close_env, request_body  # noqa: F401 (fixtures)
from test_audit_integrity import _forge_tail


@pytest.fixture()
def env(api_env):
    return api_env


def _tamper(env) -> None:
    """Someone with write access to the database appends a row; the next commit's checkpoint step finds it."""
    _forge_tail(env.home)
    r = env.client.get("/v1/breaches/queue?limit=1", headers=env.h("caseworker"))
    assert r.status_code == 200  # served: the read was recorded before the checkpoint step looked


def test_tampering_found_makes_the_service_refuse_releases_and_changes(env):
    assert env.client.get("/healthz").json() == {"status": "ok", "audit": "ok"}
    _tamper(env)
    problem = env.app.state.audit.integrity_problem()
    assert problem and "no MAC" in problem
    health = env.client.get("/healthz")
    assert health.status_code == 503 and health.json() == {"status": "audit_failed", "audit": problem}
    want = (f"the audit log failed an integrity check ({problem}); nothing is released or changed until an operator "
            f"acts (see `tagtrail audit verify` and `tagtrail audit resume --help`)")
    for method, url, who, body in (
            ("GET", "/v1/breaches/queue", "caseworker", None),
            ("GET", f"/v1/subjects/{env.subjects[0]}/breaches", "caseworker", None),
            ("POST", "/v1/access-requests", "caseworker", request_body(env.subjects[0])),
            ("GET", "/v1/reports/breaches", "auditor", None),
            ("POST", "/v1/fixes", "feed", {"fixes": []})):
        r = env.client.request(method, url, json=body, headers=env.h(who))
        assert r.status_code == 503, (url, r.text)
        assert r.json() == {"detail": want}
    # what helps investigate stays open, and says what is wrong
    cp = env.client.get("/v1/audit/checkpoint", headers=env.h("auditor"))
    assert cp.status_code == 503
    assert cp.json()["detail"].startswith(f"the audit log failed an integrity check ({problem}); the latest checkpoint")
    assert env.client.get("/v1/breaches/stream-status", headers=env.h("auditor")).status_code == 200


def test_the_failed_state_survives_a_restart(env, tmp_path):
    from api_fixtures import make_env

    _tamper(env)
    close_env(env)
    again = make_env(env.home, tokens=env.tokens, create_users=False)
    try:
        assert again.client.get("/healthz").status_code == 503
        assert again.client.get("/v1/breaches/queue", headers=again.h("caseworker")).status_code == 503
    finally:
        close_env(again)
