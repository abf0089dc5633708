"""The role x endpoint matrix, straight from api.access.permissions.PERMISSIONS:
every allowed role gets a 2xx (after setting up what the call needs), every
other role a 403 with a message; no token, a wrong scheme, an unknown token
and a revoked token are all 401 with ``WWW-Authenticate: Bearer``."""
from __future__ import annotations

import re

import pytest

from api.db.models import ROLES
from api.access.permissions import PERMISSIONS, is_allowed
from api_fixtures import api_template, close_env, copy_env, create_request, decide, ts  # noqa: F401

#: The user key (tests/api_fixtures.py USERS) acting in each role.
ROLE_USER = {"caseworker": "caseworker", "approver": "approver", "auditor": "auditor", "admin": "admin",
             "requester": "requester", "feed": "feed"}
assert set(ROLE_USER) == set(ROLES)


@pytest.fixture(scope="module")
def env(api_template, tmp_path_factory):
    e = copy_env(api_template, tmp_path_factory.mktemp("roles") / "home")
    yield e
    close_env(e)


def _maker(who: str) -> str:
    """Who makes the request a call needs: the caller when their role may ask, else a caseworker."""
    return who if is_allowed("create_access_request", ROLE_USER.get(who, who)) else "caseworker"


def _call(env, op: str, who: str):
    """(method, url, json) for `op` called by `who`, with its preconditions set up."""
    if op == "create_access_request":
        from api_fixtures import request_body
        return "POST", "/v1/access-requests", request_body(env.subjects[0])
    if op == "check_identity":
        req = create_request(env, "requester")
        return "POST", f"/v1/access-requests/{req['id']}/identity-check", {"note": "Called back on the force switchboard number."}
    if op == "decide_access_request":
        req = create_request(env, "caseworker")
        return "POST", f"/v1/access-requests/{req['id']}/decision", {
            "outcome": "rejected_other", "reason": "The case was closed before the request was reviewed."}
    if op == "withdraw_access_request":
        req = create_request(env, _maker(who))
        return "POST", f"/v1/access-requests/{req['id']}/withdraw", None
    if op == "get_access_request":
        req = create_request(env, _maker(who))
        return "GET", f"/v1/access-requests/{req['id']}", None
    if op == "list_access_requests":
        return "GET", "/v1/access-requests?status=pending", None
    if op == "download_extract":
        maker = _maker(who)
        req = create_request(env, maker, start=ts(1, 0), end=ts(1, 6))
        if maker == "requester":
            r = env.client.post(f"/v1/access-requests/{req['id']}/identity-check",
                                json={"note": "Called back on the force switchboard number."}, headers=env.h("approver"))
            assert r.status_code == 200, r.text
        assert decide(env, req["id"]).status_code == 200
        return "GET", f"/v1/access-requests/{req['id']}/extract?format=csv", None
    if op == "list_subject_breaches":
        return "GET", f"/v1/subjects/{env.subjects[0]}/breaches", None
    if op == "report_access_requests":
        return "GET", "/v1/reports/access-requests", None
    if op == "report_breaches":
        return "GET", "/v1/reports/breaches?format=csv", None
    if op == "post_fixes":
        return "POST", "/v1/fixes", {"fixes": [{"device_id": "D-000000", "ts": ts(1, 7), "lat": 53.4, "lon": -2.9}]}
    if op == "breach_queue":
        return "GET", "/v1/breaches/queue?limit=5", None
    if op == "set_breach_status":
        from sqlalchemy import select

        from api.db.models import BreachRow
        with env.session() as s:
            bid = s.scalars(select(BreachRow.breach_id).where(BreachRow.status != "withdrawn")).first()
        return "POST", f"/v1/breaches/{bid}/status", {"status": "in_review"}
    if op == "stream_status":
        return "GET", "/v1/breaches/stream-status", None
    if op == "list_assignments":
        return "GET", "/v1/admin/assignments", None
    if op == "upsert_assignment":  # from now on (a start in the past takes a correction)
        n = next(_COUNTER)
        return "PUT", "/v1/admin/assignments", {"subject_id": f"S-NEW-{n}", "device_id": f"D-NEW-{n}",
                                                "start": "2099-01-01T00:00:00Z", "zones": []}
    if op == "list_zone_versions":
        with env.session() as s:
            from sqlalchemy import select

            from api.db.models import ZoneRow
            zid = s.scalars(select(ZoneRow.zone_id)).first()
        return "GET", f"/v1/admin/zones/{zid}/versions", None
    if op in ("propose_correction", "decide_correction", "list_corrections"):
        n = next(_COUNTER)
        body = {"kind": "assignment", "reason": "Fitted the day before it was registered, per the fitting record.",
                "assignment": {"subject_id": f"S-COR-{n}", "device_id": f"D-COR-{n}", "start": ts(0), "zones": []}}
        if op == "propose_correction":
            return "POST", "/v1/admin/corrections", body
        if op == "list_corrections":
            return "GET", "/v1/admin/corrections", None
        r = env.client.post("/v1/admin/corrections", json=body, headers=env.h("admin2"))  # a second admin decides
        assert r.status_code == 201, r.text
        return "POST", f"/v1/admin/corrections/{r.json()['id']}/decision", {
            "approve": False, "reason": "The fitting record does not support an earlier start."}
    if op == "upsert_zone":
        n = next(_COUNTER)
        return "PUT", f"/v1/admin/zones/Z-NEW-{n}", {"type": "Feature", "properties": {"kind": "exclusion", "radius_m": 50},
                                                     "geometry": {"type": "Point", "coordinates": [-2.9, 53.4]}}
    if op == "audit_checkpoint":
        return "GET", "/v1/audit/checkpoint", None
    if op == "audit_inclusion_proof":
        return "GET", "/v1/audit/proof/inclusion?index=0&size=2", None
    if op == "audit_consistency_proof":
        return "GET", "/v1/audit/proof/consistency?first=1&second=2", None
    raise AssertionError(f"no call for {op}")


