"""A condition applies from when it is imposed (issue 10 item 4): admins'
zone and assignment changes take effect from the change on (the assignment is
split there), the past changes only through a correction a second admin
approves, and every zone version is kept with its SHA-256 in the audit log."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import rfc8785
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from api.db.models import AuditEntry
from api.settings import Settings
from api.access.users import add_user
from conftest import EXAMPLES
from geofence.model import Assignment, zone_key
from geofence.zones import parse_zones
from test_incremental import _example, batch
from test_stream_api import _db_records, _fix_json
from trails.timestamps import parse_timestamp

CASE = "curfew_basic"  # S1/D1 from 2024-01-10T18:00Z, a 50 m curfew circle 19:00-07:00; out 21:00-21:29 and 23:00-23:09


class _Frozen:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def _serve(tmp_path, now: str):
    """The example's subjects and zones loaded (from files), the clock at `now`, and the
    example's fixes up to `now` received (`_rest` sends the others, later)."""
    from api.cli.subjects import load_into

    home = tmp_path / "home"
    load_into(home, EXAMPLES / CASE / "subjects.json", EXAMPLES / CASE / "zones.geojson")
    app = create_app(Settings.from_home(home), clock=_Frozen(parse_timestamp(now)))
    h = {}
    with app.state.session_factory() as s:
        for name, role in (("feed-1", "feed"), ("ad-1", "admin"), ("ad-2", "admin"), ("au-1", "auditor")):
            h[name] = {"Authorization": f"Bearer {add_user(s, app.state.audit, name=name, role=role, org='ho')[1]}"}
        s.commit()
    client = TestClient(app)
    fixes, _, assignments, zones, policy = _example(CASE)
    sent = [_fix_json(f) for f in fixes if f["ts_ms"] <= app.state.clock()]
    if sent:
        assert client.post("/v1/fixes", json={"fixes": sent}, headers=h["feed-1"]).status_code == 200
    app.state.stream.run_pending()
    return app, client, h


def _rest(app, client, h, now: str = "2024-01-11T09:00:00Z") -> None:
    """The clock moves on to `now` and the rest of the example's fixes arrive."""
    app.state.clock.ms = parse_timestamp(now)
    fixes, *_ = _example(CASE)
    r = client.post("/v1/fixes", json={"fixes": [_fix_json(f) for f in fixes]}, headers=h["feed-1"])
    assert r.status_code == 200, r.text
    app.state.stream.run_pending()


def _feature(lon: float, lat: float, radius_m: float, kind: str = "curfew") -> dict:
    props = {"kind": kind, "radius_m": radius_m}
    if kind == "curfew":
        props["schedule"] = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "19:00", "end": "07:00"}]
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


#: The home circle moved ~2 km east: every fix of the example is outside it.
MOVED = _feature(-0.0870, 51.4588, 50)


def _zone(feature: dict, key: str):
    (z,) = parse_zones({"type": "FeatureCollection", "features": [{**feature, "id": "S1-home"}]})
    return replace(z, zone_id=key)


def _entries(app, action: str) -> list[dict]:
    with app.state.session_factory() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action))]


def test_a_grid_of_zones_cannot_read_a_wearers_past(tmp_path):
    """The attack: an admin covers the area with exclusion zones and attaches them to
    the assignment. The change applies from now; the queue learns nothing about the past."""
    app, client, h = _serve(tmp_path, "2026-12-03T09:00:00Z")
    before = _db_records(app)
    cells = []
    for i, lon in enumerate((-0.1170, -0.1150, -0.1130)):
        zid = f"GRID-{i}"
        r = client.put(f"/v1/admin/zones/{zid}", json=_feature(lon, 51.4588, 900, kind="exclusion"), headers=h["ad-1"])
        assert r.status_code == 200, r.text
        cells.append(zid)
    r = client.put("/v1/admin/assignments", json={"subject_id": "S1", "device_id": "D1", "start": "2024-01-10T18:00:00Z",
                                                   "zones": ["S1-home", *cells]}, headers=h["ad-1"])
    assert r.status_code == 200, r.text
    segs = r.json()["items"]
    assert [(s["segment_start"], s["end"], s["zones"]) for s in segs] == [
        ("2024-01-10T18:00:00.000Z", "2026-12-03T09:00:00.000Z", ["S1-home"]),
        ("2026-12-03T09:00:00.000Z", None, ["S1-home", *cells])]
    app.state.stream.run_pending()
    assert _db_records(app) == before  # no exclusion entry: the past is judged as it was
    assert not [b for b in _db_records(app) if b["type"] == "exclusion_entry"]
    app.state.engine.dispose()


