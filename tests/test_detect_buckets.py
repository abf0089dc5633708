"""Bucketed store detection gives byte for byte the files of the single pass.

The case is simulated (`trails.sim`) and then made hard on purpose: a subject
whose assignment moves to a second device (so its records come from two
tasks), a device that passes to another subject after a gap (its fixes in
between are `unassigned`), a device with no fixes at all (gap records only),
tamper events (one unassigned), and the accumulated battery
policy with a short threshold (its rolling window spans the whole period).
Every file of the output directory is compared, for several B (1, B >
devices), task sizes that split buckets, --from/--to and --as-of.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli.main import main
from trails.ingest import ingest
from trails.sim.simulate import simulate

EXTRA_EVENTS = [  # device_id, ts, event
    ("D-000001", "2024-03-04T10:00:00Z", "strap_tamper"),
    ("D-000001", "2024-03-04T10:00:00Z", "strap_tamper"),  # duplicate (quarantined by ingest)
    ("D-000000", "2024-03-05T15:00:00Z", "strap_tamper"),  # unassigned: between D-000000's two wearers
    ("D-000004", "2024-03-06T01:00:00Z", "strap_tamper"),
    ("D-NOBODY", "2024-03-05T01:00:00Z", "strap_tamper"),  # no assignment: not part of the analysis
]


def _harden(sim: Path) -> None:
    """Device swaps, a gap between wearers, a device without fixes and tamper events."""
    doc = json.loads((sim / "subjects.json").read_text())
    subjects = doc["subjects"]
    s0, s1 = subjects[0], subjects[1]
    s0["end"] = "2024-03-05T12:00:00Z"  # D-000000 passes to S-NEW after a gap
    subjects.append({"subject_id": "S-NEW", "device_id": s0["device_id"], "start": "2024-03-05T18:00:00Z",
                     "end": None, "zones": s0["zones"]})
    s1["end"] = "2024-03-05T06:00:00Z"  # S-000001 moves to a device that never reports
    subjects.append({"subject_id": s1["subject_id"], "device_id": "D-GHOST", "start": "2024-03-05T06:00:00Z",
                     "end": None, "zones": s1["zones"]})
    (sim / "subjects.json").write_text(json.dumps(doc))
    with open(sim / "events.csv", "a", encoding="utf-8") as fh:
        for row in EXTRA_EVENTS:
            fh.write(",".join(row) + "\n")
    (sim / "accumulated.json").write_text(json.dumps({"battery_policy": "accumulated", "accumulated_battery_s": 1800,
                                                       "accumulated_window_s": 172800}))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    simulate(root, wearers=12, days=3, seed=11, start="2024-03-04", bad_row_rate=0.01)
    _harden(root)
    return root


@pytest.fixture(scope="module")
def homes(sim, tmp_path_factory) -> dict[int, Path]:
    out = {}
    for b in (1, 3, 16, 64):
        home = tmp_path_factory.mktemp(f"home-{b}")
        ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=b)
        out[b] = home
    return out


def _detect(home: Path, sim: Path, out: Path, *extra: str) -> dict[str, bytes]:
    args = ["detect", "--home", str(home), "--subjects", str(sim / "subjects.json"), "--zones",
            str(sim / "zones.geojson"), "--out", str(out), "--quiet", *extra]
    assert main(args) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("task_rows", [1_000_000, 30_000, 3_000, 1],
                         ids=["one-task", "bucket-per-task", "split", "device-per-task"])
@pytest.mark.parametrize("buckets", [1, 3, 16, 64], ids=lambda b: f"B{b}")
@pytest.mark.parametrize("policy", [None, "accumulated.json"], ids=["per_episode", "accumulated"])
def test_bucketed_equals_single_pass(tmp_path, sim, homes, buckets, task_rows, policy):
    extra = [] if policy is None else ["--policy", str(sim / policy)]
    single = _detect(homes[buckets], sim, tmp_path / "single", "--single-pass", *extra)
    bucketed = _detect(homes[buckets], sim, tmp_path / "bucketed", "--task-rows", str(task_rows), *extra)
    assert set(single) == {"breaches.jsonl", "quarantine.csv"}
    assert bucketed == single
    lines = single["breaches.jsonl"].decode().splitlines()
    types = {json.loads(line)["type"] for line in lines}
    devices = {json.loads(line)["device_id"] for line in lines}
    # the case exercises what it is meant to
    assert {"strap_tamper", "low_battery", "no_signal"} <= types and "D-GHOST" in devices
    assert ("accumulated_battery" in types) == (policy is not None)
    assert b"events,59,unassigned" in single["quarantine.csv"] and b"fixes," in single["quarantine.csv"]


@pytest.mark.parametrize("extra", [
    ["--from", "2024-03-05", "--to", "2024-03-06T12:00:00Z"],
    ["--from", "2024-03-05T17:00:00Z"],
    ["--as-of", "2024-03-05T20:00:00Z"],
    ["--as-of", "2024-03-05T20:00:00Z", "--to", "2024-03-05T19:00:00Z"],
], ids=["from-to", "from", "as-of", "as-of-to"])
def test_bucketed_equals_single_pass_on_a_window(tmp_path, sim, homes, extra):
    single = _detect(homes[3], sim, tmp_path / "single", "--single-pass", *extra)
    bucketed = _detect(homes[3], sim, tmp_path / "bucketed", "--task-rows", "3000", *extra)
    assert bucketed == single and single["breaches.jsonl"]


def test_summary_and_policy_comparison_agree(sim, homes, tmp_path, capsys):
    """What is printed (counts, the battery policy comparison) is the same too, but for the timing line."""
    base = ["detect", "--home", str(homes[16]), "--subjects", str(sim / "subjects.json"), "--zones",
            str(sim / "zones.geojson"), "--compare-battery-policies"]
    assert main(base + ["--out", str(tmp_path / "a"), "--single-pass"]) == 0
    single = capsys.readouterr().out.splitlines()
    assert main(base + ["--out", str(tmp_path / "b"), "--task-rows", "2000"]) == 0
    bucketed = capsys.readouterr().out.splitlines()
    drop = lambda lines: [ln.replace(str(tmp_path / "a"), "OUT").replace(str(tmp_path / "b"), "OUT")  # noqa: E731
                          for ln in lines if " fix rows in " not in ln]
    assert drop(bucketed) == drop(single)
    assert any("bucket tasks" in ln for ln in bucketed)


def test_store_mode_options_are_refused_where_they_mean_nothing(sim, homes, tmp_path, capsys):
    base = ["detect", "--subjects", str(sim / "subjects.json"), "--zones", str(sim / "zones.geojson"),
            "--out", str(tmp_path / "o")]
    assert main(base + ["--fixes", str(sim / "fixes.csv"), "--cluster", "local:2"]) == 2
    assert "store mode" in capsys.readouterr().err
    assert main(base + ["--home", str(homes[3]), "--store-url", "/x"]) == 2
    assert "needs --cluster" in capsys.readouterr().err
    assert main(base + ["--home", str(homes[3]), "--task-rows", "0"]) == 2
    assert "--task-rows" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("task_rows", ["3000", "1"], ids=["split", "device-per-task"])
def test_row_group_pruning_equals_single_pass(tmp_path, sim, task_rows, monkeypatch):
    """Store files of many small row groups: a task reads only the groups whose device_id
    statistics meet its devices (`trails.store._read_row_groups`), and still the same bytes."""
    import pyarrow.parquet as pq

    import trails.store

    monkeypatch.setattr(trails.store, "ROW_GROUP_ROWS", 500)
    home = tmp_path / "h"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=2)
    assert max(pq.ParquetFile(p).metadata.num_row_groups for p in (home / "store" / "fixes").rglob("*.parquet")) > 5
    single = _detect(home, sim, tmp_path / "single", "--single-pass")
    assert _detect(home, sim, tmp_path / "bucketed", "--task-rows", task_rows) == single
