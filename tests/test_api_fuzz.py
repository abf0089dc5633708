"""Bad input never reaches the catch-all 500.

1. Schemathesis against the app's own OpenAPI (in-process ASGI), bounded and
   derandomised, each operation called with a token whose role may call it
   (so the body and parameters are really validated, not stopped at 403),
   checking only `not_a_server_error`.
2. Hand-written hostile inputs: malformed JSON, wrong types, unknown enum
   values, naive timestamps, huge numbers, lone surrogates, extra fields.
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api.access.permissions import PERMISSIONS
from api_fixtures import api_template, close_env, copy_env, request_body, ts  # noqa: F401

#: A user key (api_fixtures.USERS) allowed to call each operation.
CALLER = {"caseworker": "caseworker", "requester": "requester", "approver": "approver", "auditor": "auditor",
          "admin": "admin", "feed": "feed"}


def _caller_for(op_id: str | None) -> str:
    roles = PERMISSIONS.get(op_id or "", frozenset({"admin"}))
    for role in ("caseworker", "approver", "auditor", "admin", "requester", "feed"):
        if role in roles:
            return CALLER[role]
    raise AssertionError(op_id)


@pytest.fixture(scope="module")
def fuzz_env(api_template, tmp_path_factory):
    env = copy_env(api_template, tmp_path_factory.mktemp("fuzz") / "home")
    yield env
    close_env(env)


@pytest.fixture(scope="module")
def api_schema(fuzz_env):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_env.app)


#: Operations whose valid calls take accounts away (a fuzzed id revokes whoever has it): they run on a
#: home of their own, so the other operations keep their callers.
OWN_HOME = frozenset({"revoke_user"})


@pytest.fixture(scope="module")
def own_home(api_template, tmp_path_factory):
    env = copy_env(api_template, tmp_path_factory.mktemp("fuzz-own") / "home")
    yield env, schemathesis.openapi.from_asgi("/openapi.json", env.app)
    close_env(env)


#: (operation id, mode); /healthz has no inputs to make invalid.
RUNS = [(op, mode) for op in PERMISSIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
RUNS.append(("healthz", GenerationMode.POSITIVE))


# schemathesis' pytest plugin (`schema.parametrize`) does not run under
# pytest 9 (it reads Function._nodeid), so each operation's strategy is
# driven by hypothesis directly: the same cases, checks and bounds.
@pytest.mark.parametrize(("op_id", "mode"), RUNS, ids=[f"{op}-{m.value}" for op, m in RUNS])
def test_no_server_errors(request, op_id, mode):
    if op_id in OWN_HOME:
        fuzz_env, api_schema = request.getfixturevalue("own_home")
    else:
        fuzz_env, api_schema = request.getfixturevalue("fuzz_env"), request.getfixturevalue("api_schema")
    ops = [r.ok() for r in api_schema.get_all_operations()]
    (operation,) = [o for o in ops if o.definition.raw.get("operationId") == op_id]
    headers = dict(fuzz_env.h(_caller_for(op_id)))

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=20, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
        assert response.status_code < 500, (op_id, response.status_code, response.text)

    run()


# ---------------------------------------------------------------- hand-written

def _post(env, body, who="caseworker", raw: bytes | None = None, url="/v1/access-requests"):
    headers = {**env.h(who), "Content-Type": "application/json"}
    if raw is not None:
        return env.client.post(url, content=raw, headers=headers)
    return env.client.post(url, json=body, headers=headers)


def _fields(r) -> list[tuple]:
    """The fields a 422 names: the API's one error shape (api.http.errors), a one-line
    `detail` and one `errors` item per field."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"detail", "errors"} and body["detail"].startswith("invalid request: "), body
    errors = body["errors"]
    assert isinstance(errors, list) and all(set(d) == {"loc", "msg", "type"} for d in errors), errors
    return [tuple(d["loc"]) for d in errors]


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[1, 2", b'{"subject_id": }', b"\xff\xfe", b"", b"null",
                                 b"[]", b"42", b'"text"'], ids=repr)
def test_malformed_json_is_422(fuzz_env, raw):
    r = _post(fuzz_env, None, raw=raw)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["errors"]


CASES = {
    "wrong type subject": ({"subject_id": 12}, ("body", "subject_id")),
    "wrong type start": ({"start": 1709510400000}, ("body", "start")),
    "list for text": ({"justification": ["a"] * 30}, ("body", "justification")),
    "unknown kind": ({"kind": "location"}, ("body", "kind")),
    "unknown ground": ({"ground": "curiosity"}, ("body", "ground")),
    "unknown urgency": ({"urgency": "yesterday"}, ("body", "urgency")),
    "naive start": ({"start": "2024-03-05T00:00:00"}, ("body", "start")),
    "naive respond_by": ({"respond_by": "2024-03-06T00:00:00"}, ("body", "respond_by")),
    "impossible date": ({"end": "2024-02-30T00:00:00Z"}, ("body", "end")),
    "leap second": ({"end": "2024-03-05T23:59:60Z"}, ("body", "end")),
    "year 0": ({"start": "0000-01-01T00:00:00Z"}, ("body", "start")),
    "trivial justification": ({"justification": "because"}, ("body", "justification")),
    "whitespace necessity": ({"necessity": " " * 50 + "x"}, ("body", "necessity")),
    "lone surrogate": ({"justification": "\ud800" * 30}, ("body", "justification")),
    "NUL": ({"reference": "a\x00b"}, ("body", "reference")),
    "huge text": ({"justification": "x" * 20_000}, ("body", "justification")),
    "huge subject": ({"subject_id": "S" * 1000}, ("body", "subject_id")),
    "extra field": ({"priority": 1}, ("body", "priority")),
    "huge int for text": ({"subject_id": 10**400}, ("body", "subject_id")),
    "huge int for time": ({"end": 2**70}, ("body", "end")),
    "float for enum": ({"kind": 1e308}, ("body", "kind")),
    "bool for urgency": ({"urgency": True}, ("body", "urgency")),
    "null for required": ({"ground": None}, ("body", "ground")),
}


