"""Issue 13, section 3: the escalation ladder. The ladder is data
(HOME/escalation.json, validated, named by its SHA-256); the proposal is a
pure function of the wearer's breaches, their excuses, the decisions taken
and the instant (a property test: any order of the same inputs, the same
proposal; one more unexcused breach never proposes a lower step); and over
HTTP a ladder is walked from a first warning to referral, an excused breach
does not count, an override needs a reason, and each letter's SHA-256 is in
the audit log."""
from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from api.service.ladder import DEFAULT_LADDER, Counted, LadderError, Taken, parse_ladder, propose
from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from trails.timestamps import DAY_MS, format_ms

LADDER = parse_ladder(DEFAULT_LADDER)
NOW = 1_710_000_000_000  # 2024-03-09T16:00Z


def _rec(n: int, *, days_ago: float = 1, type: str = "curfew_absence", priority: int = 2, **kw) -> Counted:
    fields = dict(breach_id=f"{n:016x}", kind="breach", type=type, priority=priority,
                  start_ms=NOW - int(days_ago * DAY_MS), withdrawn=False, excused=False)
    return Counted(**{**fields, **kw})


# ------------------------------------------------------------------ the ladder as data

def test_default_ladder_by_hand():
    assert [propose(LADDER, [_rec(i) for i in range(n)], [], NOW).step for n in range(7)] == [
        None, "warning_letter_1", "warning_letter_1", "warning_letter_2", "warning_letter_2", "refer_case_owner",
        "refer_case_owner"]
    # taken steps are not proposed again inside the window; the next threshold is
    taken = [Taken("warning_letter_1", NOW - DAY_MS)]
    assert propose(LADDER, [_rec(0), _rec(1)], taken, NOW).step is None
    assert propose(LADDER, [_rec(i) for i in range(3)], taken, NOW).step == "warning_letter_2"
    # withdrawn, excused, alerts and breaches older than 182 days do not count
    ignored = [_rec(1, withdrawn=True), _rec(2, excused=True), _rec(3, kind="alert"), _rec(4, days_ago=183)]
    assert propose(LADDER, ignored, [], NOW).step is None
    # a P1 strap tamper goes straight to referral, once per decision
    tamper = _rec(9, type="strap_tamper", priority=1, days_ago=0.5)
    assert propose(LADDER, [tamper], [], NOW).step == "refer_immediately"
    assert propose(LADDER, [tamper], [Taken("refer_immediately", NOW - 1000)], NOW).step == "warning_letter_1"


@pytest.mark.parametrize(("doc", "message"), [
    ({"window_days": 0, "steps": [{"step": "a", "at": 1}]}, "window_days must be a whole number of days"),
    ({"window_days": 30, "steps": []}, "steps must be a non-empty list"),
    ({"window_days": 30, "steps": [{"step": "a", "at": 2}, {"step": "b", "at": 2}]},
     "steps[1].at must be greater than the step before's (2), got 2"),
    ({"window_days": 30, "steps": [{"step": "a", "at": 1}], "immediate": [
        {"step": "b", "types": ["teleport"], "priority": 1}]}, "immediate[0] must be"),
    ({"window_days": 30, "steps": [{"step": "a", "at": 1}, {"step": "a", "at": 2}]}, "step names must be unique"),
    ({"window_days": 30, "steps": [{"step": "Letter One", "at": 1}]}, "steps[0] must be"),
])
def test_bad_ladders_are_refused_naming_the_key(doc, message):
    with pytest.raises(LadderError) as err:
        parse_ladder(doc)
    assert message in str(err.value) and str(err.value).startswith("escalation.json: ")


def test_version_is_the_documents_canonical_hash():
    import rfc8785

    assert LADDER.version == hashlib.sha256(rfc8785.dumps(DEFAULT_LADDER)).hexdigest()
    reordered = json.loads(json.dumps({k: DEFAULT_LADDER[k] for k in reversed(list(DEFAULT_LADDER))}))
    assert parse_ladder(reordered).version == LADDER.version  # key order does not change the version


_records = st.lists(st.builds(
    lambda n, d, t, p, w, e, k: _rec(n, days_ago=d, type=t, priority=p, withdrawn=w, excused=e, kind=k),
    st.integers(0, 10_000), st.floats(0, 400), st.sampled_from(["curfew_absence", "strap_tamper", "battery"]),
    st.integers(1, 4), st.booleans(), st.booleans(), st.sampled_from(["breach", "alert"])),
    max_size=12, unique_by=lambda r: r.breach_id)
_taken = st.lists(st.builds(lambda s, d: Taken(s, NOW - int(d * DAY_MS)),
                            st.sampled_from(["warning_letter_1", "warning_letter_2", "refer_case_owner",
                                             "refer_immediately"]), st.floats(0, 300)), max_size=4)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(records=_records, taken=_taken, seed=st.randoms(use_true_random=False))
def test_same_inputs_in_any_order_give_the_same_proposal(records, taken, seed):
    shuffled, shuffled_taken = list(records), list(taken)
    seed.shuffle(shuffled)
    seed.shuffle(shuffled_taken)
    assert propose(LADDER, records, taken, NOW) == propose(LADDER, shuffled, shuffled_taken, NOW)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(n=st.integers(0, 8))
