"""`trails.keys.KeyIndex` (first-arrival deduplication at intake) against its
plain-Python twin, a set of (device, instant): batches of random devices and
instants over several days, devices first seen at any point, and keys loaded
lazily per day."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trails.keys import KeyIndex
from trails.timestamps import DAY_MS

_row = st.tuples(st.sampled_from(["D1", "D2", "D3", "dev-é", "D10", ""]),
                 st.integers(0, 3 * DAY_MS - 1).map(lambda t: t - t % 500))


@settings(max_examples=150, deadline=None)
@given(st.lists(_row, max_size=30), st.lists(st.lists(_row, max_size=25), max_size=6))
def test_first_copies_equal_a_set(stored, batches):
    stored_days = {}
    for d, t in stored:
        stored_days.setdefault(t // DAY_MS, []).append((d, t))

    def loader(day):
        rows = stored_days.get(day, [])
        return [d for d, _ in rows], np.array([t for _, t in rows], np.int64)

    index = KeyIndex(loader)
    seen = set(stored)
    for batch in batches:
        devs = [d for d, _ in batch]
        ts = np.array([t for _, t in batch], np.int64)
        got = index.first_copies(devs, ts)
        want, mine = [], set()
        for key in batch:
            want.append(key not in seen and key not in mine)
            mine.add(key)
        assert got.tolist() == want
        index.add([d for (d, _), ok in zip(batch, got) if ok], ts[got])
        seen |= mine
