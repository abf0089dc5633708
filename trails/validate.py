"""Vectorised row validation: timestamps, numbers and quarantine reasons 1-7.

Every function here works on whole Arrow/NumPy columns; there is no Python loop
per row. The rules are CONTRACT.md, "Time" and "Inputs" (Files, Fixes, Events,
Quarantine):

- *Whitespace* is space, tab, CR and LF; fields are trimmed of it; a field that
  is then empty (CSV) or null (Parquet) is *missing*.
- A *number* is the ASCII literal ``[+-]?(digits(.digits)?|.digits)([eE][+-]?digits)?``;
  ``nan``/``inf`` (and Parquet NaN/infinity) are present but not numbers. A
  literal with a huge exponent is a number that is not finite (``1e999``).
- A *timestamp* follows `trails.timestamps.TIMESTAMP_PATTERN` exactly (the scalar
  `trails.timestamps.parse_timestamp` is the reference; tests compare the two).
  The vectorised parser reads the trimmed strings as a fixed-width byte matrix
  (no regex): each character position is checked against the grammar, fields are
  decoded from digit bytes, dates are checked (leap years, proleptic Gregorian),
  and epoch ms is computed with the days-from-civil algorithm.
- A *device id* (after trimming) is bad when it is longer than `MAX_ID_CHARS`
  code points or holds a character of Unicode general category Cc, Cf or Cs
  (`device_ids`; the scalar twin `id_problem` serves SUBJECTS.json and
  ZONES.geojson). Almost every id is short printable ASCII: a byte below 0x20
  or 0x7F is a control character, and only bytes >= 0x80 are decoded
  (vectorised UTF-8 decoding); the category of each *distinct* code point met
  is looked up in Python's `unicodedata`, the same table the scalar twin uses. A Parquet string that is
  not valid UTF-8 (Arrow does not check) is a bad device id too: a surrogate
  written in it is Cs, and other invalid bytes are not characters at all.
- A *dictionary-encoded* column (Parquet string columns written with a
  dictionary are read that way, `trails.readers`) is judged on its dictionary
  and the verdicts are gathered per row: a row is never decoded unless it is
  kept, so a 1 MiB device id repeated over 100,000 rows costs one 1 MiB value.
- The reason given for a row is the first applicable one in `REASONS` order.

Reasons 8-10 (``after_as_of``, ``unassigned``, ``duplicate``) are decided later by
detection and ingest; rows that pass 1-6 (fixes) or 1, 2, 3, 7 (events) are kept.
"""
from __future__ import annotations

import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.errors import InputError
from trails.quarantine import OK, REASON_CODE, Rejected
from trails.timestamps import DAY_MS, MAX_MS, MIN_MS, WHITESPACE

__all__ = [
    "NUMBER_PATTERN",
    "KNOWN_EVENTS",
    "MAX_ID_CHARS",
    "Fixes",
    "Events",
    "trim",
    "parse_numbers",
    "parse_timestamps",
    "timestamps_to_ms",
    "text_column",
    "id_problem",
    "device_ids",
    "validate_fixes",
    "validate_events",
]

NUMBER_PATTERN = r"^[+-]?([0-9]+(\.[0-9]+)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
KNOWN_EVENTS: tuple[str, ...] = ("strap_tamper",)

#: Longest id (device, subject, zone), in Unicode code points (CONTRACT.md).
MAX_ID_CHARS = 128
#: General categories an id must not hold: control, format, surrogate.
_BAD_ID_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})

_MISSING_DEVICE = REASON_CODE["missing_device"]
_BAD_DEVICE = REASON_CODE["bad_device"]
_BAD_TIMESTAMP = REASON_CODE["bad_timestamp"]
_NAIVE_TIMESTAMP = REASON_CODE["naive_timestamp"]
_BAD_COORDINATES = REASON_CODE["bad_coordinates"]
_BAD_ACCURACY = REASON_CODE["bad_accuracy"]
_BAD_BATTERY = REASON_CODE["bad_battery"]
_UNKNOWN_EVENT = REASON_CODE["unknown_event"]

