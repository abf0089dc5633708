"""The service on PostgreSQL (any SQLAlchemy URL via TAGTRAIL_DATABASE_URL):
a throwaway cluster is started for these tests (initdb + pg_ctl as the
`postgres` user, Unix socket only), then the same migrations, `detect --db`,
users, a request decided by two approvers at once, the append-only trigger
and `tagtrail audit verify` are checked on it."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from api.cli.main import main
from conftest import EXAMPLES

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_available() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return "PostgreSQL 15 server binaries not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser not available to start PostgreSQL as a non-root user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed"
    return None


@pytest.fixture(scope="module")
def pg_url():
    why = _pg_available()
    if why:
        pytest.skip(why)
    d = Path(tempfile.mkdtemp(prefix="tagtrail-pg-"))
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(d, "postgres")
    port = 5400 + os.getpid() % 500
    # no pipes: the server outlives pg_ctl and would hold a captured pipe open forever
    run = lambda *cmd: subprocess.run([*as_pg, *cmd], check=True, stdin=subprocess.DEVNULL,  # noqa: E731
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    run(str(PG_BIN / "initdb"), "-D", str(d / "data"), "-A", "trust", "-U", "postgres")
    run(str(PG_BIN / "pg_ctl"), "-D", str(d / "data"), "-l", str(d / "log"), "-w", "-o",
        f"-k {d} -c listen_addresses='' -p {port}", "start")
    try:
        run(str(PG_BIN / "createdb"), "-h", str(d), "-p", str(port), "-U", "postgres", "tagtrail")
        yield f"postgresql+psycopg://postgres@/tagtrail?host={d}&port={port}"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(d / "data"), "-m", "fast", "stop"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


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
    from sqlalchemy import create_engine, text

    from test_incremental import _example, batch
    from test_stream_api import _db_records, _example_home, _post_all, _setup

    monkeypatch.setenv("TAGTRAIL_DATABASE_URL", pg_url)
    eng = create_engine(pg_url)  # a fresh schema per case: the module's cluster is shared
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()
    fixes, events, assignments, zones, policy = _example(name)
    home = _example_home(name, tmp_path)
    app, client, tokens = _setup(home, assignments, zones, tmp_path)
    assert app.state.engine.dialect.name == "postgresql"
    app, client, arr_f, arr_e = _post_all(client, tokens, app, np.random.default_rng(3), fixes, events,
                                          restart_at=4, home=home)
    app.state.stream.flush()
    assert _db_records(app) == batch(arr_f, arr_e, assignments, zones, policy)
    app.state.engine.dispose()
