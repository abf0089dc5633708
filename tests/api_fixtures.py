"""Shared fixtures for the API tests (import with ``from api_fixtures import ...``).

`api_template` builds, once per session, a small tagtrail home: 4 wearers x
3 days simulated, ingested into the store, and detected into the database
(`detect --db`). `api_env` copies it per test and starts the app on the copy
with one user per role (two approvers, two caseworkers, two requesters:
police and probation), plus a revoked user.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

__all__ = ["api_template", "api_env", "ApiEnv", "Clock", "USERS", "make_env", "copy_env", "VALID_TEXT", "DAY_MS", "audit_entries",
           "ts", "request_body", "create_request", "decide", "close_env"]

DAY_MS = 86_400_000
VALID_TEXT = "The wearer's movements around the alleged incident are needed to confirm or rule out presence."

#: key -> (name, role, org)
USERS: dict[str, tuple[str, str, str | None]] = {
    "caseworker": ("cw-1", "caseworker", "home office"),
    "caseworker2": ("cw-2", "caseworker", "home office"),
    "approver": ("ap-1", "approver", "home office"),
    "approver2": ("ap-2", "approver", "home office"),
    "auditor": ("au-1", "auditor", "home office"),
    "admin": ("ad-1", "admin", "home office"),
    "admin2": ("ad-2", "admin", "home office"),
    "requester": ("police-1", "requester", "police"),
    "probation": ("probation-1", "requester", "probation"),
    "feed": ("feed-1", "feed", "supplier"),
    "revoked": ("gone-1", "caseworker", "home office"),
}


class Clock:
    """Wall-clock epoch ms plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


@dataclass
class ApiEnv:
    home: Path
    client: TestClient
    app: object
    clock: Clock
    tokens: dict[str, str]
    user_ids: dict[str, int]
    subjects: list[str] = field(default_factory=list)

    def h(self, who: str) -> dict[str, str]:
        """Authorization header for user `who` (a key of USERS)."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def session(self):
        return self.app.state.session_factory()


@pytest.fixture(scope="session")
def api_template(tmp_path_factory) -> Path:
    from api.cli.main import main
    from trails.ingest import ingest
    from trails.sim.simulate import simulate

    root = tmp_path_factory.mktemp("api-template")
    sim = simulate(root / "sim", wearers=4, days=3, seed=3, start="2024-03-04")
    home = root / "home"
    ingest(sim.fixes_path, home=home, events_path=root / "sim" / "events.csv")
    code = main(["detect", "--home", str(home), "--subjects", str(root / "sim" / "subjects.json"),
                 "--zones", str(root / "sim" / "zones.geojson"), "--out", str(root / "out"), "--db", "--quiet"])
    assert code == 0
    return home


def make_env(home: Path, clock: Clock | None = None, *, create_users: bool = True,
             tokens: dict[str, str] | None = None) -> ApiEnv:
    """Start the app on `home`; create the USERS on first call (revoking 'revoked')."""
    from api.http.app import create_app
    from api.db.models import AssignmentRow, User
    from api.settings import Settings
    from api.access.users import add_user, revoke_user

    clock = clock or Clock()
    app = create_app(Settings.from_home(home), clock=clock)
    tokens = dict(tokens or {})
    ids: dict[str, int] = {}
    with app.state.session_factory() as s:
        audit = app.state.audit
        if create_users:
            for key, (name, role, org) in USERS.items():
                user, token = add_user(s, audit, name=name, role=role, org=org)
                tokens[key] = token
            s.flush()
            revoke_user(s, audit, name=USERS["revoked"][0])
            s.commit()
            audit.write_checkpoint(s)
            s.commit()
        for key, (name, _, _) in USERS.items():
            ids[key] = s.scalar(select(User.id).where(User.name == name))
        subjects = sorted(set(s.scalars(select(AssignmentRow.subject_id))))
    client = TestClient(app)
    return ApiEnv(home=home, client=client, app=app, clock=clock, tokens=tokens, user_ids=ids, subjects=subjects)


def copy_env(template: Path, dest: Path, clock: Clock | None = None) -> ApiEnv:
    """A fresh copy of the template home at `dest`, served with the USERS."""
    shutil.copytree(template, dest)
    return make_env(dest, clock)


def close_env(env: ApiEnv) -> None:
    env.client.close()
    env.app.state.engine.dispose()


@pytest.fixture()
def api_env(api_template, tmp_path) -> ApiEnv:
    env = copy_env(api_template, tmp_path / "home")
    yield env
    close_env(env)


def ts(day: int, hour: int = 0, minute: int = 0) -> str:
    """An instant of the simulated period: day 0 is 2024-03-04 (UTC)."""
    return f"2024-03-{4 + day:02d}T{hour:02d}:{minute:02d}:00Z"


def request_body(subject_id: str, **overrides) -> dict:
    body = {"subject_id": subject_id, "kind": "trail", "ground": "absconded", "start": ts(1, 0), "end": ts(2, 0),
            "justification": VALID_TEXT, "necessity": "No less intrusive source shows where the wearer was that day.",
            "reference": "CASE-1", "urgency": "routine"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def create_request(env: ApiEnv, who: str = "caseworker", **overrides) -> dict:
    """POST a valid request as `who`; returns the created request (asserts 201)."""
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0], **overrides), headers=env.h(who))
    assert r.status_code == 201, r.text
    return r.json()


def decide(env: ApiEnv, request_id: int, who: str = "approver", outcome: str = "data_provided", **extra):
    body = {"outcome": outcome, "reason": "Necessary and proportionate for the stated ground and period.", **extra}
    return env.client.post(f"/v1/access-requests/{request_id}/decision", json=body, headers=env.h(who))


def audit_entries(env: ApiEnv, action: str) -> list[dict]:
    """Every audit entry with `action`, oldest first, as the log holds it (JSON)."""
    import json

    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]
