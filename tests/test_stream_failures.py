"""The stream service after a failure (issue 11): a re-evaluation that fails is
retried, and a history read never goes through a session that a failed or
finished step has closed.

Both are driven through `StreamService`'s public face only (HTTP intake,
corrections, `run_pending`, `checkpoint`), with the failure injected where it
would really happen: in the detector's re-evaluation, in the queue's write (its
audit entry), or in the database statement a history read runs. The expected
queue is batch detection on every row and the final subjects, worked out by
`test_incremental.batch`, never by the service under test.
"""
from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from api.access.users import add_user
from api.service.stream import StreamService
from geofence.incremental import IncrementalDetector
from test_incremental import _example, batch
from test_stream_api import _db_records, _fix_json, _h, _setup
from trails.timestamps import format_ms

CASE = "curfew_basic"  # S1/D1 from 2024-01-10T18:00Z, one fix a minute until 07:59 next morning


class Injected(RuntimeError):
    """The failure a test injects (never raised by tagtrail itself)."""


def _served(tmp_path, *, retention_ms: int | None = None):
    """The case's home served, two admins for corrections, and (with `retention_ms`) a
    stream service that keeps only that much data time for late rows."""
    fixes, _, assignments, zones, policy = _example(CASE)
    app, client, tokens = _setup(tmp_path / "home", assignments, zones, tmp_path)
    with app.state.session_factory() as s:
        tokens["admin"] = add_user(s, app.state.audit, name="ad-1", role="admin", org="home office")[1]
        tokens["admin2"] = add_user(s, app.state.audit, name="ad-2", role="admin", org="home office")[1]
        s.commit()
    if retention_ms is not None:
        app.state.stream = StreamService(app.state.settings, app.state.session_factory, app.state.audit,
                                         clock=app.state.clock, retention_ms=retention_ms)
    return app, client, tokens, (fixes, assignments, zones, policy)


def _post(client, tokens, rows) -> None:
    r = client.post("/v1/fixes", json={"fixes": [_fix_json(f) for f in rows]}, headers=_h(tokens, "feed"))
    assert r.status_code == 200, r.text
    assert r.json()["fixes"]["accepted"] == len(rows)


def _add_second_wearer(client, tokens, a1):
    """A correction (two admins) adds S-2 wearing D-2 from S1's start: the stored
    configuration changes, so the next pass re-evaluates; returns the new assignment."""
    a2 = replace(a1, subject_id="S-2", device_id="D-2")
    r = client.post("/v1/admin/corrections", headers=_h(tokens, "admin"), json={
        "kind": "assignment", "reason": "Fitted at the same time as S1's tag and registered a day late.",
        "assignment": {"subject_id": "S-2", "device_id": "D-2", "start": format_ms(a2.start_ms), "zones": list(a2.zones)}})
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/admin/corrections/{r.json()['id']}/decision", headers=_h(tokens, "admin2"),
                    json={"approve": True, "reason": "Verified against the fitting record and the order."})
    assert r.status_code == 200, r.text
    return a2


