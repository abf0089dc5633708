"""Owners and reviews: every wearer on monitoring has an owning caseworker and
a review due every `Settings.review_every_days` days (default 91) from the
start of monitoring or their last review. The inspection found 818 of
1,622 three-monthly reviews overdue, and a tribunal has since held reviews
integral to a lawful EM condition; the due and overdue lists and the
reports here are the answer.

A review is decided on a summary of the period since the last one (or the
start), computed when it is made and kept with it: breaches by type,
excused ones, attendance per curfew window (home / absent / unknown, no
coordinates), mitigations received and decided, the device faults open on
the devices the wearer wore (and how the period's breaches stand against
them), and the welfare notes staff recorded (`api.service.wearer_details`). ``end_monitoring`` ends the wearer's open assignments at
the decision time, through the same change an admin makes from now on
(`api.service.admin_changes.apply_assignment`): detection stops there.
The caller commits each change with its audit entry.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.access.extracts import attendance_windows
from api.db.models import AssignmentRow, BreachRow, Mitigation, OwnerHistory, Review, User, Wearer
from api.service.admin_changes import apply_assignment
from api.service.detections import load_assignments, load_zones_from_db
from api.service.casework_errors import CaseworkError
from api.service.devices import fault_marks, faults_worn
from api.service.mitigations import excused_breach_ids
from api.service.wearer_details import welfare_notes
from api.service.stream.detector_state import home_policy
from geofence.model import Assignment
from trails.timestamps import DAY_MS, format_ms

__all__ = ["OUTCOMES", "ReviewError", "ReviewDue", "set_owner", "review_schedule", "review_summary",
           "record_review", "OVERDUE_BANDS", "read_reviews", "read_review_summary"]

OUTCOMES = ("continue", "vary_conditions", "end_monitoring")
#: Days overdue, for the report: (label, lowest, highest) inclusive; None = no upper bound.
OVERDUE_BANDS = (("1-30 days", 1, 30), ("31-90 days", 31, 90), ("over 90 days", 91, None))


class ReviewError(CaseworkError):
    """A review or ownership change that cannot be made (422)."""


@dataclass(frozen=True)
class ReviewDue:
    subject_id: str
    owner: str | None
    since_ms: int  # the start of monitoring or the last review
    due_ms: int


def _open_chains(session: Session, subject_id: str, now_ms: int) -> list[AssignmentRow]:
    """The wearer's assignment segments in force at `now_ms` (one per device worn now)."""
    return list(session.scalars(select(AssignmentRow).where(
        AssignmentRow.subject_id == subject_id, AssignmentRow.start_ms <= now_ms,
        (AssignmentRow.end_ms.is_(None)) | (AssignmentRow.end_ms > now_ms))))


def set_owner(session: Session, audit, user: User, subject_id: str, owner_name: str | None, *,
              now_ms: int) -> Wearer:
    """Make `owner_name` (an active caseworker; None: nobody) the wearer's owner. Audited ``wearer.owner``."""
    owner = None
    if owner_name is not None:
        owner = session.scalars(select(User).where(User.name == owner_name, User.revoked_ms.is_(None))).first()
        if owner is None or owner.role != "caseworker":
            raise ReviewError(f"{owner_name!r} is not an active caseworker")
    if session.scalars(select(AssignmentRow.id).where(AssignmentRow.subject_id == subject_id)).first() is None:
        raise ReviewError(f"wearer {subject_id!r} has no assignment")
    row = session.get(Wearer, subject_id) or Wearer(subject_id=subject_id)
    row.owner_id, row.owner_since_ms = (owner.id if owner else None), now_ms
    session.add(row)
    session.add(OwnerHistory(subject_id=subject_id, owner_id=row.owner_id, from_ms=now_ms))
    audit.append(session, action="wearer.owner", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"owner_id": row.owner_id})
    return row


