"""Issue 15, retention: the rules (HOME/retention.json, validated, with the
legal basis beside each rule), legal holds over HTTP (placed, listed,
reviewed and lifted, all audited, reasons only as hashes), and per-wearer
pseudonym keys (one wearer's key destroyed severs only their link to the
log, and the log still verifies). Expectations by hand."""
from __future__ import annotations

import hashlib
import json

import pytest

from api.service.retention.rules import CLASSES, DEFAULT_RULES, RetentionError, load_rules, parse_rules
from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from test_reviews import _add_wearer
from trails.timestamps import DAY_MS, format_ms


@pytest.fixture()
def env(api_env):
    return api_env


def _doc(**change) -> dict:
    rules = json.loads(json.dumps(DEFAULT_RULES["rules"]))
    for k, v in change.items():
        rules[k] = v
    return {"rules": rules}


def test_default_rules_are_documented_and_six_years_for_fixes(tmp_path):
    rules = load_rules(tmp_path)  # no retention.json: the defaults
    assert tuple(rules.rules) == CLASSES
    assert rules.rules["fixes"].keep_days == 2192  # 6 x 365.25, rounded
    assert "six years" in rules.rules["fixes"].basis and "ADL" in rules.rules["fixes"].basis
    assert rules.keep_ms("extracts") == 365 * DAY_MS
    (tmp_path / "retention.json").write_text(json.dumps(_doc(extracts={"keep_days": 30, "basis": "x" * 25})))
    other = load_rules(tmp_path)
    assert other.rules["extracts"].keep_days == 30 and other.version != rules.version


@pytest.mark.parametrize(("doc", "message"), [
    ([], "must be {"),
    ({"rules": {"fixes": DEFAULT_RULES["rules"]["fixes"]}}, "rules must name exactly the classes"),
    (_doc(fixes={"keep_days": 0, "basis": "x" * 30}), "rules.fixes.keep_days must be a whole number"),
    (_doc(fixes={"keep_days": 10.5, "basis": "x" * 30}), "rules.fixes.keep_days must be a whole number"),
    (_doc(casework={"keep_days": 10, "basis": "short"}), "rules.casework.basis must state the legal basis"),
    (_doc(extracts={"keep_days": 10}), "rules.extracts must have exactly keep_days and basis"),
    (_doc(audit={"keep_days": 100, "basis": "y" * 30}), "rules.audit.keep_days must be at least"),
])
def test_bad_rules_are_refused_naming_the_key(doc, message):
    with pytest.raises(RetentionError) as err:
        parse_rules(doc)
    assert str(err.value).startswith("retention.json: ") and message in str(err.value)


def _hold(env, **change) -> dict:
    t = env.clock()
    body = {"subject_id": "S-HOLD", "start": format_ms(t - 60 * DAY_MS), "end": format_ms(t - 30 * DAY_MS),
            "classes": ["fixes", "casework"], "reason": "Judicial review claim JR/123/2026 lodged.",
            "owner": "ap-1", "review": format_ms(t + 90 * DAY_MS)} | change
    return body


