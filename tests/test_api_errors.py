"""The API's one error shape (tagtrail issue 11): every error, whatever produced
it, is ``{"detail": str}`` plus ``"errors"`` (one ``{loc, msg, type}`` per
field) exactly when the request failed validation, which is 422 everywhere;
the OpenAPI document says so; and a query parameter an operation does not take
is a 422 naming it, never silently ignored."""
from __future__ import annotations

import errno
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.models import AuditEntry, BreachRow
from api_fixtures import api_env, api_template, request_body  # noqa: F401 (fixtures)

ALLOWED_BY_QUEUE = "assignee, kind, limit, offset, priority, status, subject_id, type"


def _assert_shape(r, *, validation: bool) -> dict:
    """The body is the one error shape: `detail` a non-empty string, `errors` only for validation."""
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if validation:
        assert r.status_code == 422 and set(body) == {"detail", "errors"}, body
        assert body["errors"] and all(set(e) == {"loc", "msg", "type"} for e in body["errors"]), body
    else:
        assert set(body) == {"detail"}, body
    return body


def _breach_id(env) -> str:
    with env.session() as s:
        return s.scalars(select(BreachRow.breach_id).order_by(BreachRow.breach_id)).first()


# ------------------------------------------------------------------ each kind of error, one shape

def test_api_error_404_has_the_shape(api_env):
    r = api_env.client.get("/v1/breaches/0123456789abcdef", headers=api_env.h("caseworker"))
    assert r.status_code == 404
    assert _assert_shape(r, validation=False) == {"detail": "breach 0123456789abcdef not found"}


