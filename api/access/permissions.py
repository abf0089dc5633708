"""Who may call what: ONE table from operation id to the roles allowed.

Every `/v1` route carries an explicit operation id, and the router-level
dependency `authorize` (api/deps.py) looks the route up here, so a route
missing from the table cannot be reached at all (and a test checks that the
table and the routes match). Checks that depend on the record, not the role
(a requester sees only their own requests; the approver is never the
requester), live in the endpoint and are stated in its docstring.

The roles (api/models.py ROLES):

- ``caseworker``: Home Office staff who ask for data and read breaches.
- ``requester``: an external agency (police, probation) asking through an
  External Agency Request; sees only its own requests.
- ``approver``: decides requests and confirms external requesters' identity;
  never decides a request they made (governance.md, dual authorisation).
- ``auditor``: reads everything, including the audit log and its proofs.
- ``admin``: like the auditor, for running the service (assignments, zones).
- ``feed``: the monitoring supplier's system: sends fixes and events, nothing else.
  Only the feed sends fixes: an admin who could also post fixes could fabricate
  evidence or erase a gap, so that power stays with one machine account whose
  every batch is audited.

This is the in-process, table-tested decision function governance.md asks
for (no OPA/Cerbos server).
"""
from __future__ import annotations

from types import MappingProxyType

from api.db.models import ROLES

__all__ = ["PERMISSIONS", "PERSONAL_DATA_OPS", "WHILE_AUDIT_FAILED", "is_allowed", "roles_for"]

_ALL = frozenset(ROLES)
_PEOPLE = _ALL - {"feed"}  # every role but the supplier's system
_STAFF = frozenset({"caseworker", "approver", "auditor", "admin"})
_OVERSIGHT = frozenset({"approver", "auditor", "admin"})
_ASKERS = frozenset({"caseworker", "requester"})

#: operation id -> roles allowed. The single source of truth for role checks.
PERMISSIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType({
    # access requests
    "create_access_request": _ASKERS,
    "check_identity": frozenset({"approver"}),
    "decide_access_request": frozenset({"approver"}),
    "extend_access_request": frozenset({"approver"}),  # a subject access deadline, once, with a reason
    "withdraw_access_request": _ASKERS,          # and only the request's own requester
    "get_access_request": _PEOPLE,               # requesters: only their own
    "list_access_requests": _PEOPLE,             # requesters: only their own
    "download_extract": _ASKERS,                 # and only the request's own requester
    # breaches
    "list_subject_breaches": _STAFF,
    # one wearer: assignments and zones, curfew compliance (no coordinates); staff who work the wearer's
    # records read the conditions those records rest on (the admin's list of everyone's stays oversight)
    "get_subject": _STAFF,
    "subject_compliance": _STAFF,
    "get_subject_evidence": _STAFF,              # the wearer's evidence pack for a period: records' windows only
    # casework: wearers' mitigations (recorded and decided by caseworkers, read by staff)
    "record_mitigation": frozenset({"caseworker"}),
    "list_mitigations": _STAFF,
    "get_mitigation": _STAFF,
    "decide_mitigation": frozenset({"caseworker"}),
    "mitigation_letter": frozenset({"caseworker"}),
    "get_escalation": _STAFF,                    # the ladder's proposal for a wearer
    "decide_escalation": frozenset({"caseworker"}),
    "escalation_letter": frozenset({"caseworker"}),
    "set_owner": frozenset({"admin"}),
    "reviews_due": _STAFF,
    "reviews_overdue": _STAFF,
    "review_summary": _STAFF,
    "record_review": frozenset({"caseworker"}),
    "set_language": frozenset({"caseworker", "admin"}),  # the language letters are written in
    "record_welfare_note": frozenset({"caseworker"}),
    "list_welfare_notes": _STAFF,
    "report_reviews": _OVERSIGHT,
    "report_casework": _OVERSIGHT,
    "report_device_health": _OVERSIGHT,
    "list_notifications": frozenset({"admin"}),
    "register_device": frozenset({"admin"}),
    "list_devices": _STAFF,
    "record_device_fault": frozenset({"admin"}),
    "list_device_faults": _STAFF,
    "decide_equipment_fault": frozenset({"caseworker"}),
    # retention: legal holds suspend erasure (placed and lifted by approvers and admins, read by oversight)
    "create_legal_hold": frozenset({"approver", "admin"}),
    "list_legal_holds": frozenset({"approver", "auditor", "admin"}),
    "review_legal_hold": frozenset({"approver", "admin"}),
    "lift_legal_hold": frozenset({"approver", "admin"}),
    # reports
    "report_access_requests": _OVERSIGHT,
    "report_breaches": _OVERSIGHT,
    "report_trends": _OVERSIGHT,                 # safe counts only (threshold 10, rounded to 5): not personal data
    # continuous operation: intake and the breach queue
    "post_fixes": frozenset({"feed"}),
    "breach_queue": _STAFF,
    "get_breach": _STAFF,                        # one record and its history: as the queue
    "get_breach_evidence": _STAFF,               # its evidence pack: the record's window only, audited
    "set_breach_status": frozenset({"caseworker"}),
    "stream_status": frozenset({"admin", "auditor", "feed"}),
    # subjects and zones the service detects against
    "list_assignments": frozenset({"auditor", "admin"}),  # the auditor reads everything
    "upsert_assignment": frozenset({"admin"}),
    "upsert_zone": frozenset({"admin"}),
    "list_zone_versions": frozenset({"admin", "auditor"}),
    # accounts (the people and machines that may sign in)
    "list_users": frozenset({"admin"}),
    "add_user": frozenset({"admin"}),
    "revoke_user": frozenset({"admin"}),
    "set_user_email": frozenset({"admin"}),  # where a wearer's owner is told of urgent records
    # changes to conditions in the past: proposed by one admin, decided by another
    "propose_correction": frozenset({"admin"}),
    "list_corrections": frozenset({"admin", "auditor"}),
    "decide_correction": frozenset({"admin"}),
    # audit log
    "list_audit_entries": frozenset({"auditor", "admin"}),
    "audit_checkpoint": frozenset({"auditor", "admin"}),
    "audit_inclusion_proof": frozenset({"auditor", "admin"}),
    "audit_consistency_proof": frozenset({"auditor", "admin"}),
})

