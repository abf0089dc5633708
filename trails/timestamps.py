"""RFC 3339 timestamps as the contract defines them, to and from epoch milliseconds.

The scalar functions here serve SUBJECTS.json, `--as-of` and tests; rows are
parsed by the vectorised twin in `trails.validate` (same grammar).
CONTRACT.md, "Time": ``YYYY-MM-DD`` then ``T``/``t``/space then ``HH:MM:SS``,
optional ``.`` and 1-9 digits, then ``Z``/``z``/``+HH:MM``/``-HH:MM``; surrounding
whitespace (space, tab, CR, LF) ignored; finer precision floored to the ms.
A string of that form whose instant in UTC lies outside `MIN_MS` .. `MAX_MS`
(``0001-01-01T00:00:00.000Z`` .. ``9999-12-31T23:59:59.999Z``) is not a
timestamp: every accepted instant can be written back as
``YYYY-MM-DDTHH:MM:SS.mmmZ`` (``9999-12-31T23:59:59-23:59`` is year 10000 in UTC).
A naive string has no instant, so the range does not apply to it.
"""
from __future__ import annotations

import calendar
import re

__all__ = [
    "TIMESTAMP_PATTERN",
    "WHITESPACE",
    "MIN_MS",
    "MAX_MS",
    "NaiveTimestampError",
    "TimestampRangeError",
    "parse_timestamp",
    "format_ms",
    "days_in_month",
]

WHITESPACE = " \t\r\n"
#: The contract's grammar; group 8 (the offset) absent means a naive timestamp.
TIMESTAMP_PATTERN = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)
_RE = re.compile(TIMESTAMP_PATTERN)
#: First and last instants that are timestamps (CONTRACT.md, "Time"):
#: 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z as epoch ms.
MIN_MS: int = -62_135_596_800_000
MAX_MS: int = 253_402_300_799_999


class NaiveTimestampError(ValueError):
    """A well-formed timestamp without a UTC offset: never guessed at."""


class TimestampRangeError(ValueError):
    """A well-formed timestamp whose instant in UTC lies outside `MIN_MS` .. `MAX_MS`."""


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1] if year >= 1 else (29 if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else calendar.monthrange(2001, month)[1])


def parse_timestamp(text: str) -> int:
    """Parse one contract timestamp to epoch milliseconds (floored).

    Raises
    ------
    NaiveTimestampError
        Well-formed, valid, but without an offset.
    TimestampRangeError
        Well-formed and valid, but its instant lies outside `MIN_MS` ..
        `MAX_MS` (``0001-01-01T00:30:00+01:00`` is year 0 in UTC).
    ValueError
        Anything else that is not a timestamp (including impossible dates
        and times such as ``2024-02-30`` or ``23:59:60``).
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    m = _RE.match(text.strip(WHITESPACE))
    if not m:
        raise ValueError(f"not a timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac, offset = m.group(7), m.group(8)
    if not (1 <= month <= 12 and 1 <= day <= days_in_month(year, month)):
        raise ValueError(f"not a timestamp (impossible date): {text!r}")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a timestamp (impossible time): {text!r}")
    off_min = 0
    if offset is not None and offset not in ("Z", "z"):
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"not a timestamp (bad offset): {text!r}")
        off_min = (oh * 60 + om) * (1 if offset[0] == "+" else -1)
    days = _days_from_civil(year, month, day)
    ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000
    if frac:
        ms += int((frac + "00")[:3])
    ms -= off_min * 60_000
    if offset is None:
        raise NaiveTimestampError(f"timestamp has no UTC offset: {text!r}")
    if not MIN_MS <= ms <= MAX_MS:
        raise TimestampRangeError(f"not a timestamp (its instant in UTC lies outside "
                                  f"0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z): {text!r}")
    return ms


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def format_ms_array(ms) -> list[str]:
    """`format_ms` of many instants at once (NumPy's datetime64 formatting; same strings)."""
    import numpy as np

    a = np.asarray(ms, dtype=np.int64)
    if a.size == 0:
        return []
    text = np.datetime_as_string(a.astype("datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


def _civil_from_days(z: int) -> tuple[int, int, int]:
    """Inverse of `_days_from_civil` (H. Hinnant): (year, month, day), any year."""
    z += 719468
    era = z // 146097  # floor division (the C original adjusts for truncation)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return y + (m <= 2), m, d


def format_ms(ms: int) -> str:
    """Epoch ms -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the contract's output form; years
    0000..9999 with four digits, as NumPy's datetime64 writes them)."""
    days, rest = divmod(int(ms), 86_400_000)
    y, m, d = _civil_from_days(days)
    sec, milli = divmod(rest, 1000)
    hh, rem = divmod(sec, 3600)
    mm, ss = divmod(rem, 60)
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{milli:03d}Z"
