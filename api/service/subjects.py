"""One wearer at a glance: their assignments and zones (`read_subject`) and
how they kept their curfews (`read_compliance`). The API
(`api.http.routers.subjects`: ``GET /v1/subjects/{id}`` and
``.../compliance``) and the console's wearer page (`api.web.pages.subject`)
both call these, so the answer and its audit entry are the same whichever
way the call came in (only the entry's ``channel`` differs).

- ``subject.read``: the wearer's assignment segments (device, period, zones at
  their versions) and those zone versions. The entry names the segments and
  the zones by keyed reference (a zone id may embed a subject id), never a
  position.
- ``subject.compliance``: one item per curfew window part in a period, with
  its status (home / absent / unknown) and the seconds at home, absent and
  unknown: exactly what an attendance extract holds
  (`api.access.extracts.attendance_windows`, one implementation), so no
  coordinates. The entry records the period and the counts.

The compliance period defaults to the `COMPLIANCE_DAYS` days that end where
the analysis stands (detection's ``as_of``, never after now), inside the
wearer's monitoring: a caseworker sees the recent windows the engine has
data for, not weeks of "unknown" after the data stopped.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from api.access.extracts import AttendanceWindow, ExtractError, attendance_windows
from api.db.models import AssignmentRow, BreachRow, User, ZoneVersion
from api.service.admin_changes import zone_ref
from api.service.detections import load_assignments, load_zones_from_db
from api.service.stream.detector_state import DetectorStore, home_policy
from geofence.model import Zone, zone_key, zone_label, zone_version
from trails.timestamps import DAY_MS, POS_INF_MS, format_ms

__all__ = [
    "COMPLIANCE_DAYS",
    "MAX_COMPLIANCE_DAYS",
    "STATUSES",
    "Compliance",
    "PeriodError",
    "Segment",
    "SubjectError",
    "SubjectSummary",
    "UnknownSubject",
    "compliance_period",
    "read_compliance",
    "read_subject",
    "subject_known",
]

#: The default compliance period, in days.
COMPLIANCE_DAYS = 28
#: The longest period a compliance summary covers (a longer one is a `PeriodError`).
MAX_COMPLIANCE_DAYS = 92
#: A window's statuses, in the order pages and counts list them.
STATUSES: tuple[str, ...] = ("home", "absent", "unknown")


class SubjectError(Exception):
    """A wearer read that cannot be answered; the message says why."""


class UnknownSubject(SubjectError):
    """No assignment and no record names this wearer."""


class PeriodError(SubjectError):
    """A compliance period that is empty, too long or outside what can be judged."""


def subject_known(session: Session, subject_id: str) -> bool:
    """True when an assignment or a breach record names `subject_id` (the API's 404 test)."""
    return bool(session.scalar(select(exists().where(AssignmentRow.subject_id == subject_id)))
                or session.scalar(select(exists().where(BreachRow.subject_id == subject_id))))


@dataclass(frozen=True)
class Segment:
    """One assignment segment: the wearer wore `device_id` over ``[start_ms, end_ms)`` under `zones`
    (versioned keys); `assignment_start_ms` names the assignment the segment belongs to."""

    segment_id: int
    device_id: str
    assignment_start_ms: int
    start_ms: int
    end_ms: int | None
    zones: tuple[str, ...]


@dataclass(frozen=True)
class SubjectSummary:
    subject_id: str
    segments: tuple[Segment, ...]  # by start
    zones: tuple[Zone, ...]  # every zone version a segment uses; zone_id is the versioned key
    features: dict[str, dict]  # versioned key -> the GeoJSON feature as stored


def _segments(session: Session, subject_id: str) -> tuple[Segment, ...]:
    rows = session.scalars(select(AssignmentRow).where(AssignmentRow.subject_id == subject_id)
                           .order_by(AssignmentRow.start_ms, AssignmentRow.id))
    out = []
    for r in rows:
        versions = json.loads(r.zone_versions_json or "{}")
        out.append(Segment(r.id, r.device_id, r.chain_start_ms, r.start_ms, r.end_ms,
                           tuple(zone_key(z, versions.get(z, 1)) for z in json.loads(r.zones_json or "[]"))))
    return tuple(out)


def _features(session: Session, keys: list[str]) -> dict[str, dict]:
    wanted = {(zone_label(k), zone_version(k)): k for k in keys}
    rows = session.scalars(select(ZoneVersion).where(ZoneVersion.zone_id.in_({z for z, _ in wanted})))
    return {wanted[(r.zone_id, r.version)]: json.loads(r.feature_json) for r in rows
            if (r.zone_id, r.version) in wanted}


def read_subject(session: Session, audit, user: User, subject_id: str, *, now_ms: int, crs: str) -> SubjectSummary:
    """The wearer's segments and zone versions, audited as ``subject.read``. The caller commits.

    Raises `UnknownSubject`."""
    if not subject_known(session, subject_id):
        raise UnknownSubject(f"wearer {subject_id!r} is not in the database")
    segments = _segments(session, subject_id)
    keys = sorted({k for s in segments for k in s.zones})
    zones = load_zones_from_db(session, keys, crs=crs) if keys else ()
    audit.append(session, action="subject.read", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"segment_ids": [s.segment_id for s in segments],
                         "zones": [{"zone": zone_ref(audit, zone_label(k)), "version": zone_version(k)}
                                   for k in keys]})
    return SubjectSummary(subject_id, segments, tuple(zones), _features(session, keys))


