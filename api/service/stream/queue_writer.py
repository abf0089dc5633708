"""The breach queue's writer: record changes from detection become rows of
`breaches`, with one audit entry per write.

A change is an upsert by `breach_id` (the id depends only on an episode's
start, so a later pass that extends an episode updates it in place) or a
withdrawal: a record that data received later removed is never deleted, it
is marked withdrawn with a reason in words and the intake batch whose rows
caused it, so a caseworker and an auditor can see why it went. A record
produced again by later data comes back as new. The row's columns come from
the one record-to-row mapping, `api.service.detections.breach_fields`.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from geofence.incremental import Change

from api.db.models import BreachRow
from api.service.detections import breach_fields

__all__ = ["QueueWriter", "row_to_record", "withdraw_reason"]

#: breach_ids per `IN (...)` list (SQLite's bound on host parameters is 999 on old builds).
_IN_BATCH = 900
#: Withdrawals named one by one in an audit entry; the counts cover the rest.
_AUDIT_WITHDRAWALS = 1000


class QueueWriter:
    """Writes record changes to the breach queue in the caller's transaction (the caller commits).

    Parameters
    ----------
    audit : the home's `api.audit.log.AuditLog`; each write appends one
        ``breaches.update`` entry with the counts and the withdrawals.
    clock : epoch ms now (the service's clock, so tests can freeze it).
    """

    def __init__(self, audit, clock: Callable[[], int]) -> None:
        self.audit = audit
        self.clock = clock

    def apply(self, session: Session, changes: list[Change], *, reason_default: str | None = None,
              batches: tuple[int, int] | None = None) -> tuple[int, int, int]:
        """Write `changes`; returns (inserted, updated, withdrawn).

        reason_default : the reason for every withdrawal (a re-evaluation says why
            it ran); without it each withdrawal gets its own (`withdraw_reason`).
        batches : the intake batches whose rows caused the changes (first, last); a
            withdrawal names the last of them, and the audit entry the range, so every
            withdrawal can be traced to the data that caused it.
        """
        if not changes:
            return 0, 0, 0
        now = self.clock()
        rows = _existing(session, [c.breach_id for c in changes])
        new_by_subject: dict[str, list[dict]] = {}
        for c in changes:
            if c.record is not None:
                new_by_subject.setdefault(c.record["subject_id"], []).append(c.record)
        inserted = updated = 0
        withdrawals = []
        for c in changes:
            row = rows.get(c.breach_id)
            if c.record is None:
                if row is None or row.status == "withdrawn":
                    continue
                reason = reason_default or withdraw_reason(row, new_by_subject.get(row.subject_id, []))
                row.status, row.status_ms, row.withdrawn_reason, row.updated_ms = "withdrawn", now, reason, now
                row.withdrawn_batch = batches[1] if batches is not None else None
                withdrawals.append({"breach_id": row.breach_id, "type": row.type, "reason": reason,
                                    "batch": row.withdrawn_batch})
            elif row is None:
                session.add(BreachRow(breach_id=c.breach_id, first_seen_ms=now, updated_ms=now, status="new",
                                      **breach_fields(c.record)))
                inserted += 1
            else:
                _update(row, c.record, now)
                updated += 1
        session.flush()
        detail = {"inserted": inserted, "updated": updated, "withdrawn": len(withdrawals),
                  "withdrawals": withdrawals[:_AUDIT_WITHDRAWALS]}
        if batches is not None:
            detail["batches"] = list(batches)
        self.audit.append(session, action="breaches.update", actor=None, now_ms=now, detail=detail)
        return inserted, updated, len(withdrawals)


def _existing(session: Session, ids: list[str]) -> dict[str, BreachRow]:
    """The queue's rows with these breach_ids."""
    rows: dict[str, BreachRow] = {}
    for k in range(0, len(ids), _IN_BATCH):
        rows.update({b.breach_id: b for b in session.scalars(
            select(BreachRow).where(BreachRow.breach_id.in_(ids[k:k + _IN_BATCH])))})
    return rows


def _update(row: BreachRow, record: dict, now: int) -> None:
    """Put a record's current fields on its row; a withdrawn record produced again is new again."""
    for k, v in breach_fields(record).items():
        setattr(row, k, v)
    row.updated_ms = now
    if row.status == "withdrawn":
        row.status, row.status_ms, row.withdrawn_reason, row.withdrawn_batch = "new", now, None, None


def row_to_record(b: BreachRow) -> dict:
    """A queue row as a breach record (the contract's fields), plus ``_start_ms`` and
    ``_end_ms`` for a restarting detector (`IncrementalDetector.restore`)."""
    return {"breach_id": b.breach_id, "kind": b.kind, "type": b.type, "subject_id": b.subject_id,
            "device_id": b.device_id, "zone_id": b.zone_id, "start": b.start, "end": b.end,
            "duration_s": int(b.duration_s) if float(b.duration_s).is_integer() else b.duration_s,
            "priority": b.priority, "_start_ms": b.start_ms, "_end_ms": b.end_ms}


def withdraw_reason(row: BreachRow, new_records: list[dict]) -> str:
    """Why data received later removed this record, in words for the Hub; `new_records`
    are the records the same pass produced for the same subject."""
    if row.type == "curfew_absence":
        for r in new_records:
            if r["type"] == "curfew_missed" and r["zone_id"] == row.zone_id:
                return f"replaced by curfew_missed breach {r['breach_id']} for the whole curfew window"
    if row.type in ("battery", "no_signal"):
        return "fixes received later show contact during this gap"
    return "data received later changed this episode (its start or its evidence); see the current records"
