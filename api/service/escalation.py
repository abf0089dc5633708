"""A wearer's escalation: the ladder's proposal from their records
(`api.service.ladder.propose`, fed from the database), and the caseworker's
decision on it: confirmed, or overridden to another step (or to no action)
with a reason. Each decision records the ladder version, the breaches it
counted and, when its step has a letter template (``<step>.txt``, in the
wearer's language where one exists: `api.service.letters`), the letter and
its SHA-256. The caller
commits each change with its audit entry.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import BreachRow, EscalationDecision, User
from api.service.devices import not_counted_for_escalation
from api.service.ladder import Counted, Ladder, Proposal, Taken, propose
from api.service.london import london_time
from api.service.casework_errors import CaseworkError, CaseworkNotFound
from api.service.letters import Letter, render_letter, wearer_language
from api.service.mitigations import excused_breach_ids

__all__ = ["EscalationError", "wearer_proposal", "decide_escalation", "decisions_of", "read_escalation",
           "read_letter"]


class EscalationError(CaseworkError):
    """An escalation decision that cannot be made (422)."""


def _records(session: Session, subject_id: str) -> list[Counted]:
    # excused by an accepted mitigation, or kept out by a device fault (suspected or confirmed)
    rows = session.execute(select(  # columns, not ORM objects: a wearer may have a thousand records
        BreachRow.breach_id, BreachRow.kind, BreachRow.type, BreachRow.priority, BreachRow.start_ms, BreachRow.end_ms,
        BreachRow.status, BreachRow.device_id).where(BreachRow.subject_id == subject_id)).all()
    excused = excused_breach_ids(session, subject_id) | not_counted_for_escalation(session, rows)
    return [Counted(breach_id=b.breach_id, kind=b.kind, type=b.type, priority=b.priority, start_ms=b.start_ms,
                    withdrawn=b.status == "withdrawn", excused=b.breach_id in excused) for b in rows]


def decisions_of(session: Session, subject_id: str) -> list[EscalationDecision]:
    return list(session.scalars(select(EscalationDecision).where(EscalationDecision.subject_id == subject_id)
                                .order_by(EscalationDecision.decided_ms, EscalationDecision.id)))


def wearer_proposal(session: Session, ladder: Ladder, subject_id: str, *, now_ms: int) -> Proposal:
    """The ladder's proposal for the wearer now (not audited here: the caller audits its read)."""
    taken = [Taken(step=d.step or "", decided_ms=d.decided_ms) for d in decisions_of(session, subject_id)]
    return propose(ladder, _records(session, subject_id), taken, now_ms)


def read_escalation(session: Session, audit, user: User, ladder: Ladder, subject_id: str, *,
                    now_ms: int) -> tuple[Proposal, list[EscalationDecision]]:
    """The proposal and the decisions so far, as staff read them (API and console): audited
    ``escalation.read`` with the proposal, the ladder version and the breaches counted."""
    p = wearer_proposal(session, ladder, subject_id, now_ms=now_ms)
    audit.append(session, action="escalation.read", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"proposed": p.step, "ladder_version": ladder.version, "breach_ids": list(p.counted)})
    return p, decisions_of(session, subject_id)


def read_letter(session: Session, audit, user: User, decision_id: int, *, now_ms: int) -> EscalationDecision:
    """The decision whose letter is read, as recorded (the same bytes every time); audited
    ``escalation.letter`` with its SHA-256. `CaseworkNotFound` for an unknown decision or one without a letter."""
    d = session.get(EscalationDecision, decision_id)
    if d is None or d.letter is None:
        raise CaseworkNotFound(f"escalation decision {decision_id} has no letter")
    audit.append(session, action="escalation.letter", actor=user, subject_id=d.subject_id, now_ms=now_ms,
                 justification_ref=f"escalation:{d.id}", detail={"decision_id": d.id, "letter_sha256": d.letter_sha256})
    return d


def _letter(session: Session, home: Path | None, step: str, subject_id: str, breach_ids: tuple[str, ...],
            now_ms: int) -> Letter | None:
    rows = [session.get(BreachRow, b) for b in breach_ids]
    breaches = [{"breach_id": b.breach_id, "type_text": b.type.replace("_", " "),
                 "start": london_time(b.start_ms).text, "end": london_time(b.end_ms).text} for b in rows]
    return render_letter(home, step, wearer_language(session, subject_id), subject_id=subject_id,
                         breaches=breaches, today=london_time(now_ms).text.rsplit(" ", 2)[0])


def decide_escalation(session: Session, audit, user: User, ladder: Ladder, subject_id: str, *, step: str | None,
                      reason: str | None, now_ms: int, home: Path | None = None) -> EscalationDecision:
    """Record the decision: `step` equal to the proposal confirms it; anything else (another step of this
    ladder, or None for no action) overrides it and needs `reason`. Audited ``escalation.decide``."""
    proposal = wearer_proposal(session, ladder, subject_id, now_ms=now_ms)
    known = {s for s, _ in ladder.steps} | {s for s, _, _ in ladder.immediate}
    if step is not None and step not in known:
        raise EscalationError(f"step {step!r} is not on the ladder in force: {', '.join(sorted(known))}")
    overridden = step != proposal.step
    if overridden and not (reason or "").strip():
        raise EscalationError(f"the ladder proposes {proposal.step or 'no step'}: say why to do otherwise")
    made = _letter(session, home, step, subject_id, proposal.counted, now_ms) if step else None
    letter = made.text if made is not None else None
    digest = hashlib.sha256(letter.encode("utf-8")).hexdigest() if letter is not None else None
    row = EscalationDecision(subject_id=subject_id, proposed_step=proposal.step, step=step, reason=reason,
                             ladder_version=ladder.version, breach_ids_json=json.dumps(list(proposal.counted)),
                             decided_by=user.id, decided_ms=now_ms, letter=letter, letter_sha256=digest)
    session.add(row)
    session.flush()
    audit.append(session, action="escalation.decide", actor=user, subject_id=subject_id, now_ms=now_ms,
                 justification_ref=f"escalation:{row.id}",
                 detail={"decision_id": row.id, "proposed": proposal.step, "step": step, "overridden": overridden,
                         "reason_sha256": hashlib.sha256((reason or "").encode()).hexdigest() if overridden else None,
                         "ladder_version": ladder.version, "breach_ids": list(proposal.counted),
                         "letter_sha256": digest, "letter_language": made.language if made else None})
    return row
