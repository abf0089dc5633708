"""`tagtrail demo --no-serve` fills the database and creates the demo users
(tokens only in a mode-600 file, never printed); `tagtrail serve` hands the
app to uvicorn and prints the docs URL."""
from __future__ import annotations

import stat

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.cli.main import main
from api.db.session import open_database
from api.db.models import BreachRow, User
from api.settings import Settings


def _tokens(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, role, org, token = line.split("\t")
            out[name] = token
    return out


def test_demo_no_serve_then_serve(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    assert main(["demo", "--home", str(home), "--wearers", "3", "--days", "1", "--no-serve"]) == 0
    out = capsys.readouterr().out
    path = home / "demo-tokens.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = _tokens(path)
    assert set(tokens) == {"demo-caseworker", "demo-approver", "demo-auditor", "demo-admin", "demo-police",
                           "demo-probation"}
    assert not any(t in out for t in tokens.values())
    assert f"API tokens (one per role) in {path}: each signs in to the console at http://127.0.0.1:8000/login" in out
    assert "API docs: http://127.0.0.1:8000/docs" in out

    engine, factory = open_database(Settings.from_home(home))
    with factory() as s:
        roles = sorted((u.role, u.org) for u in s.scalars(select(User)))
        n_breaches = s.scalar(select(func.count()).select_from(BreachRow))
    engine.dispose()
    assert roles == sorted([("caseworker", "home office"), ("approver", "home office"), ("auditor", "home office"),
                            ("admin", "home office"), ("requester", "police"), ("requester", "probation")])
    assert n_breaches > 0

    # second start: same users, same tokens
    assert main(["demo", "--home", str(home), "--no-serve"]) == 0
    assert _tokens(path) == tokens

    served = {}

    def fake_run(app, host, port, **kw):
        served.update(host=host, port=port)
        with TestClient(app) as c:
            r = c.get("/v1/reports/breaches", headers={"Authorization": f"Bearer {tokens['demo-auditor']}"})
            served["status"] = r.status_code
            served["total"] = r.json()["totals"]["total"]

    monkeypatch.setattr("uvicorn.run", fake_run)
    assert main(["serve", "--home", str(home), "--port", "8123"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8123 and served["status"] == 200
    assert served["total"] > 0
    assert "API docs: http://127.0.0.1:8123/docs" in capsys.readouterr().out


def test_serve_help_has_examples(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
