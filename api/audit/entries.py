"""Reading the audit log: entries newest first, filtered by actor, action,
wearer pseudonym and period, a page at a time. `GET /v1/audit/entries` and
the console's /audit page both call `read_entries`, so an auditor sees the
same list either way (and both audit the read the same way: ``audit.read``
with ``read: entries`` and the filters).

A period bound is either an RFC 3339 instant with its offset or a date,
read as a day in Europe/London (what the Hub means by "on 31 March"): a
``from`` date starts at that day's London midnight, a ``to`` date ends at
the next day's London midnight, so ``from=2024-03-31&to=2024-03-31`` is the
whole 23-hour day of the spring clock change. The wearer filter takes the
keyed pseudonym the log holds (32 hex digits), never a subject id: the log
itself never names a wearer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import AuditEntry
from trails.timestamps import parse_timestamp

__all__ = ["EntryFilter", "EntryPage", "FilterError", "MAX_LIMIT", "parse_bound", "read_entries", "check_filter"]

_LONDON = ZoneInfo("Europe/London")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
#: Most entries on one page.
MAX_LIMIT = 500


class FilterError(ValueError):
    """A filter value the log cannot be searched with; the message names it."""


def parse_bound(name: str, value: str, *, end: bool) -> int:
    """`value` (a London date or RFC 3339 with offset) as epoch ms; a date
    that ends a period (`end`) means the London midnight after it."""
    value = value.strip()
    if _DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise FilterError(f"{name}: {value!r} is not a date") from None
        if end:
            day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=_LONDON)  # London midnight is never skipped or repeated
        return int(local.timestamp() * 1000)
    try:
        return parse_timestamp(value)
    except ValueError:
        raise FilterError(f"{name}: {value[:40]!r} is neither a date (2024-03-31, a day in London) nor an "
                          f"RFC 3339 time with an offset (2024-03-31T18:00:00Z)") from None


@dataclass(frozen=True)
class EntryFilter:
    """What to list: '' or None for any. `from_ms` inclusive, `to_ms` exclusive."""

    actor: str | None = None
    action: str | None = None
    wearer: str | None = None
    #: More pseudonyms of the same wearer (the older one of a home made before per-wearer keys).
    same_wearer: tuple[str, ...] = ()
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int = 50
    offset: int = 0

    def described(self) -> dict:
        """The filters as the audit entry of this read records them (set ones only)."""
        out = {"actor": self.actor, "action": self.action, "wearer": self.wearer, "from_ms": self.from_ms,
               "to_ms": self.to_ms}
        return {k: v for k, v in out.items() if v not in (None, "")} | {"limit": self.limit, "offset": self.offset}


def check_filter(f: EntryFilter) -> None:
    """`FilterError` naming every value the log cannot be searched with."""
    problems = []
    if any(w and not _PSEUDONYM.match(w) for w in (f.wearer, *f.same_wearer)):
        problems.append("wearer must be a pseudonym as the log holds it (32 lowercase hex digits)")
    for name in ("actor", "action"):
        if len(getattr(f, name) or "") > 200:
            problems.append(f"{name} is longer than 200 characters")
    if f.from_ms is not None and f.to_ms is not None and f.from_ms >= f.to_ms:
        problems.append("from must be before to")
    if not 1 <= f.limit <= MAX_LIMIT:
        problems.append(f"limit must be from 1 to {MAX_LIMIT}")
    if f.offset < 0:
        problems.append("offset must not be negative")
    if problems:
        raise FilterError("; ".join(problems))


@dataclass(frozen=True)
class EntryPage:
    """One page of entries (each the entry's own JSON, as hashed), newest first, and how many match."""

    entries: list[dict]
    total: int


def read_entries(session: Session, f: EntryFilter) -> EntryPage:
    """The entries matching `f`, newest (highest index) first. Checks `f` first (`FilterError`)."""
    check_filter(f)
    where = []
    if f.actor:
        where.append(AuditEntry.actor == f.actor)
    if f.action:
        where.append(AuditEntry.action == f.action)
    if f.wearer:
        where.append(AuditEntry.subject_pseudonym.in_((f.wearer, *f.same_wearer)))
    if f.from_ms is not None:
        where.append(AuditEntry.ts_ms >= f.from_ms)
    if f.to_ms is not None:
        where.append(AuditEntry.ts_ms < f.to_ms)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(select(AuditEntry.entry).where(*where).order_by(AuditEntry.idx.desc())
                           .limit(f.limit).offset(f.offset))
    return EntryPage(entries=[json.loads(text) for text in rows], total=int(total))