_EMPTY_STR = pa.array([], pa.string())


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------- #
# Row containers
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Fixes:
    """Fix rows that passed reasons 1-6, in file order.

    row: int64 1-based record number in the source; device_id: Arrow string
    array (trimmed); ts_ms: int64 epoch ms UTC (floored); lat/lon: float64
    degrees; accuracy_m: float64, NaN = not given; battery_pct: float64, NaN =
    unknown. Arrays are read-only.
    """

    row: np.ndarray
    device_id: pa.Array
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray
    battery_pct: np.ndarray

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @staticmethod
    def empty() -> "Fixes":
        z = np.zeros(0)
        return Fixes(
            _ro(np.zeros(0, np.int64)), _EMPTY_STR, _ro(np.zeros(0, np.int64)),
            _ro(z.copy()), _ro(z.copy()), _ro(z.copy()), _ro(z.copy()),
        )

    @staticmethod
    def concat(parts: "list[Fixes]") -> "Fixes":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Fixes.empty()
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: _ro(np.concatenate([getattr(p, name) for p in parts]))  # noqa: E731
        return Fixes(
            row=cat("row"),
            device_id=pa.concat_arrays([p.device_id for p in parts]),
            ts_ms=cat("ts_ms"),
            lat=cat("lat"),
            lon=cat("lon"),
            accuracy_m=cat("accuracy_m"),
            battery_pct=cat("battery_pct"),
        )

    def take(self, idx: np.ndarray) -> "Fixes":
        """A new `Fixes` with rows `idx` (integer indices or boolean mask)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Fixes(
            row=_ro(self.row[idx]),
            device_id=self.device_id.take(pa.array(idx, pa.int64())),
            ts_ms=_ro(self.ts_ms[idx]),
            lat=_ro(self.lat[idx]),
            lon=_ro(self.lon[idx]),
            accuracy_m=_ro(self.accuracy_m[idx]),
            battery_pct=_ro(self.battery_pct[idx]),
        )


@dataclass(frozen=True)
class Events:
    """Event rows that passed reasons 1, 2, 3 and 7, in file order."""

    row: np.ndarray
    device_id: pa.Array
    ts_ms: np.ndarray
    event: pa.Array

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @staticmethod
    def empty() -> "Events":
        return Events(_ro(np.zeros(0, np.int64)), _EMPTY_STR, _ro(np.zeros(0, np.int64)), _EMPTY_STR)

    @staticmethod
    def concat(parts: "list[Events]") -> "Events":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Events.empty()
        if len(parts) == 1:
            return parts[0]
        return Events(
            row=_ro(np.concatenate([p.row for p in parts])),
            device_id=pa.concat_arrays([p.device_id for p in parts]),
            ts_ms=_ro(np.concatenate([p.ts_ms for p in parts])),
            event=pa.concat_arrays([p.event for p in parts]),
        )

    def take(self, idx: np.ndarray) -> "Events":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        ia = pa.array(idx, pa.int64())
        return Events(
            row=_ro(self.row[idx]), device_id=self.device_id.take(ia),
            ts_ms=_ro(self.ts_ms[idx]), event=self.event.take(ia),
        )


# --------------------------------------------------------------------------- #
# Column helpers
# --------------------------------------------------------------------------- #
def _column(values) -> pa.Array:
    """One Arrow array (chunks combined; large strings as strings); a dictionary stays encoded."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif not isinstance(values, pa.Array):
        values = pa.array(values)
    if pa.types.is_dictionary(values.type):
        dictionary = values.dictionary
        if pa.types.is_large_string(dictionary.type) or pa.types.is_string_view(dictionary.type):
            values = pa.DictionaryArray.from_arrays(values.indices, dictionary.cast(pa.string()))
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def _array(values) -> pa.Array:
    """`_column`, with a dictionary decoded (for columns whose every row is needed anyway)."""
    values = _column(values)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


def _dictionary_rows(arr: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 dictionary index of each row, 0 where null; valid mask): to gather per-value verdicts."""
    idx = arr.indices
    valid = idx.is_valid().to_numpy(zero_copy_only=False) if idx.null_count else np.ones(len(idx), bool)
    idx = pc.fill_null(idx, 0) if idx.null_count else idx
    return idx.to_numpy(zero_copy_only=False).astype(np.int64), valid


def trim(values) -> pa.Array:
    """Strings with surrounding space/tab/CR/LF removed (nulls stay null).

    Returns the input itself when no byte is <= 0x20 (no whitespace at all).
    """
    arr = _array(values)
    if pa.types.is_string(arr.type) and len(arr):
        bufs = arr.buffers()
        if bufs[2] is not None:
            offsets = np.frombuffer(bufs[1], np.int32, len(arr) + 1, arr.offset * 4)
            data = np.frombuffer(bufs[2], np.uint8)[offsets[0]:offsets[-1]]
            if not (data <= 32).any():
                return arr
        else:
            return arr  # no character data: nothing to trim
    return pc.utf8_trim(arr, characters=WHITESPACE)


def _missing(trimmed: pa.Array) -> np.ndarray:
    """True where a trimmed string field is null or empty."""
    n = len(trimmed)
    lengths = pc.binary_length(trimmed)
    if trimmed.null_count:
        lengths = pc.fill_null(lengths, 0)
    return lengths.to_numpy(zero_copy_only=False) == 0 if n else np.zeros(0, bool)


def text_column(values, *, what: str) -> pa.Array:
    """A string or integer column as trimmed text (integers as decimal text).

    Raises `InputError` naming `what` for any other type (CONTRACT.md, "Files").
    """
    arr = _array(values)
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if not pa.types.is_string(arr.type):
        raise InputError(f"{what}: column type {arr.type} is not a string or integer column")
    return trim(arr)


# --------------------------------------------------------------------------- #
# Ids
# --------------------------------------------------------------------------- #
def _char_label(ch: str) -> str:
    """``U+200B (ZERO WIDTH SPACE)``; controls and surrogates have no name."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else f" (category {unicodedata.category(ch)})")


