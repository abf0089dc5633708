"""Free text and raw ids stay out of the append-only audit log and the server
log (issue 10 item 16): notes, assignees and references live in business
tables, the log keeps a hash or a reference; the access log names routes,
never the ids in their paths."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from api.db.models import AuditEntry, BreachEvent, BreachRow
from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)

NOTE = "Seen at 51.50722,-0.12750 outside S-000000's sister's flat; called the wearer on 07700 900123."


@pytest.fixture()
def env(api_env):
    return api_env


def _breach(env) -> str:
    with env.session() as s:
        return s.scalars(select(BreachRow.breach_id).where(BreachRow.status == "new")
                         .order_by(BreachRow.breach_id)).first()


def _last(env, action: str) -> tuple[dict, str]:
    with env.session() as s:
        text = s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                         .order_by(AuditEntry.idx.desc())).first()
    return json.loads(text), text


def test_status_note_is_kept_with_the_record_and_only_hashed_in_the_audit_log(env):
    bid = _breach(env)
    r = env.client.post(f"/v1/breaches/{bid}/status", json={"status": "in_review", "assignee": "cw-2", "note": NOTE},
                        headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    entry, text = _last(env, "breach.status")
    assert "51.50722" not in text and "07700" not in text and "sister" not in text
    assert entry["detail"]["note_sha256"] == hashlib.sha256(NOTE.encode()).hexdigest()
    assert entry["justification_ref"] == f"breach:{bid}"
    with env.session() as s:
        (event,) = s.scalars(select(BreachEvent).where(BreachEvent.breach_id == bid)).all()
    assert (event.note, event.assignee, event.from_status, event.to_status) == (NOTE, "cw-2", "new", "in_review")
    assert entry["detail"]["event_id"] == event.id


def test_request_reference_stays_out_of_the_audit_log(env):
    from api_fixtures import request_body

    reference = "Seen near 51.50722,-0.12750 with S-000001"
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0], reference=reference),
                        headers=env.h("caseworker"))
    assert r.status_code == 201 and r.json()["reference"] == reference
    entry, text = _last(env, "request.create")
    assert entry["justification_ref"] == f"request:{r.json()['id']}"
    assert "51.50722" not in text and "S-000001" not in text


def test_empty_subject_filter_is_422_not_500(env):
    r = env.client.get("/v1/access-requests?subject_id=", headers=env.h("caseworker"))
    assert r.status_code == 422


def test_assignee_must_be_an_active_user_and_stays_unless_changed(env):
    bid = _breach(env)
    h = env.h("caseworker")
    r = env.client.post(f"/v1/breaches/{bid}/status", json={"status": "in_review", "assignee": "52.1 -1.3 flat 4"},
                        headers=h)
    assert r.status_code == 422 and r.json() == {"detail": "assignee '52.1 -1.3 flat 4' is not an active user"}
    assert env.client.post(f"/v1/breaches/{bid}/status", json={"status": "in_review", "assignee": "gone-1"},
                           headers=h).status_code == 422  # revoked
    assert env.client.post(f"/v1/breaches/{bid}/status", json={"status": "in_review", "assignee": "cw-1"},
                           headers=h).json()["assignee"] == "cw-1"
    kept = env.client.post(f"/v1/breaches/{bid}/status", json={"status": "actioned"}, headers=h)
    assert kept.json()["assignee"] == "cw-1"  # no assignee given: the assignment stays
    cleared = env.client.post(f"/v1/breaches/{bid}/status", json={"status": "actioned", "assignee": None}, headers=h)
    assert cleared.json()["assignee"] is None


def test_access_log_names_routes_not_subjects(env, caplog):
    subject = env.subjects[0]
    with caplog.at_level(logging.INFO, logger="tagtrail.access"):
        r = env.client.get(f"/v1/subjects/{subject}/breaches", headers=env.h("caseworker"))
    assert r.status_code == 200
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "tagtrail.access"]
    assert any(line.startswith("GET /v1/subjects/{subject_id}/breaches 200 ") for line in lines), lines
    assert not any(subject in line for line in lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_access_log_holds_no_subject_id(api_template, tmp_path):
    """A real `tagtrail serve`: what it prints for a request about a wearer names the route only."""
    import shutil
    import urllib.request


    home = tmp_path / "home"
    shutil.copytree(api_template, home)
    from api.http.app import create_app
    from api.settings import Settings
    from api.access.users import add_user

    app = create_app(Settings.from_home(home))
    with app.state.session_factory() as s:
        _, token = add_user(s, app.state.audit, name="cw-x", role="caseworker", org="home office")
        s.commit()
        from api.db.models import AssignmentRow
        subject = s.scalars(select(AssignmentRow.subject_id)).first()
    app.state.engine.dispose()
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tagtrail")
    proc = subprocess.Popen([exe, "serve", "--home", str(home), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/subjects/{subject}/breaches"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        for _ in range(100):
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    assert resp.status == 200
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not answer")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "GET /v1/subjects/{subject_id}/breaches 200" in out, out
    assert subject not in out, out