def test_validation_error_is_one_line_plus_field_errors(api_env):
    r = api_env.client.get("/v1/breaches/queue?limit=0", headers=api_env.h("caseworker"))
    assert _assert_shape(r, validation=True) == {
        "detail": "invalid request: query.limit: Input should be greater than or equal to 1",
        "errors": [{"loc": ["query", "limit"], "msg": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal"}]}


def test_validation_detail_names_three_fields_then_counts_the_rest(api_env):
    r = api_env.client.post("/v1/access-requests", json={}, headers=api_env.h("caseworker"))
    body = _assert_shape(r, validation=True)
    fields = [tuple(e["loc"]) for e in body["errors"]]
    assert fields == [("body", f) for f in ("subject_id", "kind", "ground", "start", "end", "justification",
                                            "necessity")]
    assert body["detail"] == ("invalid request: body.subject_id: Field required; body.kind: Field required; "
                              "body.ground: Field required; and 4 more (see errors)")


def test_nested_field_paths_read_as_written(api_env):
    r = api_env.client.put("/v1/admin/assignments", json={"subject_id": "S-9", "device_id": "D-9",
                                                           "start": "2099-01-01T00:00:00Z", "zones": ["Z", ""]},
                           headers=api_env.h("admin"))
    body = _assert_shape(r, validation=True)
    assert body["detail"] == "invalid request: body.zones[1]: String should have at least 1 character"
    assert body["errors"][0]["loc"] == ["body", "zones", 1]


def test_audit_proof_bounds_are_422_not_400(api_env):
    """Before issue 11 the proof endpoints answered 400 for an index past the tree."""
    h = api_env.h("auditor")
    assert api_env.client.get("/v1/audit/checkpoint", headers=h).status_code == 200
    r = api_env.client.get("/v1/audit/proof/inclusion?index=5&size=5", headers=h)
    assert r.status_code == 422 and _assert_shape(r, validation=False) == {"detail": "index=5 is not below size=5"}
    r = api_env.client.get("/v1/audit/proof/consistency?first=5&second=2", headers=h)
    assert r.status_code == 422 and r.json() == {"detail": "first=5 > second=2"}


def test_routing_404_and_405_name_path_and_method(api_env):
    r = api_env.client.get("/v1/no-such-thing", headers=api_env.h("admin"))
    assert r.status_code == 404
    assert _assert_shape(r, validation=False) == {"detail": "no endpoint at /v1/no-such-thing: see /docs for the "
                                                            "API's paths"}
    r = api_env.client.put("/v1/breaches/queue", headers=api_env.h("admin"))
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert _assert_shape(r, validation=False) == {"detail": "method PUT is not allowed on /v1/breaches/queue: "
                                                            "allowed methods are GET"}


def test_guard_refusals_have_the_shape(api_env):
    c = api_env.client
    r = c.get("/v1/breaches/queue")
    assert r.status_code == 401 and _assert_shape(r, validation=False) == {
        "detail": "missing bearer token: send 'Authorization: Bearer TOKEN'"}
    r = c.get("/v1/breaches/queue", headers=api_env.h("feed"))
    assert r.status_code == 403 and _assert_shape(r, validation=False) == {
        "detail": "role 'feed' may not call breach_queue: allowed roles are admin, approver, auditor, caseworker"}
    r = c.get("/v1/breaches/queue?" + "&".join(["status=new"] * 300), headers=api_env.h("caseworker"))
    assert r.status_code == 414 and _assert_shape(r, validation=False) == {
        "detail": "query string of 3299 bytes; at most 2048"}
    r = c.post("/v1/access-requests", content=b"{}", headers={**api_env.h("caseworker"),
                                                             "Content-Type": "application/json",
                                                             "Content-Length": str(300 << 10)})
    assert r.status_code == 413 and _assert_shape(r, validation=False) == {
        "detail": f"body of {300 << 10} bytes; at most {256 << 10} bytes for this operation"}


def test_bodies_that_cannot_be_parsed_are_422(api_env):
    headers = {**api_env.h("caseworker"), "Content-Type": "application/json"}
    r = api_env.client.post("/v1/access-requests", content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
    assert r.status_code == 422 and _assert_shape(r, validation=False)["detail"].startswith(
        "body is nested too deeply")
    r = api_env.client.post("/v1/access-requests", content=b'{"subject_id": "\x80"}', headers=headers)
    assert r.status_code == 422 and _assert_shape(r, validation=False) == {
        "detail": "body is not JSON text in UTF-8, UTF-16 or UTF-32: byte 16 cannot be decoded"}


def test_503_507_and_500_have_the_shape(api_env, monkeypatch):
    from api.http.errors import INTERNAL_ERROR, STORAGE_FULL

    audit = api_env.app.state.audit
    h = api_env.h("caseworker")
    with monkeypatch.context() as m:
        m.setattr(audit, "integrity_problem", lambda: "entry 7 has no MAC")
        r = api_env.client.get("/v1/breaches/queue", headers=h)
        assert r.status_code == 503 and _assert_shape(r, validation=False)["detail"].startswith(
            "the audit log failed an integrity check (entry 7 has no MAC)")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(audit, "append", full)
        r = api_env.client.get("/v1/breaches/queue", headers=h)
        assert r.status_code == 507 and _assert_shape(r, validation=False) == {"detail": STORAGE_FULL}

    def broken(*_a, **_k):
        raise RuntimeError("something nobody expected")

    with monkeypatch.context() as m:
        m.setattr(audit, "append", broken)
        with TestClient(api_env.app, raise_server_exceptions=False) as c:
            r = c.get("/v1/breaches/queue", headers=h)
        assert r.status_code == 500 and _assert_shape(r, validation=False) == {"detail": INTERNAL_ERROR}
        assert "something nobody expected" not in r.text


# ------------------------------------------------------------------ the OpenAPI document says so

def test_openapi_documents_one_error_shape(api_env):
    doc = api_env.client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]) == {"detail", "errors"}
    assert schemas["ErrorBody"]["required"] == ["detail"]
    assert "**Errors** have one shape" in doc["info"]["description"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    n = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            responses = op["responses"]
            assert "422" not in responses, (path, method)
            for status in ("4XX", "5XX"):
                assert responses[status]["content"]["application/json"]["schema"] == ref, (path, method, status)
            n += 1
    assert n >= 25


# ------------------------------------------------------------------ unknown query parameters

def test_unknown_query_parameter_is_422_naming_it(api_env):
    """Before issue 11 `?typ=battery` (a typo) was ignored and the whole queue came back."""
    r = api_env.client.get("/v1/breaches/queue?typ=battery&limit=5", headers=api_env.h("caseworker"))
    msg = f"breach_queue takes no query parameter 'typ' (it takes: {ALLOWED_BY_QUEUE})"
    assert _assert_shape(r, validation=True) == {
        "detail": f"invalid request: query.typ: {msg}",
        "errors": [{"loc": ["query", "typ"], "msg": msg, "type": "extra_forbidden"}]}


def test_unknown_query_parameter_on_personal_data_is_audited(api_env):
    r = api_env.client.get("/v1/breaches/queue?sort=oldest", headers=api_env.h("caseworker"))
    assert r.status_code == 422
    with api_env.session() as s:
        entry = json.loads(s.scalars(select(AuditEntry.entry).where(AuditEntry.action == "access.refused")
                                     .order_by(AuditEntry.idx.desc())).first())
    assert entry["actor"] == "cw-1"
    assert entry["detail"]["operation"] == "breach_queue" and entry["detail"]["status"] == 422
    assert entry["detail"]["reason"] == "request failed validation"


LIST_CALLS = [
    ("list_access_requests", "caseworker", "/v1/access-requests"),
    ("breach_queue", "caseworker", "/v1/breaches/queue"),
    ("list_subject_breaches", "caseworker", "/v1/subjects/{subject}/breaches"),
    ("report_breaches", "auditor", "/v1/reports/breaches"),
    ("report_access_requests", "auditor", "/v1/reports/access-requests"),
    ("list_assignments", "admin", "/v1/admin/assignments"),
    ("list_corrections", "admin", "/v1/admin/corrections"),
    ("stream_status", "admin", "/v1/breaches/stream-status"),
]


@pytest.mark.parametrize("op, who, url", LIST_CALLS, ids=[c[0] for c in LIST_CALLS])
def test_every_list_endpoint_refuses_unknown_parameters(api_env, op, who, url):
    url = url.format(subject=api_env.subjects[0])
    assert api_env.client.get(url, headers=api_env.h(who)).status_code == 200
    r = api_env.client.get(url + "?bogus=1", headers=api_env.h(who))
    body = _assert_shape(r, validation=True)
    assert body["errors"][0]["loc"] == ["query", "bogus"] and body["errors"][0]["type"] == "extra_forbidden"
    assert body["errors"][0]["msg"].startswith(f"{op} takes no query parameter 'bogus' (it takes: ")


def test_declared_parameters_and_aliases_still_pass(api_env):
    h = api_env.h("auditor")
    r = api_env.client.get("/v1/reports/breaches?from=2024-03-04T00:00:00Z&to=2024-03-08T00:00:00Z&format=csv",
                           headers=h)
    assert r.status_code == 200, r.text
    r = api_env.client.get("/v1/reports/breaches?from_=2024-03-04T00:00:00Z", headers=h)  # the Python name is not it
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "from_"]


def test_guard_accepts_exactly_the_documented_query_parameters(api_env):
    """For every operation in the OpenAPI document, the parameters the guard's
    refusal says it takes are exactly the query parameters documented."""
    import re

    from api.access.permissions import PERMISSIONS

    doc = api_env.app.openapi()
    who = {"caseworker": "caseworker", "approver": "approver", "auditor": "auditor", "admin": "admin",
           "requester": "requester", "feed": "feed"}
    seen = set()
    for path, methods in doc["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in methods.items():
            documented = sorted(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            role = sorted(PERMISSIONS[op["operationId"]])[0]
            url = re.sub(r"\{[^}]+\}", "1", path) + "?zz_unknown=1"
            r = api_env.client.request(method.upper(), url, headers=api_env.h(who[role]))
            assert r.status_code == 422, (path, method, r.text)
            (err,) = r.json()["errors"]
            takes = re.fullmatch(rf"{op['operationId']} takes no query parameter 'zz_unknown' \(it takes: (.*)\)",
                                 err["msg"]).group(1)
            assert takes == (", ".join(documented) or "none"), (path, method)
            seen.add(op["operationId"])
    assert seen == set(PERMISSIONS)
