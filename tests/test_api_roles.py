"""The role x endpoint matrix, written out by hand (`ROLE_TABLE`) from
../shared/notes/governance.md and the role descriptions in the docstring of
`api/access/permissions.py` (its prose, never its `PERMISSIONS` table): every
cell is the exact status that role gets, and every refusal carries the exact
message. Explicit negatives follow: the feed never reads personal data; a
requester never decides; an approver never decides their own request. No
token, a wrong scheme, an unknown token and a revoked token are all 401 with
``WWW-Authenticate: Bearer``.

A route added to the app without a row here fails `test_table_covers_exactly_the_app_operations`;
a grant added to `PERMISSIONS` without a changed cell here fails the matrix."""
from __future__ import annotations

import itertools
import json
import re

import pytest
from sqlalchemy import select, update

from api.db.models import ROLES, AccessRequest, AuditEntry, BreachRow, ZoneRow
from api.access.users import add_user, revoke_user
from api_fixtures import (api_template, close_env, copy_env, create_request, decide, request_body,  # noqa: F401
                          ts)

#: The columns of ROLE_TABLE: caseworker, approver, auditor, admin, requester, feed.
ROLE_HEADINGS = {"cw": "caseworker", "appr": "approver", "aud": "auditor", "adm": "admin", "req": "requester",
                 "feed": "feed"}
ROLE_COLUMNS = tuple(ROLE_HEADINGS.values())
assert set(ROLE_COLUMNS) == set(ROLES)

