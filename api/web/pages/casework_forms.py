"""The forms of a wearer's casework page (`api.web.pages.wearer_casework`),
each the console's side of one API operation, through the same service
function with the same audit entry (channel console):

=====================================================  ====================
form (POST)                                            API operation
=====================================================  ====================
/subjects/{id}/casework/escalation                     decide_escalation
/subjects/{id}/casework/mitigations                    record_mitigation
/subjects/{id}/casework/mitigations/{mid}/decision     decide_mitigation
/subjects/{id}/casework/review                         record_review
/subjects/{id}/casework/welfare-notes                  record_welfare_note
/subjects/{id}/casework/language                       set_language
/subjects/{id}/casework/owner                          set_owner
=====================================================  ====================

and the downloads (GET): the two letters, ``.../escalations/{did}/letter``
(escalation_letter) and ``.../mitigations/{mid}/letter`` (mitigation_letter),
and the wearer's evidence pack for a period, ``.../evidence.pdf``
(get_subject_evidence).

A refused submission (`CaseworkError`) is rolled back, audited as the API
audits it (``access.refused``), and answered with the page again, the
message at the form, with the API's status. Attachments are hashed here and
only their names and SHA-256 kept, as the API records them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from api.audit.entries import FilterError, parse_bound
from api.audit.log import commit_with_checkpoint
from api.service.evidence_documents import EvidenceByRequestOnly
from api.service.evidence_period import period_document
from api.db.models import Mitigation
from api.service.casework_errors import CaseworkError, CaseworkNotFound
from api.service.escalation import decide_escalation, read_letter
from api.service.ladder import LadderError, load_ladder
from api.service.mitigations import NewMitigation, decide_mitigation, record_mitigation, response_letter
from api.service.reviews import record_review, set_owner
from api.service.wearer_details import add_welfare_note, set_language
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.web.london_input import LocalTimeError, parse_london
from api.web.pages.wearer_casework import casework_page
from api.web.refusal import audit_refusal, release
from api.web.sessions import SignedIn

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
SubjectId = Annotated[str, Path(min_length=1, max_length=200)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: The most attachments one mitigation takes, and the largest (they are hashed, not kept).
MOST_FILES, FILE_MAX = 20, 25 * 1024 * 1024
TEXT = Annotated[str, Form(max_length=10_000)]


def _done(subject_id: str, saved: str, anchor: str) -> RedirectResponse:
    return RedirectResponse(f"/subjects/{quote(subject_id, safe='')}/casework?saved={saved}#{anchor}",
                            status_code=303)


def _refused(request: Request, session, me: SignedIn, subject_id: str, op: str, form: str,
             exc: Exception, status: int = 422) -> Response:
    """Roll back, audit the refusal as the API would, and show the page with the message at `form`."""
    release(session, me)
    status = getattr(exc, "status", status)
    audit_refusal(request, me, op, status, str(exc), subject_id=subject_id, params=dict(request.path_params))
    return casework_page(request, session, me, subject_id, error=(form, str(exc)), status_code=status)


def _commit(request: Request, session) -> None:
    commit_with_checkpoint(session, console_audit(request))


#: What a form's change may refuse with: shown at the form, audited as the API audits a refusal.
_REFUSALS = (CaseworkError, LadderError, LocalTimeError)


def _change(request: Request, session, me: SignedIn, subject_id: str, op: str, form: str,
            change: Callable[[], object], saved: str, anchor: str) -> Response:
    """Make `change()` (API operation `op`), commit, and go back to the page with the `saved` banner at
    `anchor`; refused, the page again with the message at `form` (`_refused`)."""
    try:
        change()
    except _REFUSALS as exc:
        return _refused(request, session, me, subject_id, op, form, exc)
    _commit(request, session)
    return _done(subject_id, saved, anchor)


@router.post("/subjects/{subject_id}/casework/escalation")
def decide_step(request: Request, subject_id: SubjectId, session: DbSession,
                me: Annotated[SignedIn, Depends(require_form("decide_escalation"))],
                step: Annotated[str, Form(max_length=40)] = "", reason: TEXT = "") -> Response:
    """Confirm the proposed step or override it (another step, or none) with a reason."""
    settings = request.app.state.settings
    return _change(request, session, me, subject_id, "decide_escalation", "escalation", lambda: decide_escalation(
        session, console_audit(request), me.user, load_ladder(settings.home), subject_id, step=step or None,
        reason=reason.strip() or None, now_ms=now_ms(request), home=settings.home), "escalation", "escalation")


def _hashed(files: list[UploadFile]) -> tuple[tuple[str, str], ...]:
    out = []
    for f in files:
        if not f.filename:
            continue  # the empty file field a browser sends when nothing is chosen
        digest, size = hashlib.sha256(), 0
        while chunk := f.file.read(1 << 20):
            size += len(chunk)
            if size > FILE_MAX:
                raise CaseworkError(f"{f.filename}: larger than {FILE_MAX // (1024 * 1024)} MiB")
            digest.update(chunk)
        out.append((f.filename[:200], digest.hexdigest()))
    if len(out) > MOST_FILES:
        raise CaseworkError(f"at most {MOST_FILES} attachments")
    return tuple(out)


@router.post("/subjects/{subject_id}/casework/mitigations")
def record(request: Request, subject_id: SubjectId, session: DbSession,
           me: Annotated[SignedIn, Depends(require_form("record_mitigation"))],
           received_date: Annotated[str, Form(max_length=20)] = "",
           received_time: Annotated[str, Form(max_length=10)] = "",
           channel: Annotated[str, Form(max_length=20)] = "", text: TEXT = "",
           breach_ids: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI reads a fresh list
           attachments: Annotated[list[UploadFile], Form()] = []) -> Response:  # noqa: B006
    """Record a wearer's representation about some of their records, with its attachments' hashes."""

    def change() -> None:
        received = parse_london(received_date, received_time, what="received")
        files = _hashed(attachments)
        if not text.strip():
            raise CaseworkError("the representation's text is empty: copy or summarise what the wearer said")
        if not breach_ids:
            raise CaseworkError("choose at least one record the representation is about")
        record_mitigation(session, console_audit(request), me.user, NewMitigation(
            subject_id=subject_id, breach_ids=tuple(breach_ids[:100]), received_ms=received, channel=channel,
            text=text.strip(), attachments=files), working_days=request.app.state.settings.mitigation_days,
            now_ms=now_ms(request))

    return _change(request, session, me, subject_id, "record_mitigation", "mitigation", change, "mitigation",
                   "mitigations")


@router.post("/subjects/{subject_id}/casework/mitigations/{mitigation_id}/decision")
def decide(request: Request, subject_id: SubjectId, mitigation_id: ItemId, session: DbSession,
           me: Annotated[SignedIn, Depends(require_form("decide_mitigation"))],
           outcome: Annotated[str, Form(max_length=20)] = "", reason: TEXT = "") -> Response:
    """Accept (the records it names are excused) or reject a mitigation, with a reason."""

    def change() -> None:
        if outcome not in ("accepted", "rejected"):
            raise CaseworkError("choose accept or reject")
        if not reason.strip():
            raise CaseworkError("give the reason for the decision: it goes into the response letter")
        decide_mitigation(session, console_audit(request), me.user, mitigation_id, outcome=outcome,
                          reason=reason.strip(), now_ms=now_ms(request))

    return _change(request, session, me, subject_id, "decide_mitigation", f"decision-{mitigation_id}", change,
                   "decision", f"mitigation-{mitigation_id}")


@router.post("/subjects/{subject_id}/casework/review")
def review(request: Request, subject_id: SubjectId, session: DbSession,
           me: Annotated[SignedIn, Depends(require_form("record_review"))],
           outcome: Annotated[str, Form(max_length=20)] = "", reason: TEXT = "") -> Response:
    """Decide the wearer's review on the summary shown."""
    settings = request.app.state.settings
    answer = _change(request, session, me, subject_id, "record_review", "review", lambda: record_review(
        session, console_audit(request), me.user, settings.home, subject_id, outcome=outcome,
        reason=reason.strip() or None, every_days=settings.review_every_days, now_ms=now_ms(request)),
        "review", "review")
    if outcome == "end_monitoring" and answer.status_code == 303:
        request.app.state.stream.notify()  # continuous detection picks the ended assignment up now
    return answer


