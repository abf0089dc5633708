"""End to end over HTTP: ask, confirm identity, decide, download, withdraw,
reject; the rules that stop each step; concurrency; restart; reports; and an
audit log that holds every step, no coordinates, and verifies."""
from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter

from sqlalchemy import func, select

from api.cli.main import main
from api.db.models import AccessRequest, AuditEntry, BreachRow
from api_fixtures import (DAY_MS, VALID_TEXT, api_env, api_template, close_env, copy_env, create_request,  # noqa: F401
                          decide, make_env, request_body, ts)
from trails.timestamps import parse_timestamp

NOTE = {"note": "Confirmed by call-back to the force control room, warrant number checked."}
COORD_KEYS = {"lat", "lon", "latitude", "longitude", "x", "y", "coordinates", "geometry"}


def _check_identity(env, rid, who="approver"):
    return env.client.post(f"/v1/access-requests/{rid}/identity-check", json=NOTE, headers=env.h(who))


def _audit_rows(env, **where):
    with env.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.idx)
        for k, v in where.items():
            q = q.where(getattr(AuditEntry, k) == v)
        return list(s.scalars(q))


def _walk_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v)


def _feature_times(doc: dict) -> list[int]:
    out = []
    for f in doc["features"]:
        if f["geometry"]["type"] != "Point":
            continue
        props = f.get("properties") or {}
        key = next(k for k in ("ts", "time", "timestamp") if k in props)
        out.append(parse_timestamp(props[key]))
    return out


