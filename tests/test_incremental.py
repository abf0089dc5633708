"""The batch-equals-stream invariant (issue 5): for any split of a case's rows
into batches, in any arrival order (late rows included), the records after
the last batch equal `detect_columns` on all rows at once, in arrival order,
at the implicit as_of. Checked on every contract example and on seeded
random cases, with everything retained and with a short retention that
forces late rows through the rebuild-from-history path; and after every
batch, not only the last."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from conftest import EXAMPLES
from geofence.detect import EventInput, FixInput, detect_columns
from geofence.incremental import EventRows, FixRows, IncrementalDetector
from geofence.policy import load_policy
from geofence.subjects import load_subjects
from geofence.zones import load_zones
from trails.projection import project_lonlat

from cases import random_case


# --------------------------------------------------------------------------- cases as rows
def _example(name):
    from trails.readers import read_events, read_fixes

    d = EXAMPLES / name
    cmd = (d / "command.txt").read_text()
    zones = load_zones(d / "zones.geojson")
    assignments = load_subjects(d / "subjects.json", {z.zone_id for z in zones})
    policy = load_policy(d / "policy.json" if "--policy" in cmd else None)
    fixes_file = d / ("fixes.parquet" if "fixes.parquet" in cmd else "fixes.csv")
    fx, _ = read_fixes(fixes_file)
    fixes = [{"device_id": dev, "ts_ms": int(t), "lat": float(la), "lon": float(lo),
              "accuracy_m": None if np.isnan(a) else float(a), "battery_pct": None if np.isnan(b) else float(b)}
             for dev, t, la, lo, a, b in zip(fx.device_id.to_pylist(), fx.ts_ms, fx.lat, fx.lon, fx.accuracy_m,
                                             fx.battery_pct)]
    events = []
    if "--events" in cmd:
        ev, _ = read_events(d / "events.csv")
        events = [{"device_id": dev, "ts_ms": int(t), "event": k}
                  for dev, t, k in zip(ev.device_id.to_pylist(), ev.ts_ms, ev.event.to_pylist())]
    return fixes, events, assignments, zones, policy


def _random(seed):
    c = random_case(seed)
    fixes = [{k: f[k] for k in ("device_id", "ts_ms", "lat", "lon", "accuracy_m", "battery_pct")} for f in c.fixes]
    events = [{k: e[k] for k in ("device_id", "ts_ms", "event")} for e in c.events]
    return fixes, events, list(c.assignments), list(c.zones), c.policy


EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir()
                       if p.is_dir() and json.loads((p / "expected" / "exit_code").read_text() or "0") == 0)


# --------------------------------------------------------------------------- the two ways
def _fix_input(rows, policy):
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    return FixInput(row=np.arange(1, len(rows) + 1, dtype=np.int64),
                    device_id=pa.array([r["device_id"] for r in rows], pa.string()),
                    ts_ms=np.array([r["ts_ms"] for r in rows], np.int64),
                    accuracy_m=np.array([nan(r["accuracy_m"]) for r in rows], np.float64),
                    battery_pct=np.array([nan(r["battery_pct"]) for r in rows], np.float64),
                    lat=np.array([r["lat"] for r in rows], np.float64),
                    lon=np.array([r["lon"] for r in rows], np.float64))


def batch(fixes, events, assignments, zones, policy):
    """All rows at once, in arrival order (so the first copy of a duplicate wins)."""
    ev = EventInput(row=np.arange(1, len(events) + 1, dtype=np.int64),
                    device_id=pa.array([e["device_id"] for e in events], pa.string()),
                    ts_ms=np.array([e["ts_ms"] for e in events], np.int64),
                    event=pa.array([e["event"] for e in events], pa.string()))
    return detect_columns(_fix_input(fixes, policy), ev, assignments, zones, policy).records


def _rows(fixes, policy):
    if not fixes:
        return FixRows.empty()
    lon = np.array([r["lon"] for r in fixes], np.float64)
    lat = np.array([r["lat"] for r in fixes], np.float64)
    x, y = project_lonlat(lon, lat, policy.crs)
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    return FixRows([r["device_id"] for r in fixes], np.array([r["ts_ms"] for r in fixes], np.int64), x, y,
                   np.array([nan(r["accuracy_m"]) for r in fixes], np.float64),
                   np.array([nan(r["battery_pct"]) for r in fixes], np.float64))


def _arrival_order(rng, fixes, events):
    """Rows in an arrival order: shuffled globally, or time-ordered with some late runs."""
    items = [("f", i) for i in range(len(fixes))] + [("e", i) for i in range(len(events))]
    mode = rng.integers(0, 3)
    if mode == 0:
        rng.shuffle(items)
    else:
        items.sort(key=lambda it: (fixes if it[0] == "f" else events)[it[1]]["ts_ms"])
        if mode == 2:  # a few stretches held back and sent late, as a tag out of signal does
            for _ in range(int(rng.integers(1, 4))):
                if len(items) < 4:
                    break
                a = int(rng.integers(0, len(items) - 2))
                b = min(len(items), a + int(rng.integers(1, 60)))
                held = items[a:b]
                del items[a:b]
                at = int(rng.integers(a, len(items) + 1))
                items[at:at] = held
    return items


def stream(rng, fixes, events, assignments, zones, policy, *, retention_ms=None, check_each=False):
    """Feed the rows in random batches; returns the detector's final records."""
    items = _arrival_order(rng, fixes, events)
    seen_f, seen_e = set(), set()
    arrived_f, arrived_e = [], []
    received = []  # everything so far, for the history loader and the per-batch check

    def history(a):
        fs = [r for r in received if r[0] == "f" and r[1]["device_id"] == a.device_id
              and a.start_ms <= r[1]["ts_ms"] < (a.end_ms if a.end_ms is not None else 2**62)]
        es = [r for r in received if r[0] == "e" and r[1]["device_id"] == a.device_id
              and a.start_ms <= r[1]["ts_ms"] < (a.end_ms if a.end_ms is not None else 2**62)]
        return _rows([r[1] for r in fs], policy), _events([r[1] for r in es])

    det = IncrementalDetector(assignments, zones, policy, retention_ms=retention_ms,
                              history=history if retention_ms is not None else None)
    k = 0
    replayed: dict[str, dict] = {}
    while k < len(items):
        n = int(rng.choice([1, 2, 5, 17, 100, 1000]))
        chunk = items[k:k + n]
        k += n
        bf, be = [], []
        for kind, i in chunk:
            row = (fixes if kind == "f" else events)[i]
            key = (row["device_id"], row["ts_ms"]) if kind == "f" else (row["device_id"], row["ts_ms"], row["event"])
            seen = seen_f if kind == "f" else seen_e
            if key in seen:
                continue  # the first to arrive is kept (the service's store does this)
            seen.add(key)
            (bf if kind == "f" else be).append(row)
            (arrived_f if kind == "f" else arrived_e).append(row)
        received.extend([("f", r) for r in bf] + [("e", r) for r in be])
        changes, _, _ = det.add(_rows(bf, policy), _events(be))
        for c in changes:  # what a consumer sees: applying every change gives the current records
            assert (replayed.get(c.breach_id) if c.previous is not None else None) == c.previous
            if c.record is None:
                replayed.pop(c.breach_id)
            else:
                replayed[c.breach_id] = c.record
        if check_each:
            assert det.records() == batch(arrived_f, arrived_e, assignments, zones, policy), f"after {k} rows"
    from geofence.records import sort_records

    assert sort_records(list(replayed.values())) == det.records()
    return det.records(), [fixes[i] for kind, i in items if kind == "f"], [events[i] for kind, i in items if kind == "e"]


