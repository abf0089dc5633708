"""The slow reference (`tests/reference.py`) reproduces every contract example.

Run on its own with ``pytest -m reference tests/test_reference_examples.py``.
Reads ../shared/contract/examples in place (never copied into the repo).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import EXAMPLES
from reference import reference_detect
from reference_io import load_case

pytestmark = pytest.mark.reference


def _cases():
    if not EXAMPLES.is_dir():
        return []
    out = []
    for d in sorted(EXAMPLES.iterdir()):
        code = d / "expected" / "exit_code"
        if code.is_file() and code.read_text().strip() == "0":
            out.append(d)
    return out


CASES = _cases()


def _same_record(got: dict, want: dict) -> bool:
    if list(got) != list(want) and set(got) != set(want):
        return False
    for k, w in want.items():
        g = got[k]
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            if not isinstance(g, (int, float)) or isinstance(g, bool) or g != w:
                return False
        elif g != w:
            return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_matches_example(case: Path):
    inputs = load_case(str(case))
    row_quarantine = inputs.pop("row_quarantine")
    records, q_8_10 = reference_detect(**inputs)

    # breaches.jsonl: parsed JSON, numbers numerically, same order
    with open(case / "expected" / "breaches.jsonl", encoding="utf-8") as fh:
        want = [json.loads(line) for line in fh if line.strip()]
    got = json.loads(json.dumps(records))  # what would be written
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert _same_record(g, w), (g, w)

    # quarantine.csv: whole file, reasons 1-7 (reference_io) + 8-10 (reference_detect)
    rows = sorted(row_quarantine + q_8_10, key=lambda q: (0 if q[0] == "events" else 1, q[1]))
    with open(case / "expected" / "quarantine.csv", newline="", encoding="utf-8") as fh:
        want_q = list(csv.reader(fh))
    assert want_q[0] == ["source", "row", "reason"]
    assert [(s, str(r), reason) for s, r, reason in rows] == [tuple(x) for x in want_q[1:]]


def test_examples_present():
    """The parametrised test above has cases to run: the contract's examples are found (a
    missing ../shared fails here rather than leaving that test with nothing to check), and
    every example the reference skips is one that expects an input error (exit 2)."""
    assert EXAMPLES.is_dir(), f"contract examples not found at {EXAMPLES}"
    assert len(CASES) >= 20, [c.name for c in CASES]
    skipped = sorted(d.name for d in EXAMPLES.iterdir() if d.is_dir() and d not in CASES)
    assert all((EXAMPLES / name / "expected" / "exit_code").read_text().strip() == "2" for name in skipped), skipped


# ---------------------------------------------------------------- the reference's own helpers

def test_resolve_local_clock_changes():
    """"a local time that does not exist ... means the instant at which the clocks
    change; a local time that occurs twice ... means its first occurrence"."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from reference import format_ms, resolve_local

    london = ZoneInfo("Europe/London")
    assert format_ms(resolve_local(london, date(2024, 3, 31), 90)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local(london, date(2024, 3, 31), 60)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local(london, date(2024, 3, 31), 120)) == "2024-03-31T01:00:00.000Z"
    assert format_ms(resolve_local(london, date(2024, 10, 27), 90)) == "2024-10-27T00:30:00.000Z"
    assert format_ms(resolve_local(london, date(2024, 10, 27), 120)) == "2024-10-27T02:00:00.000Z"
    # a whole skipped day, and a 30-minute change
    assert format_ms(resolve_local(ZoneInfo("Pacific/Apia"), date(2011, 12, 30), 19 * 60)) == "2011-12-30T10:00:00.000Z"
    assert format_ms(resolve_local(ZoneInfo("Australia/Lord_Howe"), date(2024, 10, 6), 130)) == "2024-10-05T15:30:00.000Z"


def test_accumulated_battery_against_brute_force():
    """The candidate-instant search finds the same earliest t as trying every millisecond."""
    import random
    from datetime import datetime

    from geofence.model import Assignment, Policy
    from reference import accumulated_battery, battery_time

    def ms(text):
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

    rng = random.Random(7)
    a = Assignment("S", "D", 0, None)
    for _ in range(150):
        gaps, t = [], rng.randint(0, 50)
        for _ in range(rng.randint(0, 5)):
            t += rng.randint(1, 80)
            d = rng.randint(1, 120)
            gaps.append((t, t + d))
            t += d
        pol = Policy(accumulated_battery_ms=rng.randint(1, 150), accumulated_window_ms=rng.randint(0, 300),
                     battery_policy="accumulated")
        want, r = [], 0
        horizon = max([v for _, v in gaps] + [0]) + 2
        while True:
            hit = next((t for t in range(r + 1, horizon)
                        if battery_time(gaps, max(t - pol.accumulated_window_ms, r), t) >= pol.accumulated_battery_ms),
                       None)
            if hit is None:
                break
            want.append((max(hit - pol.accumulated_window_ms, r), hit))
            r = hit
        got = [(ms(x["start"]), ms(x["end"])) for x in accumulated_battery(a, gaps, pol)]
        assert got == want, (gaps, pol)
