"""The simulated population should produce breach volumes shaped like the
inspection's: battery breaches the largest share, curfew absences and
exclusion entries rarer, and the accumulated policy cutting battery volume."""
from __future__ import annotations

import json
from collections import Counter

from api.cli.main import main
from trails.sim.simulate import simulate


def test_breach_mix_looks_like_the_inspection(tmp_path, capsys):
    sim = simulate(tmp_path / "in", wearers=80, days=7, seed=2024, start="2024-05-06")
    common = ["--fixes", str(sim.fixes_path), "--events", str(tmp_path / "in" / "events.csv"),
              "--subjects", str(tmp_path / "in" / "subjects.json"), "--zones", str(tmp_path / "in" / "zones.geojson")]
    assert main(["detect", *common, "--out", str(tmp_path / "pe"), "--quiet"]) == 0
    policy = tmp_path / "acc.json"
    policy.write_text(json.dumps({"battery_policy": "accumulated"}))
    assert main(["detect", *common, "--policy", str(policy), "--out", str(tmp_path / "acc"), "--quiet"]) == 0

    def breaches(d):
        recs = [json.loads(l) for l in (tmp_path / d / "breaches.jsonl").read_text().splitlines()]
        return Counter(r["type"] for r in recs if r["kind"] == "breach")

    pe, acc = breaches("pe"), breaches("acc")
    total = sum(pe.values())
    assert pe.most_common(1)[0][0] == "battery"
    assert pe["battery"] >= 0.4 * total, pe
    assert 0 < pe["curfew_absence"] + pe["curfew_missed"] < pe["battery"]
    assert pe["exclusion_entry"] < pe["curfew_absence"] + pe["curfew_missed"]
    battery_acc = acc["battery"] + acc["accumulated_battery"]
    assert battery_acc <= 0.5 * pe["battery"], (pe, acc)
