"""Detection results and the inputs they came from, in the database.

`tagtrail detect --db` calls `save_detection`: the assignments and zones it
used replace the stored ones (the API checks requests against the wearer's
monitoring period and builds extracts from them), and every record is upserted
by `breach_id`, which depends only on the start, so a later run that extends
an episode updates it in place.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from geofence.model import Assignment, Zone
from geofence.zones import DEFAULT_CRS
from trails.timestamps import parse_timestamp

from api.db.models import BreachRow

__all__ = ["save_detection", "breach_fields", "load_assignments", "load_zones_from_db", "bump_config_version",
           "config_version"]

CONFIG_VERSION_KEY = "config_version"


def config_version(session: Session) -> int:
    """A counter that every change of the stored assignments or zones increases, so a
    running detector can tell, from one row, whether it must look again."""
    from api.db.models import DetectorState

    row = session.get(DetectorState, CONFIG_VERSION_KEY)
    return 0 if row is None else int(row.value)


def bump_config_version(session: Session) -> None:
    from api.db.models import DetectorState

    row = session.get(DetectorState, CONFIG_VERSION_KEY)
    if row is None:
        session.add(DetectorState(key=CONFIG_VERSION_KEY, value="1"))
    else:
        row.value = str(int(row.value) + 1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def breach_fields(record: dict) -> dict[str, object]:
    """The `BreachRow` columns that a breach record (the contract's fields) sets.

    The one mapping from a record to a row, for every writer of the breach
    queue (`save_detection`, the stream's `api.service.stream.queue_writer`):
    the instants are kept both as the contract's text and as epoch ms (the
    queue sorts and filters on those), the duration as a float. The row's own
    bookkeeping (`breach_id`, status, first seen, updated) is the writer's."""
    return dict(kind=record["kind"], type=record["type"], subject_id=record["subject_id"],
                device_id=record["device_id"], zone_id=record["zone_id"], start=record["start"], end=record["end"],
                start_ms=parse_timestamp(record["start"]), end_ms=parse_timestamp(record["end"]),
                duration_s=float(record["duration_s"]), priority=int(record["priority"]))


def save_detection(session: Session, *, assignments: Sequence[Assignment], zone_features: Sequence[dict],
                   zones: Sequence[Zone], records: Sequence[dict]) -> dict[str, int]:
    """Replace stored assignments and zones (the files state the conditions for their
    whole period: `api.service.conditions.replace_all`, every zone version kept); upsert
    records. Returns counts."""
    from api.service.conditions import replace_all

    now = _now_ms()
    bump_config_version(session)
    replace_all(session, assignments, zone_features, zones, at_ms=now)
    existing = {b.breach_id: b for b in session.scalars(
        select(BreachRow).where(BreachRow.breach_id.in_([r["breach_id"] for r in records])))} if records else {}
    inserted = updated = 0
    for r in records:
        fields = breach_fields(r)
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
    """Every assignment segment, its zones as versioned keys (`api.service.conditions.load_assignments`)."""
    from api.service.conditions import load_assignments as segments

    return segments(session, subject_id)


def load_zones_from_db(session: Session, zone_ids: Sequence[str] | None = None, *,
                       crs: str = DEFAULT_CRS) -> tuple[Zone, ...]:
    """The zone versions that `zone_ids` name (versioned keys or plain ids, meaning
    version 1; default: every version an assignment uses), validated as
    ZONES.geojson is (`api.service.conditions.load_zones`).

    `crs` is the policy CRS whose area of use every position must lie in
    (`geofence.zones.parse_zones`); the default is the policy default, EPSG:27700.
    """
    from api.service.conditions import load_zones

    return load_zones(session, zone_ids, crs=crs)
