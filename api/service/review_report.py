"""The reviews report: wearers on monitoring without an owner, against the
inspectorate's bar (at most 1% in any month), and reviews overdue by how
long, now and at the end of every month since monitoring began. Past months
are read as they stood then: assignments in force, the last review decided
by then, the owner from the ownership history. Counts only.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow
from api.service.reviews import OVERDUE_BANDS, review_schedule
from trails.timestamps import DAY_MS, format_ms

__all__ = ["OWNER_BAR", "days_overdue", "standing", "reviews_report", "month_ends"]

#: The inspectorate's bar: at most this share of wearers on monitoring without an owner, in any month.
OWNER_BAR = 0.01


def days_overdue(due_ms: int, at_ms: int) -> int:
    """Whole days past due, a part day counting as one (0: not overdue)."""
    return 0 if at_ms <= due_ms else -(-(at_ms - due_ms) // DAY_MS)


def standing(session: Session, *, at_ms: int, every_days: int) -> dict:
    """On monitoring, without an owner (and the share, against the bar) and overdue by band, at `at_ms`."""
    rows = review_schedule(session, now_ms=at_ms, every_days=every_days)
    unowned = sum(1 for d in rows if d.owner is None)
    days = [days_overdue(d.due_ms, at_ms) for d in rows]
    share = round(unowned / len(rows), 4) if rows else 0.0
    return {"at": format_ms(at_ms), "on_monitoring": len(rows), "without_owner": unowned,
            "without_owner_share": share, "over_bar": share > OWNER_BAR,
            "reviews_overdue": {label: sum(1 for n in days if lo <= n and (hi is None or n <= hi))
                                for label, lo, hi in OVERDUE_BANDS}}


def _month_start(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _month_end(start: datetime, now_ms: int) -> tuple[str, int]:
    """(YYYY-MM, the month's last millisecond, or now for the month in progress)."""
    nxt = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return f"{start:%Y-%m}", min(int(nxt.timestamp() * 1000) - 1, now_ms)


def _month_ends(first_ms: int, now_ms: int) -> list[tuple[str, int]]:
    """`_month_end` of every month from `first_ms`'s on, while it has begun by `now_ms`."""
    out, day = [], _month_start(first_ms)
    while int(day.timestamp() * 1000) <= now_ms:
        out.append(_month_end(day, now_ms))
        day = day.replace(year=day.year + (day.month == 12), month=day.month % 12 + 1)
    return out


def month_ends(months: list[str], now_ms: int) -> list[tuple[str, int]]:
    """`_month_end` of each of `months` (YYYY-MM) that has begun by `now_ms`."""
    starts = [datetime.strptime(m, "%Y-%m").replace(tzinfo=timezone.utc) for m in months]
    return [_month_end(d, now_ms) for d in starts if int(d.timestamp() * 1000) <= now_ms]


def reviews_report(session: Session, *, now_ms: int, every_days: int) -> dict:
    """Now, and each month's end since the first assignment (oldest first)."""
    first = session.scalar(select(func.min(AssignmentRow.start_ms)))
    months = [{"month": m, **standing(session, at_ms=at, every_days=every_days)}
              for m, at in (_month_ends(int(first), now_ms) if first is not None else [])]
    now = standing(session, at_ms=now_ms, every_days=every_days)
    return {"as_of": now["at"], "on_monitoring": now["on_monitoring"], "without_owner": now["without_owner"],
            "without_owner_share": now["without_owner_share"], "without_owner_bar": OWNER_BAR,
            "reviews_overdue": now["reviews_overdue"], "months": months,
            "months_over_bar": [m["month"] for m in months if m["over_bar"]]}