def id_problem(text: str) -> str | None:
    """What makes `text` unusable as an id, or None (the scalar twin of `device_ids`).

    CONTRACT.md ("Quarantine" 1, "Subjects", "Zones"): an id is at most
    `MAX_ID_CHARS` characters (Unicode code points) and holds no character of
    general category Cc, Cf or Cs. Emptiness is the caller's rule.

    Examples: ``"D-001"`` -> None; ``"D\\u200b1"`` -> ``"holds U+200B (ZERO WIDTH
    SPACE) at character 2: control, format and surrogate characters are not
    allowed"``; ``"D" * 129`` -> ``"is 129 characters long (at most 128)"``.
    """
    if len(text) > MAX_ID_CHARS:
        return f"is {len(text)} characters long (at most {MAX_ID_CHARS})"
    if text.isascii() and text.isprintable():  # only 0x20..0x7E: the usual id, checked in C
        return None
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _BAD_ID_CATEGORIES:
            return (f"holds {_char_label(ch)} at character {i + 1}: control, format and surrogate "
                    f"characters are not allowed")
    return None


def _string_bytes(t: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets rebased to 0, uint8 character data: a zero-copy view) of a string array."""
    n = len(t)
    offsets = np.frombuffer(t.buffers()[1], np.int32, n + 1, t.offset * 4).astype(np.int64)
    data = t.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    raw = np.frombuffer(data, np.uint8)[start:end] if data is not None else np.zeros(0, np.uint8)
    return offsets - start, raw


def _rows_of(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Row of each byte position (`offsets` rebased to 0)."""
    return np.searchsorted(offsets[1:], positions, side="right")


