"""Detection results and the inputs they came from, in the database.

`tagtrail detect --db` calls `save_detection`: the assignments and zones it
used replace the stored ones (the API checks requests against the wearer's
monitoring period and builds extracts from them), and every record is upserted
by `breach_id`, which depends only on the start, so a later run that extends
an episode updates it in place.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from geofence.model import Assignment, Zone
from geofence.zones import parse_zones
from trails.timestamps import parse_timestamp

from .models import AssignmentRow, BreachRow, ZoneRow

__all__ = ["save_detection", "load_assignments", "load_zones_from_db", "bump_config_version", "config_version"]

CONFIG_VERSION_KEY = "config_version"


def config_version(session: Session) -> int:
    """A counter that every change of the stored assignments or zones increases, so a
    running detector can tell, from one row, whether it must look again."""
    from .models import DetectorState

    row = session.get(DetectorState, CONFIG_VERSION_KEY)
    return 0 if row is None else int(row.value)


def bump_config_version(session: Session) -> None:
    from .models import DetectorState

    row = session.get(DetectorState, CONFIG_VERSION_KEY)
    if row is None:
        session.add(DetectorState(key=CONFIG_VERSION_KEY, value="1"))
    else:
        row.value = str(int(row.value) + 1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def save_detection(session: Session, *, assignments: Sequence[Assignment], zone_features: Sequence[dict],
                   zones: Sequence[Zone], records: Sequence[dict]) -> dict[str, int]:
    """Replace stored assignments and zones; upsert records. Returns counts."""
    now = _now_ms()
    bump_config_version(session)
    session.execute(delete(AssignmentRow))
    session.add_all(AssignmentRow(subject_id=a.subject_id, device_id=a.device_id, start_ms=a.start_ms,
                                  end_ms=a.end_ms, zones_json=json.dumps(list(a.zones)))
                    for a in assignments)
    session.execute(delete(ZoneRow))
    kinds = {z.zone_id: z.kind for z in zones}
    session.add_all(ZoneRow(zone_id=f["id"], kind=kinds[f["id"]], feature_json=json.dumps(f, sort_keys=True))
                    for f in zone_features)
    existing = {b.breach_id: b for b in session.scalars(
        select(BreachRow).where(BreachRow.breach_id.in_([r["breach_id"] for r in records])))} if records else {}
    inserted = updated = 0
    for r in records:
        fields = dict(kind=r["kind"], type=r["type"], subject_id=r["subject_id"], device_id=r["device_id"],
                      zone_id=r["zone_id"], start=r["start"], end=r["end"], start_ms=parse_timestamp(r["start"]),
                      end_ms=parse_timestamp(r["end"]), duration_s=float(r["duration_s"]), priority=int(r["priority"]))
        row = existing.get(r["breach_id"])
        if row is None:
            session.add(BreachRow(breach_id=r["breach_id"], first_seen_ms=now, updated_ms=now, **fields))
            inserted += 1
        elif any(getattr(row, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_ms = now
            updated += 1
    return {"inserted": inserted, "updated": updated, "assignments": len(assignments), "zones": len(zone_features)}


def load_assignments(session: Session, subject_id: str | None = None) -> tuple[Assignment, ...]:
    q = select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)
    if subject_id is not None:
        q = q.where(AssignmentRow.subject_id == subject_id)
    return tuple(Assignment(r.subject_id, r.device_id, r.start_ms, r.end_ms, tuple(json.loads(r.zones_json)))
                 for r in session.scalars(q))


def load_zones_from_db(session: Session, zone_ids: Sequence[str] | None = None) -> tuple[Zone, ...]:
    q = select(ZoneRow).order_by(ZoneRow.zone_id)
    if zone_ids is not None:
        q = q.where(ZoneRow.zone_id.in_(list(zone_ids)))
    features = [json.loads(r.feature_json) for r in session.scalars(q)]
    if not features:
        return ()
    return parse_zones({"type": "FeatureCollection", "features": features}, source="database zones")
