"""An admin's change to the conditions, from now on, with its audit entry:
the steps `PUT /v1/admin/assignments` and `PUT /v1/admin/zones/{id}` take,
and the console's /admin uploads take item by item (one implementation).

Each function validates and applies through `api.service.conditions`
(``change_assignment``, ``change_zone``: a change applies from `now_ms`;
one reaching into the past is `CorrectionNeeded`), bumps the detection
config version when something changed, and appends the audit entry (zone
ids by keyed reference only: they may embed a wearer's id). The caller
commits and then tells continuous detection (``stream.notify()``).
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from api.db.models import User
from api.service.conditions import AssignmentChange, ZoneChange, change_assignment, change_zone
from api.service.detections import bump_config_version
from geofence.model import Assignment
from trails.timestamps import format_ms

__all__ = ["zone_ref", "apply_assignment", "apply_zone", "zone_status"]


def zone_ref(audit, zone_id: str) -> str:
    """A zone id as the audit log records it: a keyed reference (zone ids may embed a subject id)."""
    return audit.pseudonym(f"zone:{zone_id}")


def apply_assignment(session: Session, audit, user: User, new: Assignment, *, now_ms: int) -> AssignmentChange:
    """Add `new` (starting now or later) or change, from now on, the assignment with its
    subject, device and start; audited as ``assignment.add|change|unchanged``."""
    change = change_assignment(session, new, at_ms=now_ms)
    if change.action != "assignment.unchanged":
        bump_config_version(session)
    audit.append(session, action=change.action, actor=user, subject_id=new.subject_id, now_ms=now_ms,
                 detail={"start": format_ms(new.start_ms), "end": None if new.end_ms is None else format_ms(new.end_ms),
                         "zones": [zone_ref(audit, z) for z in new.zones], "effective_from": format_ms(now_ms),
                         "split": change.split})
    return change


def zone_status(ch: ZoneChange) -> str:
    return "added" if ch.added else ("changed" if ch.changed else "unchanged")


def apply_zone(session: Session, audit, user: User, zone_id: str, feature: dict, *, now_ms: int,
               crs: str) -> ZoneChange:
    """Add zone `zone_id` or give it a new version from now on; audited as ``zone.add|change``."""
    ch = change_zone(session, zone_id, feature, at_ms=now_ms, user_id=user.id, crs=crs)
    if ch.changed:
        bump_config_version(session)
    audit.append(session, action=f"zone.{'add' if ch.added else 'change'}", actor=user, now_ms=now_ms,
                 detail={"zone": zone_ref(audit, zone_id), "kind": ch.kind, "version": ch.version,
                         "sha256": ch.sha256, "effective_from": format_ms(now_ms), "split": ch.split,
                         "status": zone_status(ch)})
    return ch
