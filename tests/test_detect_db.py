"""`tagtrail detect --db`: records upserted by breach_id, with the subjects
and zones used; a later run that extends an episode updates it in place."""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import func, select

from api.cli.main import main
from api.db.session import open_database, transaction
from api.service.detections import load_assignments, load_zones_from_db
from api.db.models import BreachRow
from api.settings import Settings
from conftest import EXAMPLES
from geofence.model import zone_label

CASE = EXAMPLES / "curfew_basic"


def _detect(home, out, *extra):
    return main(["detect", "--fixes", str(CASE / "fixes.csv"), "--subjects", str(CASE / "subjects.json"),
                 "--zones", str(CASE / "zones.geojson"), "--out", str(out), "--home", str(home), "--db",
                 "--quiet", *extra])


#: The one record of curfew_basic, worked out by hand from its README and CONTRACT.md: the wearer
#: is OUT from the 21:00 fix to the 21:29 fix, whose coverage ends at the 21:30 fix (IN), so the
#: absence is 21:00-21:30 (30 minutes >= the 15-minute grace); the 23:00-23:09 absence is under it.
START = "2024-01-10T21:00:00.000Z"
BREACH_ID = hashlib.sha256(f"S1|curfew_absence|S1-home|{START}".encode()).hexdigest()[:16]


def _row(end: str, duration_s: float) -> tuple:
    return (BREACH_ID, "breach", "curfew_absence", "S1", "D1", "S1-home", START, end, duration_s, 2, "new")


def _rows(factory) -> list[tuple]:
    with transaction(factory) as s:
        return [(b.breach_id, b.kind, b.type, b.subject_id, b.device_id, b.zone_id, b.start, b.end, b.duration_s,
                 b.priority, b.status) for b in s.scalars(select(BreachRow).order_by(BreachRow.start_ms))]


def test_upsert_by_breach_id_extends_in_place(tmp_path):
    home = tmp_path / "home"
    # stand the analysis at 21:20 UTC: the 21:00 absence has lasted 20 minutes so far (the 21:19 fix
    # covers [21:19, 21:20); the 21:20 fix is at as_of and covers nothing)
    assert _detect(home, tmp_path / "o1", "--as-of", "2024-01-10T21:20:00Z") == 0
    engine, factory = open_database(Settings.from_home(home))
    assert _rows(factory) == [_row("2024-01-10T21:20:00.000Z", 1200.0)]
    with transaction(factory) as s:
        assert [a.device_id for a in load_assignments(s)] == ["D1"]
        assert [zone_label(z.zone_id) for z in load_zones_from_db(s)] == ["S1-home"]  # version 1
    assert _detect(home, tmp_path / "o2") == 0  # the whole file: the same id, a later end
    assert _rows(factory) == [_row("2024-01-10T21:30:00.000Z", 1800.0)]
    assert _detect(home, tmp_path / "o3") == 0  # idempotent
    assert _rows(factory) == [_row("2024-01-10T21:30:00.000Z", 1800.0)]
    engine.dispose()
    want = [json.loads(line) for line in (CASE / "expected" / "breaches.jsonl").read_text().splitlines()]
    assert [(r["breach_id"], r["end"], r["duration_s"]) for r in want] == [(BREACH_ID, "2024-01-10T21:30:00.000Z",
                                                                           1800.0)]


def test_each_save_is_audited_without_subjects(tmp_path):
    from api.db.models import AuditEntry

    home = tmp_path / "home"
    assert _detect(home, tmp_path / "o1") == 0
    assert _detect(home, tmp_path / "o2") == 0
    engine, factory = open_database(Settings.from_home(home))
    with transaction(factory) as s:
        entries = [json.loads(e) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]
        n = s.scalar(select(func.count()).select_from(BreachRow))
    engine.dispose()
    assert [e["action"] for e in entries] == ["breaches.upsert", "breaches.upsert"]
    assert n == 1  # the one curfew_basic record (above)
    assert entries[0]["detail"] == {"inserted": 1, "updated": 0, "assignments": 1, "zones": 1}
    assert entries[1]["detail"]["inserted"] == 0
    assert all(e["subject"] is None for e in entries)
    assert main(["audit", "verify", "--home", str(home)]) == 0