def test_a_zone_change_applies_from_its_instant(tmp_path):
    app, client, h = _serve(tmp_path, "2024-01-10T22:00:00Z")
    r = client.put("/v1/admin/zones/S1-home", json=MOVED, headers=h["ad-1"])
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["split_assignments"] == 1
    _rest(app, client, h)
    fixes, _, (a,), (z,), policy = _example(CASE)
    t = parse_timestamp("2024-01-10T22:00:00Z")
    old, new = zone_key("S1-home", 1), zone_key("S1-home", 2)
    want = batch(fixes, [], [Assignment("S1", "D1", a.start_ms, t, (old,)), Assignment("S1", "D1", t, None, (new,))],
                 [replace(z, zone_id=old), _zone(MOVED, new)], policy)
    got = _db_records(app)
    assert got == want
    # by hand: 21:00-21:30 stays a breach of the old circle; from 22:00 the wearer is outside the moved one
    # until the window ends at 07:00 (a window cut by the change is never "missed")
    assert [(b["type"], b["zone_id"], b["start"], b["end"]) for b in got] == [
        ("curfew_absence", "S1-home", "2024-01-10T21:00:00.000Z", "2024-01-10T21:30:00.000Z"),
        ("curfew_absence", "S1-home", "2024-01-10T22:00:00.000Z", "2024-01-11T07:00:00.000Z")]
    (entry,) = _entries(app, "zone.change")
    assert entry["detail"]["sha256"] == hashlib.sha256(rfc8785.dumps({**MOVED, "id": "S1-home"})).hexdigest()
    assert entry["detail"]["effective_from"] == "2024-01-10T22:00:00.000Z" and entry["detail"]["version"] == 2
    assert "S1-home" not in json.dumps(entry)  # zone ids may embed a wearer's id: a keyed reference only
    app.state.engine.dispose()


def test_every_zone_version_is_kept(tmp_path):
    app, client, h = _serve(tmp_path, "2024-01-10T22:00:00Z")
    assert client.put("/v1/admin/zones/S1-home", json=MOVED, headers=h["ad-1"]).status_code == 200
    r = client.get("/v1/admin/zones/S1-home/versions", headers=h["au-1"])
    assert r.status_code == 200
    versions = r.json()["versions"]
    original = json.loads((EXAMPLES / CASE / "zones.geojson").read_text())["features"][0]
    assert [(v["version"], v["effective_from"], v["sha256"]) for v in versions] == [
        (1, None, hashlib.sha256(rfc8785.dumps(original)).hexdigest()),
        (2, "2024-01-10T22:00:00.000Z", hashlib.sha256(rfc8785.dumps({**MOVED, "id": "S1-home"})).hexdigest())]
    assert versions[0]["feature"] == original
    app.state.engine.dispose()


