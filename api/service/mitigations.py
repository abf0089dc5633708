"""Wearers' mitigations: a representation about one or more breaches is
recorded (received when, by which channel, its text, its attachments'
SHA-256s), and a decision must follow within `Settings.mitigation_days`
working days of receipt: ``accepted`` (the breaches it names are excused:
they stay in the record with the excuse, and no longer count toward
escalation) or ``rejected``, each with a reason. The inspection found
mitigations left unanswered; the overdue list is the answer to that.

Working days are Monday to Friday in London; bank holidays are not known to
tagtrail (no network, and they change by proclamation), so a deadline
that crosses one falls a day early: never late.

Free text stays in the business table; audit entries hold its SHA-256.
The caller commits each change with its audit entry.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import BreachRow, Mitigation, MitigationBreach, User
from api.service.casework_errors import CaseworkConflict, CaseworkError, CaseworkNotFound
from api.service.letters import render_letter, wearer_language
from api.service.london import LONDON, london_time

__all__ = ["CHANNELS", "NewMitigation", "due_after", "record_mitigation",
           "decide_mitigation", "list_mitigations", "read_mitigations", "breaches_of", "excused_breach_ids", "response_letter",
           ]

CHANNELS = ("letter", "email", "phone", "in_person", "legal_rep", "other")




@dataclass(frozen=True)
class NewMitigation:
    subject_id: str
    breach_ids: tuple[str, ...]
    received_ms: int
    channel: str
    text: str
    attachments: tuple[tuple[str, str], ...]  # (file name, SHA-256 hex)


def due_after(received_ms: int, working_days: int) -> int:
    """The end (exclusive, epoch ms) of the London day `working_days` Monday-to-Friday days after the
    London day of `received_ms`."""
    day: date = datetime.fromtimestamp(received_ms / 1000, LONDON).date()
    left = working_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=LONDON)
    return int(end.timestamp() * 1000)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_mitigation(session: Session, audit, user: User, m: NewMitigation, *, working_days: int,
                      now_ms: int) -> Mitigation:
    """Record `m`; every breach it names must be the wearer's. Audited ``mitigation.record``."""
    if m.channel not in CHANNELS:
        raise CaseworkError(f"channel must be one of {', '.join(CHANNELS)}, not {m.channel!r}")
    if m.received_ms > now_ms:
        raise CaseworkError("a mitigation cannot be received in the future")
    if not m.breach_ids:
        raise CaseworkError("name at least one breach the mitigation is about")
    rows = {b.breach_id: b for b in session.scalars(select(BreachRow).where(BreachRow.breach_id.in_(m.breach_ids)))}
    missing = [b for b in m.breach_ids if b not in rows]
    if missing:
        raise CaseworkError(f"no breach {', '.join(missing)}")
    others = sorted({b for b, row in rows.items() if row.subject_id != m.subject_id})
    if others:
        raise CaseworkError(f"breach {', '.join(others)} is not the wearer's: a mitigation is one wearer's")
    row = Mitigation(subject_id=m.subject_id, received_ms=m.received_ms, channel=m.channel, text=m.text,
                     attachments_json=json.dumps([{"name": n, "sha256": h} for n, h in m.attachments]),
                     recorded_by=user.id, recorded_ms=now_ms, due_ms=due_after(m.received_ms, working_days),
                     status="pending")
    session.add(row)
    session.flush()
    for b in sorted(set(m.breach_ids)):
        session.add(MitigationBreach(mitigation_id=row.id, breach_id=b))
    audit.append(session, action="mitigation.record", actor=user, subject_id=m.subject_id, now_ms=now_ms,
                 justification_ref=f"mitigation:{row.id}",
                 detail={"mitigation_id": row.id, "breach_ids": sorted(set(m.breach_ids)), "channel": m.channel,
                         "text_sha256": _sha(m.text), "attachments": [h for _, h in m.attachments]})
    return row


def _get(session: Session, mitigation_id: int) -> Mitigation:
    row = session.get(Mitigation, mitigation_id)
    if row is None:
        raise CaseworkNotFound(f"mitigation {mitigation_id} not found")
    return row


def breaches_of(session: Session, mitigation_id: int) -> list[str]:
    return list(session.scalars(select(MitigationBreach.breach_id)
                                .where(MitigationBreach.mitigation_id == mitigation_id)
                                .order_by(MitigationBreach.breach_id)))


