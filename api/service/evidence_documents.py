"""`GET /v1/breaches/{id}/evidence`: a record's evidence pack as a file, read
under the console's evidence rule and audited as a consultation.

Only the fixes of the record's own window plus coverage go in
(`breach_evidence.read_evidence`), on the ground ``bail_breach`` with the
record as reference; with ``breach_evidence: "request"`` no pack is made
(the fixes then need an access request, as on the record's page). The audit
entry ``breach.evidence_pack`` names the window, the number of fixes, the
data's SHA-256 and the document's, so a pack attached to a letter can be
matched to the entry that released it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from api.db.models import BreachRow, User
from api.service.breach_evidence import EVIDENCE_GROUND, breach_zone, read_evidence
from api.service.breach_queue import QueueError, UnknownBreach
from api.service.evidence_pack import build_pack
from api.service.evidence_render import pack_html, pack_pdf
from api.service.stream.detector_state import home_policy
from api.settings import Settings
from trails.timestamps import format_ms

__all__ = ["PackFile", "EvidenceByRequestOnly", "evidence_document", "FORMATS"]

#: format -> media type.
FORMATS = {"pdf": "application/pdf", "html": "text/html; charset=utf-8"}


class EvidenceByRequestOnly(QueueError):
    """This deployment shows a record's fixes only through an access request."""


@dataclass(frozen=True)
class PackFile:
    content: bytes
    media_type: str
    filename: str
    sha256: str
    data_sha256: str


def evidence_document(session: Session, audit, user: User, settings: Settings, breach_id: str,
                      fmt: Literal["pdf", "html"], *, now_ms: int, flush_store: Callable[[], object]) -> PackFile:
    """The pack of record `breach_id` as `fmt`, with its ``breach.evidence_pack`` audit entry
    appended (the caller commits). Raises `UnknownBreach`, `EvidenceByRequestOnly`."""
    if settings.breach_evidence != "window":
        raise EvidenceByRequestOnly("this service shows a record's fixes only through an access request "
                                    "(breach_evidence is 'request'): ask for them with this record as reference")
    session.commit()  # received fixes move to the store first, with this (read-only so far) transaction ended
    flush_store()
    b = session.get(BreachRow, breach_id)
    if b is None:
        raise UnknownBreach(f"breach {breach_id} not found")
    policy = home_policy(settings.home)
    zone = breach_zone(session, b, policy)
    ev = read_evidence(settings.home, session, b, zone, policy)
    pack = build_pack(b, zone, ev, policy, generated_ms=now_ms)
    content = pack_pdf(pack) if fmt == "pdf" else pack_html(pack)
    digest = hashlib.sha256(content).hexdigest()
    audit.append(session, action="breach.evidence_pack", actor=user, subject_id=b.subject_id,
                 ground=EVIDENCE_GROUND, justification_ref=f"breach:{b.breach_id}", now_ms=now_ms,
                 detail={"breach_id": b.breach_id, "format": fmt, "start": format_ms(ev.start_ms),
                         "end": format_ms(ev.end_ms), "n_fixes": len(ev), "data_sha256": pack.data_sha256,
                         "document_sha256": digest})
    return PackFile(content=content, media_type=FORMATS[fmt], filename=f"evidence-{b.breach_id}.{fmt}",
                    sha256=digest, data_sha256=pack.data_sha256)