def test_one_more_breach_never_proposes_a_lower_step(n):
    order = [None] + [s for s, _ in LADDER.steps]
    before = propose(LADDER, [_rec(i) for i in range(n)], [], NOW).step
    after = propose(LADDER, [_rec(i) for i in range(n + 1)], [], NOW).step
    assert order.index(after) >= order.index(before)


# ------------------------------------------------------------------ over HTTP

def _add_breaches(env, subject: str, n: int, start_ms: int) -> list[str]:
    from api.db.models import BreachRow

    ids = []
    with env.session() as s:
        device = s.scalars(select(BreachRow.device_id).where(BreachRow.subject_id == subject)).first() or "D-X"
        for k in range(n):
            t = start_ms + k * DAY_MS
            bid = hashlib.sha256(f"ladder:{subject}:{k}".encode()).hexdigest()[:16]
            s.add(BreachRow(breach_id=bid, kind="breach", type="curfew_absence", subject_id=subject,
                            device_id=device, zone_id=None, start=format_ms(t), end=format_ms(t + 3_600_000),
                            start_ms=t, end_ms=t + 3_600_000, duration_s=3600.0, priority=2, first_seen_ms=t,
                            updated_ms=t, status="new"))
            ids.append(bid)
        s.commit()
    return ids


def test_a_ladder_walked_to_referral_with_an_excuse_and_an_override(api_env):
    env = api_env
    subject = env.subjects[2]
    now = env.clock()
    with env.session() as s:  # the wearer's simulated records are from 2024: outside the 182-day window now
        from api.db.models import BreachRow

        assert not s.scalars(select(BreachRow).where(BreachRow.subject_id == subject,
                                                     BreachRow.start_ms > now - 182 * DAY_MS)).first()
    ids = _add_breaches(env, subject, 6, now - 20 * DAY_MS)

    def view():
        r = env.client.get(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"))
        assert r.status_code == 200, r.text
        return r.json()

    def decide(step, reason=None):
        r = env.client.post(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"),
                            json={"step": step, "reason": reason})
        return r

    assert view()["proposed_step"] == "refer_case_owner"  # 6 unexcused breaches
    # a mitigation accepted for two of them: 4 count, so the second warning
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": subject, "breach_ids": ids[:2], "received": format_ms(now - 3 * DAY_MS),
        "channel": "email", "text": "The tag's charger was faulty on both nights."})
    env.client.post(f"/v1/mitigations/{r.json()['id']}/decision", headers=env.h("caseworker"),
                    json={"outcome": "accepted", "reason": "The supplier confirmed the charger fault."})
    v = view()
    assert v["proposed_step"] == "warning_letter_2" and v["counted"] == sorted(ids[2:])
    r = decide("warning_letter_2")
    assert r.status_code == 201 and r.json()["proposed_step"] == r.json()["step"] == "warning_letter_2"
    first = r.json()
    assert view()["proposed_step"] is None  # taken: nothing more until the next threshold
    # an override needs a reason; a step off the ladder is refused
    assert decide("refer_case_owner").status_code == 422
    assert decide("deport", "no").status_code == 422
    r = decide("refer_case_owner", "The wearer has moved address without telling us.")
    assert r.status_code == 201 and r.json()["proposed_step"] is None and r.json()["letter_sha256"] is None
    letter = env.client.get(f"/v1/escalations/{first['id']}/letter", headers=env.h("caseworker"))
    assert letter.status_code == 200 and "SECOND WARNING" in letter.text
    assert all(b in letter.text for b in ids[2:]) and not any(b in letter.text for b in ids[:2])
    assert hashlib.sha256(letter.content).hexdigest() == first["letter_sha256"] == letter.headers["x-letter-sha256"]
    with env.session() as s:
        from api.db.models import AuditEntry

        entries = [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(
            AuditEntry.action == "escalation.decide").order_by(AuditEntry.idx))]
    assert [(e["detail"]["proposed"], e["detail"]["step"], e["detail"]["overridden"]) for e in entries] == [
        ("warning_letter_2", "warning_letter_2", False), (None, "refer_case_owner", True)]
    assert entries[0]["detail"]["ladder_version"] == LADDER.version
    assert entries[0]["detail"]["letter_sha256"] == first["letter_sha256"]
    assert "moved address" not in json.dumps(entries)  # the reason only as its hash


def test_a_home_ladder_is_used_and_a_broken_one_is_a_clear_error(api_env):
    env = api_env
    subject = env.subjects[3]
    _add_breaches(env, subject, 2, env.clock() - 5 * DAY_MS)
    doc = {"window_days": 30, "steps": [{"step": "warning_letter_1", "at": 2}]}
    (env.home / "escalation.json").write_text(json.dumps(doc))
    v = env.client.get(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker")).json()
    assert v["proposed_step"] == "warning_letter_1" and v["ladder_version"] == parse_ladder(doc).version
    (env.home / "escalation.json").write_text('{"window_days": 30}')
    r = env.client.get(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"))
    assert r.status_code == 422 and r.json()["detail"].startswith("escalation.json: steps must be")