@dataclass(frozen=True)
class Compliance:
    """The wearer's curfew windows in ``[start_ms, end_ms)`` as judged at `as_of_ms`."""

    subject_id: str
    start_ms: int
    end_ms: int
    as_of_ms: int
    windows: tuple[AttendanceWindow, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """Windows per status: for each curfew zone (by id) and, under ``""``, all together."""
        out: dict[str, dict[str, int]] = {"": dict.fromkeys(STATUSES, 0)}
        for w in self.windows:
            out.setdefault(w.zone_id, dict.fromkeys(STATUSES, 0))[w.status] += 1
            out[""][w.status] += 1
        return out


def compliance_period(session: Session, subject_id: str, start_ms: int | None, end_ms: int | None, *,
                      now_ms: int) -> tuple[int, int]:
    """The period to judge: as given, or by default the `COMPLIANCE_DAYS` days ending where
    detection stands (never after now), clipped to the wearer's monitoring.

    Raises `PeriodError` for an empty period or one longer than `MAX_COMPLIANCE_DAYS` days."""
    segs = session.execute(select(AssignmentRow.start_ms, AssignmentRow.end_ms)
                           .where(AssignmentRow.subject_id == subject_id)).all()
    first = min((s for s, _ in segs), default=now_ms)
    last = max((POS_INF_MS if e is None else e for _, e in segs), default=now_ms)
    as_of = DetectorStore.get(session, "as_of_ms")
    anchor = min(now_ms, int(as_of) if as_of is not None else now_ms, last)
    if end_ms is None:
        end_ms = anchor if start_ms is None else min(start_ms + COMPLIANCE_DAYS * DAY_MS, anchor)
    if start_ms is None:
        start_ms = max(end_ms - COMPLIANCE_DAYS * DAY_MS, first)
    if start_ms >= end_ms:
        raise PeriodError(f"the period from {format_ms(start_ms)} to {format_ms(end_ms)} is empty")
    if end_ms - start_ms > MAX_COMPLIANCE_DAYS * DAY_MS:
        raise PeriodError(f"a compliance summary covers at most {MAX_COMPLIANCE_DAYS} days")
    return start_ms, end_ms


def read_compliance(session: Session, audit, user: User, home, subject_id: str, *, start_ms: int | None,
                    end_ms: int | None, now_ms: int, flush_store: Callable[[], None]) -> Compliance:
    """The wearer's curfew windows in the period (`compliance_period`), judged as at now
    under the policy in force; audited as ``subject.compliance``. `flush_store` moves fixes
    the service holds into the store; it runs with this session's transaction ended (SQLite
    has one writer). The caller commits.

    Raises `UnknownSubject`, `PeriodError`."""
    if not subject_known(session, subject_id):
        raise UnknownSubject(f"wearer {subject_id!r} is not in the database")
    start_ms, end_ms = compliance_period(session, subject_id, start_ms, end_ms, now_ms=now_ms)
    session.commit()
    flush_store()
    policy = home_policy(home)
    assignments = load_assignments(session, subject_id)
    zones = load_zones_from_db(session, sorted({k for a in assignments for k in a.zones}), crs=policy.crs)
    try:
        windows = attendance_windows(home, subject_id=subject_id, assignments=assignments, zones=zones,
                                     policy=policy, start_ms=start_ms, end_ms=end_ms, as_of_ms=now_ms)
    except ExtractError as exc:  # a zone the assignments name is missing: the database is inconsistent
        raise SubjectError(str(exc)) from None
    out = Compliance(subject_id, start_ms, end_ms, now_ms, tuple(windows))
    audit.append(session, action="subject.compliance", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"start": format_ms(start_ms), "end": format_ms(end_ms), "as_of": format_ms(now_ms),
                         "windows": len(windows), "counts": out.counts()[""]})
    return out
