"""`/v1/audit`: the audit log's entries (`api.audit.entries`), its latest
signed checkpoint and its Merkle proofs (RFC 9162), for auditors. Reading
them is itself audited."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.guard import GuardedRoute
from api.audit.entries import MAX_LIMIT, EntryFilter, FilterError, parse_bound, read_entries
from api.audit.log import AuditIntegrityError
from api.http.errors import NotFound, ServiceUnavailable, Unprocessable

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

#: Tree sizes and indices beyond this are refused by validation (422), not by the database.
MAX_INDEX = 2**53
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]


Bound = Annotated[str | None, Query(max_length=40, description="a London date (2024-03-31) or RFC 3339 with offset")]
Name = Annotated[str | None, Query(max_length=200)]


@router.get("/entries", operation_id="list_audit_entries")
def list_audit_entries(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                       actor: Name = None, action: Name = None,
                       wearer: Annotated[str | None, Query(max_length=32, description="pseudonym, 32 hex digits")] = None,
                       from_: Annotated[str | None, Query(alias="from", max_length=40,
                                                          description="inclusive: a London date or RFC 3339")] = None,
                       to: Annotated[str | None, Query(max_length=40,
                                                       description="exclusive instant, or a London date (inclusive)")]
                       = None,
                       limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
                       offset: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0) -> dict[str, Any]:
    """Audit entries newest first (each the JSON that was hashed), filtered
    by actor name, action, wearer pseudonym and period (a date is a day in
    London: ``to`` a date includes that day); `total` counts every match.
    422 for a value the log cannot be searched with. The read is audited
    (``audit.read``, ``read: entries`` with the filters).

    Roles: auditor, admin.
    """
    try:
        f = EntryFilter(actor=actor or None, action=action or None, wearer=wearer or None,
                        from_ms=parse_bound("from", from_, end=False) if from_ else None,
                        to_ms=parse_bound("to", to, end=True) if to else None, limit=limit, offset=offset)
        page = read_entries(session, f)
    except FilterError as exc:
        raise Unprocessable(str(exc)) from None
    audit.append(session, action="audit.read", actor=user, now_ms=clock(), detail={"read": "entries", **f.described()})
    commit(session, audit)
    return {"total": page.total, "limit": limit, "offset": offset, "entries": page.entries}


@router.get("/checkpoint", operation_id="audit_checkpoint")
def audit_checkpoint(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep) -> dict[str, Any]:
    """The latest signed checkpoint (tree size and root), which already
    covers this read. 404 if none has been written yet; 503 while the audit
    log is in a failed state (tampering detected): nothing new is signed, and
    the answer says what was found, with the stale checkpoint beside it.

    Roles: auditor, admin.
    """
    audit.append(session, action="audit.read", actor=user, now_ms=clock(), detail={"read": "checkpoint"})
    commit(session, audit)
    try:
        cp = audit.write_checkpoint(session, force=True)  # sign now: the checkpoint covers this read
        session.commit()
    except AuditIntegrityError:
        session.rollback()
        cp = None
    problem = audit.integrity_problem()
    if problem is not None:
        stale = None
        try:
            stale = audit.latest_checkpoint()
        except AuditIntegrityError:
            pass
        raise ServiceUnavailable(f"the audit log failed an integrity check ({problem}); the latest checkpoint, "
                                 f"size {stale['size'] if stale else 'none'}, is stale and nothing new is signed "
                                 f"until an operator runs `tagtrail audit resume`")
    if cp is None:
        raise NotFound("no audit checkpoint has been written yet")
    return cp


@router.get("/proof/inclusion", operation_id="audit_inclusion_proof")
def audit_inclusion_proof(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                          index: Index, size: Index) -> dict[str, Any]:
    """Inclusion proof of entry `index` in the tree of the first `size`
    entries. 422 when index >= size or size exceeds the log (as for any invalid input).

    Roles: auditor, admin.
    """
    try:
        proof = audit.inclusion_proof(session, index, size)
    except AuditIntegrityError as exc:
        raise ServiceUnavailable(f"the audit log failed an integrity check: {exc}") from None
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    audit.append(session, action="audit.read", actor=user, now_ms=clock(),
                 detail={"read": "inclusion_proof", "index": index, "size": size})
    commit(session, audit)
    return proof


@router.get("/proof/consistency", operation_id="audit_consistency_proof")
def audit_consistency_proof(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                            first: Index, second: Index) -> dict[str, Any]:
    """Consistency proof that the tree of `second` entries extends the tree
    of `first`. 422 when first > second or second exceeds the log (as for any invalid input).

    Roles: auditor, admin.
    """
    try:
        proof = audit.consistency_proof(session, first, second)
    except AuditIntegrityError as exc:
        raise ServiceUnavailable(f"the audit log failed an integrity check: {exc}") from None
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    audit.append(session, action="audit.read", actor=user, now_ms=clock(),
                 detail={"read": "consistency_proof", "first": first, "second": second})
    commit(session, audit)
    return proof
