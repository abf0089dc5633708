"""`tagtrail users`: the token is printed alone on stdout, once, and stored
only hashed; bad roles and orgs exit 2 naming the value; revoking stops the
token at once; every change is audited."""
from __future__ import annotations

import json
import re
import sqlite3

from fastapi.testclient import TestClient

from api.http.app import create_app
from api.cli.main import main
from api.settings import Settings


def _add(home, capsys, *args) -> tuple[int, str, str]:
    code = main(["users", "add", "--home", str(home), *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_add_prints_token_alone_and_stores_its_hash(tmp_path, capsys):
    home = tmp_path / "home"
    code, out, err = _add(home, capsys, "--name", "pc-4021", "--role", "requester", "--org", "police")
    assert code == 0, err
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", out), out  # the token, and nothing else
    token = out.strip()
    db = (home / "tagtrail.db").read_bytes()
    assert token.encode() not in db
    con = sqlite3.connect(home / "tagtrail.db")
    (stored,) = con.execute("SELECT token_sha256 FROM users").fetchone()
    entries = [json.loads(e) for (e,) in con.execute("SELECT entry FROM audit_log ORDER BY idx")]
    con.close()
    import hashlib

    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert [e["action"] for e in entries] == ["user.add"]
    assert entries[0]["detail"] == {"user_id": 1, "name": "pc-4021", "role": "requester", "org": "police",
                                    "previous_accounts": []}

    # the token works against the API, and a second user gets a different one
    code, out2, _ = _add(home, capsys, "--name", "cw", "--role", "caseworker")
    assert code == 0 and out2.strip() != token
    app = create_app(Settings.from_home(home))
    with TestClient(app) as c:
        h = {"Authorization": f"Bearer {token}"}
        assert c.get("/v1/access-requests", headers=h).status_code == 200
        assert main(["users", "revoke", "--home", str(home), "--name", "pc-4021"]) == 0
        r = c.get("/v1/access-requests", headers=h)
        assert r.status_code == 401 and r.json() == {"detail": "invalid or revoked token"}
    app.state.engine.dispose()
    assert main(["audit", "verify", "--home", str(home)]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--home", str(home)]) == 0
    listing = capsys.readouterr().out
    assert "pc-4021" in listing and "cw" in listing and token not in listing


def test_bad_users_exit_2_naming_the_value(tmp_path, capsys):
    home = tmp_path / "home"
    cases = [
        (("--name", "x", "--role", "superuser"), "role 'superuser' is not one of caseworker, approver, auditor, admin, requester"),
        (("--name", "x", "--role", "requester"), "--org must be one of police, probation, got None"),
        (("--name", "x", "--role", "requester", "--org", "mi5"), "got 'mi5'"),
        (("--name", "   ", "--role", "admin"), "user name must be 1..200 characters"),
    ]
    for args, fragment in cases:
        code, out, err = _add(home, capsys, *args)
        assert code == 2 and out == "" and fragment in err, (args, err)
        assert err.startswith("tagtrail users: error: ") and err.count("\n") == 1
    assert _add(home, capsys, "--name", "ap", "--role", "approver")[0] == 0
    code, _, err = _add(home, capsys, "--name", "ap", "--role", "admin")
    assert code == 2 and "an active user named 'ap' already exists" in err
    assert main(["users", "revoke", "--home", str(home), "--name", "nobody"]) == 2
    assert "no active user named 'nobody'" in capsys.readouterr().err
    assert main(["users", "revoke", "--home", str(home), "--id", "99"]) == 2
    assert "no active user with id 99" in capsys.readouterr().err
    # after revoking, the name may be given to a new user
    assert main(["users", "revoke", "--home", str(home), "--name", "ap"]) == 0
    assert _add(home, capsys, "--name", "ap", "--role", "approver")[0] == 0


def test_users_add_refuses_an_active_name_in_any_spelling(tmp_path, capsys):
    home = tmp_path / "home"
    assert _add(home, capsys, "--name", "alice", "--role", "caseworker")[0] == 0
    for spelling in ("Alice", " alice ", "al\u200bice", "ＡＬＩＣＥ"):
        code, out, err = _add(home, capsys, "--name", spelling, "--role", "approver")
        assert code == 2 and out == ""
        assert err == (f"tagtrail users: error: an active user named {spelling!r} already exists (as 'alice': names "
                       f"are compared as persons): user 1, caseworker; revoke it first\n")
    code, _, err = _add(home, capsys, "--name", "\u200b\u200b", "--role", "approver")
    assert code == 2 and "at least one of them visible, got '\\u200b\\u200b'" in err


def test_users_add_of_a_revoked_name_is_the_same_person(tmp_path, capsys):
    home = tmp_path / "home"
    assert _add(home, capsys, "--name", "alice", "--role", "caseworker")[0] == 0
    assert main(["users", "revoke", "--home", str(home), "--name", "alice"]) == 0
    capsys.readouterr()
    code, out, err = _add(home, capsys, "--name", "Alice", "--role", "approver")
    assert code == 0 and re.fullmatch(r"[A-Za-z0-9_-]{43}\n", out)
    assert err.splitlines()[1] == ("note: 'Alice' is the same person as revoked user(s) 1 (alice, caseworker): they may "
                                   "never decide or confirm a request made from those accounts")
    con = sqlite3.connect(home / "tagtrail.db")
    users = con.execute("SELECT id, name, person, revoked_ms IS NOT NULL FROM users ORDER BY id").fetchall()
    entries = [json.loads(e) for (e,) in con.execute("SELECT entry FROM audit_log WHERE action = 'user.add' "
                                                     "ORDER BY idx")]
    con.close()
    assert users == [(1, "alice", "alice", 1), (2, "Alice", "alice", 0)]
    assert [e["detail"]["previous_accounts"] for e in entries] == [[], [1]]