@router.post("/subjects/{subject_id}/casework/welfare-notes")
def note(request: Request, subject_id: SubjectId, session: DbSession,
         me: Annotated[SignedIn, Depends(require_form("record_welfare_note"))], text: TEXT = "") -> Response:
    return _change(request, session, me, subject_id, "record_welfare_note", "note", lambda: add_welfare_note(
        session, console_audit(request), me.user, subject_id, text, now_ms=now_ms(request)), "note", "welfare")


@router.post("/subjects/{subject_id}/casework/language")
def language(request: Request, subject_id: SubjectId, session: DbSession,
             me: Annotated[SignedIn, Depends(require_form("set_language"))],
             tag: Annotated[str, Form(max_length=35)] = "") -> Response:
    return _change(request, session, me, subject_id, "set_language", "language", lambda: set_language(
        session, console_audit(request), me.user, subject_id, tag.strip() or None, now_ms=now_ms(request)),
        "language", "wearer")


@router.post("/subjects/{subject_id}/casework/owner")
def owner(request: Request, subject_id: SubjectId, session: DbSession,
          me: Annotated[SignedIn, Depends(require_form("set_owner"))],
          name: Annotated[str, Form(max_length=200)] = "") -> Response:
    return _change(request, session, me, subject_id, "set_owner", "owner", lambda: set_owner(
        session, console_audit(request), me.user, subject_id, name or None, now_ms=now_ms(request)), "owner", "wearer")


