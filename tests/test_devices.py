"""Issue 13, section 5 (first part): the device register, faults and batch
recalls. A breach whose device had a fault open during it is
suspected_equipment_fault in the queue and the record, and is left out of
the escalation ladder's count until a caseworker confirms the fault (it
never counts) or clears it (it counts again). Expectations by hand from
breaches this module adds."""
from __future__ import annotations

import hashlib

import pytest

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from trails.timestamps import DAY_MS, format_ms

H = 3_600_000


@pytest.fixture()
def env(api_env):
    return api_env


def _breach(env, subject: str, device: str, t: int, n: int) -> str:
    from api.db.models import AssignmentRow, BreachRow

    bid = hashlib.sha256(f"fault:{subject}:{n}".encode()).hexdigest()[:16]
    with env.session() as s:
        if n == 0:
            s.add(AssignmentRow(subject_id=subject, device_id=device, start_ms=t - 30 * DAY_MS, end_ms=None,
                                zones_json="[]", chain_start_ms=t - 30 * DAY_MS, zone_versions_json="{}"))
        s.add(BreachRow(breach_id=bid, kind="breach", type="battery", subject_id=subject, device_id=device,
                        zone_id=None, start=format_ms(t), end=format_ms(t + H), start_ms=t, end_ms=t + H,
                        duration_s=3600.0, priority=3, first_seen_ms=t, updated_ms=t, status="new"))
        s.commit()
    return bid


def test_a_recalled_batch_is_excluded_until_a_caseworker_decides(env):
    t = env.clock()
    for d, batch in (("D-FLT-1", "B-BAD"), ("D-FLT-2", "B-BAD"), ("D-OK-1", "B-GOOD")):
        r = env.client.put(f"/v1/devices/{d}", headers=env.h("admin"),
                           json={"serial": f"SN-{d}", "model": "GT-3", "batch": batch})
        assert r.status_code == 200, r.text
    inside = [_breach(env, "S-FLT", "D-FLT-1", t - (10 - k) * DAY_MS, k) for k in range(3)]  # days -10, -9, -8
    outside = _breach(env, "S-FLT", "D-FLT-1", t - 2 * DAY_MS, 3)  # after the recall's end
    other = _breach(env, "S-OK", "D-OK-1", t - 9 * DAY_MS, 0)  # another batch
    assert env.client.get("/v1/subjects/S-FLT/escalation", headers=env.h("caseworker")).json()["proposed_step"] == \
        "warning_letter_2"  # 4 breaches, before any fault is known

    r = env.client.post("/v1/device-faults", headers=env.h("admin"), json={
        "batch": "B-BAD", "start": format_ms(t - 11 * DAY_MS), "end": format_ms(t - 5 * DAY_MS),
        "description": "Supplier recall: the charging contacts corrode and the battery reads flat."})
    assert r.status_code == 201, r.text

    def state(bid):
        r = env.client.get(f"/v1/breaches/{bid}", headers=env.h("caseworker"))
        assert r.status_code == 200
        return r.json()["equipment_fault"]

    assert [state(b) for b in inside] == ["suspected_equipment_fault"] * 3
    assert state(outside) is None and state(other) is None
    queue = {i["breach_id"]: i["equipment_fault"] for i in env.client.get(
        "/v1/breaches/queue?subject_id=S-FLT&limit=50", headers=env.h("caseworker")).json()["items"]}
    assert queue == {**dict.fromkeys(inside, "suspected_equipment_fault"), outside: None}
    view = env.client.get("/v1/subjects/S-FLT/escalation", headers=env.h("caseworker")).json()
    assert view["counted"] == [outside] and view["proposed_step"] == "warning_letter_1"  # the recall's three out

    ok = {"decision": "fault_cleared", "reason": "The tag's log shows it charged normally that night."}
    assert env.client.post(f"/v1/breaches/{inside[0]}/equipment-fault", headers=env.h("caseworker"),
                           json=ok).status_code == 200
    env.client.post(f"/v1/breaches/{inside[1]}/equipment-fault", headers=env.h("caseworker"),
                    json={"decision": "fault_confirmed", "reason": "The tag was one of the corroded ones returned."})
    assert [state(b) for b in inside] == ["fault_cleared", "fault_confirmed", "suspected_equipment_fault"]
    view = env.client.get("/v1/subjects/S-FLT/escalation", headers=env.h("caseworker")).json()
    assert view["counted"] == sorted([inside[0], outside])  # cleared counts again; confirmed and suspected do not
    r = env.client.post(f"/v1/breaches/{outside}/equipment-fault", headers=env.h("caseworker"), json=ok)
    assert r.status_code == 422 and r.json()["detail"] == f"breach {outside} is not inside any device fault"


def test_fault_input_is_checked(env):
    t = env.clock()
    bad = [({"device_id": "D-1", "batch": "B-1"}, "name exactly one of: a device, or a batch (a recall)"),
           ({"batch": "B-NONE"}, "no device of batch 'B-NONE' is in the register"),
           ({"device_id": "D-1", "end": format_ms(t - DAY_MS)}, "a fault's end must be after its start")]
    for extra, message in bad:
        body = {"start": format_ms(t), "description": "The supplier reported a fault on this tag.", **extra}
        r = env.client.post("/v1/device-faults", headers=env.h("admin"), json=body)
        assert r.status_code == 422 and r.json()["detail"] == message, (extra, r.text)


def test_the_console_shows_the_fault_on_the_queue_and_the_record(env):
    from test_console_session import sign_in

    t = env.clock()
    env.client.put("/v1/devices/D-CON-1", headers=env.h("admin"), json={"serial": "SN-C1", "model": "GT-3",
                                                                         "batch": "B-CON"})
    bid = _breach(env, "S-CON", "D-CON-1", t - 3 * DAY_MS, 0)
    env.client.post("/v1/device-faults", headers=env.h("admin"), json={
        "device_id": "D-CON-1", "start": format_ms(t - 4 * DAY_MS),
        "description": "The tag reports a flat battery while charging."})
    sign_in(env)
    queue = env.client.get("/queue?wearer=S-CON").text
    row = queue.split(f'id="breach-{bid}"', 1)[1].split("</tr>", 1)[0]
    assert "Suspected equipment fault" in row
    page = env.client.get(f"/breaches/{bid}").text
    assert 'id="record-fault"' in page and "does not count toward escalation" in page