def _scan_non_ascii(offsets: np.ndarray, data: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 of the bytes >= 0x80 at positions `high` (sorted): (continuation bytes per
    row, True where a row is not valid UTF-8 or holds a Cc/Cf/Cs character).

    Only the non-ASCII bytes are looked at: a sequence's lead (0xC2..0xF4) must be
    followed, inside its row, by exactly the continuation bytes (0x80..0xBF) it
    announces, and every continuation byte must belong to one lead; overlong
    forms and code points past U+10FFFF are invalid. The general category of
    each *distinct* code point met is looked up once (Python's `unicodedata`,
    as `id_problem` does; surrogates written in a Parquet string are Cs).
    """
    n_rows = len(offsets) - 1
    b = data[high]
    row = _rows_of(offsets, high)
    is_cont = (b & 0xC0) == 0x80
    lead = np.flatnonzero(~is_cont)
    lb = b[lead].astype(np.uint32)
    pos = high[lead]
    need = np.select([(lb >= 0xC2) & (lb < 0xE0), (lb >= 0xE0) & (lb < 0xF0), (lb >= 0xF0) & (lb < 0xF5)],
                     [2, 3, 4], 0)
    hp = np.concatenate([high, np.full(3, -1, high.dtype)])
    bp = np.concatenate([b, np.zeros(3, np.uint8)]).astype(np.uint32)
    ok = (need > 0) & (pos + need <= offsets[1:][row[lead]])
    for k in (1, 2, 3):  # byte k of a sequence: the next position, a continuation byte
        ok &= (need <= k) | ((hp[lead + k] == pos + k) & ((bp[lead + k] & 0xC0) == 0x80))
    c1, c2, c3 = (bp[lead + k] & 0x3F for k in (1, 2, 3))
    cp = np.select([need == 2, need == 3, need == 4], [
        ((lb & 0x1F) << 6) | c1,
        ((lb & 0x0F) << 12) | (c1 << 6) | c2,
        ((lb & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3,
    ], 0)
    ok &= ~((need == 3) & (cp < 0x800)) & ~((need == 4) & ((cp < 0x10000) | (cp > 0x10FFFF)))
    cp = np.where(ok, cp, 0)
    met = np.zeros(0x110000, bool)
    met[cp[ok]] = True
    banned = np.zeros(0x110000, bool)
    distinct = np.flatnonzero(met)
    banned[distinct[[unicodedata.category(chr(int(c))) in _BAD_ID_CATEGORIES for c in distinct]]] = True
    flawed = ~ok | banned[cp]
    lead_row = row[lead]
    n_cont = np.bincount(row[is_cont], minlength=n_rows)
    claimed = np.bincount(lead_row, weights=np.where(ok, need - 1, 0), minlength=n_rows)
    bad = (np.bincount(lead_row, weights=flawed, minlength=n_rows) > 0) | (n_cont != claimed)
    return n_cont, bad


def _bad_ids(t: pa.Array) -> np.ndarray:
    """True where a (trimmed) string breaks the id rule; see `id_problem`.

    Vectorised over the character bytes: a byte < 0x20 or 0x7F is a control
    character (Cc); only bytes >= 0x80 are decoded (`_scan_non_ascii`); the
    length in code points is the byte length less the continuation bytes.
    """
    n = len(t)
    if n == 0 or t.null_count == n:
        return np.zeros(n, bool)
    offsets, data = _string_bytes(t)
    n_chars = np.diff(offsets)
    bad = np.zeros(n, bool)
    control = np.flatnonzero((data < 0x20) | (data == 0x7F))
    if control.size:
        bad[_rows_of(offsets, control)] = True
    high = np.flatnonzero(data >= 0x80)
    if high.size:
        n_cont, flawed = _scan_non_ascii(offsets, data, high)
        n_chars = n_chars - n_cont
        bad |= flawed
    bad |= n_chars > MAX_ID_CHARS
    if t.null_count:
        bad &= t.is_valid().to_numpy(zero_copy_only=False)
    return bad


def device_ids(values, *, what: str) -> tuple[pa.Array, np.ndarray]:
    """A device_id column -> (trimmed ids as strings, int8 code per row).

    The code is `OK`, ``missing_device`` (null, or empty after trimming) or
    ``bad_device`` (`id_problem`: longer than `MAX_ID_CHARS` code points, a
    Cc/Cf/Cs character, or not UTF-8). A dictionary column is judged on its
    dictionary; rows whose value is bad come back as empty strings, so an
    over-long value is never decoded once per row. Raises `InputError` naming
    `what` for a column that is not string or integer (CONTRACT.md, "Files").
    """
    arr = _column(values)
    if pa.types.is_dictionary(arr.type):
        text_d, code_d = device_ids(arr.dictionary, what=what)
        idx, valid = _dictionary_rows(arr)
        code = np.where(valid, code_d[idx], _MISSING_DEVICE).astype(np.int8)
        safe = pc.if_else(pa.array(code_d == OK), text_d, "") if (code_d != OK).any() else text_d
        return safe.take(arr.indices), code
    text = text_column(arr, what=what)
    missing = _missing(text)
    code = np.where(missing, _MISSING_DEVICE, np.where(_bad_ids(text), _BAD_DEVICE, OK)).astype(np.int8)
    return text, code


def _event_kinds(values, *, what: str) -> tuple[pa.Array, np.ndarray]:
    """An event column -> (trimmed kinds, True where the kind is in `KNOWN_EVENTS`).

    A dictionary column is judged on its dictionary; unknown kinds come back
    empty (they are quarantined, never read again).
    """
    arr = _column(values)
    if pa.types.is_dictionary(arr.type):
        text_d, known_d = _event_kinds(arr.dictionary, what=what)
        idx, valid = _dictionary_rows(arr)
        return pc.if_else(pa.array(known_d), text_d, "").take(arr.indices), valid & known_d[idx]
    text = text_column(arr, what=what)
    known = pc.is_in(text, value_set=pa.array(KNOWN_EVENTS, pa.string()))
    return text, (pc.fill_null(known, False).to_numpy(zero_copy_only=False) if len(text) else np.zeros(0, bool))


def parse_numbers(values, *, what: str = "column") -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of contract numbers.

    Parameters
    ----------
    values : Arrow string column (CSV rule, after trimming) or a float/integer
        column (Parquet: NaN and infinities are present but not numbers).

    Returns
    -------
    value : float64 array, NaN wherever the field is missing or not a number
        (a number may still be infinite, e.g. ``1e999``).
    status : int8 array: 0 missing, 1 present but not a number, 2 number.

    Examples: ``" 1.5 "`` -> 1.5 (number); ``".5"`` and ``"+7"`` are numbers;
    ``"1."``, ``"nan"``, ``"inf"``, ``"0x1"`` are not; ``""`` is missing.
    A dictionary column is parsed on its dictionary (nulls are missing).
    """
    arr = _column(values)
    if pa.types.is_dictionary(arr.type):
        value_d, status_d = parse_numbers(arr.dictionary, what=what)
        idx, valid = _dictionary_rows(arr)
        return np.where(valid, value_d[idx], np.nan), np.where(valid, status_d[idx], 0).astype(np.int8)
    n = len(arr)
    if pa.types.is_null(arr.type):
        return np.full(n, np.nan), np.zeros(n, np.int8)
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type):
        value = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        if arr.null_count:
            present = arr.is_valid().to_numpy(zero_copy_only=False)
        else:
            present = np.ones(n, bool)
        if pa.types.is_floating(arr.type):
            is_num = present & np.isfinite(value)
        else:
            is_num = present
        status = present.astype(np.int8) + is_num.astype(np.int8)
        value = np.where(is_num, value, np.nan)
        return value, status
    if not pa.types.is_string(arr.type):
        raise InputError(f"{what}: column type {arr.type} is not a number or string column")
    t = trim(arr)
    missing = _missing(t)
    fast = _numbers_fast(t, missing)
    if fast is not None:
        value, is_num = fast
    else:
        match = pc.match_substring_regex(t, NUMBER_PATTERN)
        if t.null_count:
            match = pc.fill_null(match, False)
        is_num = match.to_numpy(zero_copy_only=False)
        value = pc.if_else(match, t, "nan").cast(pa.float64()).to_numpy(zero_copy_only=False)
        value = np.where(is_num, value, np.nan)
    status = np.where(missing, 0, np.where(is_num, 2, 1)).astype(np.int8)
    return np.asarray(value, np.float64), status