@pytest.mark.parametrize("override, loc", list(CASES.values()), ids=list(CASES))
def test_bad_create_fields_are_422(fuzz_env, override, loc):
    body = {**request_body(fuzz_env.subjects[0]), **override}
    raw = json.dumps(body, ensure_ascii=True).encode()  # ascii escapes carry the lone surrogate
    assert loc in _fields(_post(fuzz_env, None, raw=raw))


def test_missing_fields_are_listed(fuzz_env):
    locs = _fields(_post(fuzz_env, {}))
    for f in ("subject_id", "kind", "ground", "start", "end", "justification", "necessity"):
        assert ("body", f) in locs


def test_naive_timestamp_message(fuzz_env):
    r = _post(fuzz_env, request_body(fuzz_env.subjects[0], start="2024-03-05T00:00:00"))
    (err,) = r.json()["errors"]
    assert err["msg"] == "Value error, timestamp '2024-03-05T00:00:00' has no UTC offset: add Z or +HH:MM"


@pytest.mark.parametrize("url", [
    "/v1/access-requests/99999999999999999999999",
    "/v1/access-requests/-1",
    "/v1/access-requests/0",
    "/v1/access-requests/abc",
    "/v1/access-requests/1e3",
    "/v1/access-requests?status=lost",
    "/v1/access-requests?kind=location",
    "/v1/access-requests?limit=100000000000000000000",
    "/v1/access-requests?offset=-5",
    "/v1/audit/proof/inclusion?index=1e400&size=2",
    f"/v1/audit/proof/consistency?first={2**64}&second={2**65}",
    "/v1/subjects/S-000000/breaches?priority=9999999999999999999999",
    "/v1/subjects/S-000000/breaches?priority=high",
])
def test_bad_parameters_are_422(fuzz_env, url):
    who = "auditor" if "/audit/" in url else "caseworker"
    r = fuzz_env.client.get(url, headers=fuzz_env.h(who))
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["errors"]


@pytest.mark.parametrize("query, message", [
    ("from=2024-03-01T00:00:00", "from: timestamp '2024-03-01T00:00:00' has no UTC offset: add Z or +HH:MM"),
    ("to=yesterday", "to: not a timestamp: 'yesterday' (expected RFC 3339 with an offset, e.g. 2024-03-25T18:00:00Z)"),
    ("from=2024-03-02T00:00:00Z&to=2024-03-01T00:00:00Z",
     "from '2024-03-02T00:00:00Z' must be before to '2024-03-01T00:00:00Z'"),
])
def test_bad_report_periods(fuzz_env, query, message):
    for report in ("access-requests", "breaches"):
        r = fuzz_env.client.get(f"/v1/reports/{report}?{query}", headers=fuzz_env.h("auditor"))
        assert r.status_code == 422 and r.json() == {"detail": message}
    r = fuzz_env.client.get("/v1/reports/breaches?format=xlsx", headers=fuzz_env.h("auditor"))
    assert r.status_code == 422


def test_bad_decisions_are_422(fuzz_env):
    from api_fixtures import create_request

    rid = create_request(fuzz_env, "caseworker")["id"]
    url = f"/v1/access-requests/{rid}/decision"
    for body, loc in (({"outcome": "maybe", "reason": "x" * 30}, ("body", "outcome")),
                      ({"outcome": "data_provided", "reason": "ok"}, ("body", "reason")),
                      ({"outcome": "partial_data_provided", "reason": "x" * 30, "start": "2024-03-05T06:00:00",
                        "end": ts(1, 12)}, ("body", "start")),
                      ({"outcome": "data_provided", "reason": "x" * 30, "extra": True}, ("body", "extra"))):
        assert loc in _fields(_post(fuzz_env, body, who="approver", url=url))
    r = _post(fuzz_env, None, who="approver", url=url, raw=b'{"outcome": "data_provided", "reason": ')
    assert r.status_code == 422


def test_unknown_paths_and_methods(fuzz_env):
    r = fuzz_env.client.get("/v1/nothing-here", headers=fuzz_env.h("admin"))
    assert r.status_code == 404 and r.json() == {"detail": "no endpoint at /v1/nothing-here: see /docs for the "
                                                           "API's paths"}
    r = fuzz_env.client.delete("/v1/access-requests/1", headers=fuzz_env.h("admin"))
    assert r.status_code == 405 and r.json() == {"detail": "method DELETE is not allowed on /v1/access-requests/1: "
                                                           "allowed methods are GET"}


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                 b"\x00" * 10, b'{"subject_id": 1e400}'], ids=["deep-list", "deep-object", "nul", "inf"])
def test_pathological_bodies_are_4xx(fuzz_env, raw):
    r = _post(fuzz_env, None, raw=raw)
    assert r.status_code in (400, 413, 422), r.text  # 413: over the JSON body limit (api.http.guard)
    assert r.json()["detail"]
