"""A zone record for the console's breach-page tests and benchmark: the API
test home (tests/api_fixtures.py) has only battery records, so this adds a
``curfew_absence`` record on a real wearer, device and curfew zone, over 40
minutes of the wearer's first curfew window (real fixes lie inside and
outside it). Its status workflow, evidence and audit are then the page's."""
from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

__all__ = ["add_curfew_record"]


def add_curfew_record(session: Session, home, *, subject_id: str | None = None, minutes: int = 40,
                      offset_min: int = 30, now_ms: int = 1_710_000_000_000) -> str:
    """Insert the record (status new) on the first curfew window of a wearer in `home`'s store
    with fixes through it, and return its breach_id."""
    from api.db.models import BreachRow
    from api.service.detections import load_assignments, load_zones_from_db
    from geofence.model import zone_label
    from geofence.schedule import active_intervals
    from trails.store import read_store_fixes
    from trails.timestamps import format_ms

    for a in load_assignments(session, subject_id):
        for zone in load_zones_from_db(session, list(a.zones)):
            if zone.kind != "curfew":
                continue
            iv = active_intervals(zone, a.start_ms, a.end_ms if a.end_ms is not None else a.start_ms + 3 * 86_400_000)
            for lo in iv[:, 0].tolist():
                start = int(lo) + offset_min * 60_000
                end = start + minutes * 60_000
                if start >= a.start_ms and len(read_store_fixes(home, start_ms=start, end_ms=end,
                                                                devices=[a.device_id])) >= minutes // 2:
                    break
            else:
                continue
            bid = hashlib.sha256(f"console-test:{a.subject_id}:{start}:{end}".encode()).hexdigest()[:16]
            session.add(BreachRow(breach_id=bid, kind="breach", type="curfew_absence", subject_id=a.subject_id,
                                  device_id=a.device_id, zone_id=zone_label(zone.zone_id), start=format_ms(start),
                                  end=format_ms(end), start_ms=start, end_ms=end, duration_s=(end - start) / 1000,
                                  priority=2, first_seen_ms=now_ms, updated_ms=now_ms, status="new"))
            session.commit()
            return bid
    raise LookupError("no assignment with a curfew zone")
