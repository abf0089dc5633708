"""The Numba engine against the plain-Python reference (tests/reference.py) on
seeded random timelines: gaps, clock changes, swaps, policy variations."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from geofence.detect import EventInput, FixInput, detect_columns

from cases import Case, random_case
from reference import reference_detect


def engine_detect(case: Case):
    f = case.fixes
    fixes = FixInput(
        row=np.array([r["row"] for r in f], np.int64),
        device_id=pa.array([r["device_id"] for r in f], pa.string()),
        ts_ms=np.array([r["ts_ms"] for r in f], np.int64),
        accuracy_m=np.array([np.nan if r["accuracy_m"] is None else r["accuracy_m"] for r in f], np.float64),
        battery_pct=np.array([np.nan if r["battery_pct"] is None else r["battery_pct"] for r in f], np.float64),
        lat=np.array([r["lat"] for r in f], np.float64),
        lon=np.array([r["lon"] for r in f], np.float64),
    )
    e = case.events
    events = EventInput(
        row=np.array([r["row"] for r in e], np.int64),
        device_id=pa.array([r["device_id"] for r in e], pa.string()),
        ts_ms=np.array([r["ts_ms"] for r in e], np.int64),
        event=pa.array([r["event"] for r in e], pa.string()),
    )
    res = detect_columns(fixes, events, case.assignments, case.zones, case.policy, as_of_ms=case.as_of_ms)
    return res.records, res.quarantine


def _norm(records):
    return [{**r, "duration_s": float(r["duration_s"])} for r in records]


@pytest.mark.parametrize("seed", range(120))
def test_engine_matches_reference(seed):
    case = random_case(seed)
    want_records, want_q = reference_detect(
        fixes=case.fixes, events=case.events, assignments=case.assignments,
        zones=case.zones, policy=case.policy, as_of_ms=case.as_of_ms)
    got_records, got_q = engine_detect(case)
    assert [tuple(q) for q in got_q] == [tuple(q) for q in want_q]
    assert _norm(got_records) == _norm(want_records)


def test_cases_exercise_every_rule():
    """The random cases must actually reach the rules they are meant to test."""
    seen = set()
    for seed in range(120):
        case = random_case(seed)
        records, _ = reference_detect(fixes=case.fixes, events=case.events, assignments=case.assignments,
                                      zones=case.zones, policy=case.policy, as_of_ms=case.as_of_ms)
        seen.update((r["type"], r["kind"]) for r in records)
    for want in [("curfew_absence", "breach"), ("curfew_missed", "breach"), ("exclusion_entry", "breach"),
                 ("inclusion_exit", "breach"), ("battery", "breach"), ("battery", "alert"),
                 ("no_signal", "breach"), ("accumulated_battery", "breach"), ("strap_tamper", "breach"),
                 ("low_battery", "alert")]:
        assert want in seen, want