def _owners_at(session: Session, at_ms: int) -> dict[str, str]:
    """subject_id -> the owner's name at `at_ms`, from the ownership history (no entry: nobody)."""
    names = dict(session.execute(select(User.id, User.name)).all())
    owners: dict[str, int | None] = {}
    for subject, owner in session.execute(select(OwnerHistory.subject_id, OwnerHistory.owner_id).where(
            OwnerHistory.from_ms <= at_ms).order_by(OwnerHistory.from_ms, OwnerHistory.id)):
        owners[subject] = owner  # the latest change at or before the instant wins
    return {s: names[o] for s, o in owners.items() if o is not None}


def review_schedule(session: Session, *, now_ms: int, every_days: int) -> list[ReviewDue]:
    """Every wearer on monitoring at `now_ms`, with their owner then and their next review's due instant as it
    stood then (the last review decided by then), soonest first: the lists now, and the report's past months."""
    on = sorted({r.subject_id for r in session.scalars(select(AssignmentRow).where(
        AssignmentRow.start_ms <= now_ms, (AssignmentRow.end_ms.is_(None)) | (AssignmentRow.end_ms > now_ms)))})
    starts = dict(session.execute(select(AssignmentRow.subject_id, func.min(AssignmentRow.start_ms))
                                  .group_by(AssignmentRow.subject_id)).all())
    last = dict(session.execute(select(Review.subject_id, func.max(Review.decided_ms))
                                .where(Review.decided_ms <= now_ms).group_by(Review.subject_id)).all())
    owners = _owners_at(session, now_ms)
    out = []
    for s in on:
        since = int(last.get(s) or starts[s])
        out.append(ReviewDue(s, owners.get(s), since, since + every_days * DAY_MS))
    return sorted(out, key=lambda d: (d.due_ms, d.subject_id))


def read_reviews(session: Session, audit, user: User, *, now_ms: int, every_days: int,
                 within_days: int | None = None) -> list[ReviewDue]:
    """The schedule as staff read it (API and console): due within `within_days` days (overdue included),
    or, with None, only the overdue. Audited ``review.list`` with the count."""
    rows = review_schedule(session, now_ms=now_ms, every_days=every_days)
    if within_days is None:
        rows = [d for d in rows if d.due_ms < now_ms]
        detail: dict = {"overdue": True}
    else:
        rows = [d for d in rows if d.due_ms <= now_ms + within_days * DAY_MS]
        detail = {"due_within_days": within_days}
    audit.append(session, action="review.list", actor=user, now_ms=now_ms, detail={**detail, "count": len(rows)})
    return rows


def read_review_summary(session: Session, audit, user: User, home, subject_id: str, *, now_ms: int,
                        every_days: int) -> tuple[dict, ReviewDue]:
    """The summary a review decided now would rest on (the period since the last review or the start),
    and the wearer's due entry; audited ``review.summary``. `ReviewError` for a wearer not on monitoring."""
    due = {d.subject_id: d for d in review_schedule(session, now_ms=now_ms, every_days=every_days)}
    if subject_id not in due:
        raise ReviewError(f"wearer {subject_id!r} is not on monitoring now")
    summary = review_summary(session, home, subject_id, due[subject_id].since_ms, now_ms)
    audit.append(session, action="review.summary", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"period": summary["period"]})
    return summary, due[subject_id]