# Why each row is what it is (governance.md = G; the role prose in permissions.py = P):
# - access requests: "Home Office staff may request" and "police and probation ask through an External
#   Agency Request" (G): caseworker and requester ask, withdraw and download what they asked for; the
#   approver decides and "confirm[s] the requester's identity" (G, P) and, being "never the requester"
#   (G, dual authorisation), does not ask; everyone but the feed may read requests (a requester only
#   their own, P); the auditor and admin read but do not download trails: a trail leaves only through an
#   approved, time-limited extract to its requester (G, "Approval").
# - breaches (a wearer's list, the queue, one record with its history): caseworkers "read breaches" (P)
#   and work the queue (set a status); approvers read them to judge whether a request's ground (a bail
#   breach) holds; auditor and admin read everything (P). An external requester sees only its own
#   requests (P), and learning that someone has breaches would tell it who is monitored.
# - one wearer (their assignments and zones, their curfew compliance per window: no coordinates): read by
#   the staff who read that wearer's breaches, since a record is judged against those conditions
#   (caseworker, approver) and the auditor and admin read everything (P); never the requester (as
#   above) or the feed ("nothing else", P).
# - reports: "sample decisions for quality" (G): oversight roles (approver, auditor, admin) only.
# - intake: "Only the feed sends fixes" (P). The feed "sends fixes and events, nothing else" (P); stream
#   status (pending rows, as_of, no records) is part of sending: it tells the feed when intake is behind.
#   The admin runs the service and the auditor reads everything, so both read stream status too.
# - assignments and zones: the admin runs the service "(assignments, zones)" (P). Zone versions and
#   corrections are the record of what changed in the past and why: the auditor reads them (P, "reads
#   everything"). Corrections are proposed by one admin and decided by another.
#   The assignments themselves (who wears which device, when, under which zones) are read by the
#   admin and, since it "reads everything" (P) and checks that conditions were applied as imposed,
#   the auditor; each read is audited like any personal data.
# - audit log: "reads everything, including the audit log and its proofs" (P, auditor); the admin is
#   "like the auditor" (P).
ROLE_TABLE = """
operation                method path                                             cw   appr aud  adm  req  feed
create_access_request    POST   /v1/access-requests                              201  403  403  403  201  403
list_access_requests     GET    /v1/access-requests                              200  200  200  200  200  403
get_access_request       GET    /v1/access-requests/{request_id}                 200  200  200  200  200  403
check_identity           POST   /v1/access-requests/{request_id}/identity-check  403  200  403  403  403  403
decide_access_request    POST   /v1/access-requests/{request_id}/decision        403  200  403  403  403  403
extend_access_request    POST   /v1/access-requests/{request_id}/extend          403  200  403  403  403  403
withdraw_access_request  POST   /v1/access-requests/{request_id}/withdraw        200  403  403  403  200  403
download_extract         GET    /v1/access-requests/{request_id}/extract         200  403  403  403  200  403
list_subject_breaches    GET    /v1/subjects/{subject_id}/breaches               200  200  200  200  403  403
get_subject              GET    /v1/subjects/{subject_id}                        200  200  200  200  403  403
subject_compliance       GET    /v1/subjects/{subject_id}/compliance             200  200  200  200  403  403
get_subject_evidence     GET    /v1/subjects/{subject_id}/evidence               200  200  200  200  403  403
breach_queue             GET    /v1/breaches/queue                               200  200  200  200  403  403
get_breach               GET    /v1/breaches/{breach_id}                         200  200  200  200  403  403
get_breach_evidence      GET    /v1/breaches/{breach_id}/evidence                200  200  200  200  403  403
set_breach_status        POST   /v1/breaches/{breach_id}/status                  200  403  403  403  403  403
create_legal_hold        POST   /v1/legal-holds                                  403  201  403  201  403  403
list_legal_holds         GET    /v1/legal-holds                                  403  200  200  200  403  403
review_legal_hold        POST   /v1/legal-holds/{hold_id}/review                 403  200  403  200  403  403
lift_legal_hold          POST   /v1/legal-holds/{hold_id}/lift                   403  200  403  200  403  403
report_access_requests   GET    /v1/reports/access-requests                      403  200  200  200  403  403
report_breaches          GET    /v1/reports/breaches                             403  200  200  200  403  403
report_trends            GET    /v1/reports/trends                               403  200  200  200  403  403
post_fixes               POST   /v1/fixes                                        403  403  403  403  403  200
stream_status            GET    /v1/breaches/stream-status                       403  403  200  200  403  200
list_assignments         GET    /v1/admin/assignments                            403  403  200  200  403  403
upsert_assignment        PUT    /v1/admin/assignments                            403  403  403  200  403  403
upsert_zone              PUT    /v1/admin/zones/{zone_id}                        403  403  403  200  403  403
list_zone_versions       GET    /v1/admin/zones/{zone_id}/versions               403  403  200  200  403  403
propose_correction       POST   /v1/admin/corrections                            403  403  403  201  403  403
list_corrections         GET    /v1/admin/corrections                            403  403  200  200  403  403
decide_correction        POST   /v1/admin/corrections/{correction_id}/decision   403  403  403  200  403  403
record_mitigation        POST   /v1/mitigations                                  201  403  403  403  403  403
list_mitigations         GET    /v1/mitigations                                  200  200  200  200  403  403
get_mitigation           GET    /v1/mitigations/{mitigation_id}                  200  200  200  200  403  403
decide_mitigation        POST   /v1/mitigations/{mitigation_id}/decision         200  403  403  403  403  403
mitigation_letter        GET    /v1/mitigations/{mitigation_id}/letter           200  403  403  403  403  403
get_escalation           GET    /v1/subjects/{subject_id}/escalation             200  200  200  200  403  403
decide_escalation        POST   /v1/subjects/{subject_id}/escalation             201  403  403  403  403  403
escalation_letter        GET    /v1/escalations/{decision_id}/letter             200  403  403  403  403  403
set_owner                PUT    /v1/subjects/{subject_id}/owner                  403  403  403  200  403  403
reviews_due              GET    /v1/reviews/due                                  200  200  200  200  403  403
reviews_overdue          GET    /v1/reviews/overdue                              200  200  200  200  403  403
review_summary           GET    /v1/subjects/{subject_id}/review-summary         200  200  200  200  403  403
record_review            POST   /v1/subjects/{subject_id}/reviews                201  403  403  403  403  403
set_language             PUT    /v1/subjects/{subject_id}/language               200  403  403  200  403  403
record_welfare_note      POST   /v1/subjects/{subject_id}/welfare-notes          201  403  403  403  403  403
list_welfare_notes       GET    /v1/subjects/{subject_id}/welfare-notes          200  200  200  200  403  403
report_reviews           GET    /v1/reports/reviews                              403  200  200  200  403  403
register_device          PUT    /v1/devices/{device_id}                          403  403  403  200  403  403
list_devices             GET    /v1/devices                                      200  200  200  200  403  403
record_device_fault      POST   /v1/device-faults                                403  403  403  201  403  403
list_device_faults       GET    /v1/device-faults                                200  200  200  200  403  403
decide_equipment_fault   POST   /v1/breaches/{breach_id}/equipment-fault         200  403  403  403  403  403
report_casework          GET    /v1/reports/casework                             403  200  200  200  403  403
report_device_health     GET    /v1/reports/device-health                        403  200  200  200  403  403
list_notifications       GET    /v1/notifications                                403  403  403  200  403  403
list_users               GET    /v1/admin/users                                  403  403  403  200  403  403
add_user                 POST   /v1/admin/users                                  403  403  403  201  403  403
revoke_user              POST   /v1/admin/users/{user_id}/revoke                 403  403  403  200  403  403
set_user_email           PUT    /v1/admin/users/{user_id}/email                  403  403  403  200  403  403
list_audit_entries       GET    /v1/audit/entries                                403  403  200  200  403  403
audit_checkpoint         GET    /v1/audit/checkpoint                             403  403  200  200  403  403
audit_inclusion_proof    GET    /v1/audit/proof/inclusion                        403  403  200  200  403  403
audit_consistency_proof  GET    /v1/audit/proof/consistency                      403  403  200  200  403  403
"""


