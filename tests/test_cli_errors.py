"""The CLI's exit codes and newcomer frictions (tagtrail issue 11).

Exit codes, the same for every command: 0 done, 1 a check failed, 2 bad
input, 3 an internal error (one line, the traceback only with --debug).
Commands that only read or serve a home refuse a missing one instead of
creating ./data; `serve` prints its home; a port in use is refused before any
work; every option has help (`users add` lists every role); `detect
--from/--to` take a bare date; the store-mode summary says what its quarantine
count counts; a file whose every row is quarantined exits 0 with a warning.
"""
from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from api.cli.main import build_parser, main
from api.db.models import ROLES
from conftest import EXAMPLES, REPO

NO_HOME = ("no tagtrail home at {home!r} ({source}): pass --home DIR for an existing home; `tagtrail demo`, "
           "`tagtrail ingest`, `tagtrail subjects load` or `tagtrail users add` create one")
DEFAULT_SOURCE = "the default: no --home given and $TAGTRAIL_HOME is not set"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture()
def no_uvicorn(monkeypatch):
    """Serving is never reached in these tests; if it were, fail instead of blocking."""
    def refuse(*_a, **_k):
        raise AssertionError("uvicorn.run was called")

    monkeypatch.setattr("uvicorn.run", refuse)


@pytest.fixture()
def listening():
    """A port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ------------------------------------------------------------------ exit 3: internal errors

def _boom(*_a, **_k):
    raise RuntimeError("the disk controller said no\nand a second line nobody needs")


def test_internal_error_is_exit_3_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("trails.sim.simulate.simulate", _boom)
    code, out, err = _run(capsys, "simulate", "--out", str(tmp_path / "sim"), "--quiet")
    assert code == 3 and out == ""
    assert err == ("tagtrail simulate: internal error: RuntimeError: the disk controller said no (a bug or a problem "
                   "with this machine; run `tagtrail --debug ...` for the traceback)\n")


def test_debug_adds_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("trails.sim.simulate.simulate", _boom)
    code, _, err = _run(capsys, "--debug", "simulate", "--out", str(tmp_path / "sim"), "--quiet")
    assert code == 3
    assert err.startswith("Traceback (most recent call last):\n") and "in _boom" in err
    assert err.endswith("tagtrail simulate: internal error: RuntimeError: the disk controller said no (a bug or a "
                        "problem with this machine)\n")


def test_input_errors_stay_exit_2_and_help_lists_the_codes(tmp_path, capsys):
    code, _, err = _run(capsys, "ingest", str(tmp_path / "missing.csv"), "--home", str(tmp_path / "h"))
    assert code == 2 and err.startswith("tagtrail ingest: error: ") and err.count("\n") == 1
    text = build_parser().format_help()
    assert "exit codes (every command):" in text
    for line in ("  0  done", "  1  a check ran and failed", "  2  bad input", "  3  internal error"):
        assert line in text, line


def test_zones_check_failure_is_exit_1_missing_file_exit_2(tmp_path, capsys):
    code, out, err = _run(capsys, "zones", "check", str(EXAMPLES / "bad_zone" / "zones.geojson"))
    assert code == 1 and out == ""
    assert err.startswith("tagtrail zones check: FAILED: zone 'EXC-bowtie': invalid geometry: ")
    assert err.count("\n") == 1
    code, _, err = _run(capsys, "zones", "check", str(tmp_path / "none.geojson"))
    assert code == 2 and err == f"tagtrail zones: error: {tmp_path / 'none.geojson'}: no such file to check\n"


# ------------------------------------------------------------------ a missing home is refused, never created

READ_ONLY = [("users", "list"), ("users", "revoke", "--name", "x"), ("subjects", "show"), ("serve",)]


@pytest.mark.parametrize("argv", READ_ONLY, ids=[" ".join(a[:2]) for a in READ_ONLY])
def test_read_only_commands_refuse_a_missing_default_home(tmp_path, capsys, monkeypatch, no_uvicorn, argv):
    """Before issue 11 they silently created ./data with a database and a signing key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAGTRAIL_HOME", raising=False)
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err == f"tagtrail {argv[0]}: error: " + NO_HOME.format(home="data", source=DEFAULT_SOURCE) + "\n"
    assert list(tmp_path.iterdir()) == []


