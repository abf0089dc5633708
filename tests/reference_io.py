"""Slow, obvious loaders for tests only: contract example folders -> reference inputs.

Written straight from CONTRACT.md ("Time", "Inputs") with the `csv` module and
`re`; independent of the package's vectorised readers so the two can be compared.
Input files are assumed valid where the contract would exit 2 (this is test
tooling, not the CLI): such cases raise `ValueError`.

`load_case(folder)` returns everything `tests.reference.reference_detect` needs,
plus the quarantine rows for reasons 1-7 (`row_quarantine`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shlex
import unicodedata
from datetime import date

from geofence.model import Assignment, Policy, Window, Zone

WHITESPACE = " \t\r\n"  # contract: "*Whitespace* means space, tab, CR and LF"

# ---------------------------------------------------------------- timestamps

_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


class NotATimestamp(ValueError):
    """'Anything else ... is not a timestamp.'"""


class NaiveTimestamp(ValueError):
    """'A string of this form without the offset is a *naive* timestamp.'"""


# "neither is one whose instant in UTC falls outside 0001-01-01T00:00:00.000Z ..
# 9999-12-31T23:59:59.999Z" (as epoch ms, from datetime.date: independent of trails)
FIRST_MS = (date(1, 1, 1) - date(1970, 1, 1)).days * 86_400_000
LAST_MS = (date(9999, 12, 31) - date(1970, 1, 1)).days * 86_400_000 + 86_400_000 - 1


def in_range(ms: int) -> bool:
    return FIRST_MS <= ms <= LAST_MS


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if _is_leap(y) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _epoch_days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 (proleptic Gregorian). Year 0 is shifted by one
    400-year cycle (146097 days) because `datetime.date` starts at year 1."""
    if y < 1:
        return _epoch_days(y + 400, m, d) - 146097
    return (date(y, m, d) - date(1970, 1, 1)).days


def parse_ts(text: str) -> int:
    """RFC 3339 as the contract defines it -> epoch ms, finer precision floored.

    Raises NaiveTimestamp (well-formed, valid, no offset) or NotATimestamp.
    """
    s = text.strip(WHITESPACE)
    m = _TS_RE.fullmatch(s)
    if m is None:
        raise NotATimestamp(text)
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    frac, off = m.group(7), m.group(8)
    if not (1 <= mo <= 12) or not (1 <= d <= _days_in_month(y, mo)):
        raise NotATimestamp(text)
    if hh > 23 or mi > 59 or ss > 59:
        raise NotATimestamp(text)
    offset_min = 0
    if off is not None and off not in ("Z", "z"):
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:  # "offsets up to 23:59"
            raise NotATimestamp(text)
        offset_min = oh * 60 + om
        if off[0] == "-":
            offset_min = -offset_min
    if off is None:
        raise NaiveTimestamp(text)
    millis = int((frac or "").ljust(3, "0")[:3])  # floor to the millisecond
    local_ms = ((_epoch_days(y, mo, d) * 24 + hh) * 60 + mi) * 60_000 + ss * 1000 + millis
    utc_ms = local_ms - offset_min * 60_000
    if not in_range(utc_ms):
        raise NotATimestamp(text)
    return utc_ms


# ---------------------------------------------------------------- numbers

_NUM_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]+)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_number(text: str) -> float | None:
    """A number per the contract, or None when the text is not one."""
    if _NUM_RE.fullmatch(text) is None:
        return None
    return float(text)


# ---------------------------------------------------------------- row rules

def _field(value) -> str | None:
    """CSV: trimmed text, None when missing (empty after trimming)."""
    if value is None:
        return None
    s = value.strip(WHITESPACE)
    return s if s != "" else None


