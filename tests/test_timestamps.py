"""Timestamps (trails.timestamps): the contract's output form ``YYYY-MM-DDTHH:MM:SS.mmmZ``
for every instant that is a timestamp, and the range of instants that are
(CONTRACT.md, "Time": 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z in UTC).
The scalar and the array formatter agree with each other, with the plain-datetime
reference, and parse back to the same ms."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import format_ms as reference_format_ms
from trails.timestamps import NaiveTimestampError, TimestampRangeError, format_ms, format_ms_array, parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)
# worked out with datetime, not with the code under test
FIRST = (datetime(1, 1, 1, tzinfo=timezone.utc) - EPOCH) // MS
LAST = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // MS
#: 0000-01-01T00:00:00Z: 719528 days (1970 years, 478 of them leap, year 0 among them) before the epoch
YEAR_ZERO = -719_528 * 86_400_000


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=FIRST, max_value=LAST))
def test_format_round_trips(ms):
    text = format_ms(ms)
    assert len(text) == 24 and text.endswith("Z")
    assert parse_timestamp(text) == ms
    assert format_ms_array([ms]) == [text]
    assert reference_format_ms(ms) == text


def test_years_below_1000_have_four_digits():
    assert format_ms(FIRST) == "0001-01-01T00:00:00.000Z"
    assert format_ms(YEAR_ZERO) == "0000-01-01T00:00:00.000Z"  # the formatter itself takes any year
    assert format_ms(parse_timestamp("0999-12-31T23:59:59.5Z")) == "0999-12-31T23:59:59.500Z"
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"
    many = np.random.default_rng(3).integers(FIRST, LAST, 20_000)
    assert format_ms_array(many) == [format_ms(int(v)) for v in many]


@pytest.mark.parametrize("text,want", [
    ("0001-01-01T00:00:00Z", FIRST),
    ("0001-01-01T00:00:00-00:00", FIRST),
    ("0000-12-31T23:30:00-01:00", FIRST + 30 * 60_000),  # written in year 0, year 1 in UTC
    ("9999-12-31T23:59:59.999Z", LAST),
    ("9999-12-31T23:59:59.9999999+00:00", LAST),  # floored to the ms first
    ("9999-12-31T23:59:59+00:01", LAST - 60_000 - 999),
    ("10000-01-01T00:00:00Z", None),  # five digits: not the grammar
    ("9999-12-31T23:59:59-23:59", None),  # year 10000 in UTC
    ("9999-12-31T23:59:59-00:01", None),
    ("0001-01-01T00:30:00+01:00", None),  # year 0 in UTC
    ("0001-01-01T00:00:00+00:01", None),
    ("0000-01-01T00:00:00Z", None),
], ids=str)
def test_timestamp_range_is_0001_to_9999_in_utc(text, want):
    if want is None:
        with pytest.raises(ValueError):
            parse_timestamp(text)
    else:
        assert parse_timestamp(text) == want


def test_out_of_range_is_its_own_error_and_naive_has_no_range():
    with pytest.raises(TimestampRangeError, match="0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z"):
        parse_timestamp("9999-12-31T23:59:59-23:59")
    # a naive string has no instant, so it is naive whatever its year
    with pytest.raises(NaiveTimestampError):
        parse_timestamp("0000-01-01T00:00:00")


@pytest.mark.parametrize("text, want", [
    ("2024-03-31", "2024-03-31T00:00:00.000Z"),  # the day of the spring clock change: still midnight UTC
    (" 2024-10-27 ", "2024-10-27T00:00:00.000Z"),
    ("0001-01-01", "0001-01-01T00:00:00.000Z"),
    ("2024-02-29", "2024-02-29T00:00:00.000Z"),
    ("2024-03-31T01:00:00+01:00", "2024-03-31T00:00:00.000Z"),  # an instant is parsed as one
])
def test_day_or_timestamp_reads_a_bare_date_as_midnight_utc(text, want):
    from trails.timestamps import parse_day_or_timestamp

    assert format_ms(parse_day_or_timestamp(text)) == want


@pytest.mark.parametrize("text", ["2023-02-29", "2024-13-01", "0000-01-01", "2024-3-1", "2024-03-31T25:00:00Z",
                                  "2024-03-31T12:00:00"])
def test_day_or_timestamp_refuses_a_day_that_does_not_exist_and_a_naive_time(text):
    from trails.timestamps import parse_day_or_timestamp

    with pytest.raises(ValueError):
        parse_day_or_timestamp(text)