def test_holds_are_placed_listed_reviewed_and_lifted_all_audited(env):
    t = env.clock()
    _add_wearer(env, "S-HOLD", t - 400 * DAY_MS)
    for bad, message in ((dict(classes=["everything"]), None), (dict(owner="police-1"), "not an active member"),
                         (dict(end=format_ms(t - 90 * DAY_MS)), "end must be after its start"),
                         (dict(review=format_ms(t - DAY_MS)), "review date must be in the future"),
                         (dict(subject_id="S-NOBODY"), "has no assignment")):
        r = env.client.post("/v1/legal-holds", headers=env.h("admin"), json=_hold(env, **bad))
        assert r.status_code == 422, (bad, r.text)
        assert message is None or message in r.json()["detail"]
    assert env.client.post("/v1/legal-holds", headers=env.h("caseworker"), json=_hold(env)).status_code == 403
    r = env.client.post("/v1/legal-holds", headers=env.h("admin"), json=_hold(env))
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["classes"] == ["fixes", "casework"] and hold["owner"] == "ap-1" and hold["lifted"] is None
    listed = env.client.get("/v1/legal-holds?active=true&subject_id=S-HOLD", headers=env.h("auditor")).json()
    assert [h["id"] for h in listed] == [hold["id"]]
    assert env.client.get("/v1/legal-holds?review_due=true", headers=env.h("auditor")).json() == []
    env.clock.offset_ms += 91 * DAY_MS  # the review date passes
    assert [h["id"] for h in env.client.get("/v1/legal-holds?review_due=true", headers=env.h("approver")).json()] \
        == [hold["id"]]
    next_review = format_ms(env.clock() + 90 * DAY_MS)
    r = env.client.post(f"/v1/legal-holds/{hold['id']}/review", headers=env.h("approver"), json={
        "next_review": next_review, "note": "The claim is still before the court."})
    assert r.status_code == 200 and r.json()["review"] == next_review
    assert env.client.get("/v1/legal-holds?review_due=true", headers=env.h("approver")).json() == []
    r = env.client.post(f"/v1/legal-holds/{hold['id']}/lift", headers=env.h("admin"),
                        json={"reason": "The claim was withdrawn on 1 March."})
    assert r.status_code == 200 and r.json()["lifted"] is not None
    assert env.client.post(f"/v1/legal-holds/{hold['id']}/lift", headers=env.h("admin"),
                           json={"reason": "Again, by mistake, a second time."}).status_code == 409
    assert env.client.get("/v1/legal-holds?active=true", headers=env.h("admin")).json() == []
    actions = [(e["action"], e["detail"]["hold_id"]) for e in
               audit_entries(env, "retention.hold") + audit_entries(env, "retention.hold_review")
               + audit_entries(env, "retention.hold_lift")]
    assert actions == [("retention.hold", hold["id"]), ("retention.hold_review", hold["id"]),
                       ("retention.hold_lift", hold["id"])]
    placed = audit_entries(env, "retention.hold")[0]
    assert placed["detail"]["reason_sha256"] == hashlib.sha256(hold["reason"].encode()).hexdigest()
    everything = json.dumps(audit_entries(env, "retention.hold") + audit_entries(env, "retention.hold_lift"))
    assert "JR/123" not in everything and "withdrawn" not in everything


def test_held_periods_merge_open_holds_of_the_class(env):
    from api.service.retention.holds import held_periods

    t = env.clock()
    _add_wearer(env, "S-HOLD", t - 400 * DAY_MS)
    spans = [(100, 60, ["fixes"]), (70, 40, ["fixes", "audit"]), (20, 10, ["casework"])]
    ids = []
    for days_from, days_to, classes in spans:
        r = env.client.post("/v1/legal-holds", headers=env.h("admin"), json=_hold(
            env, start=format_ms(t - days_from * DAY_MS), end=format_ms(t - days_to * DAY_MS), classes=classes))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    with env.session() as s:
        assert held_periods(s, "S-HOLD", "fixes") == [(t - 100 * DAY_MS, t - 40 * DAY_MS)]
        assert held_periods(s, "S-HOLD", "casework") == [(t - 20 * DAY_MS, t - 10 * DAY_MS)]
        assert held_periods(s, "S-HOLD", "extracts") == []
    r = env.client.post(f"/v1/legal-holds/{ids[1]}/lift", headers=env.h("admin"),
                        json={"reason": "No longer needed now: the complaint closed."})
    assert r.status_code == 200, r.text
    with env.session() as s:
        assert held_periods(s, "S-HOLD", "fixes") == [(t - 100 * DAY_MS, t - 60 * DAY_MS)]


def test_one_wearers_key_destroyed_severs_only_their_link(env, capsys):
    from api.cli.main import main
    from api.db.models import AuditEntry
    from sqlalchemy import select

    audit = env.app.state.audit
    a, b = env.subjects[0], env.subjects[1]
    pa, pb = audit.pseudonym(a), audit.pseudonym(b)
    assert pa != pb and audit.pseudonym(a) == pa  # stable while the key lives
    key_files = sorted((env.home / "keys" / "wearers").iterdir())
    assert all(p.stat().st_size == 32 and a not in p.name and b not in p.name for p in key_files)
    env.client.get(f"/v1/subjects/{a}", headers=env.h("caseworker"))
    with env.session() as s:
        before = s.scalar(select(AuditEntry.idx).where(AuditEntry.subject_pseudonym == pa).order_by(
            AuditEntry.idx.desc()))
    assert before is not None
    assert audit.pseudonym_keys.destroy(a) and not audit.pseudonym_keys.destroy(a)
    assert audit.pseudonym(b) == pb  # the other wearer is untouched
    fresh = audit.pseudonym(a)
    assert fresh != pa  # the old entries can no longer be found from the person
    with env.session() as s:
        assert s.scalar(select(AuditEntry.idx).where(AuditEntry.idx == before)) == before  # still in the log
    assert main(["audit", "verify", "--home", str(env.home)]) == 0
    capsys.readouterr()


