"""Issue 13, section 2: wearers' mitigations over HTTP. A wearer's
representation is recorded against their breaches, decided (accepted: the
breaches are excused and stay on the record; rejected) with a reason, the
response letter comes from the outcome's template with its hash audited,
and an undecided one shows on the overdue list once its working-day
deadline has passed. Free text never enters the audit log."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from trails.timestamps import parse_timestamp

TEXT = "I was in hospital that night: the discharge letter is attached."


@pytest.fixture()
def env(api_env):
    return api_env


_entries = audit_entries

def _breaches(env, subject: str) -> list[str]:
    from api.db.models import BreachRow

    with env.session() as s:
        return list(s.scalars(select(BreachRow.breach_id).where(BreachRow.subject_id == subject)
                              .order_by(BreachRow.start_ms)))


def _record(env, subject: str, breach_ids: list[str], received: str = "2024-03-08T10:00:00Z") -> dict:
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": subject, "breach_ids": breach_ids, "received": received, "channel": "letter", "text": TEXT,
        "attachments": [{"name": "discharge.pdf", "sha256": "ab" * 32}]})
    assert r.status_code == 201, r.text
    return r.json()


def test_deadline_is_twenty_working_days_in_london():
    from api.service.mitigations import due_after

    # Friday 8 March 2024: 20 weekdays later is Friday 5 April (after the clocks went forward on 31 March),
    # so the deadline is the end of that London day: 6 April 00:00 BST = 5 April 23:00Z
    assert due_after(parse_timestamp("2024-03-08T10:00:00Z"), 20) == parse_timestamp("2024-04-05T23:00:00Z")
    # received on a Saturday: the count starts on Monday
    assert due_after(parse_timestamp("2024-03-09T10:00:00Z"), 1) == parse_timestamp("2024-03-12T00:00:00Z")


def test_accepted_excuses_rejected_stands_letters_are_hashed_and_audited(env):
    from api.service.mitigations import excused_breach_ids

    subject = env.subjects[0]
    b1, b2 = _breaches(env, subject)[:2]
    first, second = _record(env, subject, [b1]), _record(env, subject, [b2])
    assert first["due"] == "2024-04-05T23:00:00.000Z" and first["status"] == "pending"
    r = env.client.post(f"/v1/mitigations/{first['id']}/decision", headers=env.h("caseworker"),
                        json={"outcome": "accepted", "reason": "The hospital confirmed the admission that night."})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    r = env.client.post(f"/v1/mitigations/{second['id']}/decision", headers=env.h("caseworker"),
                        json={"outcome": "rejected", "reason": "The hospital has no record of an admission."})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    with env.session() as s:
        assert excused_breach_ids(s, subject) == {b1}
    # the excused record stays on the record
    assert env.client.get(f"/v1/breaches/{b1}", headers=env.h("caseworker")).status_code == 200
    again = env.client.post(f"/v1/mitigations/{first['id']}/decision", headers=env.h("caseworker"),
                            json={"outcome": "rejected", "reason": "Second thoughts after the review meeting."})
    assert again.status_code == 409

    accepted = env.client.get(f"/v1/mitigations/{first['id']}/letter", headers=env.h("caseworker"))
    rejected = env.client.get(f"/v1/mitigations/{second['id']}/letter", headers=env.h("caseworker"))
    assert accepted.status_code == rejected.status_code == 200
    assert "We accept your explanation." in accepted.text and b1 in accepted.text and b2 not in accepted.text
    assert "We do not accept your explanation" in rejected.text and b2 in rejected.text
    assert "received on 8 Mar 2024 by letter" in accepted.text
    letters = _entries(env, "mitigation.letter")
    assert [e["detail"]["letter_sha256"] for e in letters] == [
        hashlib.sha256(accepted.content).hexdigest(), hashlib.sha256(rejected.content).hexdigest()]
    assert accepted.headers["x-letter-sha256"] == letters[0]["detail"]["letter_sha256"]
    recorded = _entries(env, "mitigation.record")
    assert recorded[0]["detail"]["text_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    everything = json.dumps(_entries(env, "mitigation.record") + _entries(env, "mitigation.decide"))
    assert "hospital" not in everything  # free text stays in the business table


def test_overdue_list_and_bad_input(env):
    subject, other = env.subjects[0], env.subjects[1]
    b = _breaches(env, subject)[0]
    late = _record(env, subject, [b], received="2024-03-08T10:00:00Z")  # the clock is now: long past its deadline
    r = env.client.get("/v1/mitigations?overdue=true", headers=env.h("approver"))
    assert [m["id"] for m in r.json()] == [late["id"]]
    env.client.post(f"/v1/mitigations/{late['id']}/decision", headers=env.h("caseworker"),
                    json={"outcome": "rejected", "reason": "No evidence was sent with the representation."})
    assert env.client.get("/v1/mitigations?overdue=true", headers=env.h("approver")).json() == []
    not_theirs = _breaches(env, other)[0]
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": subject, "breach_ids": [not_theirs], "received": "2024-03-08T10:00:00Z", "channel": "letter",
        "text": TEXT})
    assert r.status_code == 422
    assert r.json()["detail"] == f"breach {not_theirs} is not the wearer's: a mitigation is one wearer's"
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": subject, "breach_ids": [b], "received": "2099-01-01T00:00:00Z", "channel": "letter",
        "text": TEXT})
    assert r.status_code == 422 and r.json()["detail"] == "a mitigation cannot be received in the future"
    pending = _record(env, subject, [b])
    r = env.client.get(f"/v1/mitigations/{pending['id']}/letter", headers=env.h("caseworker"))
    assert r.status_code == 409
