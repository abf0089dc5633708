"""Vectorised validation (trails.validate) against the scalar contract parser."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trails.quarantine import OK, REASON_CODE
from trails.timestamps import NaiveTimestampError, parse_timestamp
from trails.validate import parse_numbers, parse_timestamps, timestamps_to_ms, validate_events, validate_fixes

BAD, NAIVE = REASON_CODE["bad_timestamp"], REASON_CODE["naive_timestamp"]


def scalar(s):
    """The reference: (ts_ms, code) from trails.timestamps.parse_timestamp."""
    if s is None:
        return 0, BAD
    try:
        return parse_timestamp(s), OK
    except NaiveTimestampError:
        return 0, NAIVE
    except ValueError:
        return 0, BAD


def check_against_scalar(strings):
    ts, code = parse_timestamps(pa.array(strings, pa.string()))
    got = list(zip(ts.tolist(), code.tolist()))
    want = [scalar(s) for s in strings]
    bad = [(s, g, w) for s, g, w in zip(strings, got, want) if g != w]
    assert not bad, bad[:10]


EDGE = [
    "2024-06-01T10:00:00Z", "2024-06-01 10:01:00Z", "2024-06-01t10:02:00z",
    "2024-06-01T10:03:00.123456789Z", "2024-06-01T10:03:00.1Z", "2024-06-01T10:03:00.9999z",
    "2024-06-01T15:34:00+05:30", "2024-06-01T06:05:00-04:00", "2024-06-01T06:05:00-00:00",
    "2024-06-01T10:00:00+23:59", "2024-06-01T10:00:00-23:59", "2024-06-01T10:00:00+24:00",
    "2024-06-01T10:00:00+12:60", "2024-06-01T10:06:00", "2024-06-01T10:06:00.5",
    "2024-06-01T10:06:00.123456", "2024-06-01", "20240601T100700Z", "2024-06-01T10:08Z",
    "2024-06-01T10:09:00+01", "2024-06-01T10:09:00+0100", "2024-06-01T24:00:00Z",
    "2024-06-01T23:59:60Z", "2024-06-01T23:60:00Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2024-02-30T10:00:00Z", "2024-04-31T00:00:00Z",
    "2024-13-01T00:00:00Z", "2024-00-01T00:00:00Z", "2024-01-00T00:00:00Z", "0000-01-01T00:00:00Z",
    "0000-02-29T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59", "1969-12-31T23:59:59.9999Z",
    "2024-06-01T10:10:00 Z", " 2024-06-01T10:11:00Z ", "\t2024-06-01T10:11:00Z\r\n",
    "\n2024-06-01T10:11:00\t", "2024-06-01T10:00:00.Z", "2024-06-01T10:00:00.1234567890Z",
    "2024-06-01T10:00:00.+01:00", "2024-06-01T10:00:00.5+01:00", "2024-06-01T10:00:00Z ",
    "\u0662024-06-01T10:00:00Z", "2024-06-01T10:00:0\u0665Z", "2024-06-01\u00a010:00:00Z",
    "\u00a02024-06-01T10:00:00Z", "2024-06-01T10:00:00\u2212", "2024-06-01T10:00:00z\x00",
    "2024-06-01T10:00:00ZZ", "2024-06-01T10:00:00+01:00Z", "2024-06-01X10:00:00Z",
    "2024/06/01T10:00:00Z", "+2024-06-01T10:00:00Z", "-001-06-01T10:00:00Z", "", "   ", None,
    "2024-06-01T10:00:00.123+05:30", "2024-06-01T10:00:00.123-05:30", "yesterday",
]


def test_edge_cases_match_scalar():
    check_against_scalar(EDGE)


@pytest.mark.parametrize("uniform", ["2024-06-01T10:00:00Z", "2024-06-01T10:00:00.123+01:00"])
def test_uniform_length_fast_path(uniform):
    # all rows the same length takes the zero-copy path: must agree too
    base = [uniform, uniform.replace("10", "24", 1), uniform.replace("06", "02", 1).replace("-01", "-30", 1)]
    check_against_scalar(base * 5)


def test_sliced_array():
    arr = pa.array(EDGE[:20] + ["2024-06-01T10:00:00Z"] * 10, pa.string()).slice(5, 20)
    ts, code = parse_timestamps(arr)
    want = [scalar(s) for s in arr.to_pylist()]
    assert list(zip(ts.tolist(), code.tolist())) == want


def _fields(rng, n):
    """Random timestamps near and beyond every boundary of the grammar."""
    y = rng.choice([0, 1, 1600, 1900, 1969, 1970, 2000, 2023, 2024, 2100, 9999], n)
    mo = rng.integers(0, 14, n)
    d = rng.integers(0, 33, n)
    h = rng.integers(0, 26, n)
    mi = rng.integers(0, 62, n)
    s = rng.integers(0, 62, n)
    return y, mo, d, h, mi, s


def test_random_against_scalar():
    rng = np.random.default_rng(20240601)
    n = 20_000
    y, mo, d, h, mi, s = _fields(rng, n)
    seps = np.array(["T", "t", " ", "_"])[rng.integers(0, 4, n)]
    fr_len = rng.integers(-1, 11, n)
    suffixes = ["Z", "z", "", "+01:00", "-00:00", "+23:59", "+24:00", "-12:60", "+5:30", " Z", "+01"]
    out = []
    for i in range(n):  # building test input only
        frac = "" if fr_len[i] < 0 else "." + "".join(str(x) for x in rng.integers(0, 10, fr_len[i]))
        pad = ["", " ", "\t", "\r\n"][rng.integers(0, 4)]
        out.append(f"{pad}{y[i]:04d}-{mo[i]:02d}-{d[i]:02d}{seps[i]}{h[i]:02d}:{mi[i]:02d}:{s[i]:02d}"
                   f"{frac}{suffixes[rng.integers(0, len(suffixes))]}{pad}")
    check_against_scalar(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789-:.+TtZz \t\u0662", min_size=15, max_size=36), min_size=1, max_size=40))
def test_hypothesis_strings(strings):
    check_against_scalar(strings)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(timezones=st.just(None)), min_size=1, max_size=30), st.integers(0, 9), st.sampled_from(["Z", "+05:30", "-23:59", ""]))
def test_hypothesis_valid_datetimes(dts, ndig, suffix):
    strings = [dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}000"[: ndig + 1] if ndig else "") + suffix for dt in dts]
    check_against_scalar(strings)


def test_parquet_timestamp_units_floor():
    vals = np.array([-1, -999_999, 1_500_000, 0], np.int64)
    for unit, per_ms in (("ns", 1_000_000), ("us", 1000), ("ms", 1)):
        ts, code = timestamps_to_ms(pa.array(vals, pa.timestamp(unit, tz="UTC")))
        assert ts.tolist() == (vals // per_ms).tolist()
        assert (code == OK).all()
    ts, code = timestamps_to_ms(pa.array([5, None], pa.timestamp("s", tz="Europe/London")))
    assert ts.tolist() == [5000, 0] and code.tolist() == [OK, BAD]
    ts, code = timestamps_to_ms(pa.array([5, None], pa.timestamp("ms")))
    assert code.tolist() == [NAIVE, BAD]


@pytest.mark.parametrize(
    "text,status,value",
    [
        ("1.5", 2, 1.5), (" -0.25\t", 2, -0.25), (".5", 2, 0.5), ("+7", 2, 7.0), ("1e3", 2, 1000.0),
        ("1E-2", 2, 0.01), ("-.5e+1", 2, -5.0), ("1e999", 2, np.inf), ("007", 2, 7.0),
        ("1.", 1, None), ("nan", 1, None), ("NaN", 1, None), ("inf", 1, None), ("-inf", 1, None),
        ("0x10", 1, None), ("1,5", 1, None), ("1 5", 1, None), ("\u0661", 1, None), ("e5", 1, None),
        ("+-1", 1, None), ("1e", 1, None), (".", 1, None), ("", 0, None), (" \t ", 0, None),
    ],
    ids=repr,
)
def test_numbers(text, status, value):
    v, s = parse_numbers(pa.array([text], pa.string()))
    assert s[0] == status
    if value is None:
        assert np.isnan(v[0])
    else:
        assert v[0] == value


def test_numbers_typed_columns():
    v, s = parse_numbers(pa.array([1.0, None, np.nan, np.inf], pa.float64()))
    assert s.tolist() == [2, 0, 1, 1]
    v, s = parse_numbers(pa.array([3, None], pa.int32()))
    assert s.tolist() == [2, 0] and v[0] == 3.0


def _fix_table(rows):
    cols = ["device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct"]
    return pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(cols)})


GOOD = ["D1", "2024-06-01T10:00:00Z", "51.5", "-0.1", "10", "80"]


@pytest.mark.parametrize(
    "change,reason",
    [
        ({0: " "}, "missing_device"),
        ({0: "", 1: "x"}, "missing_device"),
        ({1: "yesterday"}, "bad_timestamp"),
        ({1: ""}, "bad_timestamp"),
        ({1: "2024-06-01T10:00:00", 2: "x"}, "naive_timestamp"),
        ({2: "91"}, "bad_coordinates"),
        ({3: "-180.5"}, "bad_coordinates"),
        ({3: ""}, "bad_coordinates"),
        ({2: "nan"}, "bad_coordinates"),
        ({2: "1e999"}, "bad_coordinates"),
        ({4: "-3", 5: "140"}, "bad_accuracy"),
        ({4: "inf"}, "bad_accuracy"),
        ({4: "1e999"}, "bad_accuracy"),
        ({5: "100.5"}, "bad_battery"),
        ({5: "nan"}, "bad_battery"),
        ({4: "", 5: ""}, None),
        ({2: "90", 3: "-180", 4: "0", 5: "0"}, None),
    ],
    ids=str,
)
def test_fix_reasons(change, reason):
    row = list(GOOD)
    for k, v in change.items():
        row[k] = v
    fixes, rej, bad = validate_fixes(_fix_table([GOOD, row]), first_row=10)
    if reason is None:
        assert len(fixes) == 2 and len(rej) == 0
    else:
        assert rej.row.tolist() == [11] and rej.reason_names() == [reason]
        assert bad.tolist() == [1]
        assert fixes.row.tolist() == [10]


def test_fix_values_and_missing_optional():
    t = _fix_table([[" D1 ", " 2024-06-01T10:00:00.1239Z", "51.5", "-0.1", "", ""]])
    fixes, rej, _ = validate_fixes(t)
    assert fixes.device_id.to_pylist() == ["D1"]
    assert fixes.ts_ms.tolist() == [1717236000123]
    assert np.isnan(fixes.accuracy_m[0]) and np.isnan(fixes.battery_pct[0])
    assert not fixes.ts_ms.flags.writeable


def test_empty_table():
    fixes, rej, bad = validate_fixes(_fix_table([]))
    assert len(fixes) == 0 and len(rej) == 0


def test_events():
    t = pa.table({
        "device_id": ["D1", "", "D1", "D1"],
        "ts": ["2024-06-01T10:00:00Z", "2024-06-01T10:00:00Z", "2024-06-01T10:00:00", "2024-06-01T10:00:00Z"],
        "event": [" strap_tamper ", "strap_tamper", "strap_tamper", "lid_open"],
    })
    ev, rej, _ = validate_events(t)
    assert ev.event.to_pylist() == ["strap_tamper"] and ev.row.tolist() == [1]
    assert rej.reason_names() == ["missing_device", "naive_timestamp", "unknown_event"]


def test_number_fast_path_agrees_with_grammar():
    """parse_numbers (cast fast path or regex fallback) against Python's re on NUMBER_PATTERN."""
    import re

    from trails.validate import NUMBER_PATTERN

    pat = re.compile(NUMBER_PATTERN)
    rng = np.random.default_rng(7)
    pieces = ["", "+", "-", "1", "23", "007", ".", "5", "e", "E", "e+", "e-", "nan", "inf", "Infinity", "x", " ", "1_0", ",", "\u0661"]
    strings = ["".join(rng.choice(pieces, rng.integers(1, 6))) for _ in range(20_000)]
    # whole clean columns take the fast path: mix clean blocks with each dirty string
    clean = [f"{v:.6f}" for v in rng.normal(0, 100, 50)] + ["", "1e5", ".5", "+7"]
    for s in strings[:3000]:
        v, st = parse_numbers(pa.array(clean + [s], pa.string()))
        want = 0 if s.strip(" \t\r\n") == "" else (2 if pat.match(s.strip(" \t\r\n")) else 1)
        assert st[-1] == want, s
        assert (st[:-1] == np.array([2] * 50 + [0, 2, 2, 2])).all()
        if want == 2:
            assert v[-1] == float(s.strip(" \t\r\n"))
    v, st = parse_numbers(pa.array(strings, pa.string()))
    want = [0 if s.strip(" \t\r\n") == "" else (2 if pat.match(s.strip(" \t\r\n")) else 1) for s in strings]
    assert st.tolist() == want
