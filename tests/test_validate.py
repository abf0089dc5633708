"""Vectorised validation (trails.validate) against the scalar contract parser."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trails.quarantine import OK, REASON_CODE
from trails.timestamps import NaiveTimestampError, parse_timestamp
from trails.validate import (device_ids, id_problem, parse_numbers, parse_timestamps, timestamps_to_ms, validate_events,
                             validate_fixes)

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
    # the range 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z, after the offset
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:30:00+01:00", "0000-12-31T23:30:00-01:00",
    "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.9999999+00:00", "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:01", "0000-01-01T00:00:00", "9999-12-31T23:59:59",
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


# --------------------------------------------------------------------------- the timestamp range
FIRST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z: 719,162 days before the epoch
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: 2,932,897 days after it, less 1 ms


@pytest.mark.parametrize("text,ts,code", [
    ("9999-12-31T23:59:59-23:59", 0, BAD),  # year 10000 in UTC
    ("0001-01-01T00:30:00+01:00", 0, BAD),  # year 0 in UTC
    ("0000-12-31T23:30:00-01:00", FIRST_MS + 1_800_000, OK),
    ("9999-12-31T23:59:59.999Z", LAST_MS, OK),
    ("9999-12-31T23:59:59.9999999+00:00", LAST_MS, OK),
    ("0001-01-01T00:00:00Z", FIRST_MS, OK),
    ("0000-01-01T00:00:00", 0, NAIVE),  # no instant: naive, whatever the year
], ids=str)
def test_year_10000_timestamp_is_bad_in_the_vector_parser(text, ts, code):
    got_ts, got_code = parse_timestamps(pa.array([text, "2024-06-01T10:00:00Z"], pa.string()))
    assert got_code.tolist() == [code, OK] and got_ts.tolist() == [ts, 1_717_236_000_000]


@pytest.mark.parametrize("unit,values,codes", [
    ("s", [FIRST_MS // 1000, FIRST_MS // 1000 - 1, LAST_MS // 1000, LAST_MS // 1000 + 1, 2**62], [OK, BAD, OK, BAD, BAD]),
    ("ms", [FIRST_MS, FIRST_MS - 1, LAST_MS, LAST_MS + 1], [OK, BAD, OK, BAD]),
    ("us", [FIRST_MS * 1000, FIRST_MS * 1000 - 1, LAST_MS * 1000 + 999, LAST_MS * 1000 + 1000], [OK, BAD, OK, BAD]),
    ("ns", [-(2**63) + 1, 2**63 - 1], [OK, OK]),  # every ns value is within the years 1677..2262
], ids=["s", "ms", "us", "ns"])
def test_parquet_timestamps_outside_the_range_are_bad_timestamp(unit, values, codes):
    ts, code = timestamps_to_ms(pa.array(values, pa.timestamp(unit, tz="UTC")))
    assert code.tolist() == codes
    per_ms = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    want = [int(v * 1000) if unit == "s" else v // per_ms for v in values]
    assert ts.tolist() == [w if c == OK else 0 for w, c in zip(want, codes)]
    # without a time zone every row is naive, in range or not
    _, code = timestamps_to_ms(pa.array(values, pa.timestamp(unit)))
    assert code.tolist() == [NAIVE] * len(values)


def test_year_10000_fix_is_quarantined_by_validate_fixes():
    row = ["D1", "9999-12-31T23:59:59-23:59", "51.5", "-0.1", "", ""]
    fixes, rej, _ = validate_fixes(_fix_table([GOOD, row]), first_row=1)
    assert fixes.row.tolist() == [1] and rej.row.tolist() == [2] and rej.reason_names() == ["bad_timestamp"]


# --------------------------------------------------------------------------- device ids
BAD_DEVICE = REASON_CODE["bad_device"]
MISSING = REASON_CODE["missing_device"]


@pytest.mark.parametrize("device,code", [
    ("D1", OK), (" D1 \t", OK), ("D" * 128, OK), ("D" * 129, BAD_DEVICE),
    ("\u00e9" * 128, OK), ("\u00e9" * 129, BAD_DEVICE),  # code points, not bytes
    ("\U0001F600" * 128, OK), ("\U0001F600" * 129, BAD_DEVICE),
    ("D\x001", BAD_DEVICE), ("D\t1", BAD_DEVICE), ("D\r\n1", BAD_DEVICE), ("D\x7f", BAD_DEVICE),
    ("D\x851", BAD_DEVICE),  # NEL: a C1 control (Cc)
    ("D\u200b1", BAD_DEVICE), ("D\u202e1", BAD_DEVICE), ("D\u00ad1", BAD_DEVICE), ("\ufeffD1", BAD_DEVICE),
    ("D\U000E00011", BAD_DEVICE),  # language tag (Cf, 4 bytes)
    ("D\u00a01", OK),  # no-break space is Zs, not Cf
    ("D\ue0001", OK), ("D\u03781", OK),  # private use (Co) and unassigned (Cn) are allowed
    ("", MISSING), (" \t ", MISSING), (None, MISSING),
], ids=repr)
def test_device_id_rule(device, code):
    got = device_ids(pa.array([device, "D-ok"], pa.string()), what="device_id")[1]
    assert got.tolist() == [code, OK]


def test_device_id_reason_order():
    # missing_device, then bad_device, before every other reason
    rows = [["", "x", "x", "x", "x", "x"], ["D\u200b1", "x", "x", "x", "x", "x"], ["D1", "x", "x", "x", "x", "x"]]
    _, rej, _ = validate_fixes(_fix_table(rows))
    assert rej.reason_names() == ["missing_device", "bad_device", "bad_timestamp"]
    t = pa.table({"device_id": ["D\t1", "D1"], "ts": ["bad", "2024-06-01T10:00:00Z"], "event": ["lid_open", "strap_tamper"]})
    ev, rej, _ = validate_events(t)
    assert rej.reason_names() == ["bad_device"] and ev.row.tolist() == [2]


def test_device_ids_match_the_scalar_rule_on_random_strings():
    """The vectorised rule (bytes, UTF-8 decoding, categories per distinct code point)
    against the scalar `id_problem` (Python's unicodedata per character)."""
    rng = np.random.default_rng(20240601)
    alphabet = (list("ABCxyz019-_. ") + ["\t", "\n", "\x00", "\x1f", "\x7f", "\x80", "\x9f", "\u00a0",
                "\u00ad", "\u00e9", "\u0600", "\u200b", "\u200d", "\u202e", "\u2060", "\ufeff", "\u4e2d",
                "\ue000", "\U0001F600", "\U000E0001", "\U0010FFFD"])
    lengths = rng.choice([0, 1, 5, 127, 128, 129, 200], 3000)
    strings = ["".join(rng.choice(alphabet, k)) if rng.random() < 0.5 else "D" * max(k - 1, 0) + rng.choice(alphabet)
               for k in lengths]
    text, code = device_ids(pa.array(strings, pa.string()), what="device_id")
    want = []
    for s in strings:
        t = s.strip(" \t\r\n")
        want.append(MISSING if not t else (BAD_DEVICE if id_problem(t) else OK))
    assert code.tolist() == want
    assert text.to_pylist() == [s.strip(" \t\r\n") for s in strings]


def _raw_strings(byte_values: list[bytes]) -> pa.Array:
    """A string array holding these exact bytes (Parquet does not check UTF-8; Arrow takes them)."""
    b = pa.array(byte_values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(b), b.buffers())


@pytest.mark.parametrize("raw,code", [
    (b"D\xed\xa0\x801", BAD_DEVICE),  # a lone surrogate written as UTF-8 (WTF-8): Cs
    (b"D\xff1", BAD_DEVICE), (b"\x80D1", BAD_DEVICE), (b"D\xc3", BAD_DEVICE), (b"D\xc3\xa9\xa9", BAD_DEVICE),
    (b"\xc0\x80", BAD_DEVICE), (b"\xe0\x80\x80", BAD_DEVICE),  # overlong
    (b"\xf4\x90\x80\x80", BAD_DEVICE),  # past U+10FFFF
    (b"D\xc3\xa91", OK), (b"\xf0\x9f\x98\x80", OK), (b"\xef\xbf\xbd", OK),
], ids=repr)
def test_device_id_that_is_not_utf8_is_bad_device(raw, code):
    got = device_ids(_raw_strings([raw, b"D-ok"]), what="device_id")[1]
    assert got.tolist() == [code, OK]


def test_dictionary_columns_are_judged_on_their_dictionary():
    """A dictionary-encoded table validates exactly like the plain one, and a
    dictionary value that is bad comes back empty (never decoded per row)."""
    rng = np.random.default_rng(11)
    devices = np.array(["D1", " D2 ", "", "D\u200b3", "D" * 200, "E\u00e9"], dtype=object)
    stamps = np.array(["2024-06-01T10:00:00Z", "9999-12-31T23:59:59-23:59", "2024-06-01T10:00:00", "x"], dtype=object)
    n = 500
    cols = {
        "device_id": devices[rng.integers(0, len(devices), n)].tolist(),
        "ts": stamps[rng.integers(0, len(stamps), n)].tolist(),
        "lat": rng.choice(["51.5", "91", " 51.4 "], n).tolist(),
        "lon": ["-0.1"] * n,
    }
    cols["device_id"][3] = None
    plain = pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})
    encoded = pa.table({k: pa.array(v, pa.string()).dictionary_encode() for k, v in cols.items()})
    fa, ra, ba = validate_fixes(plain)
    fb, rb, bb = validate_fixes(encoded)
    assert ra.row.tolist() == rb.row.tolist() and ra.reason_names() == rb.reason_names() and ba.tolist() == bb.tolist()
    assert fa.row.tolist() == fb.row.tolist() and fa.ts_ms.tolist() == fb.ts_ms.tolist()
    assert fa.device_id.to_pylist() == fb.device_id.to_pylist() and fb.device_id.type == pa.string()
    np.testing.assert_array_equal(fa.lat, fb.lat)
    text, code = device_ids(encoded.column("device_id"), what="device_id")
    assert set(text.to_pylist()) <= {"D1", "D2", "E\u00e9", "", None}


def test_dictionary_event_columns_are_judged_on_their_dictionary():
    rng = np.random.default_rng(12)
    n = 300
    cols = {
        "device_id": rng.choice(["D1", "D\u202e2", ""], n).tolist(),
        "ts": rng.choice(["2024-06-01T10:00:00Z", "0001-01-01T00:30:00+01:00"], n).tolist(),
        "event": rng.choice(["strap_tamper", " strap_tamper ", "lid_open", "x" * 5000], n).tolist(),
    }
    cols["event"][7] = None
    plain = pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})
    encoded = pa.table({k: pa.array(v, pa.string()).dictionary_encode() for k, v in cols.items()})
    ea, ra, _ = validate_events(plain)
    eb, rb, _ = validate_events(encoded)
    assert ra.row.tolist() == rb.row.tolist() and ra.reason_names() == rb.reason_names()
    assert ea.row.tolist() == eb.row.tolist() and eb.event.to_pylist() == ["strap_tamper"] * len(eb)
    assert set(rb.reason_names()) == {"missing_device", "bad_device", "bad_timestamp", "unknown_event"}