def test_end_to_end(api_template, tmp_path):
    env = copy_env(api_template, tmp_path / "home")
    c, subject = env.client, env.subjects[0]
    outcomes = Counter()  # (outcome label, kind) -> n, what the report must show

    # 1. the police ask for a trail
    req = create_request(env, "requester", ground="breach_allegation", start=ts(1, 0), end=ts(2, 0),
                         reference="POL-2024-0042")
    rid = req["id"]
    assert (req["status"], req["too_broad"], req["identity_checked"], req["requester_id"]) == (
        "pending", False, False, env.user_ids["requester"])
    assert (req["start"], req["end"]) == ("2024-03-05T00:00:00.000Z", "2024-03-06T00:00:00.000Z")

    # 2. an external request cannot be decided before the identity check
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 6), end=ts(1, 12))
    assert r.status_code == 409
    assert r.json() == {"detail": f"access request {rid} is from an external requester: confirm their identity "
                                  f"(POST /v1/access-requests/{rid}/identity-check) before deciding"}
    r = _check_identity(env, rid)
    assert r.status_code == 200 and r.json()["identity_checked"] is True
    assert r.json()["identity_checked_by"] == env.user_ids["approver"]
    assert _check_identity(env, rid).status_code == 409

    # 3. partial: the period must be a strict sub-period
    r = decide(env, rid, outcome="partial_data_provided")
    assert r.status_code == 422
    assert r.json() == {"detail": "partial_data_provided needs start and end: the narrower period provided"}
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 0), end=ts(2, 0))
    assert r.status_code == 422 and "not a strict sub-period" in r.json()["detail"]
    r = decide(env, rid, outcome="partial_data_provided", start=ts(0, 23), end=ts(1, 12))
    assert r.status_code == 422 and "not a strict sub-period" in r.json()["detail"]
    r = decide(env, rid, outcome="rejected_other", start=ts(1, 6), end=ts(1, 12))
    assert r.status_code == 422
    assert r.json() == {"detail": "start/end narrow the period and go only with partial_data_provided, "
                                  "not rejected_other"}
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 6), end=ts(1, 12))
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["status"], d["outcome"], d["approved_start"], d["approved_end"], d["decided_by"]) == (
        "decided", "partial_data_provided", "2024-03-05T06:00:00.000Z", "2024-03-05T12:00:00.000Z",
        env.user_ids["approver"])
    assert d["guidance_version"] == "EM-access-guidance-2024.1"
    assert parse_timestamp(d["expires_at"]) - parse_timestamp(d["decided_at"]) == 7 * DAY_MS
    outcomes[("partial_data_provided", "trail")] += 1
    r = decide(env, rid, who="approver2", outcome="data_provided")
    assert r.status_code == 409 and r.json() == {"detail": f"access request {rid} is decided, not pending"}

    # 4. the requester downloads the narrowed period only
    r = c.get(f"/v1/access-requests/{rid}/extract?format=geojson", headers=env.h("requester"))
    assert r.status_code == 200, r.text
    body = r.content
    sha = hashlib.sha256(body).hexdigest()
    assert r.headers["X-Extract-SHA256"] == sha
    assert r.headers["Content-Type"].startswith("application/geo+json")
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    times = _feature_times(json.loads(body))
    assert times, "the narrowed period has fixes"
    assert all(parse_timestamp(ts(1, 6)) <= t < parse_timestamp(ts(1, 12)) for t in times)
    (dl,) = _audit_rows(env, action="extract.download")
    assert (dl.extract_sha256, dl.request_id, dl.ground, dl.justification_ref, dl.actor_id) == (
        sha, rid, "breach_allegation", f"request:{rid}", env.user_ids["requester"])  # the reference stays in the table
    for fmt in ("csv", "gpx"):
        r = c.get(f"/v1/access-requests/{rid}/extract?format={fmt}", headers=env.h("requester"))
        assert r.status_code == 200 and r.headers["X-Extract-SHA256"] == hashlib.sha256(r.content).hexdigest()
    r = c.get(f"/v1/access-requests/{rid}/extract?format=json", headers=env.h("requester"))
    assert r.status_code == 422
    assert r.json() == {"detail": "format 'json' is not available for a trail request: use geojson or csv or gpx"}

    # 5. withdrawn: only while pending, only once
    w = create_request(env, "requester", reference=None)
    r = c.post(f"/v1/access-requests/{w['id']}/withdraw", headers=env.h("requester"))
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    outcomes[("withdrawn", "trail")] += 1
    assert c.post(f"/v1/access-requests/{w['id']}/withdraw", headers=env.h("requester")).status_code == 409
    assert _check_identity(env, w["id"]).status_code == 409
    r = c.get(f"/v1/access-requests/{w['id']}/extract", headers=env.h("requester"))
    assert r.status_code == 409 and r.json() == {"detail": f"access request {w['id']} has no approved data (withdrawn)"}

    # 6. too broad: accepted, flagged, cannot be approved as asked
    tb = create_request(env, "caseworker", ground="breach_allegation", start=ts(0, 0), end=ts(20, 0))
    assert tb["too_broad"] is True and tb["max_period_days"] == 14
    r = decide(env, tb["id"], outcome="data_provided")
    assert r.status_code == 409
    assert r.json() == {"detail": f"access request {tb['id']} is too broad for ground breach_allegation (14 days at "
                                  f"most): decide partial_data_provided with a narrower period, or rejected_too_broad"}
    r = decide(env, tb["id"], outcome="partial_data_provided", start=ts(0, 0), end=ts(19, 0))
    assert r.status_code == 409 and "still longer than the 14 days" in r.json()["detail"]
    r = decide(env, tb["id"], outcome="rejected_too_broad")
    assert r.status_code == 200 and r.json()["outcome"] == "rejected_too_broad"
    outcomes[("rejected_too_broad", "trail")] += 1
    r = c.get(f"/v1/access-requests/{tb['id']}/extract", headers=env.h("caseworker"))
    assert r.status_code == 409

    # 7. the approver never decides a request they made (e.g. made before a change of role)
    with env.session() as s:
        own = AccessRequest(requester_id=env.user_ids["approver"], subject_id=subject, kind="trail",
                            ground="absconded", start_ms=parse_timestamp(ts(1)), end_ms=parse_timestamp(ts(2)),
                            justification=VALID_TEXT, necessity=VALID_TEXT, urgency="routine", too_broad=False,
                            status="pending", created_ms=env.clock(), version=1)
        s.add(own)
        s.commit()
        own_id = own.id
    outcomes[("pending", "trail")] += 1
    r = decide(env, own_id)
    assert r.status_code == 403
    assert r.json() == {"detail": f"the approver is never the requester: user {env.user_ids['approver']} made "
                                  f"access request {own_id} and may not decide it"}

    # 8. an attendance request, approved in full (internal: no identity check needed)
    at = create_request(env, "caseworker", kind="attendance", ground="article8", start=ts(0), end=ts(3))
    assert decide(env, at["id"], who="approver2").status_code == 200
    outcomes[("data_provided", "attendance")] += 1
    r = c.get(f"/v1/access-requests/{at['id']}/extract", headers=env.h("caseworker"))
    assert r.status_code == 200 and r.headers["X-Extract-SHA256"] == hashlib.sha256(r.content).hexdigest()

    # 9. concurrent decisions by two approvers: exactly one wins
    cc = create_request(env, "caseworker")
    results = []
    barrier = threading.Barrier(2)

    def _go(who, outcome):
        barrier.wait()
        results.append(decide(env, cc["id"], who=who, outcome=outcome).status_code)

    threads = [threading.Thread(target=_go, args=("approver", "data_provided")),
               threading.Thread(target=_go, args=("approver2", "rejected_other"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409], results
    final = c.get(f"/v1/access-requests/{cc['id']}", headers=env.h("auditor")).json()
    assert final["version"] == 2
    outcomes[(final["outcome"], "trail")] += 1
    with env.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "request.decide", AuditEntry.request_id == cc["id"])) == 1

    # 10. restart: a new app on the same HOME keeps requests, users and the log
    before = c.get("/v1/access-requests", headers=env.h("auditor")).json()
    n_audit = len(_audit_rows(env))
    close_env(env)
    env = make_env(env.home, create_users=False, tokens=env.tokens)
    c = env.client
    after = c.get("/v1/access-requests", headers=env.h("auditor")).json()
    assert [i for i in after["items"]] == [i for i in before["items"]]
    assert len(_audit_rows(env)) == n_audit + 1  # the list read after restart
    r = c.get(f"/v1/access-requests/{rid}/extract?format=geojson", headers=env.h("requester"))
    assert r.status_code == 200 and r.content == body  # same data, same bytes

    # 11. the approval expires
    env.clock.offset_ms = 7 * DAY_MS + 1000
    r = c.get(f"/v1/access-requests/{rid}/extract", headers=env.h("requester"))
    assert r.status_code == 410
    assert r.json() == {"detail": f"the approval of access request {rid} expired at {d['expires_at']}"}
    env.clock.offset_ms = 0

    # 12. reports match what was created
    r = c.get("/v1/reports/access-requests", headers=env.h("auditor"))
    assert r.status_code == 200
    rep = r.json()
    for row in rep["rows"]:
        for kind in ("trail", "attendance"):
            assert row[kind] == outcomes[(row["outcome"], kind)], (row, outcomes)
        assert row["total"] == row["trail"] + row["attendance"]
    assert rep["totals"]["total"] == sum(outcomes.values()) == 6
    assert {o["org"]: o["total"] for o in rep["by_org"]} == {"police": 2, "home office": 4}
    r = c.get("/v1/reports/access-requests?format=csv", headers=env.h("approver"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "outcome,trail,attendance,sar,total" and lines[-1] == "total,5,1,0,6"
    r = c.get("/v1/reports/access-requests?from=2000-01-01T00:00:00Z&to=2000-02-01T00:00:00Z",
              headers=env.h("admin"))
    assert r.json()["totals"]["total"] == 0

    r = c.get("/v1/reports/breaches", headers=env.h("auditor"))
    assert r.status_code == 200
    brep = r.json()
    with env.session() as s:
        by_type = dict(s.execute(select(BreachRow.type, func.count()).where(BreachRow.kind == "breach")
                                 .group_by(BreachRow.type)).all())
    assert by_type, "the simulated data has breaches"
    assert {row["type"]: row["total"] for row in brep["rows"]} == by_type
    assert brep["totals"]["total"] == sum(by_type.values())
    assert brep["months"] == ["2024-03"]
    assert sum(brep["totals"]["months"].values()) == brep["totals"]["total"]
    assert brep["withdrawn"] == {"months": {"2024-03": 0}, "total": 0}
    r = c.get("/v1/reports/breaches?format=csv", headers=env.h("auditor"))
    assert r.text.splitlines()[-2:] == [f"total,{brep['totals']['total']},{brep['totals']['total']}", "withdrawn,0,0"]

    # 13. every step is in the audit log, without coordinates or subject ids
    actions = Counter(e.action for e in _audit_rows(env))
    for a in ("request.create", "request.identity_check", "request.decide", "request.withdraw", "request.read",
              "request.list", "extract.download", "report.read"):
        assert actions[a] >= 1, a
    assert actions["extract.download"] == 5  # geojson, csv, gpx, attendance, after restart (not the refused ones)
    for e in _audit_rows(env):
        doc = json.loads(e.entry)
        assert not COORD_KEYS & set(_walk_keys(doc)), e.entry
        for sid in env.subjects:
            assert sid not in e.entry
    close_env(env)

    # 14. and the log verifies
    assert main(["audit", "verify", "--home", str(env.home)]) == 0


def test_bail_breach_needs_the_breach(api_env):
    env = api_env
    with env.session() as s:
        b = s.scalars(select(BreachRow).where(BreachRow.kind == "breach").order_by(BreachRow.start_ms)).first()
        other = s.scalars(select(BreachRow).where(BreachRow.subject_id != b.subject_id)).first()
    start_ms, end_ms = b.start_ms - 3_600_000, b.end_ms + 3_600_000
    from trails.timestamps import format_ms

    base = request_body(b.subject_id, ground="bail_breach", start=format_ms(start_ms), end=format_ms(end_ms))
    for ref, expected in ((None, "ground bail_breach needs reference: the breach_id of the breach concerned"),
                          ("nope", None), (other.breach_id if other else "x", None)):
        body = {k: v for k, v in base.items() if k != "reference"}
        if ref is not None:
            body["reference"] = ref
        r = env.client.post("/v1/access-requests", json=body, headers=env.h("caseworker"))
        assert r.status_code == 422, r.text
        if expected:
            assert r.json() == {"detail": expected}
        else:
            assert r.json()["detail"].startswith(f"reference {ref!r} is not a breach of subject {b.subject_id!r}")
    # a breach of that subject but outside the period
    far = request_body(b.subject_id, ground="bail_breach", reference=b.breach_id,
                       start=format_ms(b.end_ms + DAY_MS), end=format_ms(b.end_ms + 2 * DAY_MS))
    assert env.client.post("/v1/access-requests", json=far, headers=env.h("caseworker")).status_code == 422
    ok = dict(base, reference=b.breach_id)
    r = env.client.post("/v1/access-requests", json=ok, headers=env.h("caseworker"))
    assert r.status_code == 201, r.text
    assert r.json()["justification"] == VALID_TEXT
    (entry,) = _audit_rows(env, action="request.create")
    assert entry.justification_ref == f"breach:{b.breach_id}" and entry.ground == "bail_breach"


def test_period_rules(api_env):
    env = api_env
    post = lambda **kw: env.client.post("/v1/access-requests", json=request_body(env.subjects[0], **kw),  # noqa: E731
                                        headers=env.h("caseworker"))
    r = post(start="2024-03-01T00:00:00Z", end="2024-03-05T00:00:00Z")
    assert r.status_code == 422
    assert r.json() == {"detail": f"period 2024-03-01T00:00:00.000Z..2024-03-05T00:00:00.000Z is not inside the "
                                  f"monitoring of subject {env.subjects[0]!r} (2024-03-04T00:00:00.000Z..open)"}
    r = post(start=ts(2), end=ts(1))
    assert r.status_code == 422
    assert r.json() == {"detail": f"start {ts(2)!r} must be before end {ts(1)!r}"}
    r = env.client.post("/v1/access-requests", json=request_body("NO-SUCH-WEARER"), headers=env.h("caseworker"))
    assert r.status_code == 404 and r.json() == {"detail": "subject 'NO-SUCH-WEARER' has no monitoring record"}
    r = post(start="2024-03-05T01:00:00+01:00", end="2024-03-05T12:00:00-05:00", respond_by="2024-03-06T09:00:00Z")
    assert r.status_code == 201
    assert (r.json()["start"], r.json()["end"], r.json()["respond_by"]) == (
        "2024-03-05T00:00:00.000Z", "2024-03-05T17:00:00.000Z", "2024-03-06T09:00:00.000Z")
    # reads are audited too
    rid = r.json()["id"]
    env.client.get(f"/v1/access-requests/{rid}", headers=env.h("auditor"))
    env.client.get(f"/v1/subjects/{env.subjects[0]}/breaches?priority=2", headers=env.h("caseworker"))
    actions = [e.action for e in _audit_rows(env)][-3:]
    assert actions == ["request.create", "request.read", "breach.read"]


def test_breaches_for_subject(api_env):
    env = api_env
    sid = env.subjects[0]
    r = env.client.get(f"/v1/subjects/{sid}/breaches", headers=env.h("caseworker"))
    assert r.status_code == 200
    items = r.json()["items"]
    with env.session() as s:
        n = s.scalar(select(func.count()).select_from(BreachRow).where(BreachRow.subject_id == sid))
    assert len(items) == r.json()["count"] == n  # none withdrawn in the simulated home
    fields = {"breach_id", "kind", "type", "subject_id", "device_id", "zone_id", "start", "end", "duration_s", "priority",
              "status", "withdrawn_reason"}
    assert all(set(i) == fields and i["subject_id"] == sid and i["status"] == "new" for i in items)
    if items:
        t, p = items[0]["type"], items[0]["priority"]
        r = env.client.get(f"/v1/subjects/{sid}/breaches", params={"type": t, "priority": p},
                           headers=env.h("auditor"))
        assert r.json()["items"] and all(i["type"] == t and i["priority"] == p for i in r.json()["items"])
    r = env.client.get("/v1/subjects/NOBODY/breaches", headers=env.h("caseworker"))
    assert r.status_code == 404 and r.json() == {"detail": "subject 'NOBODY' is not in the database"}


def test_audit_endpoints(api_env):
    env = api_env
    h = env.h("auditor")
    r = env.client.get("/v1/audit/checkpoint", headers=h)
    assert r.status_code == 200
    size = len(_audit_rows(env))
    r = env.client.get(f"/v1/audit/proof/inclusion?index=0&size={size}", headers=h)
    assert r.status_code == 200, r.text
    r = env.client.get(f"/v1/audit/proof/consistency?first=1&second={size}", headers=h)
    assert r.status_code == 200, r.text
    for url in (f"/v1/audit/proof/inclusion?index={size}&size={size}", "/v1/audit/proof/inclusion?index=0&size=999999",
                "/v1/audit/proof/consistency?first=5&second=2"):
        r = env.client.get(url, headers=h)
        assert r.status_code == 422, (url, r.text)  # invalid input is 422 everywhere (issue 11)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    for url in ("/v1/audit/proof/inclusion?index=-1&size=2", "/v1/audit/proof/inclusion?index=a&size=2",
                f"/v1/audit/proof/inclusion?index=0&size={10**30}", "/v1/audit/proof/consistency?first=1"):
        assert env.client.get(url, headers=h).status_code == 422, url
    reads = _audit_rows(env, action="audit.read")
    assert len(reads) == 3  # the three answered reads, not the refused ones
