"""The breach queue's gaps (tagtrail issue 11): a record's history can be read
back (`GET /v1/breaches/{id}`: every status change with who, when, the
assignee it left and its note, audited as a read), and the queue filters by
`type` and `subject_id` instead of silently ignoring them."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from api.db.models import AuditEntry, BreachRow
from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)

T0 = 1_712_000_000_000  # 2024-04-01T19:33:20Z
T1 = T0 + 90_000


@pytest.fixture()
def env(api_env):
    return api_env


def _rows(env) -> list[BreachRow]:
    with env.session() as s:
        return list(s.scalars(select(BreachRow)))


def _last_entry(env, action: str) -> dict:
    with env.session() as s:
        return json.loads(s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.idx.desc())).first())


def _change(env, bid: str, at_ms: int, body: dict, who: str = "caseworker"):
    env.app.state.clock = lambda: at_ms
    r = env.client.post(f"/v1/breaches/{bid}/status", json=body, headers=env.h(who))
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ history

def test_history_reads_back_every_change_with_who_when_assignee_and_note(env):
    """Before issue 11, notes written on a status change could never be read back."""
    b = next(r for r in _rows(env) if r.status == "new")
    _change(env, b.breach_id, T0, {"status": "in_review", "assignee": "cw-2", "note": "Rang the wearer: no answer."})
    _change(env, b.breach_id, T1, {"status": "actioned", "note": "Visited; breach confirmed."}, who="caseworker2")
    env.app.state.clock = lambda: T1 + 1
    r = env.client.get(f"/v1/breaches/{b.breach_id}", headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["breach_id"] == b.breach_id and got["subject_id"] == b.subject_id and got["type"] == b.type
    assert got["status"] == "actioned" and got["assignee"] == "cw-2"  # the second change left the assignee alone
    assert got["status_changed"] == "2024-04-01T19:34:50.000Z"
    ids = [h["event_id"] for h in got["history"]]
    assert ids == sorted(ids) and len(ids) == 2
    assert [{k: v for k, v in h.items() if k != "event_id"} for h in got["history"]] == [
        {"at": "2024-04-01T19:33:20.000Z", "user_id": env.user_ids["caseworker"], "user": "cw-1",
         "from_status": "new", "to_status": "in_review", "assignee": "cw-2", "note": "Rang the wearer: no answer."},
        {"at": "2024-04-01T19:34:50.000Z", "user_id": env.user_ids["caseworker2"], "user": "cw-2",
         "from_status": "in_review", "to_status": "actioned", "assignee": "cw-2", "note": "Visited; breach confirmed."},
    ]
    # audited as a read: who, the wearer by pseudonym only, the events shown; never the notes
    entry = _last_entry(env, "breach.read")
    assert entry["actor"] == "au-1" and entry["role"] == "auditor"
    assert entry["subject"] == env.app.state.audit.pseudonym(b.subject_id)
    assert entry["justification_ref"] == f"breach:{b.breach_id}"
    assert entry["detail"] == {"breach_id": b.breach_id, "event_ids": ids}
    assert "Rang the wearer" not in json.dumps(entry) and b.subject_id not in json.dumps(entry)


def test_record_without_changes_has_empty_history(env):
    b = next(r for r in _rows(env) if r.status == "new")
    r = env.client.get(f"/v1/breaches/{b.breach_id}", headers=env.h("caseworker"))
    assert r.status_code == 200 and r.json()["history"] == [] and r.json()["status"] == "new"


def test_unknown_and_malformed_breach_ids(env):
    r = env.client.get("/v1/breaches/00000000000000ff", headers=env.h("caseworker"))
    assert r.status_code == 404 and r.json() == {"detail": "breach 00000000000000ff not found"}
    r = env.client.get("/v1/breaches/NOT-AN-ID", headers=env.h("caseworker"))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["path", "breach_id"]


@pytest.mark.parametrize("who", ["caseworker", "approver", "auditor", "admin"])
def test_staff_read_history(env, who):
    bid = _rows(env)[0].breach_id
    assert env.client.get(f"/v1/breaches/{bid}", headers=env.h(who)).status_code == 200


def test_feed_and_requesters_may_not(env):
    bid = _rows(env)[0].breach_id
    r = env.client.get(f"/v1/breaches/{bid}", headers=env.h("feed"))
    assert r.status_code == 403 and r.json() == {
        "detail": "role 'feed' may not call get_breach: allowed roles are admin, approver, auditor, caseworker"}
    r = env.client.get(f"/v1/breaches/{bid}", headers=env.h("requester"))
    assert r.status_code == 403  # a refusal on the role says nothing about any wearer: not masked
    assert r.json() == {"detail": "role 'requester' may not call get_breach: allowed roles are admin, approver, "
                                  "auditor, caseworker"}
    refused = _last_entry(env, "access.refused")  # personal data: the refusal is audited
    assert refused["detail"]["operation"] == "get_breach" and refused["detail"]["status"] == 403


def test_history_route_does_not_shadow_the_queue(env):
    assert env.client.get("/v1/breaches/queue", headers=env.h("caseworker")).status_code == 200
    assert env.client.get("/v1/breaches/stream-status", headers=env.h("admin")).status_code == 200


# ------------------------------------------------------------------ queue filters

def _queue(env, query: str) -> list[str]:
    r = env.client.get(f"/v1/breaches/queue?limit=500&{query}", headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    assert r.json()["total"] == r.json()["count"]
    return sorted(i["breach_id"] for i in r.json()["items"])


def test_queue_filters_by_type(env):
    """Before issue 11 `type=` was ignored: every open record came back."""
    rows = [r for r in _rows(env) if r.status in ("new", "in_review")]
    types = sorted({r.type for r in rows})
    assert len(types) >= 2  # the filter must have something to leave out
    for t in types:
        assert _queue(env, f"type={t}") == sorted(r.breach_id for r in rows if r.type == t)
    two = types[:2]
    assert _queue(env, f"type={two[0]}&type={two[1]}") == sorted(r.breach_id for r in rows if r.type in two)


def test_queue_filters_by_subject(env):
    rows = [r for r in _rows(env) if r.status in ("new", "in_review")]
    subjects = sorted({r.subject_id for r in rows})
    assert len(subjects) >= 2
    for sid in subjects:
        assert _queue(env, f"subject_id={sid}") == sorted(r.breach_id for r in rows if r.subject_id == sid)
    assert _queue(env, "subject_id=S-NOBODY") == []
    entry = _last_entry(env, "breach.queue.read")  # the filter's wearer is in the log by pseudonym
    assert entry["subject"] == env.app.state.audit.pseudonym("S-NOBODY")


def test_queue_filters_combine(env):
    rows = [r for r in _rows(env) if r.status in ("new", "in_review")]
    sid, t = rows[0].subject_id, rows[0].type
    want = sorted(r.breach_id for r in rows if r.subject_id == sid and r.type == t)
    assert want and _queue(env, f"subject_id={sid}&type={t}") == want


def test_queue_type_must_be_a_record_type(env):
    r = env.client.get("/v1/breaches/queue?type=speeding", headers=env.h("caseworker"))
    assert r.status_code == 422
    (err,) = r.json()["errors"]
    assert err["loc"] == ["query", "type", 0] and err["type"] == "literal_error"
    assert err["msg"].startswith("Input should be 'curfew_absence', 'inclusion_exit'")
