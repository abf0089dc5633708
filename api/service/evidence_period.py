"""`GET /v1/subjects/{id}/evidence`: one wearer's evidence pack for a period,
for a review, a tribunal or a prosecution file that rests on several
breaches: a cover listing every breach record that started in the period
and how each stands (counted, excused by a mitigation, inside a device
fault), then each record's own pack, exactly as `GET
/v1/breaches/{id}/evidence` makes it (the same evidence rule: only each
record's own window of fixes). The data SHA-256 is over the records' data
SHA-256s, one a line, in the cover's order; the same inputs give the same
bytes apart from the generation time. Audited ``subject.evidence_pack``
with each record's data hash and the document's.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import BreachRow, User
from api.service.breach_evidence import EVIDENCE_GROUND, breach_zone, read_evidence
from api.service.casework_errors import CaseworkError, CaseworkNotFound
from api.service.devices import fault_marks
from api.service.evidence_documents import FORMATS, EvidenceByRequestOnly, PackFile
from api.service.evidence_pack import build_pack, software_version
from api.service.evidence_render import PeriodCover, period_html, period_pdf
from api.service.london import london_time
from api.service.mitigations import excused_breach_ids
from api.service.stream.detector_state import home_policy
from api.settings import Settings
from trails.timestamps import format_ms

__all__ = ["MOST_RECORDS", "period_document"]

#: The most records one pack holds (each is a few pages): a longer period is refused, asking for a shorter one.
MOST_RECORDS = 40
_FAULT_WORDS = {"suspected_equipment_fault": "suspected equipment fault: not counted until decided",
                "fault_confirmed": "equipment fault confirmed: not counted", "fault_cleared": "equipment fault cleared"}


def _standing(session: Session, subject_id: str, rows: list[BreachRow]) -> dict[str, str]:
    excused, faults = excused_breach_ids(session, subject_id), fault_marks(session, rows)
    out = {}
    for b in rows:
        words = ["excused by an accepted mitigation"] if b.breach_id in excused else []
        if b.breach_id in faults:
            words.append(_FAULT_WORDS[faults[b.breach_id][1]])
        out[b.breach_id] = "; ".join(words) or "counts toward escalation"
    return out


def _records(session: Session, subject_id: str, start_ms: int, end_ms: int) -> list[BreachRow]:
    if end_ms <= start_ms:
        raise CaseworkError("the period's end must be after its start")
    rows = list(session.scalars(select(BreachRow).where(
        BreachRow.subject_id == subject_id, BreachRow.kind == "breach", BreachRow.status != "withdrawn",
        BreachRow.start_ms >= start_ms, BreachRow.start_ms < end_ms).order_by(BreachRow.start_ms, BreachRow.breach_id)))
    if not rows:
        raise CaseworkNotFound(f"wearer {subject_id} has no breach record that started in the period")
    if len(rows) > MOST_RECORDS:
        raise CaseworkError(f"{len(rows)} breach records started in the period; a pack holds at most {MOST_RECORDS}: "
                            f"ask for a shorter period")
    return rows


def period_document(session: Session, audit, user: User, settings: Settings, subject_id: str,
                    fmt: Literal["pdf", "html"], *, start_ms: int, end_ms: int, now_ms: int,
                    flush_store: Callable[[], object]) -> PackFile:
    """The wearer's pack for [start_ms, end_ms) as `fmt`, its audit entry appended (the caller commits).
    Raises `EvidenceByRequestOnly`, `CaseworkNotFound` (no record), `CaseworkError` (a bad or too long period)."""
    if settings.breach_evidence != "window":
        raise EvidenceByRequestOnly("this service shows a record's fixes only through an access request "
                                    "(breach_evidence is 'request'): ask for them with this wearer as reference")
    session.commit()  # received fixes move to the store first, with this (read-only so far) transaction ended
    flush_store()
    rows = _records(session, subject_id, start_ms, end_ms)
    policy = home_policy(settings.home)
    packs = []
    for b in rows:
        zone = breach_zone(session, b, policy)
        packs.append(build_pack(b, zone, read_evidence(settings.home, session, b, zone, policy), policy,
                                generated_ms=now_ms))
    data = hashlib.sha256("".join(p.data_sha256 + "\n" for p in packs).encode()).hexdigest()
    stands = _standing(session, subject_id, rows)
    cover = PeriodCover(subject_id=subject_id, period=(
        f"from {london_time(start_ms).text} ({format_ms(start_ms)}) to {london_time(end_ms).text} "
        f"({format_ms(end_ms)})"), records=[(b.breach_id, b.type.replace("_", " "), london_time(b.start_ms).text,
                                             stands[b.breach_id]) for b in rows],
        data_sha256=data, software=software_version(), generated_ms=now_ms)
    content = period_pdf(cover, packs) if fmt == "pdf" else period_html(cover, packs)
    digest = hashlib.sha256(content).hexdigest()
    audit.append(session, action="subject.evidence_pack", actor=user, subject_id=subject_id, ground=EVIDENCE_GROUND,
                 justification_ref=f"subject:{subject_id}", now_ms=now_ms,
                 detail={"format": fmt, "from": format_ms(start_ms), "to": format_ms(end_ms),
                         "records": [[p.record["breach_id"], p.data_sha256] for p in packs], "data_sha256": data,
                         "document_sha256": digest})
    name = re.sub(r"[^A-Za-z0-9._-]", "_", subject_id)[:80]
    return PackFile(content=content, media_type=FORMATS[fmt], sha256=digest, data_sha256=data,
                    filename=f"evidence-{name}-{format_ms(start_ms)[:10]}-{format_ms(end_ms)[:10]}.{fmt}")