def _number_cell(cell):
    """Cell -> ('missing', None) | ('nan', None) | ('num', float).

    A cell is str (CSV rule), None (missing), or a Parquet int/float."""
    if cell is None:
        return "missing", None
    if isinstance(cell, str):
        s = _field(cell)
        if s is None:
            return "missing", None
        v = parse_number(s)
        return ("nan", None) if v is None else ("num", v)
    if isinstance(cell, bool):
        raise ValueError("boolean numeric column")
    v = float(cell)
    if math.isnan(v) or math.isinf(v):
        return "nan", None  # "a Parquet NaN or infinity (present, not a number)"
    return "num", v


def _ts_cell(cell):
    """Cell -> ('ok', ms) | ('bad', None) | ('naive', None).

    A cell is str (CSV rule), None (missing), ('tz', ms) or ('naive', ms)
    for Parquet timestamp columns."""
    if cell is None:
        return "bad", None
    if isinstance(cell, tuple):
        kind, ms = cell
        if kind == "naive":
            return "naive", None
        return ("ok", ms) if in_range(ms) else ("bad", None)  # "a value outside the range above is bad_timestamp"
    s = _field(cell)
    if s is None:
        return "bad", None
    try:
        return "ok", parse_ts(s)
    except NaiveTimestamp:
        return "naive", None
    except NotATimestamp:
        return "bad", None


def _device_cell(cell) -> str | None:
    if cell is None:
        return None
    if isinstance(cell, int) and not isinstance(cell, bool):
        return str(cell)  # "an integer is read as its decimal text"
    return _field(cell)


def is_bad_device(device: str) -> bool:
    """'`device_id` (after trimming) longer than 128 characters (Unicode code points), or
    holding a control, format or surrogate character (Unicode general category `Cc`,
    `Cf` or `Cs`)'."""
    return len(device) > 128 or any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in device)


def check_fix_row(row_no: int, cells: dict):
    """Reasons 1-6 for one fix row. Returns (fix_dict, None) or (None, reason)."""
    device = _device_cell(cells.get("device_id"))
    if device is None:
        return None, "missing_device"
    if is_bad_device(device):
        return None, "bad_device"
    ts_kind, ts_ms = _ts_cell(cells.get("ts"))
    if ts_kind == "bad":
        return None, "bad_timestamp"
    if ts_kind == "naive":
        return None, "naive_timestamp"
    lat_kind, lat = _number_cell(cells.get("lat"))
    lon_kind, lon = _number_cell(cells.get("lon"))
    if lat_kind != "num" or lon_kind != "num" or not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        return None, "bad_coordinates"
    acc_kind, acc = _number_cell(cells.get("accuracy_m"))
    if acc_kind == "nan" or (acc_kind == "num" and not (math.isfinite(acc) and acc >= 0)):
        return None, "bad_accuracy"
    bat_kind, bat = _number_cell(cells.get("battery_pct"))
    if bat_kind == "nan" or (bat_kind == "num" and not (0 <= bat <= 100)):
        return None, "bad_battery"
    return {
        "row": row_no,
        "device_id": device,
        "ts_ms": ts_ms,
        "lat": lat,
        "lon": lon,
        "accuracy_m": acc if acc_kind == "num" else None,
        "battery_pct": bat if bat_kind == "num" else None,
    }, None


KNOWN_EVENTS = ("strap_tamper",)


def check_event_row(row_no: int, cells: dict):
    """Reasons 1, 2, 3, 7 for one event row. Returns (event_dict, None) or (None, reason).
    A missing `event` is read as an unknown kind (reason 7)."""
    device = _device_cell(cells.get("device_id"))
    if device is None:
        return None, "missing_device"
    if is_bad_device(device):
        return None, "bad_device"
    ts_kind, ts_ms = _ts_cell(cells.get("ts"))
    if ts_kind == "bad":
        return None, "bad_timestamp"
    if ts_kind == "naive":
        return None, "naive_timestamp"
    event = _device_cell(cells.get("event"))
    if event not in KNOWN_EVENTS:
        return None, "unknown_event"
    return {"row": row_no, "device_id": device, "ts_ms": ts_ms, "event": event}, None