def test_the_past_changes_only_by_a_correction_a_second_admin_approves(tmp_path):
    app, client, h = _serve(tmp_path, "2024-01-11T09:00:00Z")
    before = _db_records(app)
    body = {"kind": "zone", "zone_id": "S1-home", "feature": MOVED, "from": "2024-01-10T18:00:00Z",
            "reason": "The home address was entered wrongly at fitting; the tenancy shows the other flat."}
    r = client.post("/v1/admin/corrections", json=body, headers=h["ad-1"])
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    app.state.stream.run_pending()
    assert _db_records(app) == before  # proposed, not applied
    decision = {"approve": True, "reason": "Checked the tenancy agreement against the fitting record."}
    r = client.post(f"/v1/admin/corrections/{cid}/decision", json=decision, headers=h["ad-1"])
    assert r.status_code == 403
    assert r.json() == {"detail": f"a correction needs a second admin: correction {cid} was proposed by ad-1"}
    r = client.post(f"/v1/admin/corrections/{cid}/decision", json=decision, headers=h["ad-2"])
    assert r.status_code == 200 and r.json()["status"] == "applied"
    app.state.stream.run_pending()
    fixes, _, (a,), _, policy = _example(CASE)
    key = zone_key("S1-home", 2)
    want = batch(fixes, [], [Assignment("S1", "D1", a.start_ms, None, (key,))], [_zone(MOVED, key)], policy)
    assert _db_records(app) == want
    assert [b["type"] for b in want] == ["curfew_missed"]  # outside all night: the whole window is missed
    (proposed,) = _entries(app, "correction.propose")
    (applied,) = _entries(app, "correction.apply")
    assert proposed["actor"] == "ad-1" and applied["actor"] == "ad-2"
    assert applied["detail"]["zone_sha256"] == hashlib.sha256(rfc8785.dumps({**MOVED, "id": "S1-home"})).hexdigest()
    r = client.post(f"/v1/admin/corrections/{cid}/decision", json=decision, headers=h["ad-2"])
    assert r.status_code == 409
    app.state.engine.dispose()


def test_a_change_reaching_into_the_past_is_refused_with_the_way_forward(tmp_path):
    app, client, h = _serve(tmp_path, "2024-01-11T09:00:00Z")
    r = client.put("/v1/admin/assignments", json={"subject_id": "S2", "device_id": "D2", "start": "2024-01-10T18:00:00Z",
                                                   "zones": []}, headers=h["ad-1"])
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "assignment of 'D2' would start at 2024-01-10T18:00:00.000Z, before now (2024-01-11T09:00:00.000Z): a "
        "condition applies from when it is imposed. To change the past, propose a correction "
        "(POST /v1/admin/corrections) for a second admin to approve")
    r = client.put("/v1/admin/assignments", json={"subject_id": "S1", "device_id": "D1", "start": "2024-01-10T18:00:00Z",
                                                   "end": "2024-01-11T00:00:00Z", "zones": ["S1-home"]}, headers=h["ad-1"])
    assert r.status_code == 409 and "the end of this assignment would move to 2024-01-11T00:00:00.000Z" in r.json()["detail"]
    # ending it from now on is an ordinary change
    r = client.put("/v1/admin/assignments", json={"subject_id": "S1", "device_id": "D1", "start": "2024-01-10T18:00:00Z",
                                                   "end": "2024-01-11T10:00:00Z", "zones": ["S1-home"]}, headers=h["ad-1"])
    assert r.status_code == 200 and r.json()["items"][-1]["end"] == "2024-01-11T10:00:00.000Z"
    # a new assignment from now on needs no correction
    r = client.put("/v1/admin/assignments", json={"subject_id": "S2", "device_id": "D2", "start": "2024-01-11T09:00:00Z",
                                                   "zones": []}, headers=h["ad-1"])
    assert r.status_code == 200
    app.state.engine.dispose()


def test_an_assignment_correction_reevaluates_its_past(tmp_path):
    app, client, h = _serve(tmp_path, "2024-01-11T09:00:00Z")
    body = {"kind": "assignment", "reason": "The tag was fitted at 18:00 but registered only the next morning.",
            "assignment": {"subject_id": "S2", "device_id": "D2", "start": "2024-01-10T18:00:00Z", "zones": []}}
    cid = client.post("/v1/admin/corrections", json=body, headers=h["ad-1"]).json()["id"]
    r = client.post(f"/v1/admin/corrections/{cid}/decision",
                    json={"approve": True, "reason": "The fitting record confirms the time of 18:00."},
                    headers=h["ad-2"])
    assert r.status_code == 200, r.text
    app.state.stream.run_pending()
    # D2 sent nothing: one no_signal gap from its start to as_of (the example's last fix, 07:59)
    (gap,) = [b for b in _db_records(app) if b["subject_id"] == "S2"]
    assert (gap["type"], gap["start"], gap["end"]) == ("no_signal", "2024-01-10T18:00:00.000Z", "2024-01-11T07:59:00.000Z")
    app.state.engine.dispose()