def _letter(data: bytes, digest: str, filename: str) -> Response:
    return Response(content=data, media_type="text/plain; charset=utf-8",
                    headers={"X-Letter-SHA256": digest, "Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/subjects/{subject_id}/casework/evidence.pdf")
def evidence(request: Request, subject_id: SubjectId, session: DbSession,
             me: Annotated[SignedIn, Depends(require("get_subject_evidence"))],
             from_: Annotated[str, Query(alias="from", max_length=40)] = "",
             to: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The wearer's evidence pack for a period of London days (both included), as a PDF."""
    try:
        if not from_.strip() or not to.strip():
            raise CaseworkError("give the first and the last day of the period, for example 2024-03-01 and 2024-03-31")
        pack = period_document(session, console_audit(request), me.user, request.app.state.settings, subject_id,
                               "pdf", start_ms=parse_bound("from", from_.strip(), end=False),
                               end_ms=parse_bound("to", to.strip(), end=True), now_ms=now_ms(request),
                               flush_store=request.app.state.stream.flush)
    except (CaseworkError, FilterError, EvidenceByRequestOnly) as exc:
        status = 409 if isinstance(exc, EvidenceByRequestOnly) else getattr(exc, "status", 422)
        raise ConsoleRefused(status, "No evidence pack for that period", str(exc)) from None
    _commit(request, session)
    return Response(content=pack.content, media_type=pack.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{pack.filename}"',
                             "X-Evidence-SHA256": pack.sha256, "Cache-Control": "no-store"})


@router.get("/subjects/{subject_id}/casework/escalations/{decision_id}/letter")
def escalation_letter(request: Request, subject_id: SubjectId, decision_id: ItemId, session: DbSession,
                      me: Annotated[SignedIn, Depends(require("escalation_letter"))]) -> Response:
    try:
        d = read_letter(session, console_audit(request), me.user, decision_id, now_ms=now_ms(request))
        if d.subject_id != subject_id:
            raise CaseworkNotFound(f"escalation decision {decision_id} is not wearer {subject_id}'s")
    except CaseworkError as exc:
        raise ConsoleRefused(exc.status, "No such letter", str(exc)) from None
    _commit(request, session)
    return _letter(d.letter.encode("utf-8"), d.letter_sha256 or "", f"escalation-{d.id}-letter.txt")


@router.get("/subjects/{subject_id}/casework/mitigations/{mitigation_id}/letter")
def mitigation_letter(request: Request, subject_id: SubjectId, mitigation_id: ItemId, session: DbSession,
                      me: Annotated[SignedIn, Depends(require("mitigation_letter"))]) -> Response:
    m = session.get(Mitigation, mitigation_id)
    if m is None or m.subject_id != subject_id:
        raise ConsoleRefused(404, "No such letter", f"wearer {subject_id} has no mitigation {mitigation_id}")
    try:
        data, digest = response_letter(session, console_audit(request), me.user, mitigation_id,
                                       now_ms=now_ms(request), home=request.app.state.settings.home)
    except CaseworkError as exc:
        raise ConsoleRefused(exc.status, "No letter yet" if exc.status == 409 else "No such letter", str(exc)) from None
    _commit(request, session)
    return _letter(data, digest, f"mitigation-{mitigation_id}-letter.txt")
