"""A wearer's own data: the subject access request (kind ``sar``, ground
``sar_or_legal``), approved like any other request, answered with one
package, within one month of receipt (extendable once, by two months, with a
reason: UK GDPR art. 12(3)).

The package (a ZIP with fixed member dates, so the same data gives the
same bytes) holds, for the approved period:

- ``fixes.csv`` and ``fixes.geojson``: every fix, with its accuracy and
  quality, exactly as a trail extract holds them;
- ``records.json``: the breach records that started in the period, each
  with its history, and the casework about the wearer in the period:
  mitigations (what they said, the decision and its reason), escalation
  decisions with their letters, reviews with their summaries, welfare notes;
- ``consultations.csv``: every entry of the audit log about the wearer, at
  any time (who, role, organisation, when, action, ground, request, period):
  who consulted or was given their data;
- ``exemptions.json``: each part the approver withheld and why (an
  exempted part is absent, and said to be);
- ``README.txt``: what each file is.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from calendar import monthrange
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access.extracts import Extract, trail_extract
from api.db.models import (AccessRequest, AuditEntry, BreachEvent, BreachRow, EscalationDecision, Mitigation,
                           MitigationBreach, Review, WelfareNote)
from api.service.london import LONDON
from trails.timestamps import format_ms

__all__ = ["SAR_PARTS", "sar_deadline", "exemptions_of", "sar_package"]

#: The parts of a package an approver may withhold, each with a reason.
SAR_PARTS = ("fixes", "records", "consultations")
_EPOCH_ZIP = (1980, 1, 1, 0, 0, 0)


def sar_deadline(received_ms: int, months: int = 1) -> int:
    """The end (exclusive, epoch ms) of the London day `months` calendar months after the day of receipt;
    where that month is shorter, its last day (the ICO's reading of "one month")."""
    day = datetime.fromtimestamp(received_ms / 1000, LONDON).date()
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    target = day.replace(year=year, month=month, day=min(day.day, monthrange(year, month)[1]))
    return int(datetime.combine(target + timedelta(days=1), time(0), tzinfo=LONDON).timestamp() * 1000)


def exemptions_of(req: AccessRequest) -> list[dict]:
    return json.loads(req.exemptions_json) if req.exemptions_json else []


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _records(session: Session, req: AccessRequest) -> dict:
    lo, hi, subject = req.approved_start_ms, req.approved_end_ms, req.subject_id

    def within(ms: int | None) -> bool:
        return ms is not None and lo <= ms < hi

    breaches = [b for b in session.scalars(select(BreachRow).where(BreachRow.subject_id == subject)
                                           .order_by(BreachRow.start_ms, BreachRow.breach_id)) if within(b.start_ms)]
    history = {}
    for e in session.scalars(select(BreachEvent).where(BreachEvent.breach_id.in_([b.breach_id for b in breaches]))
                             .order_by(BreachEvent.ts_ms, BreachEvent.id)):
        history.setdefault(e.breach_id, []).append({"when": format_ms(e.ts_ms), "from": e.from_status,
                                                    "to": e.to_status})
    links = {}
    for m_id, b_id in session.execute(select(MitigationBreach.mitigation_id, MitigationBreach.breach_id).join(
            Mitigation, Mitigation.id == MitigationBreach.mitigation_id).where(Mitigation.subject_id == subject)):
        links.setdefault(m_id, []).append(b_id)
    mine = lambda model: session.scalars(select(model).where(model.subject_id == subject))  # noqa: E731
    return {
        "breach_records": [{"breach_id": b.breach_id, "kind": b.kind, "type": b.type, "start": b.start, "end": b.end,
                            "priority": b.priority, "status": b.status, "withdrawn_reason": b.withdrawn_reason,
                            "history": history.get(b.breach_id, [])} for b in breaches],
        "mitigations": [{"received": format_ms(m.received_ms), "channel": m.channel, "text": m.text,
                         "records": sorted(links.get(m.id, [])), "status": m.status, "reason": m.reason,
                         "decided": format_ms(m.decided_ms) if m.decided_ms else None}
                        for m in mine(Mitigation) if within(m.received_ms)],
        "letters_and_escalation": [{"decided": format_ms(d.decided_ms), "step": d.step, "reason": d.reason,
                                    "letter": d.letter} for d in mine(EscalationDecision) if within(d.decided_ms)],
        "reviews": [{"decided": format_ms(r.decided_ms), "outcome": r.outcome, "reason": r.reason,
                     "summary": json.loads(r.summary_json)} for r in mine(Review) if within(r.decided_ms)],
        "welfare_notes": [{"recorded": format_ms(n.recorded_ms), "text": n.text}
                          for n in mine(WelfareNote) if within(n.recorded_ms)],
    }


def _consultations(session: Session, pseudonyms: list[str]) -> bytes:
    """Every audit entry about the wearer, oldest first, as CSV (no coordinates are ever in the log)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["when_utc", "who", "role", "organisation", "action", "ground", "request", "period_start",
                "period_end"])
    for text in session.scalars(select(AuditEntry.entry).where(AuditEntry.subject_pseudonym.in_(pseudonyms))
                                .order_by(AuditEntry.idx)):
        e = json.loads(text)
        d = e.get("detail") or {}
        w.writerow([e.get("ts"), e.get("actor") or "the service", e.get("role") or "", e.get("org") or "",
                    e.get("action"), e.get("ground") or "", e.get("request_id") or "",
                    d.get("start") or d.get("approved_start") or "", d.get("end") or d.get("approved_end") or ""])
    return buf.getvalue().encode("utf-8")


def _readme(req: AccessRequest, withheld: set[str]) -> bytes:
    lines = [f"Your data held by the Electronic Monitoring Hub: subject access request {req.id}.",
             f"Period: {format_ms(req.approved_start_ms)} to {format_ms(req.approved_end_ms)} (UTC).", "",
             "fixes.csv, fixes.geojson: every location fix in the period, with its accuracy and quality.",
             "records.json: breach records that started in the period, with their history, and the casework",
             "  (your representations and the decisions on them, warning letters, reviews, welfare notes).",
             "consultations.csv: everyone who consulted or was given your data, when, and on which ground.",
             "exemptions.json: anything withheld, and why."]
    if withheld:
        lines += ["", f"Withheld (see exemptions.json): {', '.join(sorted(withheld))}."]
    return ("\n".join(lines) + "\n").encode("utf-8")


def sar_package(session: Session, home, req: AccessRequest, *, assignments, zones, policy,
                pseudonyms: list[str]) -> Extract:
    """The package for an approved ``sar`` request (module docstring)."""
    withheld = {e["part"] for e in exemptions_of(req)}
    files: dict[str, bytes] = {"README.txt": _readme(req, withheld),
                               "exemptions.json": _json(exemptions_of(req))}
    n = 0
    if "fixes" not in withheld:
        kw = dict(subject_id=req.subject_id, assignments=assignments, zones=zones, policy=policy,
                  start_ms=req.approved_start_ms, end_ms=req.approved_end_ms)
        files["fixes.csv"] = trail_extract(home, fmt="csv", **kw).content
        geo = trail_extract(home, fmt="geojson", **kw)
        files["fixes.geojson"], n = geo.content, geo.n_items
    if "records" not in withheld:
        files["records.json"] = _json(_records(session, req))
    if "consultations" not in withheld:
        files["consultations.csv"] = _consultations(session, pseudonyms)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(zipfile.ZipInfo(name, date_time=_EPOCH_ZIP), files[name], compress_type=zipfile.ZIP_DEFLATED)
    content = buf.getvalue()
    return Extract(content=content, media_type="application/zip", filename=f"subject-access-{req.id}.zip",
                   sha256=hashlib.sha256(content).hexdigest(), n_items=n)
