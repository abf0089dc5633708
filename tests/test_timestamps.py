"""The contract's output form of an instant, ``YYYY-MM-DDTHH:MM:SS.mmmZ``, for
every year 0000..9999: the scalar and the array formatter agree with each
other, with the plain-datetime reference, and parse back to the same ms."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import format_ms as reference_format_ms
from trails.timestamps import format_ms, format_ms_array, parse_timestamp

FIRST = parse_timestamp("0000-01-01T00:00:00Z")
LAST = parse_timestamp("9999-12-31T23:59:59.999Z")


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=FIRST, max_value=LAST))
def test_format_round_trips(ms):
    text = format_ms(ms)
    assert len(text) == 24 and text.endswith("Z")
    assert parse_timestamp(text) == ms
    assert format_ms_array([ms]) == [text]
    if ms >= parse_timestamp("0001-01-01T00:00:00Z"):  # datetime has no year 0
        assert reference_format_ms(ms) == text


def test_years_below_1000_have_four_digits():
    assert format_ms(FIRST) == "0000-01-01T00:00:00.000Z"
    assert format_ms(parse_timestamp("0999-12-31T23:59:59.5Z")) == "0999-12-31T23:59:59.500Z"
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"
    many = np.random.default_rng(3).integers(FIRST, LAST, 20_000)
    assert format_ms_array(many) == [format_ms(int(v)) for v in many]