SHORT_RULES = {"rules": {
    "fixes": {"keep_days": 30, "basis": "Test rule: fixes kept thirty days after monitoring ends."},
    "casework": {"keep_days": 30, "basis": "Test rule: casework kept thirty days after monitoring ends."},
    "extracts": {"keep_days": 10, "basis": "Test rule: extracts kept ten days after monitoring ends."},
    "audit": {"keep_days": 60, "basis": "Test rule: the audit link kept sixty days after monitoring ends."}}}


def _ended_wearer(env, subject: str, start_ms: int, end_ms: int, breaches: list[int]) -> list[str]:
    """A wearer monitored over [start_ms, end_ms) with a breach record starting at each of `breaches`."""
    from api.db.models import AssignmentRow
    from test_reviews import _add_breach

    with env.session() as s:
        s.add(AssignmentRow(subject_id=subject, device_id=f"D-{subject}", start_ms=start_ms, end_ms=end_ms,
                            zones_json="[]", chain_start_ms=start_ms, zone_versions_json="{}"))
        s.commit()
    return [_add_breach(env, subject, t, k) for k, t in enumerate(breaches)]


def test_a_retention_pass_erases_what_is_due_keeps_what_is_held_and_the_log_verifies(env, capsys):
    from api.cli.main import main
    from api.service.retention.run import run_retention

    (env.home / "retention.json").write_text(json.dumps(SHORT_RULES))
    t = env.clock()
    ended = t - 40 * DAY_MS  # casework (30 days) is due; the audit link (60 days) is not
    ids = _ended_wearer(env, "S-RET", t - 200 * DAY_MS, ended, [t - 150 * DAY_MS, t - 100 * DAY_MS, t - 60 * DAY_MS])
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": "S-RET", "breach_ids": [ids[0]], "received": format_ms(t - 140 * DAY_MS), "channel": "letter",
        "text": "I was at the hospital."})
    assert r.status_code == 201
    hold = env.client.post("/v1/legal-holds", headers=env.h("admin"), json=_hold(
        env, subject_id="S-RET", start=format_ms(t - 105 * DAY_MS), end=format_ms(t - 95 * DAY_MS),
        classes=["casework"])).json()
    pseudonym = env.app.state.audit.pseudonym("S-RET")
    factory, audit = env.app.state.session_factory, env.app.state.audit

    plan = run_retention(factory, audit, env.home, now_ms=t, dry_run=True)
    assert [(d.subject_id, d.data_class) for d in plan.due if d.subject_id == "S-RET"] == [
        ("S-RET", "fixes"), ("S-RET", "extracts"), ("S-RET", "casework")]
    assert plan.erased == [] and env.client.get(f"/v1/breaches/{ids[0]}", headers=env.h("caseworker")).status_code == 200

    done = run_retention(factory, audit, env.home, now_ms=t)
    (case, counts, digest), = [e for e in done.erased if e[0].subject_id == "S-RET" and e[0].data_class == "casework"]
    assert counts["breaches"] == 2 and counts["mitigations"] == 1 and "assignments" not in counts  # a hold: kept
    assert [env.client.get(f"/v1/breaches/{b}", headers=env.h("caseworker")).status_code for b in ids] == [404, 200, 404]
    assert env.client.get("/v1/mitigations?subject_id=S-RET", headers=env.h("approver")).json() == []
    (entry,) = [e for e in audit_entries(env, "retention.erase") if e["detail"]["class"] == "casework"]
    assert entry["subject"] == pseudonym and entry["detail"]["rows_sha256"] == digest and len(digest) == 64
    assert entry["detail"]["basis"] == SHORT_RULES["rules"]["casework"]["basis"]
    assert entry["detail"]["held"] == [[format_ms(t - 105 * DAY_MS), format_ms(t - 95 * DAY_MS)]]
    assert [d.data_class for d, _ in done.skipped if d.subject_id == "S-RET"] == ["fixes"]  # said, not hidden

    again = run_retention(factory, audit, env.home, now_ms=t)  # nothing new: no entry
    assert len([e for e in audit_entries(env, "retention.erase") if e["detail"]["class"] == "casework"]) == 1
    assert any(d.data_class == "casework" for d in again.due)  # still planned while the hold keeps a part
    env.client.post(f"/v1/legal-holds/{hold['id']}/lift", headers=env.h("admin"),
                    json={"reason": "The complaint was closed without further action."})
    run_retention(factory, audit, env.home, now_ms=t)
    assert env.client.get(f"/v1/breaches/{ids[1]}", headers=env.h("caseworker")).status_code == 404
    last = [e for e in audit_entries(env, "retention.erase") if e["detail"]["class"] == "casework"][-1]
    assert last["detail"]["counts"]["breaches"] == 1 and last["detail"]["counts"]["assignments"] == 1
    assert not any(d.data_class == "casework" for d in run_retention(factory, audit, env.home, now_ms=t).due)

    later = t + 30 * DAY_MS  # 70 days after the end: the audit link goes
    run_retention(factory, audit, env.home, now_ms=later)
    assert env.app.state.audit.pseudonym("S-RET") != pseudonym  # a new key: old entries cannot be found from S-RET
    cut = [e for e in audit_entries(env, "retention.erase") if e["detail"]["class"] == "audit"]
    assert len(cut) == 1 and cut[0]["subject"] == pseudonym and cut[0]["detail"]["key_destroyed"] is True
    assert run_retention(factory, audit, env.home, now_ms=later).due == []  # the ledger row went with the link
    assert main(["audit", "verify", "--home", str(env.home)]) == 0
    capsys.readouterr()