def _events(rows):
    if not rows:
        return EventRows.empty()
    return EventRows([r["device_id"] for r in rows], np.array([r["ts_ms"] for r in rows], np.int64),
                     [r["event"] for r in rows])


# --------------------------------------------------------------------------- the invariant
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
@pytest.mark.parametrize("split", range(3))
def test_examples_stream_equals_batch(name, split):
    fixes, events, assignments, zones, policy = _example(name)
    rng = np.random.default_rng(split)
    got, arr_f, arr_e = stream(rng, fixes, events, assignments, zones, policy)
    assert got == batch(arr_f, arr_e, assignments, zones, policy)


@pytest.mark.parametrize("seed", range(150))
def test_random_cases_stream_equals_batch(seed):
    fixes, events, assignments, zones, policy = _random(seed)
    rng = np.random.default_rng(1000 + seed)
    retention = None if seed % 2 == 0 else int(rng.choice([600_000, 3_600_000]))
    got, arr_f, arr_e = stream(rng, fixes, events, assignments, zones, policy, retention_ms=retention)
    assert got == batch(arr_f, arr_e, assignments, zones, policy)


@pytest.mark.parametrize("seed", range(20))
def test_every_batch_equals_batch_so_far(seed):
    fixes, events, assignments, zones, policy = _random(500 + seed)
    rng = np.random.default_rng(seed)
    stream(rng, fixes, events, assignments, zones, policy, retention_ms=1_800_000 if seed % 2 else None,
           check_each=True)


