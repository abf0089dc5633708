"""The service on PostgreSQL (any SQLAlchemy URL via TAGTRAIL_DATABASE_URL), on the
server the suite starts itself (tests/pg_server.py: pgserver's bundled binaries first,
then the distribution's; each test gets a fresh database): the same migrations,
`detect --db`, users, a request decided by two approvers at once, the append-only
trigger, `tagtrail audit verify` and the stream. Then the server itself: where its
binaries come from, that it runs unprivileged on a private socket and always stops,
and that without one CI fails (elsewhere the tests skip) with the reason."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.cli.main import main
from conftest import EXAMPLES
from pg_server import BIN_ENV, Candidate, PgUnavailable, candidates, first_server, running, stop

TESTS = Path(__file__).resolve().parent


def test_service_on_postgres(pg_url, tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    from api.http.app import create_app
    from api.settings import Settings
    from api.access.users import add_user

    monkeypatch.setenv("TAGTRAIL_DATABASE_URL", pg_url)
    home = tmp_path / "home"
    case = EXAMPLES / "curfew_basic"
    assert main(["detect", "--fixes", str(case / "fixes.csv"), "--subjects", str(case / "subjects.json"),
                 "--zones", str(case / "zones.geojson"), "--out", str(tmp_path / "out"), "--home", str(home),
                 "--db", "--quiet"]) == 0
    settings = Settings.from_home(home)
    assert settings.database_url == pg_url
    app = create_app(settings)
    with app.state.session_factory() as s:
        tokens = {}
        for name, role in (("cw", "caseworker"), ("ap1", "approver"), ("ap2", "approver"), ("au", "auditor")):
            tokens[name] = add_user(s, app.state.audit, name=name, role=role, org="home office")[1]
        s.commit()
        app.state.audit.write_checkpoint(s)
        s.commit()
        subject = s.execute(text("SELECT subject_id FROM assignments")).scalar()
    h = lambda who: {"Authorization": f"Bearer {tokens[who]}"}  # noqa: E731
    with TestClient(app) as c:
        body = {"subject_id": subject, "kind": "attendance", "ground": "article8",
                "start": "2024-01-10T18:00:00Z", "end": "2024-01-11T12:00:00Z",
                "justification": "Representations cite the curfew record; we need attendance for that day.",
                "necessity": "Attendance without coordinates is the least intrusive answer available."}
        r = c.post("/v1/access-requests", json=body, headers=h("cw"))
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        results, barrier = [], threading.Barrier(2)

        def decide(who, outcome):
            barrier.wait()
            results.append(c.post(f"/v1/access-requests/{rid}/decision", headers=h(who),
                                  json={"outcome": outcome, "reason": "Proportionate for the representations made."}).status_code)

        threads = [threading.Thread(target=decide, args=a) for a in (("ap1", "data_provided"), ("ap2", "rejected_other"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 409]
        r = c.get(f"/v1/access-requests/{rid}/extract", headers=h("cw"))
        if c.get(f"/v1/access-requests/{rid}", headers=h("au")).json()["outcome"] == "data_provided":
            assert r.status_code == 200 and "home_s" in r.text
        assert c.get("/v1/reports/access-requests", headers=h("au")).json()["totals"]["total"] == 1
    with app.state.session_factory() as s:
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(text("UPDATE audit_log SET action = 'x' WHERE idx = 0"))
        s.rollback()
    app.state.engine.dispose()
    capsys.readouterr()
    assert main(["audit", "verify", "--home", str(home)]) == 0
    assert "OK: " in capsys.readouterr().out


@pytest.mark.parametrize("name", ["gaps_battery", "device_swap"])
def test_stream_on_postgres_equals_batch(pg_url, name, tmp_path, monkeypatch):
    """Intake (one executemany per batch, seqs checked), passes through read-only sessions
    (no advisory lock), compaction and a restart, on PostgreSQL: the queue equals batch detection."""
    from test_incremental import _example, batch
    from test_stream_api import _db_records, _example_home, _post_all, _setup

    monkeypatch.setenv("TAGTRAIL_DATABASE_URL", pg_url)  # a fresh database per test
    fixes, events, assignments, zones, policy = _example(name)
    home = _example_home(name, tmp_path)
    app, client, tokens = _setup(home, assignments, zones, tmp_path)
    assert app.state.engine.dialect.name == "postgresql"
    app, client, arr_f, arr_e = _post_all(client, tokens, app, np.random.default_rng(3), fixes, events,
                                          restart_at=4, home=home)
    app.state.stream.flush()
    assert _db_records(app) == batch(arr_f, arr_e, assignments, zones, policy)
    app.state.engine.dispose()


def _pgserver_bindir() -> Path:
    """Where pgserver's wheel puts its binaries (its package directory, pginstall/bin)."""
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None, "pgserver is a test dependency (pyproject.toml [test])"
    return Path(spec.origin).parent / "pginstall" / "bin"