def decide_mitigation(session: Session, audit, user: User, mitigation_id: int, *, outcome: str, reason: str,
                      now_ms: int) -> Mitigation:
    """Accept (excuse the breaches) or reject a pending mitigation. Audited ``mitigation.decide``."""
    if outcome not in ("accepted", "rejected"):
        raise CaseworkError(f"outcome must be accepted or rejected, not {outcome!r}")
    row = _get(session, mitigation_id)
    if row.status != "pending":
        raise CaseworkConflict(f"mitigation {mitigation_id} was already {row.status}")
    row.status, row.decided_by, row.decided_ms, row.reason = outcome, user.id, now_ms, reason
    audit.append(session, action="mitigation.decide", actor=user, subject_id=row.subject_id, now_ms=now_ms,
                 justification_ref=f"mitigation:{row.id}",
                 detail={"mitigation_id": row.id, "outcome": outcome, "reason_sha256": _sha(reason),
                         "breach_ids": breaches_of(session, row.id), "in_time": now_ms < row.due_ms})
    return row


def list_mitigations(session: Session, *, subject_id: str | None = None, status: str | None = None,
                     overdue_at: int | None = None, limit: int = 200) -> list[Mitigation]:
    """Mitigations, oldest deadline first; `overdue_at`: only those still pending past their deadline then."""
    q = select(Mitigation).order_by(Mitigation.due_ms, Mitigation.id)
    if subject_id is not None:
        q = q.where(Mitigation.subject_id == subject_id)
    if status is not None:
        q = q.where(Mitigation.status == status)
    if overdue_at is not None:
        q = q.where(Mitigation.status == "pending", Mitigation.due_ms <= overdue_at)
    return list(session.scalars(q.limit(limit)))


def read_mitigations(session: Session, audit, user: User, *, now_ms: int, subject_id: str | None = None,
                     status: str | None = None, overdue: bool = False) -> list[Mitigation]:
    """`list_mitigations` as staff read it (API and console): audited ``mitigation.list`` with the ids."""
    rows = list_mitigations(session, subject_id=subject_id, status=status, overdue_at=now_ms if overdue else None)
    audit.append(session, action="mitigation.list", actor=user, now_ms=now_ms, subject_id=subject_id,
                 detail={"status": status, "overdue": overdue, "ids": [m.id for m in rows]})
    return rows


def excused_breach_ids(session: Session, subject_id: str) -> set[str]:
    """The wearer's breaches an accepted mitigation excuses (they no longer count toward escalation)."""
    return set(session.scalars(
        select(MitigationBreach.breach_id).join(Mitigation, Mitigation.id == MitigationBreach.mitigation_id)
        .where(Mitigation.subject_id == subject_id, Mitigation.status == "accepted")))


def response_letter(session: Session, audit, user: User, mitigation_id: int, *, now_ms: int,
                    home: Path | None = None) -> tuple[bytes, str]:
    """The decided mitigation's response letter (plain text from the outcome's template) and its SHA-256;
    audited ``mitigation.letter`` with the hash. 409 while it is pending."""
    row = _get(session, mitigation_id)
    if row.status == "pending":
        raise CaseworkConflict(f"mitigation {mitigation_id} has no decision yet: decide it first")
    rows = [session.get(BreachRow, b) for b in breaches_of(session, row.id)]
    breaches = [{"kind": b.kind, "breach_id": b.breach_id, "type_text": b.type.replace("_", " "),
                 "start": london_time(b.start_ms).text, "end": london_time(b.end_ms).text} for b in rows]
    letter = render_letter(
        home, f"mitigation_{row.status}", wearer_language(session, row.subject_id), m=row, breaches=breaches,
        today=london_time(now_ms).text.rsplit(" ", 2)[0],
        received=london_time(row.received_ms).text.rsplit(" ", 2)[0], channel=row.channel.replace("_", " "))
    if letter is None:
        raise CaseworkError(f"no letter template mitigation_{row.status}.txt")
    text = letter.text
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    audit.append(session, action="mitigation.letter", actor=user, subject_id=row.subject_id, now_ms=now_ms,
                 justification_ref=f"mitigation:{row.id}",
                 detail={"mitigation_id": row.id, "outcome": row.status, "letter_sha256": digest,
                         "letter_language": letter.language})
    return data, digest