def _write_lock_free(app) -> bool:
    """Whether another connection can take the database's write lock now (nobody left a
    writing transaction open)."""
    con = sqlite3.connect(app.state.engine.url.database, timeout=0.2, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


# ---------------------------------------------------------------- a failed re-evaluation is retried
def _fail_reconfigure_once(app, monkeypatch, fired: list) -> None:
    real = IncrementalDetector.reconfigure

    def reconfigure(self, *args, **kwargs):
        if not fired:
            fired.append("reconfigure")
            raise Injected("reconfigure failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(IncrementalDetector, "reconfigure", reconfigure)


def _fail_queue_write_once(app, monkeypatch, fired: list) -> None:
    """The detector re-evaluates in memory, then writing its changes fails (their audit
    entry cannot be appended): the database keeps none of them."""
    real = app.state.audit.append

    def append(session, **kwargs):
        if not fired and kwargs.get("action") == "breaches.update":
            fired.append("queue write")
            raise Injected("the breach queue's audit entry could not be written")
        return real(session, **kwargs)

    monkeypatch.setattr(app.state.audit, "append", append)


@pytest.mark.parametrize("inject", [_fail_reconfigure_once, _fail_queue_write_once], ids=["reconfigure", "queue-write"])
def test_config_change_that_fails_is_retried_next_pass_and_ends_as_fresh(inject, tmp_path, monkeypatch):
    app, client, tokens, (fixes, (a1,), zones, policy) = _served(tmp_path)
    moved = [{**f, "device_id": "D-2"} for f in fixes]  # D-2 sends what D1 sent: S-2 gets S1's records
    first, rest = moved[: len(moved) // 2], moved[len(moved) // 2:]
    _post(client, tokens, fixes + first)
    app.state.stream.run_pending()
    assert _db_records(app) == batch(fixes + first, [], [a1], zones, policy)

    a2 = _add_second_wearer(client, tokens, a1)
    fired: list = []
    inject(app, monkeypatch, fired)
    with pytest.raises(Injected):
        app.state.stream.run_pending()
    assert fired  # the failure really happened, in the pass that applies the new configuration

    # the next pass applies the change again: the queue is what batch detection gives on the new subjects
    app.state.stream.run_pending()
    want = batch(fixes + first, [], [a1, a2], zones, policy)
    assert any(r["subject_id"] == "S-2" for r in want)
    assert _db_records(app) == want
    # and the detector goes on as a fresh one would: later rows give batch detection's records
    _post(client, tokens, rest)
    app.state.stream.run_pending()
    assert _db_records(app) == batch(fixes + moved, [], [a1, a2], zones, policy)
    assert app.state.stream.failures() == []
    app.state.engine.dispose()


# ---------------------------------------------------------------- history reads after an error
def _count_history_reads(monkeypatch, calls: list, before_read) -> None:
    """Every detector the service builds reports its history reads (`history=`) in
    `calls`, calling `before_read()` before each."""
    real_init = IncrementalDetector.__init__

    def init(self, *args, history=None, **kwargs):
        def counted(a):
            before_read()
            calls.append(a.subject_id)
            return history(a)

        real_init(self, *args, history=None if history is None else counted, **kwargs)

    monkeypatch.setattr(IncrementalDetector, "__init__", init)


def _fail_next_statement(engine) -> None:
    """The next SQL statement on `engine` fails as on a dropped connection."""
    def fail(conn, cursor, statement, parameters, context, executemany):
        event.remove(engine, "before_cursor_execute", fail)
        raise OperationalError(statement, parameters, Injected("the connection was lost"))

    event.listen(engine, "before_cursor_execute", fail)


@pytest.mark.parametrize("after", ["failed-reevaluation", "checkpoint"])
def test_history_read_after_an_error_or_checkpoint_uses_a_live_session(after, tmp_path, monkeypatch):
    """A late row older than what the detector retains (1 h of data time here) makes it
    read the wearer's whole history. That read, after a pass failed inside a history
    read (or after a checkpoint), must go through a live session: it succeeds, leaves
    no transaction open behind it (intake can still write), and the queue is right."""
    app, client, tokens, (fixes, (a1,), zones, policy) = _served(tmp_path, retention_ms=3_600_000)
    calls: list = []
    armed: list = []  # while it holds True, the next history read's first statement fails

    def before_read():
        if armed:
            armed.clear()
            _fail_next_statement(app.state.engine)

    _count_history_reads(monkeypatch, calls, before_read)
    rows = sorted(fixes, key=lambda f: f["ts_ms"])
    early = rows[:1]  # the first fix of the evening arrives last
    hour = [f["ts_ms"] // 3_600_000 for f in rows[1:]]
    hours = [[f for f, h in zip(rows[1:], hour) if h == k] for k in sorted(set(hour))]  # sent an hour at a time
    moved = [{**f, "device_id": "D-2"} for f in fixes]

    def send(groups):
        for g in groups:
            _post(client, tokens, g + [{**f, "device_id": "D-2"} for f in g])
            app.state.stream.run_pending()

    send(hours[:4])
    assignments = [a1]
    if after == "checkpoint":
        app.state.stream.checkpoint()
    else:
        assignments.append(_add_second_wearer(client, tokens, a1))
        armed.append(True)
        n = len(calls)
        with pytest.raises(OperationalError, match="the connection was lost"):
            app.state.stream.run_pending()  # re-evaluating, S-2 is rebuilt from its history: that read fails
        assert calls[n:] == ["S-2"] and not armed
    n = len(calls)
    send(hours[4:])  # cuts move on: S1 keeps only the last hour for late rows
    _post(client, tokens, early + [{**f, "device_id": "D-2"} for f in early])
    app.state.stream.run_pending()
    assert "S1" in calls[n:]  # the late row made the detector read S1's history
    assert _write_lock_free(app)
    assert _db_records(app) == batch(fixes + moved, [], assignments, zones, policy)
    app.state.engine.dispose()