def _numbers_fast(t: pa.Array, missing: np.ndarray):
    """Fast exact path for a column whose every present field is a number, else None.

    Arrow's string -> float64 cast accepts every contract number (and parses it
    to the correctly rounded double), plus only ``nan``/``inf`` spellings and
    literals with a dot not followed by a digit (``1.``, ``1.e5``);
    `tests/test_validate.py` fuzzes this against `NUMBER_PATTERN`. So if the
    cast succeeds and no byte of the column is ``n``/``N``, no ``.`` precedes
    ``e``/``E`` and no field ends in ``.``, every present field is a number.
    Otherwise the caller takes the regex path.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool)
    data = t.buffers()[2]
    offsets = np.frombuffer(t.buffers()[1], np.int32, n + 1, t.offset * 4)
    if data is None:
        return None
    buf = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]]
    if buf.size:
        low = buf | np.uint8(0x20)
        if (low == 110).any():  # 'n' / 'N'
            return None
        if ((buf[:-1] == 46) & (low[1:] == 101)).any():  # '.e' / '.E'
            return None
        ends = offsets[1:][~missing] - 1
        if ends.size and (buf[ends - offsets[0]] == 46).any():  # trailing '.'
            return None
    src = t
    if missing.any():
        src = pc.if_else(pa.array(missing), "0", t)
    try:
        value = src.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    is_num = ~missing
    if missing.any():
        value = np.where(is_num, value, np.nan)
    return value, is_num


# --------------------------------------------------------------------------- #
# Timestamps
# --------------------------------------------------------------------------- #
_MAX_TS_LEN = 35  # 19 + ".123456789" + "+HH:MM"
_MIN_TS_LEN = 19
_DIM = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Vectorised twin of `trails.timestamps._days_from_civil` (H. Hinnant)."""
    y = y - (m <= 2)
    era = np.where(y >= 0, y, y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_CUM_DAYS = np.array([
    np.concatenate([[0, 0], np.cumsum(_DIM[1:12])]),
    np.concatenate([[0, 0], np.cumsum(_DIM[1:12] + (np.arange(1, 12) == 2))]),
], np.int64)  # [leap, month] -> days before the month


_CUM_DAYS_FLAT = _CUM_DAYS.reshape(-1)


@lru_cache(maxsize=1)
def _year_start_days() -> np.ndarray:
    """Days from 1970-01-01 to 1 January of years 0..9999 (lookup table)."""
    y = np.arange(10000, dtype=np.int64)
    return _days_from_civil(y, np.ones_like(y), np.ones_like(y))


def _byte_matrix(t: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trimmed strings -> (uint8 matrix n x W, byte lengths, usable mask).

    Rows that cannot be timestamps (null, non-ASCII, too short or long) are
    blanked and marked unusable. Uses a zero-copy view when every row already
    has the same length.
    """
    n = len(t)
    lengths = pc.binary_length(t)
    if t.null_count:
        lengths = pc.fill_null(lengths, 0)
    lens = lengths.to_numpy(zero_copy_only=False).astype(np.int64)
    usable = (lens >= _MIN_TS_LEN) & (lens <= _MAX_TS_LEN)
    if n and usable.all() and t.null_count == 0 and (lens == lens[0]).all():
        width = int(lens[0])
        offsets = np.frombuffer(t.buffers()[1], np.int32, n + 1, t.offset * 4)
        start = int(offsets[0])
        data = np.frombuffer(t.buffers()[2], np.uint8, n * width, start)
        return data.reshape(n, width), lens, usable
    # general path: blank unusable rows, pad the rest to one width
    ascii_ok = pc.string_is_ascii(t)
    if t.null_count:
        ascii_ok = pc.fill_null(ascii_ok, False)
    usable &= ascii_ok.to_numpy(zero_copy_only=False)
    width = int(lens[usable].max()) if usable.any() else _MIN_TS_LEN
    blanked = pc.if_else(pa.array(usable), t, "")
    padded = pc.utf8_rpad(blanked, width=width, padding=" ")
    offsets = np.frombuffer(padded.buffers()[1], np.int32, n + 1, padded.offset * 4)
    start = int(offsets[0])
    data = np.frombuffer(padded.buffers()[2], np.uint8, n * width, start)
    return data.reshape(n, width), np.where(usable, lens, 0), usable


def parse_timestamps(values) -> tuple[np.ndarray, np.ndarray]:
    """Parse contract timestamps (strings) to epoch ms, vectorised.

    Parameters
    ----------
    values : Arrow string column (nulls allowed: missing).

    Returns
    -------
    ts_ms : int64 epoch milliseconds UTC, floored (0 where not valid).
    code : int8: `OK`, ``bad_timestamp`` (missing, malformed or impossible)
        or ``naive_timestamp`` (valid but without a UTC offset).

    Same grammar, range and results as `trails.timestamps.parse_timestamp`
    (CONTRACT.md, "Time"): ``2024-06-01 10:00:00.5z`` is valid;
    ``2024-02-30T00:00:00Z``, ``24:00:00``, ``23:59:60``, ``+24:00`` and
    ``9999-12-31T23:59:59-23:59`` (year 10000 in UTC) are not.
    """
    t = trim(values)
    n = len(t)
    if n <= _TS_CHUNK:
        return _parse_ts_chunk(t)
    # cache-sized slices: every intermediate of a slice stays in L2
    ts = np.empty(n, np.int64)
    code = np.empty(n, np.int8)
    for a in range(0, n, _TS_CHUNK):
        ts[a:a + _TS_CHUNK], code[a:a + _TS_CHUNK] = _parse_ts_chunk(t.slice(a, _TS_CHUNK))
    return ts, code


_TS_CHUNK = 1 << 15


class _CharColumns:
    """Trimmed timestamp strings read by character position: ``T[j]`` is byte j of every row
    (contiguous, so each check is one vector operation), ``at(back)`` the byte `back` from each
    row's end (rows may differ in length: the zone suffix sits at the end)."""

    def __init__(self, M: np.ndarray, L: np.ndarray) -> None:
        self.W = M.shape[1]
        self.L = L
        self.T = np.ascontiguousarray(M.T)  # W x n: each character position contiguous
        self.uniform = bool((L == L[0]).all())
        self._flat = M.reshape(-1) if not self.uniform else None
        self._base = np.arange(M.shape[0], dtype=np.int64) * self.W if not self.uniform else None

    def at(self, back: int) -> np.ndarray:
        """Byte at position L - back of each row (L varies per row)."""
        if self.uniform:
            return self.T[max(int(self.L[0]) - back, 0)]
        return self._flat[self._base + np.maximum(self.L - back, 0)]

    def num(self, *cols: int) -> np.ndarray:
        """The decimal number in character positions `cols` (digits checked elsewhere)."""
        T = self.T
        v = T[cols[0]].astype(np.int32) - 48
        for j in cols[1:]:
            v = v * 10 + T[j] - 48
        return v


def _isdig(b: np.ndarray) -> np.ndarray:
    return (b - np.uint8(48)) < 10


def _fixed_part_ok(c: _CharColumns) -> np.ndarray:
    """Rows whose first 19 characters are ``YYYY-MM-DD?hh:mm:ss`` (? = T, t or space)."""
    T = c.T
    good = _isdig(T[0])
    for j in (1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        good &= _isdig(T[j])
    good &= (T[4] == 45) & (T[7] == 45) & (T[13] == 58) & (T[16] == 58)
    sep = T[10]
    good &= (sep == 84) | (sep == 116) | (sep == 32)
    return good


def _suffix(c: _CharColumns, good: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The fraction and zone after the seconds: (Z, offset, fraction digits, offset minutes
    (None if no row has an offset)); rows whose suffix is malformed are cleared in `good`."""
    T, L, W = c.T, c.L, c.W
    last = c.at(1)
    has_z = (last == 90) | (last == 122)
    off_sign = c.at(6)
    has_off = (~has_z) & (L >= 25) & ((off_sign == 43) | (off_sign == 45))
    suffix = np.where(has_z, 1, np.where(has_off, 6, 0))
    mid = L - 19 - suffix  # '.' + fraction digits, or nothing
    good &= (mid == 0) | ((mid >= 2) & (mid <= 10))
    nfrac = np.maximum(mid - 1, 0)
    if W > 19:
        good &= (mid == 0) | (T[19] == 46)
        for k in range(min(9, W - 20)):
            good &= (k >= nfrac) | _isdig(T[20 + k])
    if not has_off.any():
        return has_z, has_off, nfrac, None
    o1, o2, oc, o4, o5 = c.at(5), c.at(4), c.at(3), c.at(2), c.at(1)
    off_ok = _isdig(o1) & _isdig(o2) & (oc == 58) & _isdig(o4) & _isdig(o5)
    oh = (o1.astype(np.int64) - 48) * 10 + (o2.astype(np.int64) - 48)
    om = (o4.astype(np.int64) - 48) * 10 + (o5.astype(np.int64) - 48)
    off_ok &= (oh <= 23) & (om <= 59)
    good &= ~has_off | off_ok
    return has_z, has_off, nfrac, np.where(has_off, (oh * 60 + om) * np.where(off_sign == 45, -1, 1), 0)


def _instant_ms(c: _CharColumns, nfrac: np.ndarray, off_min: np.ndarray | None, good: np.ndarray) -> np.ndarray:
    """Epoch ms of each row's date, time, fraction (to the millisecond) and offset; rows with an
    impossible date or time are cleared in `good`."""
    T, W = c.T, c.W
    year, month, day = c.num(0, 1, 2, 3), c.num(5, 6), c.num(8, 9)
    hour, minute, second = c.num(11, 12), c.num(14, 15), c.num(17, 18)
    mon_ok = (month >= 1) & (month <= 12)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    dim = _DIM[np.where(mon_ok, month, 0)] + ((month == 2) & leap)
    good &= mon_ok & (day >= 1) & (day <= dim)
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)

    y_idx = np.clip(year, 0, 9999)
    days = _year_start_days()[y_idx] + _CUM_DAYS_FLAT[leap * 13 + np.where(mon_ok, month, 1)] + (day - 1)
    ms_of_day = ((hour * 60 + minute) * 60 + second) * 1000  # int32: < DAY_MS < 2**31
    if W > 20:
        for k, scale in ((0, 100), (1, 10), (2, 1)):
            if 20 + k < W:
                ms_of_day += np.where(k < nfrac, T[20 + k].astype(np.int32) - 48, 0) * scale
    ms = days * DAY_MS + ms_of_day  # int64, as `days` is
    if off_min is not None:
        ms -= off_min * 60_000
    return ms


def _parse_ts_chunk(t: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """`parse_timestamps` on trimmed strings (one slice)."""
    n = len(t)
    code = np.full(n, _BAD_TIMESTAMP, np.int8)
    ts = np.zeros(n, np.int64)
    if n == 0:
        return ts, code
    M, L, ok = _byte_matrix(t)
    if not ok.any():
        return ts, code
    if not ok.all():
        idx = np.flatnonzero(ok)
        M, L = M[idx], L[idx]
    else:
        idx = None
    c = _CharColumns(M, L)
    good = _fixed_part_ok(c)
    has_z, has_off, nfrac, off_min = _suffix(c, good)
    ms = _instant_ms(c, nfrac, off_min, good)

    aware = has_z | has_off
    good &= ~aware | ((ms >= MIN_MS) & (ms <= MAX_MS))  # a naive string has no instant to bound
    sub_code = np.where(good, np.where(aware, OK, _NAIVE_TIMESTAMP), _BAD_TIMESTAMP).astype(np.int8)
    sub_ts = np.where(sub_code == OK, ms, 0)
    if idx is None:
        return sub_ts, sub_code
    code[idx] = sub_code
    ts[idx] = sub_ts
    return ts, code


def timestamps_to_ms(values, *, what: str = "ts") -> tuple[np.ndarray, np.ndarray]:
    """A ``ts`` column of any accepted type -> (int64 epoch ms, int8 code).

    String columns follow the CSV rule (`parse_timestamps`; a dictionary column
    is parsed on its dictionary). A timestamp column with a time zone is
    floored to ms whatever its unit, and a value outside `MIN_MS` .. `MAX_MS`
    is ``bad_timestamp`` (CONTRACT.md, "Time"); without a time zone every
    non-null row is ``naive_timestamp``; null is missing (``bad_timestamp``).
    Raises `InputError` naming `what` for any other type.
    """
    arr = _column(values)
    n = len(arr)
    if pa.types.is_dictionary(arr.type):
        ts_d, code_d = timestamps_to_ms(arr.dictionary, what=what)
        idx, valid = _dictionary_rows(arr)
        code = np.where(valid, code_d[idx], _BAD_TIMESTAMP).astype(np.int8)
        return np.where(code == OK, ts_d[idx], 0), code
    if pa.types.is_string(arr.type):
        return parse_timestamps(arr)
    if pa.types.is_null(arr.type):
        return np.zeros(n, np.int64), np.full(n, _BAD_TIMESTAMP, np.int8)
    if not pa.types.is_timestamp(arr.type):
        raise InputError(f"{what}: column type {arr.type} is not a timestamp or string column")
    raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if arr.type.unit == "s":  # bound before scaling: raw * 1000 may overflow int64
        in_range = (raw >= -(-MIN_MS // 1000)) & (raw <= MAX_MS // 1000)
        ts = np.where(in_range, raw, 0) * 1000
    else:
        ts = raw // {"ms": 1, "us": 1000, "ns": 1_000_000}[arr.type.unit]
        in_range = (ts >= MIN_MS) & (ts <= MAX_MS)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, bool)
    if arr.type.tz:
        code = np.where(valid & in_range, OK, _BAD_TIMESTAMP).astype(np.int8)
    else:
        code = np.where(valid, _NAIVE_TIMESTAMP, _BAD_TIMESTAMP).astype(np.int8)
    return np.where(code == OK, ts, 0), code


# --------------------------------------------------------------------------- #
# Row validation
# --------------------------------------------------------------------------- #
def _first_reason(n: int, checks: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Per-row first applicable reason; `checks` are (code, bad-mask) pairs."""
    reason = np.full(n, OK, np.int8)
    for code, bad in sorted(checks, key=lambda c: -c[0]):
        reason[bad] = code
    return reason


_POOL: ThreadPoolExecutor | None = None


def _run_parallel(jobs: dict, *, parallel: bool) -> dict:
    """Run column jobs (Arrow kernels and NumPy release the GIL) on a small pool."""
    global _POOL
    if not parallel or (os.cpu_count() or 1) < 2:
        return {k: f() for k, f in jobs.items()}
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2), thread_name_prefix="tagtrail-validate")
    futures = {k: _POOL.submit(f) for k, f in jobs.items()}
    return {k: f.result() for k, f in futures.items()}


def validate_fixes(table: pa.Table, *, first_row: int = 1, name: str = "fixes") -> tuple[Fixes, Rejected, np.ndarray]:
    """Validate a table of fix columns (reasons 1-6 with ``bad_device``, CONTRACT.md "Quarantine").

    Parameters
    ----------
    table : columns ``device_id``, ``ts``, ``lat``, ``lon`` and optionally
        ``accuracy_m``, ``battery_pct`` (strings from CSV or typed from Parquet).
    first_row : record number of the table's first row (1-based).
    name : file name used in error messages.

    Returns
    -------
    (Fixes kept, Rejected rows, rejected positions in `table` (int64)).
    """
    n = table.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    absent = lambda: (np.full(n, np.nan), np.zeros(n, np.int8))  # noqa: E731
    jobs = {
        "ts": lambda: timestamps_to_ms(table.column("ts"), what=f"{name}: column ts"),
        "lat": lambda: parse_numbers(table.column("lat"), what=f"{name}: column lat"),
        "lon": lambda: parse_numbers(table.column("lon"), what=f"{name}: column lon"),
        "device_id": lambda: device_ids(table.column("device_id"), what=f"{name}: column device_id"),
    }
    for col in ("accuracy_m", "battery_pct"):
        if col in table.column_names:
            jobs[col] = (lambda c: lambda: parse_numbers(table.column(c), what=f"{name}: column {c}"))(col)
    out = _run_parallel(jobs, parallel=n >= 50_000)
    dev, dev_code = out["device_id"]
    ts_ms, ts_code = out["ts"]
    lat, lat_s = out["lat"]
    lon, lon_s = out["lon"]
    acc, acc_s = out.get("accuracy_m") or absent()
    bat, bat_s = out.get("battery_pct") or absent()

    with np.errstate(invalid="ignore"):
        bad_coord = (lat_s != 2) | (lon_s != 2) | ~(np.abs(lat) <= 90.0) | ~(np.abs(lon) <= 180.0)
        bad_acc = (acc_s != 0) & ~((acc_s == 2) & np.isfinite(acc) & (acc >= 0.0))
        bad_bat = (bat_s != 0) & ~((bat_s == 2) & (bat >= 0.0) & (bat <= 100.0))
    reason = _first_reason(n, [
        (_MISSING_DEVICE, dev_code == _MISSING_DEVICE),
        (_BAD_DEVICE, dev_code == _BAD_DEVICE),
        (_BAD_TIMESTAMP, ts_code == _BAD_TIMESTAMP),
        (_NAIVE_TIMESTAMP, ts_code == _NAIVE_TIMESTAMP),
        (_BAD_COORDINATES, bad_coord),
        (_BAD_ACCURACY, bad_acc),
        (_BAD_BATTERY, bad_bat),
    ])
    keep = reason == OK
    if keep.all():
        fixes = Fixes(_ro(rows), dev, _ro(ts_ms), _ro(lat), _ro(lon), _ro(acc), _ro(bat))
        return fixes, Rejected.empty("fixes"), np.zeros(0, np.int64)
    mask = pa.array(keep)
    fixes = Fixes(
        row=_ro(rows[keep]), device_id=dev.filter(mask), ts_ms=_ro(ts_ms[keep]),
        lat=_ro(lat[keep]), lon=_ro(lon[keep]),
        accuracy_m=_ro(acc[keep]), battery_pct=_ro(bat[keep]),
    )
    bad = np.flatnonzero(~keep)
    return fixes, Rejected("fixes", rows[bad], reason[bad]), bad


def validate_events(table: pa.Table, *, first_row: int = 1, name: str = "events") -> tuple[Events, Rejected, np.ndarray]:
    """Validate a table of event columns (reasons 1, 2, 3, 7); see `validate_fixes`."""
    n = table.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    dev, dev_code = device_ids(table.column("device_id"), what=f"{name}: column device_id")
    ts_ms, ts_code = timestamps_to_ms(table.column("ts"), what=f"{name}: column ts")
    event, known = _event_kinds(table.column("event"), what=f"{name}: column event")
    reason = _first_reason(n, [
        (_MISSING_DEVICE, dev_code == _MISSING_DEVICE),
        (_BAD_DEVICE, dev_code == _BAD_DEVICE),
        (_BAD_TIMESTAMP, ts_code == _BAD_TIMESTAMP),
        (_NAIVE_TIMESTAMP, ts_code == _NAIVE_TIMESTAMP),
        (_UNKNOWN_EVENT, ~known),
    ])
    keep = reason == OK
    mask = pa.array(keep)
    events = Events(
        row=_ro(rows[keep]), device_id=dev.filter(mask), ts_ms=_ro(ts_ms[keep]),
        event=event.filter(mask),
    )
    bad = np.flatnonzero(~keep)
    return events, Rejected("events", rows[bad], reason[bad]), bad