def _parse_table(text: str) -> dict[str, tuple[str, str, dict[str, int]]]:
    """op -> (method, path template, role -> status), from the text table above."""
    lines = [ln.split() for ln in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert tuple(ROLE_HEADINGS[h] for h in header[3:]) == ROLE_COLUMNS, header
    out = {}
    for row in rows:
        assert len(row) == 3 + len(ROLE_COLUMNS), row
        assert row[0] not in out, f"{row[0]} twice in ROLE_TABLE"
        out[row[0]] = (row[1], row[2], dict(zip(ROLE_COLUMNS, map(int, row[3:]))))
    return out


EXPECTED = _parse_table(ROLE_TABLE)


def _allowed(op: str) -> list[str]:
    """The roles the hand table lets call `op`, sorted (as the refusal message lists them)."""
    return sorted(role for role, status in EXPECTED[op][2].items() if status != 403)


def _role_refusal(role: str, op: str) -> dict:
    return {"detail": f"role {role!r} may not call {op}: allowed roles are {', '.join(_allowed(op))}"}


@pytest.fixture(scope="module")
def env(api_template, tmp_path_factory):
    e = copy_env(api_template, tmp_path_factory.mktemp("roles") / "home")
    yield e
    close_env(e)


_COUNTER = itertools.count()
IDENTITY_NOTE = {"note": "Called back on the force switchboard number."}


def _maker(who: str) -> str:
    """Who makes the request a call needs: the caller when the hand table lets their role ask, else a caseworker."""
    return who if EXPECTED["create_access_request"][2][who] == 201 else "caseworker"


def _first_id(env, column, *where):
    with env.session() as s:
        return s.scalars(select(column).where(*where)).first()


def _call_request_op(env, op: str, who: str):
    if op == "create_access_request":
        return "POST", "/v1/access-requests", request_body(env.subjects[0])
    if op == "list_access_requests":
        return "GET", "/v1/access-requests?status=pending", None
    if op == "check_identity":
        req = create_request(env, "requester")
        return "POST", f"/v1/access-requests/{req['id']}/identity-check", IDENTITY_NOTE
    if op == "decide_access_request":
        req = create_request(env, "caseworker")
        return "POST", f"/v1/access-requests/{req['id']}/decision", {
            "outcome": "rejected_other", "reason": "The case was closed before the request was reviewed."}
    if op == "download_extract":
        maker = _maker(who)
        req = create_request(env, maker, start=ts(1, 0), end=ts(1, 6))
        if maker == "requester":
            r = env.client.post(f"/v1/access-requests/{req['id']}/identity-check", json=IDENTITY_NOTE,
                                headers=env.h("approver"))
            assert r.status_code == 200, r.text
        assert decide(env, req["id"]).status_code == 200
        return "GET", f"/v1/access-requests/{req['id']}/extract?format=csv", None
    if op == "extend_access_request":
        req = create_request(env, "caseworker", kind="sar", ground="sar_or_legal", reference=None)
        return "POST", f"/v1/access-requests/{req['id']}/extend", {
            "reason": "Many records across several devices need to be reviewed first."}
    req = create_request(env, _maker(who))
    suffix = {"withdraw_access_request": "/withdraw", "get_access_request": ""}[op]
    return ("POST" if suffix else "GET"), f"/v1/access-requests/{req['id']}{suffix}", None


def _call_admin_op(env, op: str):
    n = next(_COUNTER)
    if op == "list_assignments":
        return "GET", "/v1/admin/assignments", None
    if op == "upsert_assignment":  # from now on (a start in the past takes a correction)
        return "PUT", "/v1/admin/assignments", {"subject_id": f"S-NEW-{n}", "device_id": f"D-NEW-{n}",
                                                "start": "2099-01-01T00:00:00Z", "zones": []}
    if op == "upsert_zone":
        return "PUT", f"/v1/admin/zones/Z-NEW-{n}", {
            "type": "Feature", "properties": {"kind": "exclusion", "radius_m": 50},
            "geometry": {"type": "Point", "coordinates": [-2.9, 53.4]}}
    if op == "list_zone_versions":
        return "GET", f"/v1/admin/zones/{_first_id(env, ZoneRow.zone_id)}/versions", None
    if op == "list_corrections":
        return "GET", "/v1/admin/corrections", None
    if op == "list_users":
        return "GET", "/v1/admin/users", None
    if op == "add_user":
        return "POST", "/v1/admin/users", {"name": f"New Caseworker {n}", "role": "caseworker"}
    if op == "revoke_user":  # an account made for this call, so the table's own users stay signed in
        user_id, _ = _add_user(env, f"Leaver {n}", "caseworker")
        return "POST", f"/v1/admin/users/{user_id}/revoke", None
    if op == "set_user_email":
        user_id, _ = _add_user(env, f"Emailed {n}", "caseworker")
        return "PUT", f"/v1/admin/users/{user_id}/email", {"email": f"cw{n}@hub.example.org"}
    body = {"kind": "assignment", "reason": "Fitted the day before it was registered, per the fitting record.",
            "assignment": {"subject_id": f"S-COR-{n}", "device_id": f"D-COR-{n}", "start": ts(0), "zones": []}}
    if op == "propose_correction":
        return "POST", "/v1/admin/corrections", body
    assert op == "decide_correction", op
    r = env.client.post("/v1/admin/corrections", json=body, headers=env.h("admin2"))  # a second admin decides
    assert r.status_code == 201, r.text
    return "POST", f"/v1/admin/corrections/{r.json()['id']}/decision", {
        "approve": False, "reason": "The fitting record does not support an earlier start."}


_PERIOD = "from=2024-03-04&to=2024-03-05"
_SIMPLE = {
    "list_subject_breaches": lambda env: ("GET", f"/v1/subjects/{env.subjects[0]}/breaches", None),
    "get_subject": lambda env: ("GET", f"/v1/subjects/{env.subjects[0]}", None),
    "subject_compliance": lambda env: ("GET", f"/v1/subjects/{env.subjects[0]}/compliance?{_PERIOD}", None),
    "get_subject_evidence": lambda env: ("GET", f"/v1/subjects/{env.subjects[0]}/evidence?format=html&{_PERIOD}",
                                         None),
    "report_access_requests": lambda env: ("GET", "/v1/reports/access-requests", None),
    "report_breaches": lambda env: ("GET", "/v1/reports/breaches?format=csv", None),
    "report_trends": lambda env: ("GET", "/v1/reports/trends?format=csv", None),
    "report_casework": lambda env: ("GET", "/v1/reports/casework?format=xlsx", None),
    "list_notifications": lambda env: ("GET", "/v1/notifications?status=dead", None),
    "report_device_health": lambda env: ("GET", "/v1/reports/device-health?from=2024-03-01T00:00:00Z"
                                                "&to=2024-03-10T00:00:00Z", None),
    "post_fixes": lambda env: ("POST", "/v1/fixes", {"fixes": [{"device_id": "D-000000", "ts": ts(1, 7),
                                                                "lat": 53.4, "lon": -2.9}]}),
    "breach_queue": lambda env: ("GET", "/v1/breaches/queue?limit=5", None),
    "get_breach": lambda env: ("GET", f"/v1/breaches/{_first_id(env, BreachRow.breach_id)}", None),
    "get_breach_evidence": lambda env: ("GET", f"/v1/breaches/{_first_id(env, BreachRow.breach_id)}/evidence"
                                               "?format=html", None),
    "set_breach_status": lambda env: (
        "POST", f"/v1/breaches/{_first_id(env, BreachRow.breach_id, BreachRow.status != 'withdrawn')}/status",
        {"status": "in_review"}),
    "stream_status": lambda env: ("GET", "/v1/breaches/stream-status", None),
    "list_audit_entries": lambda env: ("GET", "/v1/audit/entries?action=audit.read&limit=5", None),
    "audit_checkpoint": lambda env: ("GET", "/v1/audit/checkpoint", None),
    "audit_inclusion_proof": lambda env: ("GET", "/v1/audit/proof/inclusion?index=0&size=2", None),
    "audit_consistency_proof": lambda env: ("GET", "/v1/audit/proof/consistency?first=1&second=2", None),
}


def _new_mitigation(env) -> int:
    """A mitigation about a breach of the first wearer, recorded as a caseworker (returns its id)."""
    subject = env.subjects[0]
    with env.session() as s:
        bid = s.scalars(select(BreachRow.breach_id).where(BreachRow.subject_id == subject)).first()
    r = env.client.post("/v1/mitigations", json=_mitigation_body(subject, bid), headers=env.h("caseworker"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _mitigation_body(subject: str, bid: str) -> dict:
    return {"subject_id": subject, "breach_ids": [bid], "received": "2024-03-10T09:00:00Z", "channel": "letter",
            "text": "The tag was charging: the charger cable was faulty and has been replaced."}


def _call_mitigation_op(env, op: str):
    if op == "record_mitigation":
        subject = env.subjects[0]
        return "POST", "/v1/mitigations", _mitigation_body(subject, _first_id(env, BreachRow.breach_id,
                                                                               BreachRow.subject_id == subject))
    if op == "list_mitigations":
        return "GET", "/v1/mitigations?overdue=true", None
    mid = _new_mitigation(env)
    if op == "get_mitigation":
        return "GET", f"/v1/mitigations/{mid}", None
    decision = {"outcome": "accepted", "reason": "The supplier confirmed the charger fault on that date."}
    if op == "decide_mitigation":
        return "POST", f"/v1/mitigations/{mid}/decision", decision
    assert op == "mitigation_letter", op
    r = env.client.post(f"/v1/mitigations/{mid}/decision", json=decision, headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    return "GET", f"/v1/mitigations/{mid}/letter", None


def _call_escalation_op(env, op: str):
    subject = env.subjects[0]
    if op == "get_escalation":
        return "GET", f"/v1/subjects/{subject}/escalation", None
    if op == "decide_escalation":  # no action, with a reason: valid whatever the ladder proposes
        return "POST", f"/v1/subjects/{subject}/escalation", {"step": None, "reason": "Reviewed with the team."}
    assert op == "escalation_letter", op
    r = env.client.post(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"),
                        json={"step": "warning_letter_1", "reason": "First warning, as agreed with the team."})
    assert r.status_code == 201, r.text
    return "GET", f"/v1/escalations/{r.json()['id']}/letter", None


def _call_review_op(env, op: str):
    """Calls on the last wearer's reviews (its assignments are open-ended in the test home, so it is on
    monitoring now)."""
    subject = env.subjects[-1]
    return {"set_owner": ("PUT", f"/v1/subjects/{subject}/owner", {"owner": "cw-2"}),
            "reviews_due": ("GET", "/v1/reviews/due?within_days=30", None),
            "reviews_overdue": ("GET", "/v1/reviews/overdue", None),
            "review_summary": ("GET", f"/v1/subjects/{subject}/review-summary", None),
            "record_review": ("POST", f"/v1/subjects/{subject}/reviews", {"outcome": "continue"}),
            "report_reviews": ("GET", "/v1/reports/reviews", None),
            "set_language": ("PUT", f"/v1/subjects/{subject}/language", {"language": "cy"}),
            "record_welfare_note": ("POST", f"/v1/subjects/{subject}/welfare-notes",
                                    {"text": "Says the strap rubs; nurse visit arranged."}),
            "list_welfare_notes": ("GET", f"/v1/subjects/{subject}/welfare-notes", None)}[op]


def _call_device_op(env, op: str):
    n = next(_COUNTER)
    if op == "register_device":
        return "PUT", f"/v1/devices/D-REG-{n}", {"serial": f"SN{n}", "model": "GT-3", "batch": "B-7"}
    if op == "list_devices":
        return "GET", "/v1/devices", None
    fault = {"device_id": "D-000000", "start": ts(0), "end": ts(3),
             "description": "The supplier reported a charging fault on this tag."}
    if op == "record_device_fault":
        return "POST", "/v1/device-faults", fault
    if op == "list_device_faults":
        return "GET", "/v1/device-faults", None
    assert op == "decide_equipment_fault", op
    r = env.client.post("/v1/device-faults", json=fault, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    bid = _first_id(env, BreachRow.breach_id, BreachRow.device_id == "D-000000")
    return "POST", f"/v1/breaches/{bid}/equipment-fault", {
        "decision": "fault_cleared", "reason": "The tag charged normally on the night in question."}


def _call_hold_op(env, op: str):
    subject = env.subjects[-1]
    body = {"subject_id": subject, "start": ts(0), "end": ts(3), "classes": ["fixes"], "owner": "ap-1",
            "reason": "Judicial review claim lodged.", "review": "2099-01-01T00:00:00Z"}
    if op == "create_legal_hold":
        return "POST", "/v1/legal-holds", body
    if op == "list_legal_holds":
        return "GET", "/v1/legal-holds?active=true", None
    r = env.client.post("/v1/legal-holds", json=body, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    if op == "review_legal_hold":
        return "POST", f"/v1/legal-holds/{r.json()['id']}/review", {"next_review": "2099-06-01T00:00:00Z",
                                                                     "note": "The claim is still before the court."}
    assert op == "lift_legal_hold", op
    return "POST", f"/v1/legal-holds/{r.json()['id']}/lift", {"reason": "The claim was withdrawn by the claimant."}


def _call(env, op: str, who: str):
    """(method, url, json) for `op` called by `who`, with its preconditions set up; the
    method and path are checked against the hand table's row."""
    if op in _SIMPLE:
        method, url, body = _SIMPLE[op](env)
    elif op in ("register_device", "list_devices", "record_device_fault", "list_device_faults",
                "decide_equipment_fault"):
        method, url, body = _call_device_op(env, op)
    elif op in ("set_owner", "reviews_due", "reviews_overdue", "review_summary", "record_review", "report_reviews",
                "set_language", "record_welfare_note", "list_welfare_notes"):
        method, url, body = _call_review_op(env, op)
    elif op in ("create_legal_hold", "list_legal_holds", "review_legal_hold", "lift_legal_hold"):
        method, url, body = _call_hold_op(env, op)
    elif op in ("get_escalation", "decide_escalation", "escalation_letter"):
        method, url, body = _call_escalation_op(env, op)
    elif EXPECTED[op][1].startswith("/v1/mitigations"):
        method, url, body = _call_mitigation_op(env, op)
    elif EXPECTED[op][1].startswith("/v1/access-requests"):
        method, url, body = _call_request_op(env, op, who)
    else:
        method, url, body = _call_admin_op(env, op)
    want_method, template = EXPECTED[op][:2]
    pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/?]+", re.escape(template))
    assert method == want_method and re.fullmatch(pattern + r"(\?.*)?", url), (op, method, url)
    return method, url, body


def _send(env, method, url, body, who):
    return env.client.request(method, url, json=body, headers=env.h(who))


def _refused_ops(env, who: str) -> list[str]:
    """Operations of the `access.refused` audit entries whose actor is user `who`, oldest first."""
    with env.session() as s:
        entries = s.scalars(select(AuditEntry.entry).where(AuditEntry.action == "access.refused",
                                                           AuditEntry.actor_id == env.user_ids[who])
                            .order_by(AuditEntry.idx)).all()
    return [json.loads(e)["detail"]["operation"] for e in entries]


MATRIX = [(op, role) for op in EXPECTED for role in ROLE_COLUMNS]


@pytest.mark.parametrize(("op", "role"), MATRIX, ids=[f"{op}-{role}" for op, role in MATRIX])
def test_role_matrix(env, op, role):
    """Each cell of ROLE_TABLE: the exact status, and for a refusal the exact message."""
    method, url, body = _call(env, op, role)
    r = _send(env, method, url, body, role)
    want = EXPECTED[op][2][role]
    assert r.status_code == want, (op, role, r.status_code, r.text)
    if want == 403:
        assert r.json() == _role_refusal(role, op)


def test_table_covers_exactly_the_app_operations(env):
    """Every /v1 operation of the app is a row of ROLE_TABLE, with its method and path,
    and every row is an operation of the app."""
    spec = env.client.get("/openapi.json").json()
    routes = {(op["operationId"], method.upper(), path) for path, item in spec["paths"].items()
              if path.startswith("/v1") for method, op in item.items()}
    assert routes == {(op, method, path) for op, (method, path, _) in EXPECTED.items()}


def test_permissions_table_grants_what_the_hand_table_says():
    """The enforced table, compared cell by cell with the hand table (the matrix above shows
    the same through the app; this names the operation and role that differ)."""
    from api.access.permissions import PERMISSIONS

    differ = sorted((op, role, role in PERMISSIONS.get(op, ()), EXPECTED[op][2][role] != 403)
                    for op in EXPECTED for role in ROLE_COLUMNS
                    if (role in PERMISSIONS.get(op, ())) != (EXPECTED[op][2][role] != 403))
    assert differ == [], "(operation, role, PERMISSIONS grants, hand table grants)"
    assert set(PERMISSIONS) == set(EXPECTED)


@pytest.mark.parametrize("op", list(EXPECTED))
@pytest.mark.parametrize("auth", ["none", "empty", "basic", "unknown", "revoked"])
def test_unauthenticated_is_401(env, op, auth):
    method, url, body = _call(env, op, "caseworker")
    headers = {"none": {}, "empty": {"Authorization": "Bearer "}, "basic": {"Authorization": "Basic dXNlcjpwdw=="},
               "unknown": {"Authorization": "Bearer not-a-token"}, "revoked": env.h("revoked")}[auth]
    r = env.client.request(method, url, json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
    want = ("missing bearer token: send 'Authorization: Bearer TOKEN'" if auth in ("none", "empty", "basic")
            else "invalid or revoked token")
    assert r.json() == {"detail": want}


def test_docstrings_state_the_roles(env):
    """Each endpoint's docstring (its OpenAPI description) names exactly the roles
    the hand table allows."""
    spec = env.client.get("/openapi.json").json()
    ops = {op["operationId"]: op for path, item in spec["paths"].items() if path.startswith("/v1")
           for op in item.values()}
    for op_id, op in ops.items():
        m = re.search(r"Roles:(.*?)(?:\n\s*\n|$)", op.get("description", ""), re.S)
        assert m, f"{op_id}: no 'Roles:' in docstring"
        named = {w for w in re.findall(r"[a-z]+", m.group(1)) if w in ROLES}
        assert sorted(named) == _allowed(op_id), op_id
        assert op.get("security"), f"{op_id}: bearer security not declared"


def test_healthz_needs_no_token(env):
    r = env.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "audit": "ok"}


# ------------------------------------------------------------------ explicit negatives

#: What the feed may call: sending, and whether intake is behind. Nothing else, and nothing
#: that returns or concerns a wearer.
FEED_MAY_CALL = ("post_fixes", "stream_status")
#: Operations whose answer or input names a wearer (a request, a breach, an assignment, a zone that is a
#: home, a correction to either): a refused call to one is audited, naming who tried.
CONCERNS_A_WEARER = ("create_access_request", "list_access_requests", "get_access_request", "check_identity",
                     "decide_access_request", "extend_access_request", "withdraw_access_request", "download_extract",
                     "list_subject_breaches", "get_subject", "subject_compliance", "get_subject_evidence",
                     "breach_queue", "get_breach",
                     "get_breach_evidence", "set_breach_status", "list_assignments", "record_mitigation",
                     "list_mitigations", "get_mitigation", "decide_mitigation", "mitigation_letter",
                     "get_escalation", "decide_escalation", "escalation_letter", "set_owner", "reviews_due",
                     "reviews_overdue", "review_summary", "record_review", "decide_equipment_fault",
                     "list_notifications", "report_device_health", "set_language", "record_welfare_note",
                     "list_welfare_notes", "create_legal_hold", "list_legal_holds", "review_legal_hold",
                     "lift_legal_hold",
                     "upsert_assignment", "upsert_zone", "list_zone_versions", "propose_correction",
                     "decide_correction")


def test_feed_never_reads_personal_data(env):
    """The supplier's machine account is refused (403, exact message) on every operation but
    sending fixes and stream status; each refusal on a wearer's data is audited under its
    name; and what it may call answers with counts, never a wearer or a position."""
    before = _refused_ops(env, "feed")
    refused = [op for op in EXPECTED if op not in FEED_MAY_CALL]
    assert set(CONCERNS_A_WEARER) <= set(refused)
    for op in refused:
        method, url, body = _call(env, op, "feed")
        r = _send(env, method, url, body, "feed")
        assert (r.status_code, r.json()) == (403, _role_refusal("feed", op)), op
    assert _refused_ops(env, "feed")[len(before):] == [op for op in refused if op in CONCERNS_A_WEARER]
    r = _send(env, *_call(env, "post_fixes", "feed"), "feed")
    assert r.status_code == 200 and set(r.json()) == {"batch_id", "fixes", "events"}
    assert set(r.json()["fixes"]) == {"received", "accepted", "quarantined"}
    r = _send(env, *_call(env, "stream_status", "feed"), "feed")
    assert r.status_code == 200
    assert set(r.json()) == {"pending_fixes", "pending_events", "as_of", "last_error", "processed_batch", "running",
                             "failed_assignments"}


def test_requester_never_decides(env):
    """An external requester cannot decide a request (its own or anyone's), confirm an
    identity, or decide a correction: 403 with the role message each time, audited, and
    its request stays pending."""
    own = create_request(env, "requester")
    other = create_request(env, "caseworker")
    before = _refused_ops(env, "requester")
    verdict = {"outcome": "data_provided", "reason": "Necessary and proportionate for the stated ground and period."}
    for rid in (own["id"], other["id"]):
        r = env.client.post(f"/v1/access-requests/{rid}/decision", json=verdict, headers=env.h("requester"))
        assert (r.status_code, r.json()) == (403, {"detail": "role 'requester' may not call decide_access_request: "
                                                             "allowed roles are approver"})
    r = env.client.post(f"/v1/access-requests/{own['id']}/identity-check", json=IDENTITY_NOTE,
                        headers=env.h("requester"))
    assert (r.status_code, r.json()) == (403, {"detail": "role 'requester' may not call check_identity: "
                                                         "allowed roles are approver"})
    r = env.client.post("/v1/admin/corrections/1/decision", json={"approve": True, "reason": verdict["reason"]},
                        headers=env.h("requester"))
    assert (r.status_code, r.json()) == (403, {"detail": "role 'requester' may not call decide_correction: "
                                                         "allowed roles are admin"})
    assert _refused_ops(env, "requester")[len(before):] == ["decide_access_request", "decide_access_request",
                                                            "check_identity", "decide_correction"]
    got = env.client.get(f"/v1/access-requests/{own['id']}", headers=env.h("requester")).json()
    assert (got["status"], got["outcome"], got["identity_checked"]) == ("pending", None, False)


def _add_user(env, name: str, role: str) -> tuple[int, str]:
    with env.session() as s:
        user, token = add_user(s, env.app.state.audit, name=name, role=role, org="home office")
        s.commit()
        return user.id, token


def test_approver_never_decides_their_own_request(env):
    """Approvers cannot ask (so cannot make a request as approvers); a request made by the
    approver's own account, or by another account of the same person (a caseworker now an
    approver), cannot be decided or identity-checked by them: 403 with the exact message.
    Another approver can decide it."""
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]), headers=env.h("approver"))
    assert (r.status_code, r.json()) == (403, {"detail": "role 'approver' may not call create_access_request: "
                                                         "allowed roles are caseworker, requester"})
    verdict = {"outcome": "data_provided", "reason": "Necessary and proportionate for the stated ground and period."}
    # the plain case: the request's maker is this very account (as a request row migrated or restored would say)
    req = create_request(env, "caseworker")
    me = env.user_ids["approver"]
    with env.session() as s:
        s.execute(update(AccessRequest).where(AccessRequest.id == req["id"]).values(requester_id=me))
        s.commit()
    r = env.client.post(f"/v1/access-requests/{req['id']}/decision", json=verdict, headers=env.h("approver"))
    assert (r.status_code, r.json()) == (403, {"detail": f"the approver is never the requester: user {me} made "
                                                         f"access request {req['id']} and may not decide it"})
    r = env.client.post(f"/v1/access-requests/{req['id']}/identity-check", json=IDENTITY_NOTE,
                        headers=env.h("approver"))
    assert (r.status_code, r.json()) == (403, {"detail": f"the approver is never the requester: user {me} made "
                                                         f"access request {req['id']} and may not confirm the "
                                                         f"identity on it"})
    # the person case: caseworker 'dana' asks, leaves, and comes back as approver 'Dana'
    old_id, old_token = _add_user(env, "dana", "caseworker")
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]),
                        headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    with env.session() as s:
        revoke_user(s, env.app.state.audit, name="dana")
        s.commit()
    new_id, new_token = _add_user(env, "Dana", "approver")
    r = env.client.post(f"/v1/access-requests/{rid}/decision", json=verdict,
                        headers={"Authorization": f"Bearer {new_token}"})
    assert (r.status_code, r.json()) == (403, {"detail": f"the approver is never the requester: user {new_id} "
                                                         f"('Dana') is the same person as user {old_id} ('dana'), "
                                                         f"who made access request {rid}, and may not decide it"})
    assert env.client.get(f"/v1/access-requests/{rid}", headers=env.h("auditor")).json()["status"] == "pending"
    assert decide(env, rid, who="approver2").status_code == 200  # a second person may


# ------------------------------------------------------------------ record-level rules on top of the roles

def test_requester_sees_only_own_requests(env):
    mine = create_request(env, "requester")
    theirs = create_request(env, "probation")
    r = env.client.get(f"/v1/access-requests/{theirs['id']}", headers=env.h("requester"))
    with env.session() as s:  # an external requester gets the generic refusal naming the audit entry of the reason
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "access.refused")
                          .order_by(AuditEntry.idx.desc())).first()
    assert (r.status_code, r.json()) == (403, {"detail": f"this request was refused; the EM Hub can tell you why: "
                                                         f"quote reference A-{entry.idx}"})
    detail = json.loads(entry.entry)["detail"]
    assert (entry.actor_id, detail["operation"], detail["status"]) == (env.user_ids["requester"], "get_access_request",
                                                                        403)
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