# ---------------------------------------------------------------- files

FIX_REQUIRED = ("device_id", "ts", "lat", "lon")
FIX_COLUMNS = FIX_REQUIRED + ("accuracy_m", "battery_pct")
EVENT_REQUIRED = ("device_id", "ts", "event")


def _csv_records(path: str, required: tuple[str, ...], wanted: tuple[str, ...]):
    """Yield (row_no, {column: raw text or None}) for each CSV record after the header."""
    with open(path, "rb") as fh:
        text = fh.read().decode("utf-8")  # strict: invalid UTF-8 is unreadable
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: no header")
    names = [h.strip(WHITESPACE) for h in header]
    index = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    for col in required:
        if col not in index:
            raise ValueError(f"{path}: lacks column {col}")
    row_no = 0
    for rec in reader:
        if len(rec) == 0:  # "blank lines are not records"
            continue
        row_no += 1
        cells = {}
        for col in wanted:
            i = index.get(col)
            cells[col] = rec[i] if i is not None and i < len(rec) else None
        yield row_no, cells


def _parquet_records(path: str, required: tuple[str, ...], wanted: tuple[str, ...]):
    """Yield (row_no, cells) from Parquet; timestamps as ('tz'|'naive', floored ms)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for col in required:
        if col not in table.column_names:
            raise ValueError(f"{path}: lacks column {col}")
    columns = {}
    for col in wanted:
        if col not in table.column_names:
            columns[col] = [None] * table.num_rows
            continue
        arr = table.column(col).combine_chunks()
        typ = arr.type
        if col == "ts" and pa.types.is_timestamp(typ):
            per_ms = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[typ.unit]
            raw = arr.cast(pa.int64()).to_pylist()
            kind = "tz" if typ.tz is not None else "naive"
            vals = []
            for v in raw:
                if v is None:
                    vals.append(None)
                elif per_ms is None:
                    vals.append((kind, v * 1000))
                else:
                    vals.append((kind, v // per_ms))  # floor to the millisecond
            columns[col] = vals
        elif col in ("device_id", "event"):
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_integer(typ)):
                raise ValueError(f"{path}: column {col} has type {typ}")
            columns[col] = arr.to_pylist()
        elif col == "ts":
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
                raise ValueError(f"{path}: column ts has type {typ}")
            columns[col] = arr.to_pylist()
        else:
            columns[col] = arr.to_pylist()
    for i in range(table.num_rows):
        yield i + 1, {col: columns[col][i] for col in wanted}


def read_fixes(path: str):
    """Fixes file -> (kept fix dicts in file order, [(\"fixes\", row, reason)] for reasons 1-6)."""
    records = _parquet_records if path.endswith(".parquet") else _csv_records
    if not (path.endswith(".parquet") or path.endswith(".csv")):
        raise ValueError(f"{path}: extension")
    fixes, quarantine = [], []
    for row_no, cells in records(path, FIX_REQUIRED, FIX_COLUMNS):
        fix, reason = check_fix_row(row_no, cells)
        if reason is None:
            fixes.append(fix)
        else:
            quarantine.append(("fixes", row_no, reason))
    return fixes, quarantine


def read_events(path: str):
    """Events file -> (kept event dicts in file order, quarantine rows for reasons 1-3, 7)."""
    records = _parquet_records if path.endswith(".parquet") else _csv_records
    events, quarantine = [], []
    for row_no, cells in records(path, EVENT_REQUIRED, EVENT_REQUIRED):
        ev, reason = check_event_row(row_no, cells)
        if reason is None:
            events.append(ev)
        else:
            quarantine.append(("events", row_no, reason))
    return events, quarantine


def read_subjects(path: str) -> list[Assignment]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    out = []
    for s in doc["subjects"]:
        end = s.get("end")
        out.append(Assignment(
            subject_id=s["subject_id"],
            device_id=s["device_id"],
            start_ms=parse_ts(s["start"]),
            end_ms=None if end is None else parse_ts(end),
            zones=tuple(s.get("zones") or ()),
        ))
    return out


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hhmm(text: str) -> int:
    hh, mm = text.split(":")
    return int(hh) * 60 + int(mm)


def read_zones(path: str) -> list[Zone]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    out = []
    for feat in doc["features"]:
        props = feat.get("properties") or {}
        geom = feat["geometry"]
        polygons = center = radius = None
        if geom["type"] == "Point":
            lon, lat = geom["coordinates"][:2]
            center = (float(lon), float(lat))
            radius = float(props["radius_m"])
        else:
            polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
            polygons = tuple(
                tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in poly)
                for poly in polys
            )
        sched = props.get("schedule")
        windows = None
        if sched is not None:
            windows = tuple(
                Window(days=tuple(DAYS.index(d) for d in w["days"]),
                       start_min=_hhmm(w["start"]), end_min=_hhmm(w["end"]))
                for w in sched
            )
        out.append(Zone(
            zone_id=feat["id"], kind=props["kind"], polygons=polygons,
            center_lonlat=center, radius_m=radius, windows=windows,
            timezone=props.get("timezone") or "Europe/London",
        ))
    return out


_DURATION_KEYS = {
    "coverage_s": "coverage_ms",
    "gap_s": "gap_ms",
    "curfew_grace_s": "curfew_grace_ms",
    "inclusion_grace_s": "inclusion_grace_ms",
    "exclusion_min_s": "exclusion_min_ms",
    "accumulated_battery_s": "accumulated_battery_ms",
    "accumulated_window_s": "accumulated_window_ms",
    "out_of_contact_s": "out_of_contact_ms",
}


def read_policy(path: str | None) -> Policy:
    """POLICY.json -> Policy; durations: "rounding value x 1000 to the nearest
    integer" (a tie is read as rounding half up)."""
    if path is None:
        return Policy()
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    kwargs = {}
    for key, value in doc.items():
        if key in _DURATION_KEYS:
            kwargs[_DURATION_KEYS[key]] = int(math.floor(float(value) * 1000 + 0.5))
        elif key in ("battery_critical_pct", "battery_low_pct", "curfew_missed_fraction", "default_accuracy_m"):
            kwargs[key] = float(value)
        elif key in ("crs", "battery_policy"):
            kwargs[key] = value
        else:
            raise ValueError(f"unknown policy key {key}")
    return Policy(**kwargs)


def read_command(folder: str) -> dict:
    """command.txt -> {option: value} (e.g. '--fixes', '--as-of')."""
    with open(os.path.join(folder, "command.txt"), encoding="utf-8") as fh:
        words = shlex.split(fh.read())
    words = words[2:]  # "tagtrail detect"
    opts = {}
    i = 0
    while i < len(words):
        w = words[i]
        if "=" in w and w.startswith("--"):
            k, v = w.split("=", 1)
            opts[k] = v
            i += 1
        else:
            opts[w] = words[i + 1]
            i += 2
    return opts


def load_case(folder: str) -> dict:
    """An example folder -> keyword arguments for `reference_detect` plus
    `row_quarantine` (reasons 1-7, unsorted)."""
    opts = read_command(folder)
    join = lambda p: os.path.join(folder, p)  # noqa: E731
    fixes, q_fix = read_fixes(join(opts["--fixes"]))
    events, q_ev = ([], [])
    if "--events" in opts:
        events, q_ev = read_events(join(opts["--events"]))
    as_of = opts.get("--as-of")
    return {
        "fixes": fixes,
        "events": events,
        "assignments": read_subjects(join(opts["--subjects"])),
        "zones": read_zones(join(opts["--zones"])),
        "policy": read_policy(join(opts["--policy"]) if "--policy" in opts else None),
        "as_of_ms": None if as_of is None else parse_ts(as_of),
        "row_quarantine": q_ev + q_fix,
    }
