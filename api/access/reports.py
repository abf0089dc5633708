"""Aggregate reports for oversight, as SQLAlchemy queries (no raw SQL).

- `access_request_report`: requests by outcome x kind with totals, the
  shape of the 2022 inspection report's Figure 9 (outcomes include
  ``withdrawn`` and ``pending``), and the same by requester organisation.
- `breach_report`: breaches (kind ``breach``, alerts left out) by type x
  UTC month of their start, with row and column totals (Figure 6). Records
  that continuous detection withdrew (later data removed them) are not
  breaches: they are left out of the rows and totals and counted on their
  own, by month, under ``withdrawn``, so the figures stay honest and the
  corrections stay visible.

- `request_turnaround`: how long decided requests took (made to decided),
  by kind: count, median, 90th percentile and longest, in hours.

All take an optional half-open period [from_ms, to_ms): requests by when
they were made, breaches by when they started. `report_rows` lays either
report out as rows, once, for both `report_csv` and `report_xlsx`.
"""
from __future__ import annotations

import io

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.access import csvsafe, xlsxsafe
from api.db.models import KINDS, OUTCOMES, AccessRequest, BreachRow, User

__all__ = ["REPORT_OUTCOMES", "access_request_report", "subject_access_figures", "breach_report", "request_turnaround", "report_rows",
           "report_csv", "report_xlsx"]

#: Rows of the access request report, in order.
REPORT_OUTCOMES: tuple[str, ...] = (*OUTCOMES, "withdrawn", "pending")


def _window(col, from_ms: int | None, to_ms: int | None) -> list:
    conds = []
    if from_ms is not None:
        conds.append(col >= from_ms)
    if to_ms is not None:
        conds.append(col < to_ms)
    return conds


def subject_access_figures(session: Session, *, from_ms: int | None, to_ms: int | None, now_ms: int) -> dict:
    """Subject access requests received in the window against their deadline (one month from receipt, three
    when extended): answered (decided) in time or late, still open, open past the deadline, extended."""
    rows = session.execute(select(AccessRequest.status, AccessRequest.decided_ms, AccessRequest.respond_by_ms,
                                  AccessRequest.extended_ms).where(
        AccessRequest.kind == "sar", *_window(AccessRequest.created_ms, from_ms, to_ms))).all()
    out = {"received": len(rows), "answered_in_time": 0, "answered_late": 0, "open": 0, "open_overdue": 0,
           "withdrawn": 0, "extended": sum(1 for r in rows if r.extended_ms is not None)}
    for status, decided, due, _ in rows:
        if status == "decided":
            out["answered_in_time" if decided <= due else "answered_late"] += 1
        elif status == "withdrawn":
            out["withdrawn"] += 1
        else:
            out["open"] += 1
            out["open_overdue"] += now_ms > due
    return out


def access_request_report(session: Session, *, from_ms: int | None = None, to_ms: int | None = None) -> dict:
    """Requests made in [from_ms, to_ms) counted by outcome x kind.

    Returns ``{"columns": [kinds..., "total"], "rows": [{"outcome", <kind>..., "total"}],
    "totals": {<kind>..., "total"}, "by_org": [{"org", "total"}]}``; every outcome
    and kind appears, with zeros.
    """
    q = (select(AccessRequest.status, AccessRequest.outcome, AccessRequest.kind, func.count())
         .where(*_window(AccessRequest.created_ms, from_ms, to_ms))
         .group_by(AccessRequest.status, AccessRequest.outcome, AccessRequest.kind))
    counts = {(o, k): 0 for o in REPORT_OUTCOMES for k in KINDS}
    for status, outcome, kind, n in session.execute(q):
        key = outcome if status == "decided" else status
        counts[(key, kind)] = counts.get((key, kind), 0) + n
    rows = []
    for o in REPORT_OUTCOMES:
        row = {"outcome": o, **{k: counts[(o, k)] for k in KINDS}}
        row["total"] = sum(row[k] for k in KINDS)
        rows.append(row)
    totals = {k: sum(r[k] for r in rows) for k in KINDS}
    totals["total"] = sum(totals.values())
    org_q = (select(User.role, User.org, func.count(AccessRequest.id))
             .join(User, User.id == AccessRequest.requester_id)
             .where(*_window(AccessRequest.created_ms, from_ms, to_ms))
             .group_by(User.role, User.org).order_by(User.role, User.org))
    by_org: dict[str, int] = {}
    for role, org, n in session.execute(org_q):
        name = org or ("home office" if role != "requester" else "unknown")
        by_org[name] = by_org.get(name, 0) + n
    return {"columns": [*KINDS, "total"], "rows": rows, "totals": totals,
            "by_org": [{"org": k, "total": v} for k, v in sorted(by_org.items())]}