def review_summary(session: Session, home, subject_id: str, start_ms: int, end_ms: int) -> dict:
    """The compliance summary for the period (module docstring), as stored with a review."""
    breaches = list(session.scalars(select(BreachRow).where(
        BreachRow.subject_id == subject_id, BreachRow.kind == "breach", BreachRow.status != "withdrawn",
        BreachRow.start_ms >= start_ms, BreachRow.start_ms < end_ms)))
    excused = excused_breach_ids(session, subject_id)
    policy = home_policy(home)
    assignments = load_assignments(session, subject_id)
    zones = load_zones_from_db(session, sorted({k for a in assignments for k in a.zones}), crs=policy.crs)
    windows = attendance_windows(home, subject_id=subject_id, assignments=assignments, zones=zones, policy=policy,
                                 start_ms=start_ms, end_ms=end_ms, as_of_ms=end_ms)
    mitigations = list(session.scalars(select(Mitigation).where(
        Mitigation.subject_id == subject_id, Mitigation.received_ms >= start_ms, Mitigation.received_ms < end_ms)))
    return {"period": {"start": format_ms(start_ms), "end": format_ms(end_ms)},
            "breaches_by_type": dict(sorted(Counter(b.type for b in breaches).items())),
            "excused": sorted(b.breach_id for b in breaches if b.breach_id in excused),
            "attendance": dict(sorted(Counter(w.status for w in windows).items())),
            "mitigations": dict(sorted(Counter(m.status for m in mitigations).items())),
            "device_faults": _faults(session, assignments, breaches, start_ms, end_ms),
            "welfare_notes": [{"id": n.id, "recorded": format_ms(n.recorded_ms), "text": n.text}
                              for n in welfare_notes(session, subject_id, start_ms=start_ms, end_ms=end_ms)]}


def _faults(session: Session, assignments, breaches: list[BreachRow], start_ms: int, end_ms: int) -> dict:
    """The faults open on the wearer's devices while worn in the period, and how the period's breaches
    stand against them (suspected, confirmed, cleared)."""
    worn = [(a.device_id, a.start_ms, a.end_ms) for a in assignments]
    listed = [{"fault_id": f.id, "device_id": d, "batch": f.batch, "start": format_ms(f.start_ms),
               "end": format_ms(f.end_ms) if f.end_ms is not None else None, "description": f.description}
              for d, f in faults_worn(session, worn, start_ms, end_ms)]
    marks = Counter(state for _, state in fault_marks(session, breaches).values())
    return {"faults": listed, "breaches": dict(sorted(marks.items()))}


def _end_monitoring(session: Session, audit, user: User, subject_id: str, now_ms: int) -> list[str]:
    ended = []
    for row in _open_chains(session, subject_id, now_ms):
        apply_assignment(session, audit, user, Assignment(
            subject_id=subject_id, device_id=row.device_id, start_ms=row.chain_start_ms, end_ms=now_ms,
            zones=tuple(json.loads(row.zones_json))), now_ms=now_ms)
        ended.append(row.device_id)
    return ended


def record_review(session: Session, audit, user: User, home, subject_id: str, *, outcome: str, reason: str | None,
                  every_days: int, now_ms: int) -> Review:
    """Decide the wearer's review now, on the summary since the last (kept with it). Audited ``review.decide``."""
    if outcome not in OUTCOMES:
        raise ReviewError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if outcome != "continue" and not (reason or "").strip():
        raise ReviewError(f"{outcome} needs a reason")
    due = {d.subject_id: d for d in review_schedule(session, now_ms=now_ms, every_days=every_days)}
    if subject_id not in due:
        raise ReviewError(f"wearer {subject_id!r} is not on monitoring now")
    start = due[subject_id].since_ms
    summary = review_summary(session, home, subject_id, start, now_ms)
    row = Review(subject_id=subject_id, period_start_ms=start, period_end_ms=now_ms, summary_json=json.dumps(summary),
                 outcome=outcome, reason=reason, decided_by=user.id, decided_ms=now_ms)
    session.add(row)
    session.flush()
    ended = _end_monitoring(session, audit, user, subject_id, now_ms) if outcome == "end_monitoring" else []
    audit.append(session, action="review.decide", actor=user, subject_id=subject_id, now_ms=now_ms,
                 justification_ref=f"review:{row.id}",
                 detail={"review_id": row.id, "outcome": outcome, "period_start": format_ms(start),
                         "due": format_ms(due[subject_id].due_ms), "on_time": now_ms <= due[subject_id].due_ms,
                         "ended_devices": ended})
    return row
