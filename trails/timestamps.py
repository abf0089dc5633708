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

This module is also the one place for the time constants every package uses
(`DAY_MS`, and the sentinels `POS_INF_MS` / `NEG_INF_MS` that stand for an open
end, e.g. "still worn", and an unbounded start) and the one formatter of epoch
ms as text: `format_ms` (one instant), `format_ms_array` and `format_ms_column`
(many at once, one implementation).
"""
from __future__ import annotations

import calendar
import re

import numpy as np
import pyarrow as pa

__all__ = [
    "TIMESTAMP_PATTERN",
    "WHITESPACE",
    "MIN_MS",
    "MAX_MS",
    "DAY_MS",
    "POS_INF_MS",
    "NEG_INF_MS",
    "NaiveTimestampError",
    "TimestampRangeError",
    "parse_timestamp",
    "parse_day_or_timestamp",
    "format_ms",
    "format_ms_array",
    "format_ms_column",
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
#: Milliseconds in a UTC day (no leap seconds: CONTRACT.md, "Time").
DAY_MS: int = 86_400_000
#: An instant after every timestamp (and far from int64 overflow: sums of two
#: stay in range): an open end, such as an assignment "still worn" or a zone
#: without a schedule; `NEG_INF_MS` is its twin before every timestamp.
POS_INF_MS: int = 2**62
NEG_INF_MS: int = -(2**62)


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


def parse_day_or_timestamp(text: str) -> int:
    """Epoch ms of an RFC 3339 instant, or of midnight UTC for a bare date ``YYYY-MM-DD``.

    Store days and simulated runs are UTC days, so a date given where an
    instant is expected names a day boundary; a date that does not exist
    (``2024-02-30``) raises ValueError like any bad timestamp.
    """
    value = text.strip()
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", value)
    if m is None:
        return parse_timestamp(value)
    y, mo, d = (int(g) for g in m.groups())
    if y < 1:
        raise ValueError(f"year {y:04d} is before 0001")
    if not 1 <= mo <= 12:
        raise ValueError(f"month {mo:02d} does not exist")
    if not 1 <= d <= days_in_month(y, mo):
        raise ValueError(f"day {d:02d} is out of range for {y:04d}-{mo:02d}")
    return _days_from_civil(y, mo, d) * DAY_MS


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
    days, rest = divmod(int(ms), DAY_MS)
    y, m, d = _civil_from_days(days)
    sec, milli = divmod(rest, 1000)
    hh, rem = divmod(sec, 3600)
    mm, ss = divmod(rem, 60)
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{milli:03d}Z"


def _digits(width: int) -> np.ndarray:
    """uint8 (10**width, width): the zero-padded decimal digits of 0 .. 10**width - 1."""
    v = np.arange(10**width)
    return np.stack([(v // 10 ** (width - 1 - k)) % 10 for k in range(width)], axis=1).astype(np.uint8) + ord("0")


_MS3 = _digits(3)
_D2 = _digits(2)
_s = np.arange(86_400)
#: "HH:MM:SS" of every second of a day, as bytes.
_TIME_OF_DAY = np.empty((86_400, 8), np.uint8)
_TIME_OF_DAY[:, 0:2], _TIME_OF_DAY[:, 2], _TIME_OF_DAY[:, 3:5] = _D2[_s // 3600], ord(":"), _D2[(_s // 60) % 60]
_TIME_OF_DAY[:, 5], _TIME_OF_DAY[:, 6:8] = ord(":"), _D2[_s % 60]
del _s
#: Days of 0000-01-01 and 9999-12-31: the years `format_ms_column` writes with four digits.
_FIRST_DAY, _LAST_DAY = _days_from_civil(0, 1, 1), _days_from_civil(9999, 12, 31)


def format_ms_column(ms) -> pa.StringArray:
    """`format_ms` of many instants at once, as an Arrow string column (same strings).

    Vectorised by table lookup into one fixed-width byte buffer (about five
    times faster than ``pyarrow.compute.strftime``): a date is formatted once
    per distinct day, a time of day by indexing a table of the 86,400 seconds.

    Raises
    ------
    ValueError
        An instant outside years 0000 .. 9999 (e.g. a sentinel such as
        `POS_INF_MS`): such a value is never a timestamp to show.

    Examples: ``[0, -1]`` -> ``["1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z"]``.
    """
    ms = np.asarray(ms, dtype=np.int64).reshape(-1)
    n = ms.size
    if n == 0:
        return pa.array([], type=pa.string())
    days = ms // DAY_MS  # floor: instants before 1970 belong to the day they fall in
    d0, d1 = int(days.min()), int(days.max())
    if d0 < _FIRST_DAY or d1 > _LAST_DAY:
        bad = int(ms[(days < _FIRST_DAY) | (days > _LAST_DAY)][0])
        raise ValueError(f"epoch ms {bad} lies outside years 0000 .. 9999: not an instant to format")
    if d1 - d0 <= 4 * n + 1024:  # a table of every day in the span
        table_days, day_idx = np.arange(d0, d1 + 1), days - d0
    else:  # a wide span (few instants years apart): only the days that occur
        table_days, day_idx = np.unique(days, return_inverse=True)
    dates = table_days.astype("datetime64[D]").astype("U10")
    date_bytes = np.frombuffer(dates.astype("S10").tobytes(), np.uint8).reshape(-1, 10)
    rem = (ms - days * DAY_MS).astype(np.int32)
    sec = rem // 1000
    out = np.empty((n, 24), np.uint8)
    out[:, 0:10] = date_bytes[day_idx]
    out[:, 10] = ord("T")
    out[:, 11:19] = _TIME_OF_DAY[sec]
    out[:, 19] = ord(".")
    out[:, 20:23] = _MS3[rem - sec * 1000]
    out[:, 23] = ord("Z")
    offsets = np.arange(0, (n + 1) * 24, 24, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def format_ms_array(ms) -> list[str]:
    """`format_ms` of many instants at once, as a list of str (`format_ms_column`)."""
    return format_ms_column(ms).to_pylist()