def breach_report(session: Session, *, from_ms: int | None = None, to_ms: int | None = None) -> dict:
    """Breaches starting in [from_ms, to_ms) counted by type x UTC month; withdrawn ones apart.

    The month is the first seven characters of the record's `start`, which
    the contract writes in UTC (``YYYY-MM-DDTHH:MM:SS.mmmZ``). Returns
    ``{"months": [...], "rows": [{"type", "months": {month: n}, "total"}],
    "totals": {"months": {month: n}, "total": n},
    "withdrawn": {"months": {month: n}, "total": n}}``: rows and totals count
    live records only (status other than ``withdrawn``); `months` covers both.
    """
    month = func.substr(BreachRow.start, 1, 7)
    is_withdrawn = BreachRow.status == "withdrawn"
    q = (select(BreachRow.type, month, is_withdrawn, func.count())
         .where(BreachRow.kind == "breach", *_window(BreachRow.start_ms, from_ms, to_ms))
         .group_by(BreachRow.type, month, is_withdrawn))
    cells: dict[tuple[str, str], int] = {}
    gone: dict[str, int] = {}
    for t, m, withdrawn, n in session.execute(q):
        if withdrawn:
            gone[m] = gone.get(m, 0) + n
        else:
            cells[(t, m)] = n
    months = sorted({m for _, m in cells} | set(gone))
    types = sorted({t for t, _ in cells})
    rows = []
    for t in types:
        per = {m: cells.get((t, m), 0) for m in months}
        rows.append({"type": t, "months": per, "total": sum(per.values())})
    col = {m: sum(r["months"][m] for r in rows) for m in months}
    withdrawn_col = {m: gone.get(m, 0) for m in months}
    return {"months": months, "rows": rows, "totals": {"months": col, "total": sum(col.values())},
            "withdrawn": {"months": withdrawn_col, "total": sum(withdrawn_col.values())}}


def _percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n)) of a non-empty sorted list."""
    rank = max(1, -(-int(p * len(sorted_values)) // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def request_turnaround(session: Session, *, from_ms: int | None = None, to_ms: int | None = None) -> dict:
    """Decided requests made in [from_ms, to_ms): hours from made to decided, by kind and overall.

    Returns ``{"rows": [{"kind", "decided", "median_h", "p90_h", "max_h"}], "pending": n}``
    (the last row's kind is ``all``; hours to one decimal, None when nothing was
    decided). Percentiles are nearest-rank, so every figure is a real request's.
    """
    q = (select(AccessRequest.kind, AccessRequest.decided_ms - AccessRequest.created_ms)
         .where(AccessRequest.status == "decided", AccessRequest.decided_ms.is_not(None),
                *_window(AccessRequest.created_ms, from_ms, to_ms)))
    took: dict[str, list[int]] = {k: [] for k in KINDS}
    for kind, ms in session.execute(q):
        took.setdefault(kind, []).append(int(ms))
    pending = session.scalar(select(func.count()).select_from(AccessRequest).where(
        AccessRequest.status == "pending", *_window(AccessRequest.created_ms, from_ms, to_ms))) or 0

    def row(kind: str, values: list[int]) -> dict:
        v = sorted(values)
        hours = (lambda ms: round(ms / 3_600_000, 1)) if v else (lambda ms: None)
        return {"kind": kind, "decided": len(v), "median_h": hours(_percentile(v, 50) if v else 0),
                "p90_h": hours(_percentile(v, 90) if v else 0), "max_h": hours(v[-1] if v else 0)}

    rows = [row(k, took[k]) for k in took]
    rows.append(row("all", [ms for v in took.values() for ms in v]))
    return {"rows": rows, "pending": int(pending)}


def report_rows(report: dict) -> list[list]:
    """Either report as rows: a header, one row per outcome/type, then a total
    row (and, for breaches, a ``withdrawn`` row after it: not part of the total)."""
    if "months" in report:
        months = report["months"]
        rows = [["type", *months, "total"]]
        rows += [[r["type"], *(r["months"][m] for m in months), r["total"]] for r in report["rows"]]
        for label, part in (("total", report["totals"]), ("withdrawn", report["withdrawn"])):
            rows.append([label, *(part["months"][m] for m in months), part["total"]])
        return rows
    cols = report["columns"]
    rows = [["outcome", *cols]]
    rows += [[r["outcome"], *(r[c] for c in cols)] for r in report["rows"]]
    rows.append(["total", *(report["totals"][c] for c in cols)])
    return rows


def report_csv(report: dict) -> str:
    """Either report as CSV (`report_rows`); cells pass through `api.access.csvsafe`."""
    buf = io.StringIO()
    csvsafe.writer(buf, lineterminator="\n").writerows(report_rows(report))
    return buf.getvalue()


def report_xlsx(report: dict, title: str) -> bytes:
    """Either report as an .xlsx workbook of one sheet `title` (`report_rows`;
    cells neutralised as in CSV: `api.access.xlsxsafe`)."""
    return xlsxsafe.workbook_bytes([(title, report_rows(report))])
