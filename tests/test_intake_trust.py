"""Continuous intake you can trust (issue 10 items 1, 3 and 10): a faulty tag
clock never moves time for everyone, one bad assignment never stops detection,
only the supplier's feed adds evidence, and every batch and every withdrawal
can be traced in the audit log."""
from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from api.db.models import AuditEntry, BreachRow, IntakeBatch, IntakeQuarantine
from api.service.intake import read_summary
from api.settings import Settings
from api.access.users import add_user
from test_stream_api import _db_records
from trails.timestamps import format_ms, parse_timestamp

RECEIVED = parse_timestamp("2024-03-04T12:00:00Z")
START = "2024-03-04T00:00:00Z"


def _home(tmp_path, subjects: list[dict], policy: dict | None = None):
    from api.cli.subjects import load_into

    home = tmp_path / "home"
    home.mkdir()
    if policy is not None:
        (home / "policy.json").write_text(json.dumps(policy))
    (tmp_path / "subjects.json").write_text(json.dumps({"subjects": subjects}))
    (tmp_path / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    load_into(home, tmp_path / "subjects.json", tmp_path / "zones.geojson")
    return home


class _Frozen:
    """A service clock that reads `ms` until moved."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def _serve(home, received_ms: int = RECEIVED):
    app = create_app(Settings.from_home(home), clock=_Frozen(received_ms))
    tokens = {}
    with app.state.session_factory() as s:
        for name, role, org in (("feed-1", "feed", "supplier"), ("cw-1", "caseworker", "home office"),
                                ("ad-1", "admin", "home office"), ("au-1", "auditor", "home office")):
            tokens[role] = add_user(s, app.state.audit, name=name, role=role, org=org)[1]
        s.commit()
    return app, TestClient(app), {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}


def _d1_minutes() -> list[dict]:
    """D1: a fix every minute of 2024-03-04 up to 11:59, 53.40 N 2.98 W."""
    t0 = parse_timestamp(START)
    return [{"device_id": "D1", "ts": format_ms(t0 + k * 60_000), "lat": 53.4, "lon": -2.98} for k in range(720)]


TWO = [{"subject_id": "S1", "device_id": "D1", "start": START, "zones": []},
       {"subject_id": "S2", "device_id": "D2", "start": START, "zones": []}]


def _detect_files(tmp_path, fixes: list[dict]) -> list[dict]:
    """`tagtrail detect` on these fix rows (no --as-of: the implicit one), as parsed records."""
    from api.cli.main import main

    src = tmp_path / "batch"
    src.mkdir(exist_ok=True)
    lines = ["device_id,ts,lat,lon"] + [f"{f['device_id']},{f['ts']},{f['lat']},{f['lon']}" for f in fixes]
    (src / "fixes.csv").write_text("\n".join(lines) + "\n")
    assert main(["detect", "--fixes", str(src / "fixes.csv"), "--subjects", str(tmp_path / "subjects.json"),
                 "--zones", str(tmp_path / "zones.geojson"), "--out", str(src / "out")]) == 0
    return [json.loads(line) for line in (src / "out" / "breaches.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ item 3: future timestamps

def test_faulty_tag_clock_is_quarantined_and_changes_no_one_else(tmp_path):
    """CONTRACT "Continuous intake", the minimal case over HTTP."""
    home = _home(tmp_path, TWO)
    app, client, h = _serve(home)
    r = client.post("/v1/fixes", json={"fixes": _d1_minutes()}, headers=h["feed"])
    assert r.status_code == 200 and r.json()["fixes"]["accepted"] == 720
    r = client.post("/v1/fixes", json={"fixes": [{"device_id": "D2", "ts": "2030-01-01T00:00:00Z",
                                                  "lat": 53.4, "lon": -2.98}]}, headers=h["feed"])
    assert r.status_code == 200
    assert r.json()["fixes"] == {"received": 1, "accepted": 0, "quarantined": {"future_timestamp": 1}}
    app.state.stream.run_pending()
    got = _db_records(app)
    assert got == _detect_files(tmp_path, _d1_minutes())
    # by hand: S1 is in contact every minute; S2 has no fix at all: one no_signal gap to as_of 11:59
    assert [(b["subject_id"], b["type"], b["start"], b["end"], b["priority"]) for b in got] == [
        ("S2", "no_signal", "2024-03-04T00:00:00.000Z", "2024-03-04T11:59:00.000Z", 3)]
    with app.state.session_factory() as s:
        (q,) = s.scalars(select(IntakeQuarantine).where(IntakeQuarantine.reason == "future_timestamp")).all()
    assert (q.device_id, q.ts, q.received_ms) == ("D2", "2030-01-01T00:00:00Z", RECEIVED)
    app.state.engine.dispose()


def test_clock_allowance_comes_from_the_policy(tmp_path):
    home = _home(tmp_path, TWO, policy={"max_clock_ahead_s": 60})
    app, client, h = _serve(home)
    rows = [{"device_id": "D1", "ts": format_ms(RECEIVED + d), "lat": 53.4, "lon": -2.98} for d in (60_000, 60_001)]
    r = client.post("/v1/fixes", json={"fixes": rows}, headers=h["feed"])
    assert r.json()["fixes"] == {"received": 2, "accepted": 1, "quarantined": {"future_timestamp": 1}}
    app.state.engine.dispose()


def test_future_event_is_quarantined_too(tmp_path):
    home = _home(tmp_path, TWO)
    app, client, h = _serve(home)
    r = client.post("/v1/fixes", json={"events": [{"device_id": "D1", "ts": "2031-05-01T00:00:00Z",
                                                   "event": "strap_tamper"}]}, headers=h["feed"])
    assert r.json()["events"] == {"received": 1, "accepted": 0, "quarantined": {"future_timestamp": 1}}
    app.state.engine.dispose()


def test_faulty_tag_clock_through_a_watched_folder(tmp_path):
    from api.service.watch import FolderWatcher

    home = _home(tmp_path, TWO)
    app, _client, _h = _serve(home)
    feed = tmp_path / "feed"
    feed.mkdir()
    lines = ["device_id,ts,lat,lon"] + [f"{f['device_id']},{f['ts']},{f['lat']},{f['lon']}" for f in _d1_minutes()]
    lines.append("D2,2030-01-01T00:00:00Z,53.4,-2.98")
    (feed / "fixes.csv").write_text("\n".join(lines) + "\n")
    watcher = FolderWatcher(app.state.stream, app.state.session_factory, app.state.audit, feed, interval_s=0.1)
    assert watcher.scan_once() == []  # first sight: size not yet stable
    (counts,) = watcher.scan_once()
    assert counts["accepted"] == 720 and counts["quarantined"] == 1
    app.state.stream.run_pending()
    assert _db_records(app) == _detect_files(tmp_path, _d1_minutes())
    with app.state.session_factory() as s:
        (q,) = s.scalars(select(IntakeQuarantine)).all()
    assert (q.reason, q.row, q.received_ms) == ("future_timestamp", 721, RECEIVED)
    app.state.engine.dispose()


# ------------------------------------------------------------------ item 1: one record never blocks a pass

def test_year_10000_fix_is_quarantined_and_detection_goes_on(tmp_path):
    home = _home(tmp_path, TWO)
    app, client, h = _serve(home)
    body = {"fixes": [{"device_id": "D1", "ts": "9999-12-31T23:59:59-23:59", "lat": 53.4, "lon": -2.98},
                      {"device_id": "D1", "ts": "2024-03-04T10:00:00Z", "lat": 53.4, "lon": -2.98}],
            "events": [{"device_id": "D1", "ts": "2024-03-04T10:05:00Z", "event": "strap_tamper"}]}
    r = client.post("/v1/fixes", json=body, headers=h["feed"])
    assert r.json()["fixes"] == {"received": 2, "accepted": 1, "quarantined": {"bad_timestamp": 1}}
    app.state.stream.run_pending()
    types = {(b["subject_id"], b["type"]) for b in _db_records(app)}
    assert ("S1", "strap_tamper") in types
    assert client.get("/v1/breaches/stream-status", headers=h["admin"]).json()["failed_assignments"] == []
    app.state.engine.dispose()


def test_a_failing_assignment_is_isolated_and_reported(tmp_path, monkeypatch):
    import geofence.incremental as inc

    subjects = [{"subject_id": f"S{k}", "device_id": f"D{k}", "start": START, "zones": []} for k in range(1, 5)]
    home = _home(tmp_path, subjects)
    app, client, h = _serve(home)
    real = inc.detect_columns

    def broken_for_d3(fixes, events, table, *args, **kwargs):
        if "D3" in table.device_ids:
            raise RuntimeError("injected fault for D3")
        return real(fixes, events, table, *args, **kwargs)

    monkeypatch.setattr(inc, "detect_columns", broken_for_d3)
    events = [{"device_id": f"D{k}", "ts": "2024-03-04T10:00:00Z", "event": "strap_tamper"} for k in range(1, 5)]
    assert client.post("/v1/fixes", json={"events": events}, headers=h["feed"]).status_code == 200
    app.state.stream.run_pending()
    tampered = sorted(b["subject_id"] for b in _db_records(app) if b["type"] == "strap_tamper")
    assert tampered == ["S1", "S2", "S4"]
    status = client.get("/v1/breaches/stream-status", headers=h["admin"]).json()
    pseudonym = app.state.audit.pseudonym("S3")
    assert status["failed_assignments"] == [{"subject": pseudonym, "device_id": "D3", "start": "2024-03-04T00:00:00.000Z",
                                             "error": "RuntimeError: injected fault for D3"}]
    assert "S3" not in json.dumps(status)
    # the fault goes away: the next pass that reaches S3 catches up
    monkeypatch.setattr(inc, "detect_columns", real)
    more = [{"device_id": "D1", "ts": "2024-03-04T10:10:00Z", "lat": 53.4, "lon": -2.98}]
    assert client.post("/v1/fixes", json={"fixes": more}, headers=h["feed"]).status_code == 200
    app.state.stream.run_pending()
    tampered = sorted(b["subject_id"] for b in _db_records(app) if b["type"] == "strap_tamper")
    assert tampered == ["S1", "S2", "S3", "S4"]
    assert client.get("/v1/breaches/stream-status", headers=h["admin"]).json()["failed_assignments"] == []
    app.state.engine.dispose()


def test_intake_quarantine_keeps_a_bounded_prefix_of_a_huge_device_id(tmp_path):
    home = _home(tmp_path, TWO)
    app, client, h = _serve(home)
    huge = "D" * 100_000
    r = client.post("/v1/fixes", json={"fixes": [{"device_id": huge, "ts": "2024-03-04T10:00:00Z", "lat": 53.4,
                                                  "lon": -2.98}]}, headers=h["feed"])
    assert r.json()["fixes"]["quarantined"] == {"bad_device": 1}
    with app.state.session_factory() as s:
        (q,) = s.scalars(select(IntakeQuarantine)).all()
    assert q.device_id == "D" * 256 + "…[+99744 characters]"
    app.state.engine.dispose()


# ------------------------------------------------------------------ item 10: who adds evidence

def test_only_the_feed_sends_fixes(tmp_path):
    home = _home(tmp_path, TWO)
    app, client, h = _serve(home)
    body = {"fixes": [{"device_id": "D1", "ts": "2024-03-04T10:00:00Z", "lat": 53.4, "lon": -2.98}]}
    r = client.post("/v1/fixes", json=body, headers=h["admin"])
    assert r.status_code == 403
    assert r.json() == {"detail": "role 'admin' may not call post_fixes: allowed roles are feed"}
    with app.state.session_factory() as s:
        assert s.scalars(select(IntakeBatch)).all() == []
    app.state.engine.dispose()


def _entry(app, action: str) -> dict:
    with app.state.session_factory() as s:
        return json.loads(s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                   .order_by(AuditEntry.idx.desc())).first())


def test_a_batch_audit_entry_names_devices_wearers_and_period(tmp_path):
    home = _home(tmp_path, TWO + [{"subject_id": "S9", "device_id": "D9", "start": "2024-03-05T00:00:00Z",
                                   "zones": []}])
    app, client, h = _serve(home)
    body = {"fixes": [{"device_id": "D2", "ts": "2024-03-04T10:00:00Z", "lat": 53.4, "lon": -2.98},
                      {"device_id": "D1", "ts": "2024-03-04T09:00:00Z", "lat": 53.4, "lon": -2.98},
                      {"device_id": "D1", "ts": "2024-03-04T11:30:00Z", "lat": 53.4, "lon": -2.98},
                      {"device_id": "D9", "ts": "2024-03-04T08:00:00Z", "lat": 53.4, "lon": -2.98}]}
    r = client.post("/v1/fixes", json=body, headers=h["feed"])
    assert r.status_code == 200
    detail = _entry(app, "fixes.intake")["detail"]
    p = app.state.audit.pseudonym
    assert detail["from"] == "2024-03-04T08:00:00.000Z" and detail["to"] == "2024-03-04T11:30:00.000Z"
    assert detail["devices"] == 3 and detail["subjects"] == 2
    assert detail["by_device"] == [
        {"device_id": "D1", "rows": 2, "from": "2024-03-04T09:00:00.000Z", "to": "2024-03-04T11:30:00.000Z",
         "subjects": [p("S1")]},
        {"device_id": "D2", "rows": 1, "from": "2024-03-04T10:00:00.000Z", "to": "2024-03-04T10:00:00.000Z",
         "subjects": [p("S2")]},
        {"device_id": "D9", "rows": 1, "from": "2024-03-04T08:00:00.000Z", "to": "2024-03-04T08:00:00.000Z",
         "subjects": []}]  # D9 is worn from the 5th: nobody's yet
    entry_text = json.dumps(_entry(app, "fixes.intake"))
    assert "S1" not in entry_text and "S2" not in entry_text
    with app.state.session_factory() as s:
        batch = s.get(IntakeBatch, r.json()["batch_id"])
    assert hashlib.sha256(batch.summary).hexdigest() == detail["summary_sha256"]
    assert read_summary(batch.summary)[0] == {"device_id": "D1", "rows": 2, "from": "2024-03-04T09:00:00.000Z",
                                              "to": "2024-03-04T11:30:00.000Z", "subjects": ["S1"]}
    app.state.engine.dispose()


def test_a_large_batch_commits_to_its_summary_by_hash(tmp_path):
    subjects = [{"subject_id": f"S{k}", "device_id": f"D{k:02d}", "start": START, "zones": []} for k in range(25)]
    home = _home(tmp_path, subjects)
    app, client, h = _serve(home)
    body = {"fixes": [{"device_id": f"D{k:02d}", "ts": "2024-03-04T10:00:00Z", "lat": 53.4, "lon": -2.98}
                      for k in range(25)]}
    r = client.post("/v1/fixes", json=body, headers=h["feed"])
    detail = _entry(app, "fixes.intake")["detail"]
    assert "by_device" not in detail and detail["devices"] == 25 and detail["subjects"] == 25
    with app.state.session_factory() as s:
        summary = s.get(IntakeBatch, r.json()["batch_id"]).summary
    assert hashlib.sha256(summary).hexdigest() == detail["summary_sha256"]
    assert [(d["device_id"], d["subjects"]) for d in read_summary(summary)] == [(f"D{k:02d}", [f"S{k}"]) for k in range(25)]
    app.state.engine.dispose()


def test_a_withdrawal_names_the_batch_that_caused_it(tmp_path):
    home = _home(tmp_path, [TWO[0]])
    app, client, h = _serve(home)
    fix = lambda t: {"device_id": "D1", "ts": t, "lat": 53.4, "lon": -2.98}  # noqa: E731
    assert client.post("/v1/fixes", json={"fixes": [fix("2024-03-04T00:00:00Z"), fix("2024-03-04T01:00:00Z")]},
                       headers=h["feed"]).status_code == 200
    app.state.stream.run_pending()
    (gap,) = [b for b in _db_records(app) if b["type"] == "no_signal"]
    assert (gap["start"], gap["end"]) == ("2024-03-04T00:00:00.000Z", "2024-03-04T01:00:00.000Z")
    late = client.post("/v1/fixes", json={"fixes": [fix("2024-03-04T00:10:00Z"), fix("2024-03-04T00:20:00Z"),
                                                     fix("2024-03-04T00:30:00Z"), fix("2024-03-04T00:40:00Z"),
                                                     fix("2024-03-04T00:50:00Z")]}, headers=h["feed"])
    batch_id = late.json()["batch_id"]
    app.state.stream.run_pending()
    with app.state.session_factory() as s:
        row = s.get(BreachRow, gap["breach_id"])
    assert (row.status, row.withdrawn_batch) == ("withdrawn", batch_id)
    detail = _entry(app, "breaches.update")["detail"]
    assert detail["withdrawals"] == [{"breach_id": gap["breach_id"], "type": "no_signal",
                                      "reason": "fixes received later show contact during this gap", "batch": batch_id}]
    assert detail["batches"] == [batch_id, batch_id]
    app.state.engine.dispose()
