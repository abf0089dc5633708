"""Governed trail access holes (issue 10): an approval bound to the assignments
it was decided on; withdrawn breaches never served as live; the two-person rule
by person, not account; justifications counted in letters; partial data that
is partial; no period that has not ended; CSV that a spreadsheet cannot run."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, update

from api.service.detections import load_assignments, save_detection
from api.db.models import AccessRequest, AuditEntry, BreachRow
from api.access.reports import report_csv
from api.settings import Settings
from api.access.users import add_user, revoke_user
from api_fixtures import (DAY_MS, api_env, api_template, close_env, create_request, decide, make_env,  # noqa: F401
                          request_body, ts)
from geofence.model import Assignment
from geofence.subjects import load_subjects
from geofence.zones import load_zones
from trails.errors import InputError
from trails.timestamps import format_ms, parse_timestamp

REASON = "Necessary and proportionate for the stated ground and period."


def ms(text: str) -> int:
    return parse_timestamp(text)


def _download(env, rid: int, who: str = "caseworker", fmt: str = "csv"):
    return env.client.get(f"/v1/access-requests/{rid}/extract?format={fmt}", headers=env.h(who))


@pytest.fixture()
def sim(api_template) -> Path:
    """The simulated SUBJECTS.json and ZONES.geojson the template home was detected with."""
    return api_template.parent / "sim"


def _sim_assignments(sim: Path) -> tuple[Assignment, ...]:
    doc = json.loads((sim / "zones.geojson").read_text(encoding="utf-8"))
    return load_subjects(sim / "subjects.json", [f["id"] for f in doc["features"]])


def _set_assignments(env, sim: Path, assignments) -> None:
    """Store `assignments` (with the simulated zones) as `tagtrail detect --db` does, through
    `save_detection`, not through the admin endpoint."""
    features = json.loads((sim / "zones.geojson").read_text(encoding="utf-8"))["features"]
    with env.session() as s:
        save_detection(s, assignments=tuple(assignments), zone_features=features,
                       zones=load_zones(sim / "zones.geojson"), records=[])
        s.commit()


def _freeze(env) -> int:
    """Stop the service clock at the present instant (so messages naming 'now' are exact)."""
    now = env.clock()
    env.app.state.clock = lambda: now
    return now


# --------------------------------------------------------------------------
# 5. An approval is bound to the assignments it was decided on
# --------------------------------------------------------------------------
def test_changed_assignments_cannot_redirect_an_approved_extract(api_env, sim):
    env = api_env
    mine, other = env.subjects[0], env.subjects[1]
    req = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, req["id"]).status_code == 200
    before = _download(env, req["id"])
    assert before.status_code == 200, before.text
    assert len(before.text.splitlines()) > 1, "the approved period has fixes"
    # after the approval, the wearer's assignment is pointed at another wearer's device
    current = _sim_assignments(sim)
    (their_device,) = [a.device_id for a in current if a.subject_id == other]
    _set_assignments(env, sim, (replace(a, device_id=their_device) if a.subject_id == mine else a for a in current))
    redirected = env.client.post("/v1/access-requests", json=request_body(mine, start=ts(1, 0), end=ts(1, 6)),
                                 headers=env.h("caseworker2")).json()
    assert decide(env, redirected["id"]).status_code == 200
    theirs = _download(env, redirected["id"], who="caseworker2")
    assert theirs.status_code == 200 and theirs.content != before.content  # the change does redirect new approvals
    after = _download(env, req["id"])
    assert after.status_code == 200
    assert after.content == before.content  # the old approval still reads the old device
    assert after.headers["X-Extract-SHA256"] == before.headers["X-Extract-SHA256"]


def test_decision_stores_assignments_clipped_to_the_approved_period(api_env, sim):
    env = api_env
    subject = env.subjects[0]
    current = _sim_assignments(sim)
    (original,) = [a for a in current if a.subject_id == subject]
    others = tuple(a for a in current if a.subject_id != subject)
    swap = ms(ts(1, 9))  # the wearer changed devices at 09:00 on day 1
    _set_assignments(env, sim, others + (replace(original, end_ms=swap),
                                         Assignment(subject, "D-SPARE", swap, None, original.zones[:1])))
    with env.session() as s:  # the zones as the service stores them (ids, or versioned ids)
        first, spare = load_assignments(s, subject)
    assert (first.device_id, spare.device_id) == (original.device_id, "D-SPARE")
    req = create_request(env, "caseworker", start=ts(1, 0), end=ts(2, 0))
    r = decide(env, req["id"], outcome="partial_data_provided", start=ts(1, 6), end=ts(1, 12))
    assert r.status_code == 200, r.text
    with env.session() as s:
        stored = json.loads(s.get(AccessRequest, req["id"]).bound_assignments_json)
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "request.decide")).one()
    assert stored == [
        {"device_id": original.device_id, "start_ms": ms(ts(1, 6)), "end_ms": ms(ts(1, 9)), "zones": list(first.zones)},
        {"device_id": "D-SPARE", "start_ms": ms(ts(1, 9)), "end_ms": ms(ts(1, 12)), "zones": list(spare.zones)},
    ]
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    assert json.loads(entry.entry)["detail"]["assignments_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # afterwards the spare device is dropped and the first assignment runs on again: the extract keeps to
    # what was approved, 06:00-09:00 on the first device and 09:00-12:00 on the spare (which has no fixes)
    _set_assignments(env, sim, current)
    r = _download(env, req["id"])
    assert r.status_code == 200, r.text
    times = [ms(row["ts"]) for row in csv.DictReader(io.StringIO(r.text))]
    assert times and all(ms(ts(1, 6)) <= t < ms(ts(1, 9)) for t in times)  # D-SPARE has no fixes in the store


def test_approval_made_before_binding_gives_no_extract(api_env):
    env = api_env
    req = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, req["id"]).status_code == 200
    with env.session() as s:  # as a decision migrated from before revision 0004 looks
        s.execute(update(AccessRequest).where(AccessRequest.id == req["id"]).values(bound_assignments_json=None))
        s.commit()
    r = _download(env, req["id"])
    assert r.status_code == 409
    assert r.json() == {"detail": f"access request {req['id']} was approved before approvals were bound to the "
                                  f"wearer's assignments, so which device it covers is not known: ask for a new "
                                  f"decision"}


def test_migration_0004_adds_binding_and_persons_to_an_existing_database(tmp_path):
    from api.db.session import make_engine
    from test_migrations import _upgrade as upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, role, org, token_sha256, created_ms, revoked_ms) VALUES "
                             "(1, ' Alice\u200b ', 'caseworker', NULL, 'a', 1, 5), "
                             "(2, 'bob', 'approver', NULL, 'b', 2, NULL)"))
        conn.execute(sa.text(
            "INSERT INTO access_requests (id, requester_id, subject_id, kind, ground, start_ms, end_ms, justification, "
            "necessity, urgency, too_broad, status, created_ms, outcome, approved_start_ms, approved_end_ms, "
            "decided_by, decided_ms, expires_ms, version) VALUES (1, 1, 'S-1', 'trail', 'absconded', 0, 1000, 'j', "
            "'n', 'routine', 0, 'decided', 3, 'data_provided', 0, 1000, 2, 4, 99, 2)"))
    upgrade(engine, "0004")
    with engine.connect() as conn:
        users = conn.execute(sa.text("SELECT id, name, person FROM users ORDER BY id")).all()
        req = conn.execute(sa.text("SELECT outcome, approved_end_ms, bound_assignments_json "
                                   "FROM access_requests")).one()
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("users")}
    assert users == [(1, " Alice\u200b ", "alice"), (2, "bob", "bob")]
    assert tuple(req) == ("data_provided", 1000, None)  # unknown binding: its extract is refused, never guessed
    assert "ix_users_person" in indexes
    engine.dispose()


# --------------------------------------------------------------------------
# 7. Withdrawn breaches are not served as live
# --------------------------------------------------------------------------
def _withdraw(env, breach_id: str, reason: str) -> None:
    with env.session() as s:
        s.execute(update(BreachRow).where(BreachRow.breach_id == breach_id)
                  .values(status="withdrawn", withdrawn_reason=reason, status_ms=env.clock()))
        s.commit()


def test_subject_breaches_leave_out_withdrawn_records_unless_asked(api_env):
    env = api_env
    with env.session() as s:
        subject, n = s.execute(select(BreachRow.subject_id, func.count()).group_by(BreachRow.subject_id)
                               .order_by(func.count().desc(), BreachRow.subject_id)).first()
        ids = list(s.scalars(select(BreachRow.breach_id).where(BreachRow.subject_id == subject)
                             .order_by(BreachRow.start_ms, BreachRow.breach_id)))
    assert n >= 2
    gone = ids[0]
    _withdraw(env, gone, "later fixes show the wearer at home")
    url = f"/v1/subjects/{subject}/breaches"
    live = env.client.get(url, headers=env.h("caseworker")).json()
    assert [i["breach_id"] for i in live["items"]] == ids[1:] and live["count"] == n - 1
    assert {i["status"] for i in live["items"]} == {"new"}
    assert all(i["withdrawn_reason"] is None for i in live["items"])
    every = env.client.get(url, params={"include_withdrawn": "true"}, headers=env.h("auditor")).json()
    assert [i["breach_id"] for i in every["items"]] == ids and every["count"] == n
    first = every["items"][0]
    assert (first["status"], first["withdrawn_reason"]) == ("withdrawn", "later fixes show the wearer at home")


def test_breach_report_counts_withdrawn_records_apart(api_env):
    env = api_env
    with env.session() as s:
        breaches = list(s.scalars(select(BreachRow.breach_id).where(BreachRow.kind == "breach")
                                  .order_by(BreachRow.breach_id)))
        alert = s.scalars(select(BreachRow.breach_id).where(BreachRow.kind == "alert")).first()
    assert len(breaches) >= 2  # the simulated home has breaches, all in March 2024
    _withdraw(env, breaches[0], "gap closed by late fixes")
    _withdraw(env, alert, "alerts are not breaches and never counted")
    n = len(breaches)
    r = env.client.get("/v1/reports/breaches", headers=env.h("auditor"))
    assert r.status_code == 200
    rep = r.json()
    assert rep["months"] == ["2024-03"]
    assert rep["totals"] == {"months": {"2024-03": n - 1}, "total": n - 1}
    assert rep["withdrawn"] == {"months": {"2024-03": 1}, "total": 1}
    assert sum(row["total"] for row in rep["rows"]) == n - 1
    lines = env.client.get("/v1/reports/breaches?format=csv", headers=env.h("auditor")).text.splitlines()
    assert lines[0] == "type,2024-03,total"
    assert lines[-2:] == [f"total,{n - 1},{n - 1}", "withdrawn,1,1"]


# --------------------------------------------------------------------------
# 18. The two-person rule compares persons, not accounts
# --------------------------------------------------------------------------
def _add(env, name: str, role: str, org: str | None = "home office") -> tuple[int, str]:
    with env.session() as s:
        user, token = add_user(s, env.app.state.audit, name=name, role=role, org=org)
        s.commit()
        return user.id, token


def _revoke(env, name: str) -> None:
    with env.session() as s:
        revoke_user(s, env.app.state.audit, name=name)
        s.commit()


@pytest.mark.parametrize("again", ["alice", "Alice", " alice\u200b", "ＡＬＩＣＥ"],
                         ids=["same", "capitalised", "zero-width", "full-width"])
def test_revoked_caseworker_back_as_approver_cannot_decide_her_own_request(api_env, again):
    env = api_env
    old_id, old_token = _add(env, "alice", "caseworker")
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]),
                        headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    _revoke(env, "alice")
    new_id, new_token = _add(env, again, "approver")
    r = env.client.post(f"/v1/access-requests/{rid}/decision", json={"outcome": "data_provided", "reason": REASON},
                        headers={"Authorization": f"Bearer {new_token}"})
    assert r.status_code == 403
    assert r.json() == {"detail": f"the approver is never the requester: user {new_id} ({again!r}) is the same person "
                                  f"as user {old_id} ('alice'), who made access request {rid}, and may not decide it"}
    assert decide(env, rid).status_code == 200  # another approver may


def test_requester_back_as_approver_cannot_confirm_identity_on_her_own_request(api_env):
    env = api_env
    old_id, old_token = _add(env, "pc-77", "requester", org="police")
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]),
                        headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    _revoke(env, "pc-77")
    new_id, new_token = _add(env, "PC-77", "approver")
    r = env.client.post(f"/v1/access-requests/{rid}/identity-check", headers={"Authorization": f"Bearer {new_token}"},
                        json={"note": "Confirmed by call-back to the force control room."})
    assert r.status_code == 403
    assert r.json() == {"detail": f"the approver is never the requester: user {new_id} ('PC-77') is the same person "
                                  f"as user {old_id} ('pc-77'), who made access request {rid}, and may not confirm "
                                  f"the identity on it"}


@pytest.mark.parametrize("name, key", [("alice", "alice"), ("  Alice  Smith ", "alice smith"),
                                       ("a\u200bl\u200dice", "alice"), ("ＡＬＩＣＥ", "alice"),
                                       ("Stra\u00dfe", "strasse"), ("cw\t-1", "cw -1")],
                         ids=["plain", "case-and-spaces", "zero-width", "full-width", "casefold", "tab"])
def test_person_key_names_one_person_however_spelt(name, key):
    from api.access.users import person_key

    assert person_key(name) == key


# --------------------------------------------------------------------------
# 20. Justifications count letters; partial data is partial
# --------------------------------------------------------------------------
@pytest.mark.parametrize("text, n", [("\u200b" * 30, 0), ("." * 40, 0), ("- " * 30, 0),
                                     ("\u200b".join("abcdefghij"), 10), ("Why: " + "\u2060" * 40 + "!!!", 3)],
                         ids=["zero-width", "dots", "dashes", "ten-letters-padded", "word-joiners"])
def test_justification_needs_twenty_letters_or_digits(api_env, text, n):
    r = api_env.client.post("/v1/access-requests", json=request_body(api_env.subjects[0], justification=text),
                            headers=api_env.h("caseworker"))
    assert r.status_code == 422
    (err,) = r.json()["errors"]  # field errors are under "errors"; "detail" is one line (api.http.errors)
    assert err["loc"] == ["body", "justification"]
    assert err["msg"] == f"Value error, needs at least 20 letters or digits of explanation (got {n})"


@pytest.mark.parametrize("text", ["Ο φορέας δεν εμφανίστηκε στο ραντεβού", "被监控者未按时报到需要查看轨迹记录以便寻找",
                                  "Case 2024 0042 4711 9001 8"],
                         ids=["greek", "chinese", "digits"])
def test_justification_in_any_script_counts(api_env, text):
    r = api_env.client.post("/v1/access-requests", json=request_body(api_env.subjects[0], justification=text),
                            headers=api_env.h("caseworker"))
    assert r.status_code == 201, r.text


def test_one_millisecond_narrowing_is_not_partial_data(api_env):
    env = api_env
    rid = create_request(env, "caseworker", start=ts(1, 0), end=ts(2, 0))["id"]
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 0), end="2024-03-05T23:59:59.999Z")
    assert r.status_code == 422
    assert r.json() == {"detail": "2024-03-05T00:00:00.000Z..2024-03-05T23:59:59.999Z removes 0.001 s of the 86400 s "
                                  "asked for; partial_data_provided must remove at least 10% of it (8640 s, setting "
                                  "min_narrowing_fraction): decide data_provided to provide the period asked for"}
    # 10% of 24 h is 2 h 24 min: one millisecond less is refused, exactly that much is partial
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 0), end="2024-03-05T21:36:00.001Z")
    assert r.status_code == 422 and "removes 8639.999 s of the 86400 s asked for;" in r.json()["detail"]
    r = decide(env, rid, outcome="partial_data_provided", start="2024-03-05T01:00:00Z", end="2024-03-05T22:36:00Z")
    assert r.status_code == 200, r.text
    assert (r.json()["approved_start"], r.json()["approved_end"]) == ("2024-03-05T01:00:00.000Z",
                                                                      "2024-03-05T22:36:00.000Z")


def test_too_broad_request_narrowed_too_little_says_narrow_further(api_env):
    env = api_env  # breach_allegation allows 14 days; 15 asked, 14 given removes 6.67%
    rid = create_request(env, "caseworker", ground="breach_allegation", start=ts(0), end=ts(15))["id"]
    r = decide(env, rid, outcome="partial_data_provided", start=ts(1), end=ts(15))
    assert r.status_code == 422
    assert r.json() == {"detail": "2024-03-05T00:00:00.000Z..2024-03-19T00:00:00.000Z removes 86400 s of the "
                                  "1296000 s asked for; partial_data_provided must remove at least 10% of it "
                                  "(129600 s, setting min_narrowing_fraction): narrow it further or decide "
                                  "rejected_too_broad"}


def test_min_narrowing_fraction_comes_from_settings(api_template, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(api_template, home)
    (home / "settings.json").write_text(json.dumps({"min_narrowing_fraction": 0.5}))
    env = make_env(home)
    try:
        rid = create_request(env, "caseworker", start=ts(1, 0), end=ts(2, 0))["id"]
        r = decide(env, rid, outcome="partial_data_provided", start=ts(1, 0), end=ts(1, 13))
        assert r.status_code == 422 and "must remove at least 50% of it (43200 s, setting" in r.json()["detail"]
        assert decide(env, rid, outcome="partial_data_provided", start=ts(1, 0), end=ts(1, 12)).status_code == 200
    finally:
        close_env(env)


@pytest.mark.parametrize("value", [1, 1.5, -0.1, "10%", True, None])
def test_min_narrowing_fraction_must_be_a_share(tmp_path, value):
    (tmp_path / "settings.json").write_text(json.dumps({"min_narrowing_fraction": value}))
    with pytest.raises(InputError) as exc:
        Settings.from_home(tmp_path)
    assert str(exc.value) == (f"{tmp_path / 'settings.json'}: min_narrowing_fraction must be a number from 0 up to "
                              f"(not including) 1, got {value!r}")


def test_min_narrowing_fraction_default_and_zero(tmp_path):
    assert Settings.from_home(tmp_path).min_narrowing_fraction == 0.10
    (tmp_path / "settings.json").write_text(json.dumps({"min_narrowing_fraction": 0}))
    assert Settings.from_home(tmp_path).min_narrowing_fraction == 0.0


# --------------------------------------------------------------------------
# 21. A period must have ended
# --------------------------------------------------------------------------
def test_a_period_that_has_not_ended_cannot_be_requested(api_env):
    env = api_env
    now = _freeze(env)
    body = request_body(env.subjects[0], ground="sar_or_legal", start=ts(1), end=format_ms(now + 1))
    r = env.client.post("/v1/access-requests", json=body, headers=env.h("caseworker"))
    assert r.status_code == 422
    assert r.json() == {"detail": f"period 2024-03-05T00:00:00.000Z..{format_ms(now + 1)} has not ended "
                                  f"(now is {format_ms(now)}): ask for a period that has ended; an extract is "
                                  f"never a live feed"}
    body["end"] = format_ms(now)  # ends now: has ended (half-open)
    assert env.client.post("/v1/access-requests", json=body, headers=env.h("caseworker")).status_code == 201


def test_no_extract_for_an_approved_period_that_has_not_ended(api_env):
    env = api_env
    now = _freeze(env)
    req = create_request(env, "caseworker", start=ts(1, 0), end=ts(1, 6))
    assert decide(env, req["id"]).status_code == 200
    with env.session() as s:  # an approval from before the rule (its period still running)
        s.execute(update(AccessRequest).where(AccessRequest.id == req["id"]).values(approved_end_ms=now + DAY_MS))
        s.commit()
    r = _download(env, req["id"])
    assert r.status_code == 409
    assert r.json() == {"detail": f"the approved period of access request {req['id']} ends at "
                                  f"{format_ms(now + DAY_MS)}, after now ({format_ms(now)}): an extract covers only "
                                  f"a period that has ended"}


# --------------------------------------------------------------------------
# 23. CSV never carries a formula
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cell, out", [
    ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
    ("+1+1", "'+1+1"), ("-1+1", "'-1+1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("HOME-A", "HOME-A"), ("2024-03-05T00:00:00.000Z", "2024-03-05T00:00:00.000Z"), ("", ""),
    ("'=already", "'=already"), (-2.987654, -2.987654), (-5, -5), (0.0, 0.0), (None, None),
], ids=["hyperlink", "plus", "minus", "at", "tab", "cr", "plain", "timestamp", "empty", "quoted",
        "negative-float", "negative-int", "zero", "none"])
def test_neutralise_prefixes_only_text_starting_a_formula(cell, out):
    from api.access.csvsafe import neutralise

    got = neutralise(cell)
    assert got == out and type(got) is type(out)


def test_breach_report_csv_neutralises_text_cells():
    report = {"months": ["2024-03"], "rows": [{"type": "=cmd|' /C calc'!A0", "months": {"2024-03": 2}, "total": 2}],
              "totals": {"months": {"2024-03": 2}, "total": 2}, "withdrawn": {"months": {"2024-03": -1}, "total": 0}}
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert rows == [["type", "2024-03", "total"], ["'=cmd|' /C calc'!A0", "2", "2"], ["total", "2", "2"],
                    ["withdrawn", "-1", "0"]]  # numbers, even negative ones, are written as numbers
