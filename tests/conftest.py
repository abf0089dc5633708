"""Shared test fixtures: where ../shared lives, and the PostgreSQL server the suite
starts itself (tests/pg_server.py: `pg_server` per session, `pg_url` a fresh database
per test; in CI a server that cannot start fails the run, never skips it)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pg_server import missing_part, pg_server, pg_url  # noqa: F401  (fixtures and the CI rule, for every test)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EXAMPLES = SHARED / "contract" / "examples"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} not found: tests read ../shared in place (contract, data)")
    return SHARED