def test_pgserver_binaries_come_first_then_the_distribution_or_only_the_forced_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(BIN_ENV, raising=False)
    found = candidates()
    assert found[0] == Candidate("pgserver", _pgserver_bindir())
    assert all(c.source == "distribution" for c in found[1:]) and len(found) >= 2
    monkeypatch.setenv(BIN_ENV, str(tmp_path))
    assert candidates() == (Candidate(BIN_ENV, tmp_path),)


def test_pgserver_copy_runs_unprivileged_on_a_private_socket_and_stops_when_the_body_raises():
    """Staged: the copy used when root's `nobody` cannot reach the venv (a clone under /root)."""
    bindir = _pgserver_bindir()
    with pytest.raises(RuntimeError, match="the body failed"):
        with running(Candidate("pgserver", bindir), stage=True) as server:
            root, pid = server.root, server.postmaster_pid()
            assert server.bindir.is_relative_to(root)
            with server.connect() as conn:
                row = conn.execute("SELECT current_setting('server_version'), current_setting('listen_addresses'),"
                                   " current_setting('fsync')").fetchone()
            assert server.version == f"postgres (PostgreSQL) {row[0]}" and row[1:] == ("", "off")  # no TCP at all
            uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[1])
            assert uid != 0 and uid == root.stat().st_uid
            assert root.stat().st_mode & 0o777 == 0o700 and (root / ".s.PGSQL.5432").is_socket()
            raise RuntimeError("the body failed")
    assert _state(pid) in ("gone", "Z") and not root.exists()  # Z: dead, not yet reaped by init


def _state(pid: int) -> str:
    """A process's state letter from /proc (R, S, Z...), or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.fixture()
def broken_install() -> Iterator[Path]:
    """A bin directory whose initdb fails (as a damaged install would), readable by `nobody`."""
    d = Path(tempfile.mkdtemp(prefix="tagtrail-broken-pg-"))
    d.chmod(0o755)
    for name, body in (("postgres", "echo 'postgres (PostgreSQL) 99.0'"), ("pg_ctl", "exit 0"),
                       ("initdb", "echo 'initdb: the disk is on fire' >&2; exit 3")):
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_a_candidate_that_cannot_start_falls_through_to_the_next_and_all_reasons_are_named(broken_install, tmp_path):
    missing = tmp_path / "no-such-bin"
    with pytest.raises(PgUnavailable) as e:
        first_server((Candidate("distribution", broken_install), Candidate(BIN_ENV, missing),
                      Candidate("pgserver", None, "the pgserver package is not installed")))
    assert str(e.value) == (
        f"no PostgreSQL server could be started for the tests: distribution ({broken_install}): initdb exited with "
        f"status 3: initdb: the disk is on fire; {BIN_ENV} ({missing}): no initdb and pg_ctl in {missing}; pgserver: "
        f"the pgserver package is not installed. Install the test extras (pip install -e '.[test]' brings pgserver) "
        f"or set {BIN_ENV} to a PostgreSQL bin directory")
    server = first_server((Candidate("distribution", broken_install), Candidate("pgserver", _pgserver_bindir())))
    try:
        assert server.source == "pgserver" and server.bindir == _pgserver_bindir()
        with server.connect() as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    finally:
        stop(server)


@pytest.mark.parametrize("ci", [True, False], ids=["CI-fails", "no-CI-skips"])
def test_no_server_fails_in_ci_and_skips_elsewhere_with_the_reason(ci, tmp_path):
    missing = tmp_path / "no-such-bin"
    (tmp_path / "test_probe.py").write_text("def test_probe(pg_url):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({BIN_ENV: str(missing), "PYTHONPATH": str(TESTS), "COLUMNS": "1000",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})  # only pg_server: a bare pytest starts in 0.3 s
    if ci:
        env["CI"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "pg_server", "-p", "no:cacheprovider", "-rA",
                          "test_probe.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    why = (f"no PostgreSQL server could be started for the tests: {BIN_ENV} ({missing}): no initdb and pg_ctl "
           f"in {missing}. Install the test extras (pip install -e '.[test]' brings pgserver) or set {BIN_ENV} "
           "to a PostgreSQL bin directory")
    assert why in done.stdout, done.stdout
    if ci:
        assert done.returncode == 1 and "1 error" in done.stdout and f"Failed: {why}" in done.stdout
    else:
        assert done.returncode == 0 and "1 skipped" in done.stdout
        assert f"SKIPPED [1] test_probe.py:1: {why}" in done.stdout
