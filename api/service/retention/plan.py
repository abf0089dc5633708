"""What retention erases now: for each wearer whose monitoring has ended,
each data class whose rule has run out since (`Due`), with the periods open
legal holds keep. A class is done for a wearer only when it was erased with
nothing held; until then every pass looks again (a lifted hold is erased by
the next pass, and a pass that finds nothing writes nothing).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow, RetentionLedger
from api.service.retention.holds import held_periods
from api.service.retention.rules import CLASSES, Rules

__all__ = ["Due", "monitoring_ended", "retention_plan", "erased_classes"]


@dataclass(frozen=True)
class Due:
    subject_id: str
    data_class: str
    ended_ms: int
    due_ms: int
    held: tuple[tuple[int, int], ...]  # periods open holds keep: [start, end)


def monitoring_ended(session: Session, now_ms: int) -> dict[str, int]:
    """subject_id -> when monitoring ended, for every wearer with no assignment in force or to come."""
    ends: dict[str, int] = {}
    running: set[str] = set()
    for subject, end in session.execute(select(AssignmentRow.subject_id, AssignmentRow.end_ms)):
        if end is None or end > now_ms:
            running.add(subject)
        else:
            ends[subject] = max(ends.get(subject, end), end)
    return {s: e for s, e in ends.items() if s not in running}


def erased_classes(row: RetentionLedger | None) -> dict[str, object]:
    return json.loads(row.erased_json) if row is not None else {}


def retention_plan(session: Session, rules: Rules, *, now_ms: int) -> list[Due]:
    """Everything due at `now_ms`, by wearer then in `CLASSES` order."""
    ended = monitoring_ended(session, now_ms)
    ledger = {r.subject_id: r for r in session.scalars(select(RetentionLedger))}
    for subject, row in ledger.items():
        ended.setdefault(subject, row.ended_ms)  # the assignments may be gone already
    out = []
    for subject in sorted(ended):
        done = erased_classes(ledger.get(subject))
        for data_class in CLASSES:
            due_ms = ended[subject] + rules.keep_ms(data_class)
            if now_ms >= due_ms and done.get(data_class) in (None, "pending"):
                out.append(Due(subject, data_class, ended[subject], due_ms,
                               tuple(held_periods(session, subject, data_class))))
    return out
