"""Erasing a wearer's casework and closing their extracts, in the database.

``casework``: the breach records (with their history, fault decisions and
notifications), mitigations, escalation decisions and letters, reviews and
welfare notes leave the database, except those whose time (a record's
start, a mitigation's receipt, a decision's date, a note's recording)
falls inside a period a legal hold keeps. When nothing is held, the
conditions go too: the wearer's assignments, the zones no other wearer
uses, their ownership and language. The access requests stay: they are
the record of who was given what, which the wearer's own access request
and the DPO need (their free text is the requester's, not the trail).

``extracts``: tagtrail keeps no extract file (each download is made from
the store on request while its approval lasts), so the rule closes every
download of the wearer's approved requests that is still open.

Each returns the rows it erased as JSON-ready dicts, table by table, so the
caller can count them and hash them into the erasure's audit entry.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from api.db.models import (AccessRequest, AssignmentRow, BreachEvent, BreachRow, EquipmentFaultDecision,
                           EscalationDecision, Mitigation, MitigationBreach, Notification, OwnerHistory, Review,
                           Wearer, WelfareNote, ZoneRow, ZoneVersion)

__all__ = ["erase_casework", "close_extracts", "row_dict"]

Held = tuple[tuple[int, int], ...]


def row_dict(row) -> dict:
    """A row as the erasure's hash sees it: every column, by name."""
    return {c.key: getattr(row, c.key) for c in inspect(row).mapper.column_attrs}


def _kept(ms: int | None, held: Held) -> bool:
    return ms is not None and any(lo <= ms < hi for lo, hi in held)


def _take(session: Session, out: dict[str, list[dict]], table: str, rows: Iterable) -> None:
    """Delete `rows` now (flushed table by table: the models declare no relationships, so the order of
    the calls is what keeps a link row from outliving its parent)."""
    for r in list(rows):
        out.setdefault(table, []).append(row_dict(r))
        session.delete(r)
    session.flush()


def _records(session: Session, subject_id: str, held: Held, out: dict[str, list[dict]]) -> None:
    breaches = [b for b in session.scalars(select(BreachRow).where(BreachRow.subject_id == subject_id))
                if not _kept(b.start_ms, held)]
    ids = [b.breach_id for b in breaches]
    for table, model, col in (("breach_events", BreachEvent, BreachEvent.breach_id),
                              ("equipment_fault_decisions", EquipmentFaultDecision, EquipmentFaultDecision.breach_id),
                              ("notifications", Notification, Notification.breach_id)):
        _take(session, out, table, session.scalars(select(model).where(col.in_(ids))))
    _take(session, out, "breaches", breaches)
    mitigations = [m for m in session.scalars(select(Mitigation).where(Mitigation.subject_id == subject_id))
                   if not _kept(m.received_ms, held)]
    _take(session, out, "mitigation_breaches", session.scalars(select(MitigationBreach).where(
        MitigationBreach.mitigation_id.in_([m.id for m in mitigations]))))
    _take(session, out, "mitigations", mitigations)
    for table, model, when in (("escalation_decisions", EscalationDecision, "decided_ms"),
                               ("reviews", Review, "decided_ms"), ("welfare_notes", WelfareNote, "recorded_ms")):
        _take(session, out, table, [r for r in session.scalars(select(model).where(model.subject_id == subject_id))
                                    if not _kept(getattr(r, when), held)])


def _conditions(session: Session, subject_id: str, out: dict[str, list[dict]]) -> None:
    assignments = list(session.scalars(select(AssignmentRow).where(AssignmentRow.subject_id == subject_id)))
    mine = {k for a in assignments for k in json.loads(a.zones_json)}
    others = {k for (z,) in session.execute(select(AssignmentRow.zones_json).where(
        AssignmentRow.subject_id != subject_id)) for k in json.loads(z)}
    _take(session, out, "assignments", assignments)
    only_mine = sorted(mine - others)
    _take(session, out, "zone_versions", session.scalars(select(ZoneVersion).where(ZoneVersion.zone_id.in_(only_mine))))
    _take(session, out, "zones", session.scalars(select(ZoneRow).where(ZoneRow.zone_id.in_(only_mine))))
    _take(session, out, "owner_history", session.scalars(select(OwnerHistory).where(
        OwnerHistory.subject_id == subject_id)))
    _take(session, out, "wearers", session.scalars(select(Wearer).where(Wearer.subject_id == subject_id)))


def erase_casework(session: Session, subject_id: str, held: Held) -> dict[str, list[dict]]:
    """Delete the wearer's casework outside `held` (module docstring); the caller commits."""
    out: dict[str, list[dict]] = {}
    _records(session, subject_id, held, out)
    if not held:
        _conditions(session, subject_id, out)
    session.flush()
    return out


def close_extracts(session: Session, subject_id: str, held: Held, *, now_ms: int) -> dict[str, list[dict]]:
    """End every open download of the wearer's approved requests (a request whose approved period a hold
    keeps stays open); the caller commits."""
    out: dict[str, list[dict]] = {}
    for r in session.scalars(select(AccessRequest).where(AccessRequest.subject_id == subject_id,
                                                         AccessRequest.expires_ms > now_ms)):
        if _kept(r.approved_start_ms, held):
            continue
        out.setdefault("access_requests.expires_ms", []).append({"id": r.id, "expires_ms": r.expires_ms})
        r.expires_ms = now_ms
    session.flush()
    return out

