"""The casework report: per UTC month, what the Hub did with its breaches
(actioned, and how long from detection to the first action), mitigations
(received, decided in time, decided late), letters by ladder step, reviews
(done, done late); reviews overdue and wearers without an owner at each
month's end (as things stood then: `api.service.review_report.standing`),
and the same as at now. Counts and durations only: no wearer in it.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import BreachEvent, BreachRow, EscalationDecision, Mitigation, Review
from api.service.review_report import month_ends, standing
from api.service.reviews import review_schedule
from trails.timestamps import format_ms

__all__ = ["casework_report", "casework_rows"]


def _month(ms: int) -> str:
    return format_ms(ms)[:7]


def _first_actions(session: Session) -> dict[str, list[float]]:
    """month of detection -> hours from a record's first detection to its first status change by a person."""
    first = dict(session.execute(select(BreachEvent.breach_id, func.min(BreachEvent.ts_ms))
                                 .group_by(BreachEvent.breach_id)).all())
    out: dict[str, list[float]] = defaultdict(list)
    for bid, seen in session.execute(select(BreachRow.breach_id, BreachRow.first_seen_ms)
                                     .where(BreachRow.breach_id.in_(list(first)))).all():
        out[_month(seen)].append(max(0, first[bid] - seen) / 3_600_000)
    return out


def casework_report(session: Session, *, now_ms: int, review_every_days: int) -> dict:
    """``{"months": [...], "rows": [{"measure", "months": {month: value}}], "now": {...}}``."""
    cells: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(int))
    for (ts,) in session.execute(select(BreachEvent.ts_ms).where(BreachEvent.to_status == "actioned")):
        cells["breaches actioned"][_month(ts)] += 1
    for month, hours in _first_actions(session).items():
        cells["median hours from detection to first action"][month] = round(statistics.median(hours), 1)
    for m in session.scalars(select(Mitigation)):
        cells["mitigations received"][_month(m.received_ms)] += 1
        if m.decided_ms is not None:
            key = "in time" if m.decided_ms < m.due_ms else "late"
            cells[f"mitigations decided {key}"][_month(m.decided_ms)] += 1
    for step, ts in session.execute(select(EscalationDecision.step, EscalationDecision.decided_ms)
                                    .where(EscalationDecision.letter.is_not(None))):
        cells[f"letters: {step}"][_month(ts)] += 1
    for r in session.scalars(select(Review)):
        cells["reviews done"][_month(r.decided_ms)] += 1
    schedule = review_schedule(session, now_ms=now_ms, every_days=review_every_days)
    months = sorted({m for per in cells.values() for m in per})
    for month, at in month_ends(months, now_ms):
        stood = standing(session, at_ms=at, every_days=review_every_days)
        cells["reviews overdue at month end"][month] = sum(stood["reviews_overdue"].values())
        cells["wearers without an owner at month end"][month] = stood["without_owner"]
    rows = [{"measure": k, "months": {m: cells[k].get(m, 0) for m in months}} for k in sorted(cells)]
    return {"months": months, "rows": rows,
            "now": {"as_of": format_ms(now_ms), "on_monitoring": len(schedule),
                    "reviews_overdue": sum(1 for d in schedule if d.due_ms < now_ms),
                    "wearers_without_owner": sum(1 for d in schedule if d.owner is None)}}


def casework_rows(report: dict) -> list[list]:
    """The report as rows (CSV and XLSX): a header, one row per measure, then the snapshot as of now."""
    months = report["months"]
    rows = [["measure", *months]]
    rows += [[r["measure"], *(r["months"][m] for m in months)] for r in report["rows"]]
    rows += [[f"{k.replace('_', ' ')} (as of {report['now']['as_of']})", report["now"][k]]
             for k in ("on_monitoring", "reviews_overdue", "wearers_without_owner")]
    return rows