_COUNTER = __import__("itertools").count()


def _send(env, method, url, body, headers):
    return env.client.request(method, url, json=body, headers=headers)


MATRIX = [(op, role) for op in PERMISSIONS for role in ROLES]


@pytest.mark.parametrize(("op", "role"), MATRIX, ids=[f"{op}-{role}" for op, role in MATRIX])
def test_role_matrix(env, op, role):
    method, url, body = _call(env, op, ROLE_USER[role])
    r = _send(env, method, url, body, env.h(ROLE_USER[role]))
    if is_allowed(op, role):
        assert 200 <= r.status_code < 300, (op, role, r.status_code, r.text)
    else:
        assert r.status_code == 403, (op, role, r.status_code, r.text)
        allowed = ", ".join(sorted(PERMISSIONS[op]))
        assert r.json() == {"detail": f"role {role!r} may not call {op}: allowed roles are {allowed}"}


@pytest.mark.parametrize("op", list(PERMISSIONS))
@pytest.mark.parametrize("auth", ["none", "empty", "basic", "unknown", "revoked"])
def test_unauthenticated_is_401(env, op, auth):
    method, url, body = _call(env, op, "caseworker")
    headers = {"none": {}, "empty": {"Authorization": "Bearer "}, "basic": {"Authorization": "Basic dXNlcjpwdw=="},
               "unknown": {"Authorization": "Bearer not-a-token"}, "revoked": env.h("revoked")}[auth]
    r = _send(env, method, url, body, headers)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["detail"] in ("missing bearer token: send 'Authorization: Bearer TOKEN'",
                                  "invalid or revoked token")


def _operations(env) -> dict[str, dict]:
    spec = env.client.get("/openapi.json").json()
    return {op["operationId"]: op for path, item in spec["paths"].items() if path.startswith("/v1")
            for op in item.values()}


def test_table_matches_routes(env):
    """Every /v1 route is in the table and every table entry is a route."""
    assert set(_operations(env)) == set(PERMISSIONS)


def test_docstrings_state_the_roles(env):
    """Each endpoint's docstring (its OpenAPI description) names exactly the
    roles the table allows."""
    for op_id, op in _operations(env).items():
        m = re.search(r"Roles:(.*?)(?:\n\s*\n|$)", op.get("description", ""), re.S)
        assert m, f"{op_id}: no 'Roles:' in docstring"
        named = {w for w in re.findall(r"[a-z]+", m.group(1)) if w in ROLES}
        assert named == set(PERMISSIONS[op_id]), op_id
        assert op.get("security"), f"{op_id}: bearer security not declared"


def test_healthz_needs_no_token(env):
    r = env.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "audit": "ok"}


# record-level rules on top of the role table

def test_requester_sees_only_own_requests(env):
    mine = create_request(env, "requester")
    theirs = create_request(env, "probation")
    r = env.client.get(f"/v1/access-requests/{theirs['id']}", headers=env.h("requester"))
    assert r.status_code == 403  # an external requester gets the generic refusal (api.http.guard), audited with the reason
    assert r.json()["detail"].startswith("this request was refused; the EM Hub can tell you why: quote reference A-")
    listed = env.client.get("/v1/access-requests", headers=env.h("requester")).json()
    ids = {i["id"] for i in listed["items"]}
    assert mine["id"] in ids and theirs["id"] not in ids
    assert all(i["requester_id"] == env.user_ids["requester"] for i in listed["items"])
    staff = env.client.get(f"/v1/access-requests/{theirs['id']}", headers=env.h("auditor"))
    assert staff.status_code == 200


def test_only_maker_withdraws_or_downloads(env):
    req = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    r = env.client.post(f"/v1/access-requests/{req['id']}/withdraw", headers=env.h("caseworker2"))
    assert r.status_code == 403
    assert r.json() == {"detail": f"only the user who made access request {req['id']} may withdraw it"}
    assert decide(env, req["id"]).status_code == 200
    r = env.client.get(f"/v1/access-requests/{req['id']}/extract", headers=env.h("caseworker2"))
    assert r.status_code == 403
    assert r.json() == {"detail": f"only the user who made access request {req['id']} may download its extract"}
