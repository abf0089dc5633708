"""London wall-clock time as people type it into a form, to epoch ms UTC.

The contract resolves local times in zone schedules (CONTRACT.md "Zones"): a
time skipped when the clocks go forward means the instant of the change; a
time that occurs twice when they go back means its first occurrence. A
person entering a period is not a schedule: a time that never happened is
almost always a slip, so it is refused with a message saying what the
clocks did, never moved silently. A time that happened twice is resolved as
the contract says (the first, BST) unless the person chose the second (GMT):
the form shows both when it sees one, so the choice is explicit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from api.service.london import LONDON

__all__ = ["OCCURRENCES", "LocalTimeError", "Ambiguous", "parse_london", "is_ambiguous", "london_fields"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The answers to "which one?" for a time that happens twice.
OCCURRENCES = ("first", "second")


class LocalTimeError(ValueError):
    """A date or time that cannot be read, or a London time that did not exist; the message says which."""


@dataclass(frozen=True)
class Ambiguous:
    """A London time that happened twice: both instants (epoch ms), BST first."""

    first_ms: int
    second_ms: int


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _read(date_text: str, time_text: str, what: str) -> datetime:
    try:
        d = date.fromisoformat(date_text.strip())
    except ValueError:
        raise LocalTimeError(f"{what}: enter the date as year-month-day, like 2024-03-31 "
                             f"(not {date_text.strip()[:20]!r})") from None
    t_text = time_text.strip()
    try:
        t = time.fromisoformat(t_text)
        if len(t_text) not in (5, 8) or t.tzinfo is not None:
            raise ValueError
    except ValueError:
        raise LocalTimeError(f"{what}: enter the time as hours and minutes, like 19:00 (not {t_text[:20]!r})") from None
    return datetime.combine(d, t)


def _happened(local: datetime, naive: datetime) -> bool:
    """Did the London wall clock ever read `naive`? (Not in the hour skipped in March.)"""
    return datetime.fromtimestamp(local.timestamp(), LONDON).replace(tzinfo=None) == naive


def is_ambiguous(date_text: str, time_text: str, what: str = "time") -> Ambiguous | None:
    """Both instants when the London time happened twice (the clocks went back), else None."""
    naive = _read(date_text, time_text, what)
    first, second = naive.replace(tzinfo=LONDON, fold=0), naive.replace(tzinfo=LONDON, fold=1)
    if first.utcoffset() == second.utcoffset() or not _happened(first, naive):
        return None  # one reading, or none at all (the clocks went forward: `parse_london` says so)
    return Ambiguous(first_ms=_ms(first), second_ms=_ms(second))


def parse_london(date_text: str, time_text: str, occurrence: str = "first", *, what: str = "time") -> int:
    """The instant (epoch ms UTC) of a London date and time.

    A time that did not exist (clocks forward: 01:00-01:59 on the last Sunday
    of March) raises `LocalTimeError` naming the change; one that happened
    twice (clocks back: 01:00-01:59 on the last Sunday of October) is its
    `occurrence` ("first", BST, the contract's reading; or "second", GMT)."""
    if occurrence not in OCCURRENCES:
        raise LocalTimeError(f"{what}: say which {time_text.strip()[:5]} you mean, the first (BST) or the second (GMT)")
    naive = _read(date_text, time_text, what)
    local = naive.replace(tzinfo=LONDON, fold=0 if occurrence == "first" else 1)
    if not _happened(local, naive):
        raise LocalTimeError(f"{what}: {naive:%H:%M} on {naive.day} {naive:%B %Y} did not happen in the UK: the "
                             f"clocks went forward from 01:00 GMT to 02:00 BST. Enter a time before 01:00 or from "
                             f"02:00.")
    return _ms(local)


def london_fields(ms: int) -> tuple[str, str, str]:
    """``("2024-10-27", "01:30", "second")``: an instant as a form's date, time
    and occurrence fields (London), so that `parse_london` gives it back (to the minute)."""
    local = (_EPOCH + timedelta(milliseconds=int(ms))).astimezone(LONDON)
    return f"{local:%Y-%m-%d}", f"{local:%H:%M}", OCCURRENCES[local.fold]
