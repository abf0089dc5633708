"""Issue 13, sections 3 and 4, the details a wearer's casework rests on:
letters in the wearer's recorded language where a template exists (the
Hub's own in HOME/letters first), English otherwise; welfare notes staff
record, and the device faults open on the wearer's devices, both in the
summary a review is pre-filled with. Expectations by hand from wearers,
breaches and faults this module adds."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from test_reviews import _add_breach, _add_wearer
from trails.timestamps import DAY_MS, format_ms


@pytest.fixture()
def env(api_env):
    return api_env


def _audit(env, action: str) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]


def _first_warning(env, subject: str) -> tuple[str, str]:
    """Decide the first warning for `subject` (one breach, added now); its letter text and SHA-256."""
    r = env.client.post(f"/v1/subjects/{subject}/escalation", headers=env.h("caseworker"),
                        json={"step": "warning_letter_1", "reason": "First warning, as agreed with the team."})
    assert r.status_code == 201, r.text
    letter = env.client.get(f"/v1/escalations/{r.json()['id']}/letter", headers=env.h("caseworker"))
    assert letter.status_code == 200
    assert hashlib.sha256(letter.content).hexdigest() == r.json()["letter_sha256"]
    return letter.text, r.json()["letter_sha256"]


def test_letters_follow_the_wearers_language_where_a_template_exists(env):
    t = env.clock()
    for k, subject in enumerate(("S-LANG-CY", "S-LANG-PT", "S-LANG-EN")):
        _add_wearer(env, subject, t - 30 * DAY_MS)
        _add_breach(env, subject, t - 5 * DAY_MS, k)
    assert env.client.put("/v1/subjects/S-LANG-CY/language", headers=env.h("caseworker"),
                          json={"language": "../cy"}).status_code == 422  # never a path
    assert env.client.put("/v1/subjects/S-NOBODY/language", headers=env.h("caseworker"),
                          json={"language": "cy"}).status_code == 422
    for subject, tag in (("S-LANG-CY", "cy"), ("S-LANG-PT", "pt-BR")):
        r = env.client.put(f"/v1/subjects/{subject}/language", headers=env.h("caseworker"), json={"language": tag})
        assert r.status_code == 200 and r.json() == {"subject_id": subject, "language": tag}
    # no Welsh template yet: English, and the audit entry says so
    text, _ = _first_warning(env, "S-LANG-CY")
    assert "FIRST WARNING" in text
    assert _audit(env, "escalation.decide")[-1]["detail"]["letter_language"] == "en"
    # the Hub adds its translations to HOME/letters: Welsh for the Welsh reader, Portuguese (pt) for pt-BR
    (env.home / "letters" / "cy").mkdir(parents=True)
    (env.home / "letters" / "cy" / "warning_letter_1.txt").write_text(
        "RHYBUDD CYNTAF {{ subject_id }}\n{% for b in breaches %}{{ b.breach_id }}\n{% endfor %}", encoding="utf-8")
    (env.home / "letters" / "pt").mkdir(parents=True)
    (env.home / "letters" / "pt" / "warning_letter_1.txt").write_text("PRIMEIRO AVISO {{ subject_id }}\n",
                                                                       encoding="utf-8")
    _add_breach(env, "S-LANG-CY", t - 4 * DAY_MS, 10)
    _add_breach(env, "S-LANG-CY", t - 3 * DAY_MS, 11)  # three breaches: the ladder proposes a second warning
    env.client.put("/v1/subjects/S-LANG-CY/language", headers=env.h("caseworker"), json={"language": "cy"})
    with env.session() as s:  # the earlier decision is undone so warning 1 is taken again, now in Welsh
        from api.db.models import EscalationDecision

        for d in s.scalars(select(EscalationDecision).where(EscalationDecision.subject_id == "S-LANG-CY")):
            s.delete(d)
        s.commit()
    text, digest = _first_warning(env, "S-LANG-CY")
    assert text.startswith("RHYBUDD CYNTAF S-LANG-CY\n") and len(text.splitlines()) == 4
    assert _audit(env, "escalation.decide")[-1]["detail"]["letter_language"] == "cy"
    text, _ = _first_warning(env, "S-LANG-PT")
    assert text == "PRIMEIRO AVISO S-LANG-PT\n"
    assert _audit(env, "escalation.decide")[-1]["detail"]["letter_language"] == "pt"
    text, _ = _first_warning(env, "S-LANG-EN")  # no language recorded: English, even with translations about
    assert "FIRST WARNING" in text
    assert [e["detail"]["language"] for e in _audit(env, "wearer.language")] == ["cy", "pt-BR", "cy"]


def test_the_mitigation_response_letter_uses_the_language_too(env):
    t = env.clock()
    _add_wearer(env, "S-LANG-M", t - 30 * DAY_MS)
    bid = _add_breach(env, "S-LANG-M", t - 5 * DAY_MS, 0)
    env.client.put("/v1/subjects/S-LANG-M/language", headers=env.h("caseworker"), json={"language": "pl"})
    (env.home / "letters" / "pl").mkdir(parents=True)
    (env.home / "letters" / "pl" / "mitigation_rejected.txt").write_text(
        "Odrzucono: {{ m.reason }}\n", encoding="utf-8")
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": "S-LANG-M", "breach_ids": [bid], "received": format_ms(t - DAY_MS), "channel": "letter",
        "text": "I was at work."})
    mid = r.json()["id"]
    env.client.post(f"/v1/mitigations/{mid}/decision", headers=env.h("caseworker"),
                    json={"outcome": "rejected", "reason": "The employer has no record of the shift."})
    letter = env.client.get(f"/v1/mitigations/{mid}/letter", headers=env.h("caseworker"))
    assert letter.text == "Odrzucono: The employer has no record of the shift.\n"
    assert _audit(env, "mitigation.letter")[-1]["detail"]["letter_language"] == "pl"


def test_welfare_notes_and_device_faults_prefill_the_review(env):
    t = env.clock()
    _add_wearer(env, "S-WEL", t - 20 * DAY_MS)  # wears D-S-WEL
    inside = _add_breach(env, "S-WEL", t - 10 * DAY_MS, 0)
    outside = _add_breach(env, "S-WEL", t - 2 * DAY_MS, 1)
    env.client.put("/v1/devices/D-S-WEL", headers=env.h("admin"),
                   json={"serial": "SN-W", "model": "GT-3", "batch": "B-W"})
    r = env.client.post("/v1/device-faults", headers=env.h("admin"), json={
        "batch": "B-W", "start": format_ms(t - 11 * DAY_MS), "end": format_ms(t - 9 * DAY_MS),
        "description": "Batch B-W recalled: charging fault."})
    fault_id = r.json()["id"]
    env.client.post("/v1/device-faults", headers=env.h("admin"), json={  # before the wearer had the tag
        "device_id": "D-S-WEL", "start": format_ms(t - 40 * DAY_MS), "end": format_ms(t - 25 * DAY_MS),
        "description": "Strap replaced."})
    assert env.client.post("/v1/subjects/S-WEL/welfare-notes", headers=env.h("approver"),
                           json={"text": "x"}).status_code == 403
    r = env.client.post("/v1/subjects/S-WEL/welfare-notes", headers=env.h("caseworker"),
                        json={"text": "Reports anxiety about the curfew hours; GP letter received."})
    assert r.status_code == 201 and r.json()["recorded_by"] == "cw-1"
    notes = env.client.get("/v1/subjects/S-WEL/welfare-notes", headers=env.h("auditor")).json()
    assert [n["text"] for n in notes] == ["Reports anxiety about the curfew hours; GP letter received."]
    summary = env.client.get("/v1/subjects/S-WEL/review-summary", headers=env.h("caseworker")).json()
    assert [n["text"] for n in summary["welfare_notes"]] == [notes[0]["text"]]
    assert summary["device_faults"] == {
        "faults": [{"fault_id": fault_id, "device_id": "D-S-WEL", "batch": "B-W", "start": format_ms(t - 11 * DAY_MS),
                    "end": format_ms(t - 9 * DAY_MS), "description": "Batch B-W recalled: charging fault."}],
        "breaches": {"suspected_equipment_fault": 1}}
    assert inside != outside
    r = env.client.post(f"/v1/breaches/{inside}/equipment-fault", headers=env.h("caseworker"),
                        json={"decision": "fault_confirmed", "reason": "The tag was in the recalled batch."})
    assert r.status_code == 200, r.text
    r = env.client.post("/v1/subjects/S-WEL/reviews", headers=env.h("caseworker"), json={"outcome": "continue"})
    kept = r.json()["summary"]
    assert kept["device_faults"]["breaches"] == {"fault_confirmed": 1} and len(kept["welfare_notes"]) == 1
    entry = _audit(env, "wearer.welfare_note")[-1]
    assert entry["detail"]["text_sha256"] == hashlib.sha256(notes[0]["text"].encode()).hexdigest()
    assert "anxiety" not in json.dumps(_audit(env, "wearer.welfare_note"))