assert all(roles <= _ALL for roles in PERMISSIONS.values()), "unknown role in PERMISSIONS"

#: Operations whose inputs or answers concern a wearer: a refused or failed call to
#: one of these is audited, and an external requester gets only a generic refusal.
PERSONAL_DATA_OPS: frozenset[str] = frozenset({
    "create_access_request", "check_identity", "decide_access_request", "withdraw_access_request",
    "extend_access_request",
    "get_access_request", "list_access_requests", "download_extract", "list_subject_breaches",
    "get_subject", "subject_compliance", "get_subject_evidence", "record_mitigation", "list_mitigations", "get_mitigation",
    "decide_mitigation", "mitigation_letter", "get_escalation", "decide_escalation", "escalation_letter",
    "set_owner", "review_summary", "record_review", "reviews_due", "reviews_overdue", "decide_equipment_fault",
    "list_notifications", "report_device_health", "set_language", "record_welfare_note", "list_welfare_notes",
    "create_legal_hold", "list_legal_holds", "review_legal_hold", "lift_legal_hold",
    "breach_queue", "get_breach", "get_breach_evidence", "set_breach_status", "list_assignments", "upsert_assignment",
    "post_fixes",
    "propose_correction", "decide_correction", "upsert_zone", "list_zone_versions",  # a curfew zone is a home
})

#: What may still be called while the audit log is in a failed state (tampering
#: detected): only what helps investigate it. Everything else is refused (503).
WHILE_AUDIT_FAILED: frozenset[str] = frozenset({
    "list_audit_entries", "audit_checkpoint", "audit_inclusion_proof", "audit_consistency_proof", "stream_status",
})
assert PERSONAL_DATA_OPS <= set(PERMISSIONS) and WHILE_AUDIT_FAILED <= set(PERMISSIONS)


def roles_for(operation_id: str) -> frozenset[str]:
    """The roles allowed to call `operation_id`; KeyError if it is not in the table."""
    return PERMISSIONS[operation_id]


def is_allowed(operation_id: str, role: str) -> bool:
    """True when `role` may call `operation_id`. Unknown operations are denied."""
    return role in PERMISSIONS.get(operation_id, frozenset())
