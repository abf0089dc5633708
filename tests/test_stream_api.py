"""Continuous operation over HTTP: POST /v1/fixes (JSON and CSV), first-arrival
deduplication, quarantine by reason, background detection into the breach
queue, the batch-equals-stream invariant on the database (random splits and
arrival orders, late rows, a restart in the middle), and the queue's status
workflow with its audit trail."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from api.db.models import AuditEntry, BreachRow
from api.settings import Settings
from api.access.users import add_user
from conftest import EXAMPLES
from test_incremental import _example, _random, batch
from trails.timestamps import format_ms


def _setup(home, assignments, zones, tmp_path):
    """A home with these subjects and zones loaded, and a feed, a caseworker and an auditor."""
    from api.cli.subjects import load_into

    subj = tmp_path / "subjects.json"
    subj.write_text(json.dumps({"subjects": [
        {"subject_id": a.subject_id, "device_id": a.device_id, "start": format_ms(a.start_ms),
         "end": None if a.end_ms is None else format_ms(a.end_ms), "zones": list(a.zones)} for a in assignments]}))
    feats = []
    for z in zones:
        props = {"kind": z.kind, "timezone": z.timezone}
        if z.windows is not None:
            days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            props["schedule"] = [{"days": [days[d] for d in w.days], "start": f"{w.start_min // 60:02d}:{w.start_min % 60:02d}",
                                  "end": f"{w.end_min // 60:02d}:{w.end_min % 60:02d}"} for w in z.windows]
        if z.is_circle:
            props["radius_m"] = z.radius_m
            geom = {"type": "Point", "coordinates": list(z.center_lonlat)}
        else:
            geom = {"type": "MultiPolygon", "coordinates": [[[list(p) for p in ring] for ring in poly] for poly in z.polygons]}
        feats.append({"type": "Feature", "id": z.zone_id, "properties": props, "geometry": geom})
    zf = tmp_path / "zones.geojson"
    zf.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    load_into(home, subj, zf)
    return _app(home)


def _example_home(name, tmp_path):
    """A home directory for contract example `name`, with its POLICY.json if it has one."""
    home = tmp_path / "home"
    if (EXAMPLES / name / "policy.json").exists():
        home.mkdir()
        (home / "policy.json").write_text((EXAMPLES / name / "policy.json").read_text())
    return home


def _app(home, tokens=None):
    app = create_app(Settings.from_home(home))
    if tokens is None:
        tokens = {}
        with app.state.session_factory() as s:
            for name, role, org in (("feed-1", "feed", "supplier"), ("cw-1", "caseworker", "home office"),
                                    ("au-1", "auditor", "home office"), ("ap-1", "approver", "home office")):
                tokens[role] = add_user(s, app.state.audit, name=name, role=role, org=org)[1]
            s.commit()
    return app, TestClient(app), tokens


def _policy_json(policy) -> dict:
    """A Policy as POLICY.json (durations back to seconds)."""
    from dataclasses import asdict

    from geofence.policy import _DURATIONS

    d = asdict(policy)
    out = {k: d[v] / 1000 for k, v in _DURATIONS.items()}
    out.update({k: d[k] for k in ("crs", "battery_policy", "battery_critical_pct", "battery_low_pct",
                                  "default_accuracy_m", "curfew_missed_fraction")})
    return out


def _h(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}


def _fix_json(r):
    out = {"device_id": r["device_id"], "ts": format_ms(r["ts_ms"]), "lat": r["lat"], "lon": r["lon"]}
    if r["accuracy_m"] is not None:
        out["accuracy_m"] = r["accuracy_m"]
    if r["battery_pct"] is not None:
        out["battery_pct"] = r["battery_pct"]
    return out


def _db_records(app):
    with app.state.session_factory() as s:
        rows = list(s.scalars(select(BreachRow).where(BreachRow.status != "withdrawn")))
    from api.service.stream import _record

    from geofence.records import sort_records

    return sort_records([{k: v for k, v in _record(b).items() if not k.startswith("_")} for b in rows])


def _post_all(client, tokens, app, rng, fixes, events, *, restart_at=None, home=None):
    items = [("f", i) for i in range(len(fixes))] + [("e", i) for i in range(len(events))]
    if rng.random() < 0.5:
        rng.shuffle(items)
    else:
        items.sort(key=lambda it: (fixes if it[0] == "f" else events)[it[1]]["ts_ms"])
    arrived_f, arrived_e, k, n_batches = [], [], 0, 0
    while k < len(items):
        chunk = items[k:k + int(rng.choice([1, 3, 20, 200]))]
        k += len(chunk)
        body = {"fixes": [_fix_json(fixes[i]) for t, i in chunk if t == "f"],
                "events": [{"device_id": events[i]["device_id"], "ts": format_ms(events[i]["ts_ms"]),
                            "event": events[i]["event"]} for t, i in chunk if t == "e"]}
        r = client.post("/v1/fixes", json=body, headers=_h(tokens, "feed"))
        assert r.status_code == 200, r.text
        arrived_f += [fixes[i] for t, i in chunk if t == "f"]
        arrived_e += [events[i] for t, i in chunk if t == "e"]
        n_batches += 1
        if rng.random() < 0.4:
            app.state.stream.run_pending()
        if rng.random() < 0.15:
            app.state.stream.compact()
        if restart_at is not None and n_batches == restart_at:
            app.state.stream.run_pending()
            app.state.engine.dispose()
            app, client, tokens = _app(home, tokens)
    app.state.stream.run_pending()
    return app, client, arrived_f, arrived_e


@pytest.mark.parametrize("name", ["curfew_basic", "gaps_battery", "accumulated_battery", "device_swap",
                                  "tamper_out_of_contact", "dst_changes", "exclusion_hole"])
def test_examples_over_http_equal_batch(name, tmp_path):
    fixes, events, assignments, zones, policy = _example(name)
    home = _example_home(name, tmp_path)
    app, client, tokens = _setup(home, assignments, zones, tmp_path)
    app, client, arr_f, arr_e = _post_all(client, tokens, app, np.random.default_rng(7), fixes, events)
    assert _db_records(app) == batch(arr_f, arr_e, assignments, zones, policy)


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_over_http_with_restart_equal_batch(seed, tmp_path):
    fixes, events, assignments, zones, policy = _random(seed)
    home = tmp_path / "home"
    home.mkdir()
    (home / "policy.json").write_text(json.dumps(_policy_json(policy)))
    app, client, tokens = _setup(home, assignments, zones, tmp_path)
    rng = np.random.default_rng(seed)
    app, client, arr_f, arr_e = _post_all(client, tokens, app, rng, fixes, events,
                                          restart_at=int(rng.integers(1, 6)), home=home)
    want = batch(arr_f, arr_e, assignments, zones, policy)
    assert _db_records(app) == want
    # moved into the store, the same rows give the same records from `tagtrail detect --home`
    app.state.stream.compact()
    from api.cli.main import main
    from api.db.models import IntakeFixChunk

    with app.state.session_factory() as s:
        assert s.scalars(select(IntakeFixChunk.seq_first)).first() is None
    out = tmp_path / "out"
    assert main(["detect", "--home", str(home), "--subjects", str(tmp_path / "subjects.json"),
                 "--zones", str(tmp_path / "zones.geojson"), "--policy", str(home / "policy.json"),
                 "--out", str(out), "--quiet"]) == 0
    assert [json.loads(line) for line in (out / "breaches.jsonl").read_text().splitlines()] == want


def test_intake_counts_duplicates_and_quarantine(tmp_path):
    fixes, events, assignments, zones, policy = _example("curfew_basic")
    app, client, tokens = _setup(tmp_path / "home", assignments, zones, tmp_path)
    good = [_fix_json(r) for r in fixes[:10]]
    bad = [
        {"ts": "2024-01-10T19:00:00Z", "lat": 51.5, "lon": -0.1},                           # missing_device
        {"device_id": "D1", "ts": 1704913200000, "lat": 51.5, "lon": -0.1},                # bad_timestamp
        {"device_id": "D1", "ts": "2024-01-10T19:00:00", "lat": 51.5, "lon": -0.1},        # naive_timestamp
        {"device_id": "D1", "ts": "2024-01-10T19:00:01Z", "lat": True, "lon": -0.1},       # bad_coordinates
        {"device_id": "D1", "ts": "2024-01-10T19:00:02Z", "lat": 51.5, "lon": -0.1, "accuracy_m": -1},
        {"device_id": "D1", "ts": "2024-01-10T19:00:03Z", "lat": 51.5, "lon": -0.1, "battery_pct": 101},
    ]
    r = client.post("/v1/fixes", json={"fixes": good + bad + good[:2],
                                       "events": [{"device_id": "D1", "ts": "2024-01-10T19:00:00Z", "event": "hop"}]},
                    headers=_h(tokens, "feed"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["fixes"] == {"received": 18, "accepted": 10, "quarantined": {
        "missing_device": 1, "bad_timestamp": 1, "naive_timestamp": 1, "bad_coordinates": 1, "bad_accuracy": 1,
        "bad_battery": 1, "duplicate": 2}}
    assert out["events"] == {"received": 1, "accepted": 0, "quarantined": {"unknown_event": 1}}
    # the same batch again adds nothing
    r2 = client.post("/v1/fixes", json={"fixes": good}, headers=_h(tokens, "feed"))
    assert r2.json()["fixes"] == {"received": 10, "accepted": 0, "quarantined": {"duplicate": 10}}
    # CSV bodies take the same path
    csv = "device_id,ts,lat,lon\n" + "\n".join(f"{f['device_id']},{f['ts']},{f['lat']},{f['lon']}" for f in
                                               [_fix_json(r) for r in fixes[10:15]]) + "\n"
    r3 = client.post("/v1/fixes", content=csv, headers={**_h(tokens, "feed"), "Content-Type": "text/csv"})
    assert r3.status_code == 200 and r3.json()["fixes"]["accepted"] == 5
    r4 = client.post("/v1/fixes?kind=events", content="device_id,ts,event\nD1,2024-01-10T20:00:00Z,strap_tamper\n",
                     headers={**_h(tokens, "feed"), "Content-Type": "text/csv"})
    assert r4.json()["events"]["accepted"] == 1
    # bad bodies are 4xx with a message
    assert client.post("/v1/fixes", content=b"{", headers={**_h(tokens, "feed"), "Content-Type": "application/json"}).status_code == 422
    assert client.post("/v1/fixes", content=b"x", headers={**_h(tokens, "feed"), "Content-Type": "text/plain"}).status_code == 415
    big = {"fixes": [good[0]] * 50_001}
    r5 = client.post("/v1/fixes", json=big, headers=_h(tokens, "feed"))
    assert r5.status_code == 422 and "at most 50000" in r5.json()["detail"]
    assert client.post("/v1/fixes", content="device_id,lat\nD1,1\n", headers={**_h(tokens, "feed"), "Content-Type": "text/csv"}).status_code == 422
    # each batch is audited, without positions
    with app.state.session_factory() as s:
        intakes = [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == "fixes.intake"))]
    assert len(intakes) == 4 and all("lat" not in json.dumps(e) for e in intakes)


def test_queue_order_status_and_withdrawal(tmp_path):
    fixes, events, assignments, zones, policy = _example("gaps_battery")
    app, client, tokens = _setup(tmp_path / "home", assignments, zones, tmp_path)
    rows = sorted(fixes, key=lambda r: r["ts_ms"])
    # everything but a stretch in the middle: the stretch looks like a gap
    mid = len(rows) // 2
    held = [r for r in rows[mid:mid + 30]]
    first = rows[:mid] + rows[mid + 30:]
    assert client.post("/v1/fixes", json={"fixes": [_fix_json(r) for r in first]}, headers=_h(tokens, "feed")).status_code == 200
    app.state.stream.run_pending()
    q = client.get("/v1/breaches/queue", headers=_h(tokens, "caseworker")).json()
    assert q["total"] >= 1
    keys = [(i["priority"], i["first_seen"]) for i in q["items"]]
    assert keys == sorted(keys)
    gap_ids = {i["breach_id"] for i in q["items"] if i["type"] in ("battery", "no_signal")}
    # a caseworker takes one
    target = q["items"][0]["breach_id"]
    r = client.post(f"/v1/breaches/{target}/status", json={"status": "in_review", "assignee": "cw-1"},
                    headers=_h(tokens, "caseworker"))
    assert r.status_code == 200 and r.json()["status"] == "in_review" and r.json()["assignee"] == "cw-1"
    assert client.post(f"/v1/breaches/{target}/status", json={"status": "withdrawn"},
                       headers=_h(tokens, "caseworker")).status_code == 422
    assert client.post(f"/v1/breaches/{target}/status", json={"status": "actioned"},
                       headers=_h(tokens, "auditor")).status_code == 403
    # the held-back fixes arrive late: a gap they fill is withdrawn, with a reason, not deleted
    assert client.post("/v1/fixes", json={"fixes": [_fix_json(r) for r in held]}, headers=_h(tokens, "feed")).status_code == 200
    app.state.stream.run_pending()
    assert _db_records(app) == batch(first + held, [], assignments, zones, policy)
    with app.state.session_factory() as s:
        withdrawn = list(s.scalars(select(BreachRow).where(BreachRow.status == "withdrawn")))
    now_ids = {r["breach_id"] for r in _db_records(app)}
    for b in withdrawn:
        assert b.breach_id not in now_ids and b.withdrawn_reason
    if any(b.breach_id in gap_ids for b in withdrawn):
        w = next(b for b in withdrawn if b.breach_id in gap_ids)
        assert w.withdrawn_reason == "fixes received later show contact during this gap"
        assert client.post(f"/v1/breaches/{w.breach_id}/status", json={"status": "in_review"},
                           headers=_h(tokens, "caseworker")).status_code == 409
    allq = client.get("/v1/breaches/queue?status=withdrawn", headers=_h(tokens, "auditor")).json()
    assert {i["breach_id"] for i in allq["items"]} == {b.breach_id for b in withdrawn}
    with app.state.session_factory() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    assert "breach.status" in actions and "breach.queue.read" in actions and "breaches.update" in actions


def test_corrections_reevaluate_and_are_audited(tmp_path):
    """Changing the past takes a correction (a second admin approves it): then the
    affected assignments are re-evaluated and the queue equals batch detection on
    the corrected conditions. (Changes from now on: tests/test_conditions.py.)"""
    from dataclasses import replace

    fixes, events, assignments, zones, policy = _example("curfew_basic")
    home = tmp_path / "home"
    app, client, tokens = _setup(home, assignments, zones, tmp_path)
    with app.state.session_factory() as s:
        tokens["admin"] = add_user(s, app.state.audit, name="ad-1", role="admin", org="home office")[1]
        tokens["admin2"] = add_user(s, app.state.audit, name="ad-2", role="admin", org="home office")[1]
        s.commit()
    assert client.post("/v1/fixes", json={"fixes": [_fix_json(r) for r in fixes]}, headers=_h(tokens, "feed")).status_code == 200
    app.state.stream.run_pending()
    before = _db_records(app)
    assert before == batch(fixes, [], assignments, zones, policy)

    def correct(body):
        r = client.post("/v1/admin/corrections", json=body, headers=_h(tokens, "admin"))
        assert r.status_code == 201, r.text
        r = client.post(f"/v1/admin/corrections/{r.json()['id']}/decision", headers=_h(tokens, "admin2"),
                        json={"approve": True, "reason": "Verified against the fitting record and the order."})
        assert r.status_code == 200, r.text
        app.state.stream.run_pending()

    # widen the curfew circle over the whole period: the absences shrink or vanish
    z = zones[0]
    assert z.is_circle
    feature = {"type": "Feature", "properties": {"kind": z.kind, "radius_m": z.radius_m * 30,
                                                 "schedule": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                                               "start": "19:00", "end": "07:00"}]},
               "geometry": {"type": "Point", "coordinates": list(z.center_lonlat)}}
    correct({"kind": "zone", "zone_id": z.zone_id, "feature": feature, "from": format_ms(assignments[0].start_ms),
             "reason": "The order gives the whole estate as the curfew address, not the flat."})
    from geofence.zones import parse_zones

    new_zone = parse_zones({"type": "FeatureCollection", "features": [{**feature, "id": z.zone_id}]})[0]
    want = batch(fixes, [], assignments, [new_zone], policy)
    assert _db_records(app) == want
    assert want != before
    # a second assignment for a new device, from its fitting, and its fixes
    a2 = replace(assignments[0], subject_id="S-2", device_id="D-2")
    correct({"kind": "assignment", "reason": "Fitted at the same time as S1's tag and registered a day late.",
             "assignment": {"subject_id": "S-2", "device_id": "D-2", "start": format_ms(a2.start_ms),
                            "zones": list(a2.zones)}})
    moved = [{**f, "device_id": "D-2"} for f in fixes[: len(fixes) // 2]]
    assert client.post("/v1/fixes", json={"fixes": [_fix_json(f) for f in moved]}, headers=_h(tokens, "feed")).status_code == 200
    app.state.stream.run_pending()
    assert _db_records(app) == batch(fixes + moved, [], [assignments[0], a2], [new_zone], policy)
    # refused changes say why
    later = "2030-01-01T00:00:00Z"
    assert client.put("/v1/admin/assignments", json={"subject_id": "S-3", "device_id": "D-3", "start": later},
                      headers=_h(tokens, "admin")).status_code == 200
    r = client.put("/v1/admin/assignments", json={"subject_id": "S-3", "device_id": "D-9", "start": later},
                   headers=_h(tokens, "admin"))
    assert r.status_code == 422 and "overlaps" in r.json()["detail"]
    r = client.put("/v1/admin/assignments", json={"subject_id": "S-4", "device_id": "D-4", "start": later,
                                                   "zones": ["NOPE"]}, headers=_h(tokens, "admin"))
    assert r.status_code == 422 and "NOPE" in r.json()["detail"]
    r = client.put("/v1/admin/zones/bad", json={"type": "Feature", "properties": {"kind": "curfew"},
                                                "geometry": {"type": "Point", "coordinates": [0, 51]}}, headers=_h(tokens, "admin"))
    assert r.status_code == 422
    with app.state.session_factory() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    assert "correction.apply" in actions and "assignment.add" in actions