def test_missing_home_names_where_the_path_came_from(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "typo"
    code, _, err = _run(capsys, "users", "list", "--home", str(missing))
    assert code == 2 and err == "tagtrail users: error: " + NO_HOME.format(home=str(missing), source="--home") + "\n"
    monkeypatch.setenv("TAGTRAIL_HOME", str(missing))
    code, _, err = _run(capsys, "subjects", "show")
    want = NO_HOME.format(home=str(missing), source="$TAGTRAIL_HOME")
    assert code == 2 and err == f"tagtrail subjects: error: {want}\n"
    assert not missing.exists()


@pytest.mark.parametrize("argv, what", [(("users", "list"), "list"), (("users", "revoke", "--id", "1"), "revoke"),
                                        (("subjects", "show"), "show")], ids=["users list", "users revoke",
                                                                             "subjects show"])
def test_read_only_commands_refuse_a_home_without_database(tmp_path, capsys, argv, what):
    home = tmp_path / "store-only"
    home.mkdir()
    code, _, err = _run(capsys, *argv[:2], "--home", str(home), *argv[2:])
    assert code == 2 and err == f"tagtrail {argv[0]}: error: no database at {home / 'tagtrail.db'}: nothing to {what}\n"
    assert list(home.iterdir()) == []  # no database, no keys


def test_commands_that_create_a_home_still_do(tmp_path, capsys):
    home = tmp_path / "new"
    code, out, _ = _run(capsys, "users", "add", "--home", str(home), "--name", "supplier", "--role", "feed")
    assert code == 0 and out.strip() and (home / "tagtrail.db").exists()
    code, out, _ = _run(capsys, "users", "list", "--home", str(home))
    assert code == 0 and "supplier" in out and "feed" in out


def test_serve_prints_its_home(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    assert main(["users", "add", "--home", str(home), "--name", "a", "--role", "admin"]) == 0
    capsys.readouterr()
    served = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: served.update(port=port))
    code, out, _ = _run(capsys, "serve", "--home", str(home), "--port", "8124")
    assert code == 0 and served == {"port": 8124}
    assert out.splitlines()[:3] == [f"serving {home.resolve()} (database: sqlite)",
                                    "API docs: http://127.0.0.1:8124/docs",
                                    "console: http://127.0.0.1:8124/login (sign in with a token `tagtrail users add` "
                                    "printed)"]


# ------------------------------------------------------------------ a port in use is refused first

def _port_taken(port: int) -> str:
    return (f"port {port} on 127.0.0.1 is already in use (another tagtrail serve or demo?): stop it, or choose "
            f"another port with --port N (make run PORT=N)")


def test_serve_refuses_a_port_in_use(tmp_path, capsys, listening, no_uvicorn):
    home = tmp_path / "home"
    home.mkdir()
    code, _, err = _run(capsys, "serve", "--home", str(home), "--port", str(listening))
    assert code == 2 and err == f"tagtrail serve: error: {_port_taken(listening)}\n"
    assert not (home / "tagtrail.db").exists()  # refused before the database was opened


def test_demo_refuses_a_port_in_use_before_any_work(tmp_path, capsys, listening, no_uvicorn):
    """Before issue 11 `make run` simulated, ingested and detected, then died on the port."""
    home = tmp_path / "home"
    code, out, err = _run(capsys, "demo", "--home", str(home), "--wearers", "2", "--days", "1",
                          "--port", str(listening))
    assert code == 2 and out == "" and err == f"tagtrail demo: error: {_port_taken(listening)}\n"
    assert not (home / "demo").exists()


def test_free_port_passes_the_check():
    from api.cli.common import check_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_port("127.0.0.1", port)  # closed again: free


# ------------------------------------------------------------------ help texts

def _every_action(parser: argparse.ArgumentParser, name: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _every_action(sub, f"{name} {sub_name}")
        elif not isinstance(action, argparse._HelpAction):
            yield name, action


def test_every_option_of_every_command_has_help():
    """Before issue 11 `detect --subjects/--zones/--policy/--out` had none."""
    missing = [f"{name} {a.option_strings or a.dest}" for name, a in _every_action(build_parser(), "tagtrail")
               if not a.help]
    assert missing == []


def test_users_add_help_lists_every_role(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["users", "add", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"--role ROLE one of {', '.join(ROLES)}" in text
    assert "feed (the monitoring supplier's system" in text


# ------------------------------------------------------------------ detect: dates, quarantine counts

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small store whose ingest quarantined rows (bad_row_rate)."""
    from trails.ingest import ingest
    from trails.sim.simulate import simulate

    root = tmp_path_factory.mktemp("cli-store")
    sim = simulate(root / "sim", wearers=3, days=2, seed=11, start="2024-03-04", bad_row_rate=0.02)
    summary = ingest(sim.fixes_path, home=root / "home", events_path=root / "sim" / "events.csv")
    assert sum(summary.quarantined.values()) > 0
    return root, summary


def _detect(root: Path, out: str, *extra: str) -> list[str]:
    return ["detect", "--home", str(root / "home"), "--subjects", str(root / "sim" / "subjects.json"),
            "--zones", str(root / "sim" / "zones.geojson"), "--out", str(root / out), *extra]


def test_from_to_accept_a_bare_date(store, capsys):
    root, _ = store
    assert main(_detect(root, "by-date", "--from", "2024-03-05", "--to", "2024-03-06", "--quiet")) == 0
    assert main(_detect(root, "by-instant", "--from", "2024-03-05T00:00:00Z", "--to", "2024-03-06T00:00:00Z",
                        "--quiet")) == 0
    for name in ("breaches.jsonl", "quarantine.csv"):
        assert (root / "by-date" / name).read_bytes() == (root / "by-instant" / name).read_bytes()
    capsys.readouterr()
    code, _, err = _run(capsys, *_detect(root, "x", "--from", "2024-03-06", "--to", "2024-03-05"))
    assert code == 2 and err == "tagtrail detect: error: --to '2024-03-05' is not after --from '2024-03-06'\n"
    code, _, err = _run(capsys, *_detect(root, "x", "--from", "2024-02-30"))
    assert code == 2 and err == ("tagtrail detect: error: --from '2024-02-30' is not a date YYYY-MM-DD or an RFC 3339 "
                                 "timestamp: day 30 is out of range for 2024-02\n")


def test_store_summary_says_what_its_quarantine_counts(store, capsys):
    """Before issue 11 it printed "quarantined rows: 0" right after ingest had quarantined rows."""
    root, summary = store
    code, out, _ = _run(capsys, *_detect(root, "summary"))
    assert code == 0
    n_ingest = sum(summary.quarantined.values())
    lines = out.splitlines()
    assert f"quarantined at ingest: {n_ingest:,} rows (every ingest into this store; HOME/store/quarantine)" in lines
    mine = [line for line in lines if line.startswith("quarantined by this run: ")]
    assert len(mine) == 1 and "(after_as_of, unassigned, duplicate; in " in mine[0]
    assert not any(line.startswith("quarantined rows:") for line in lines)


def _bad_only(path: Path) -> Path:
    path.write_text("device_id,ts,lat,lon,accuracy_m,battery_pct\nD1,yesterday,51.5,-0.1,5,80\n"
                    "D1,2024-03-04T10:00:00Z,951.5,-0.1,5,80\n")
    return path


def test_ingest_of_a_file_with_no_usable_row_warns(tmp_path, capsys):
    path, home = _bad_only(tmp_path / "bad.csv"), tmp_path / "home"
    code, out, err = _run(capsys, "ingest", str(path), "--home", str(home), "--no-progress")
    assert code == 0 and "quarantined: bad_timestamp 1, bad_coordinates 1" in out
    assert err == (f"warning: every one of the 2 rows of {path} was quarantined: nothing from it was stored "
                   f"(reasons above; rows in {home / 'store' / 'quarantine'})\n")
    code, _, err = _run(capsys, "ingest", str(EXAMPLES / "curfew_basic" / "fixes.csv"), "--home", str(home),
                        "--no-progress")
    assert code == 0 and err == ""


def test_detect_on_a_file_with_no_usable_row_warns(tmp_path, capsys):
    path, out = _bad_only(tmp_path / "bad.csv"), tmp_path / "out"
    case = EXAMPLES / "curfew_basic"
    code, _, err = _run(capsys, "detect", "--fixes", str(path), "--subjects", str(case / "subjects.json"),
                        "--zones", str(case / "zones.geojson"), "--out", str(out), "--quiet")
    assert code == 0
    assert err == (f"warning: every one of the 2 rows of {path} was quarantined: no fix was analysed "
                   f"(reasons in {out / 'quarantine.csv'})\n")


# ------------------------------------------------------------------ one helper for "open, audit, checkpoint, dispose"

def test_audited_change_commits_and_signs_or_changes_nothing(tmp_path):
    from sqlalchemy import text

    from api.cli.common import audited_change
    from api.db.session import open_database
    from api.settings import Settings

    home = tmp_path / "home"
    with audited_change(home) as (session, audit):
        audit.append(session, action="test.kept", actor=None, detail={"n": 1})
    with pytest.raises(RuntimeError, match="half way"):
        with audited_change(home) as (session, audit):
            audit.append(session, action="test.lost", actor=None, detail={"n": 2})
            raise RuntimeError("half way")
    engine, factory = open_database(Settings.from_home(home))
    with factory() as s:
        actions = [a for (a,) in s.execute(text("SELECT action FROM audit_log ORDER BY idx"))]
    engine.dispose()
    assert actions == ["test.kept"]
    # signed at once: no entry waits for a checkpoint
    assert main(["audit", "verify", "--home", str(home), "--max-unsigned-age", "0"]) == 0


def test_cli_commands_sign_through_the_one_helper():
    """Only api/cli/common.py writes checkpoints; users, subjects, demo and detect call `audited_change`."""
    cli = REPO / "api" / "cli"
    writers = sorted(p.name for p in cli.glob("*.py") if "write_checkpoint(" in p.read_text(encoding="utf-8"))
    assert writers == ["common.py"]
    for name in ("users.py", "subjects.py", "demo.py", "detect.py"):
        assert "with audited_change(" in (cli / name).read_text(encoding="utf-8"), name
