"""What a refused call leaves in the audit log: one ``access.refused`` entry
naming the actor, the operation (an id of `api.access.permissions`), what it
was about, the status and why (DPA 2018 s.62: the log shows who tried what,
and why it was refused). The API's guard and the console's pages write the
same entry; only its ``channel`` differs."""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from api.audit.log import ChannelAudit, commit_with_checkpoint
from api.db.models import User

__all__ = ["REFUSED", "masked_for_requester", "record_refusal", "record_failed_auth"]

#: What an external requester is told when a call on a wearer is refused for any reason.
REFUSED = ("this request was refused; the EM Hub can tell you why: quote reference {ref}")

log = logging.getLogger("tagtrail.api")


def masked_for_requester(role: str, operation: str, status: int) -> bool:
    """Does an external requester get the generic refusal (`REFUSED`) instead of this error?

    Every error of a new request (whether a wearer is known, when they were
    monitored, whether a breach is theirs) and every 403/404 (whether a request
    id exists). Errors about the requester's own request (a state conflict, an
    expired approval, a format) stay specific: they say nothing about who is
    monitored. The API's guard and the console's pages both ask this."""
    return role == "requester" and (operation == "create_access_request" or status in (403, 404))


def record_refusal(audit: ChannelAudit, factory: Callable[[], Session], *, user: User | None, operation: str,
                   target: dict, status: int, reason: str, now_ms: int) -> int | None:
    """Append one ``access.refused`` entry in its own transaction; its index, or
    None when it could not be written (the refusal stands: it is logged).

    `target` is ``{"params": {...}, "subject_id": str | None}``; the wearer goes
    to the log only as a pseudonym, and is blanked out of `reason`."""
    if target["subject_id"]:
        reason = reason.replace(target["subject_id"], "[subject]")
    with factory() as session:
        try:
            entry = audit.append(session, action="access.refused", actor=user, subject_id=target["subject_id"],
                                 now_ms=now_ms, detail={"operation": operation, "target": target["params"],
                                                        "status": status, "reason": reason[:300]})
            idx = int(entry.idx)
            commit_with_checkpoint(session, audit)
            return idx
        except Exception:  # the refusal stands even if it cannot be recorded (disk full): say so in the log
            session.rollback()
            log.exception("could not audit a refused call to %s", operation)
            return None


def record_failed_auth(audit, factory: Callable[[], Session], counts: dict[str, int], *, now_ms: int) -> None:
    """One ``auth.failed`` entry summing attempts with no valid credential, per
    operation (the console's sign-in counts as ``console_sign_in``); no actor,
    no channel (a summary may span both ways in)."""
    with factory() as session:
        try:
            audit.append(session, action="auth.failed", actor=None, now_ms=now_ms,
                         detail={"attempts": dict(sorted(counts.items()))})
            commit_with_checkpoint(session, audit)
        except Exception:
            session.rollback()
            log.exception("could not audit failed authentication attempts")