def test_the_cli_runs_dry_and_refuses_bad_rules(env, capsys):
    from api.cli.main import main

    t = env.clock()
    _ended_wearer(env, "S-RET-CLI", t - 100 * DAY_MS, t - 50 * DAY_MS, [t - 80 * DAY_MS])
    (env.home / "retention.json").write_text(json.dumps(SHORT_RULES))
    assert main(["retention", "run", "--home", str(env.home), "--dry-run"]) == 0
    out = capsys.readouterr()
    lines = [ln.split("\t")[:2] for ln in out.out.splitlines() if ln.startswith("S-RET-CLI")]
    assert lines == [["S-RET-CLI", "fixes"], ["S-RET-CLI", "extracts"], ["S-RET-CLI", "casework"]]
    assert "(dry run)" in out.err
    (env.home / "retention.json").write_text('{"rules": {}}')
    assert main(["retention", "run", "--home", str(env.home), "--dry-run"]) == 2
    assert "retention.json: rules must name exactly the classes" in capsys.readouterr().err


def test_the_running_service_makes_the_pass_daily(env):
    """The stream service's housekeeping runs the same pass at most once per retention_every_s; 0 turns it
    off; a broken retention.json is logged, never stops detection."""
    t = env.clock()
    _ended_wearer(env, "S-RET-D", t - 100 * DAY_MS, t - 50 * DAY_MS, [t - 80 * DAY_MS])
    (env.home / "retention.json").write_text(json.dumps(SHORT_RULES))
    daily = env.app.state.stream.retention
    first = daily.tick()
    assert first is not None and any(d.subject_id == "S-RET-D" and d.data_class == "casework"
                                     for d, _, _ in first.erased)
    assert daily.tick() is None  # not due again for a day
    env.clock.offset_ms += 86_400_000
    (env.home / "retention.json").write_text("{not json")
    assert daily.tick() is None  # logged; the service goes on
    env.clock.offset_ms += 86_400_000
    env.app.state.stream.settings = env.app.state.settings.model_copy(update={"retention_every_s": 0})
    assert daily.tick() is None
