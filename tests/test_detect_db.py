"""`tagtrail detect --db`: records upserted by breach_id, with the subjects
and zones used; a later run that extends an episode updates it in place."""
from __future__ import annotations

from sqlalchemy import func, select

from api.cli.main import main
from api.db.session import open_database, transaction
from api.service.detections import load_assignments, load_zones_from_db
from api.db.models import BreachRow
from api.settings import Settings
from conftest import EXAMPLES

CASE = EXAMPLES / "curfew_basic"


def _detect(home, out, *extra):
    return main(["detect", "--fixes", str(CASE / "fixes.csv"), "--subjects", str(CASE / "subjects.json"),
                 "--zones", str(CASE / "zones.geojson"), "--out", str(out), "--home", str(home), "--db",
                 "--quiet", *extra])


def test_upsert_by_breach_id_extends_in_place(tmp_path):
    home = tmp_path / "home"
    # stand the analysis at 21:20 UTC: the 21:00 absence has lasted 20 minutes so far
    assert _detect(home, tmp_path / "o1", "--as-of", "2024-01-10T21:20:00Z") == 0
    engine, factory = open_database(Settings.from_home(home))
    with transaction(factory) as s:
        early = {b.breach_id: (b.type, b.end) for b in s.scalars(select(BreachRow))}
        assert load_assignments(s) and load_zones_from_db(s)
    assert _detect(home, tmp_path / "o2") == 0
    assert _detect(home, tmp_path / "o3") == 0  # idempotent
    with transaction(factory) as s:
        late = {b.breach_id: (b.type, b.end) for b in s.scalars(select(BreachRow))}
        n = s.scalar(select(func.count()).select_from(BreachRow))
    engine.dispose()
    absences = [k for k, (t, _) in early.items() if t == "curfew_absence"]
    assert absences, early
    for k in absences:  # same id, later end
        assert late[k][1] > early[k][1]
    assert n == len(late)
    lines = (tmp_path / "o2" / "breaches.jsonl").read_text().splitlines()
    assert n == len(lines)


def test_each_save_is_audited_without_subjects(tmp_path):
    import json

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
    assert entries[0]["detail"] == {"inserted": n, "updated": 0, "assignments": 1, "zones": 1}
    assert entries[1]["detail"]["inserted"] == 0
    assert all(e["subject"] is None for e in entries)
    assert main(["audit", "verify", "--home", str(home)]) == 0