# --------------------------------------------------------------------------- new subjects or zones
def _variant(rng, assignments, zones):
    """Another configuration: a zone changed, an assignment's zones or end changed, one removed or added."""
    from dataclasses import replace

    zones = list(zones)
    assignments = list(assignments)
    if zones and rng.random() < 0.6:
        k = int(rng.integers(0, len(zones)))
        z = zones[k]
        zones[k] = replace(z, radius_m=z.radius_m * 1.5) if z.is_circle else replace(z, windows=None)
    if assignments and rng.random() < 0.5:
        k = int(rng.integers(0, len(assignments)))
        a = assignments[k]
        assignments[k] = replace(a, zones=a.zones[:-1]) if a.zones else replace(a, zones=tuple(z.zone_id for z in zones[:1]))
    if len(assignments) > 1 and rng.random() < 0.3:
        assignments.pop(int(rng.integers(0, len(assignments))))
    if assignments and rng.random() < 0.3:
        k = int(rng.integers(0, len(assignments)))
        a = assignments[k]
        if a.end_ms is None:
            assignments[k] = replace(a, end_ms=a.start_ms + 12 * 3_600_000)
    return assignments, zones


@pytest.mark.parametrize("seed", range(40))
def test_reconfigure_midway_equals_batch_on_the_new_configuration(seed):
    fixes, events, assignments, zones, policy = _random(seed)
    rng = np.random.default_rng(7000 + seed)
    new_a, new_z = _variant(rng, assignments, zones)
    order = rng.permutation(len(fixes))
    half = int(len(fixes) * rng.uniform(0.2, 0.8))
    first = [fixes[i] for i in order[:half]]
    rest = [fixes[i] for i in order[half:]]
    seen, arrived = set(), []
    for r in first + rest:
        if (r["device_id"], r["ts_ms"]) not in seen:
            seen.add((r["device_id"], r["ts_ms"]))
            arrived.append(r)
    first_d = [r for r in arrived if r in first]
    rest_d = [r for r in arrived if r not in first_d]
    got_rows: list = []

    def history(a):
        mine = [r for r in got_rows if r["device_id"] == a.device_id]
        return _rows(mine, policy), _events([e for e in events if e["device_id"] == a.device_id])

    det = IncrementalDetector(assignments, zones, policy, history=history)
    replayed: dict = {}

    def apply(changes):
        for c in changes:
            assert (replayed.get(c.breach_id) if c.previous is not None else None) == c.previous
            if c.record is None:
                replayed.pop(c.breach_id)
            else:
                replayed[c.breach_id] = c.record

    got_rows += first_d
    apply(det.add(_rows(first_d, policy), _events(events))[0])
    apply(det.reconfigure(new_a, new_z))
    got_rows += rest_d
    apply(det.add(_rows(rest_d, policy), EventRows.empty())[0])
    want = batch(first_d + rest_d, events, new_a, new_z, policy)
    from geofence.records import sort_records

    assert det.records() == want
    assert sort_records(list(replayed.values())) == want
