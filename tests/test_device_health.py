"""Issue 13, section 5 (second part): the device-health report finds a batch
that drains twice as fast. A simulated population (this module writes it):
20 tags over 3 days of April 2024, a fix every 5 minutes, batteries draining
at 1 %/h (batches B-A and B-B, each tag within 5% of that) or 2 %/h (batch
B-FAST, 5 tags) and charging at 30 %/h from 20% to 100%. The report must name
exactly the five B-FAST tags and exactly that batch, on the discharge rate."""
from __future__ import annotations

import numpy as np
import pytest

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from trails.timestamps import format_ms, parse_timestamp

T0 = parse_timestamp("2024-04-08T00:00:00Z")
STEP_MS = 300_000


@pytest.fixture()
def env(api_env):
    return api_env


def _population() -> dict[str, tuple[str, float]]:
    rng = np.random.default_rng(7)
    out = {}
    for k in range(20):
        batch = "B-FAST" if k < 5 else ("B-A" if k < 13 else "B-B")
        base = 2.0 if batch == "B-FAST" else 1.0
        out[f"D-H-{k:02d}"] = (batch, base * float(rng.uniform(0.95, 1.05)))
    return out


def _write_fixes(path, population) -> None:
    lines = ["device_id,ts,lat,lon,accuracy_m,battery_pct"]
    for device, (_, rate) in population.items():
        battery, charging = 100.0, False
        for i in range(3 * 288):
            lines.append(f"{device},{format_ms(T0 + i * STEP_MS)},53.40,-2.98,10,{battery:.2f}")
            if charging:
                battery = min(100.0, battery + 30 * STEP_MS / 3_600_000)
                charging = battery < 100.0
            else:
                battery -= rate * STEP_MS / 3_600_000
                charging = battery <= 20.0
    path.write_text("\n".join(lines) + "\n")


def test_the_report_finds_exactly_the_batch_that_drains_twice_as_fast(env, tmp_path):
    from trails.ingest import ingest

    population = _population()
    _write_fixes(tmp_path / "fixes.csv", population)
    ingest(tmp_path / "fixes.csv", home=env.home)
    for device, (batch, _) in population.items():
        r = env.client.put(f"/v1/devices/{device}", headers=env.h("admin"),
                           json={"serial": f"SN-{device}", "model": "GT-3", "batch": batch})
        assert r.status_code == 200, r.text
    r = env.client.get("/v1/reports/device-health?from=2024-04-08T00:00:00Z&to=2024-04-11T00:00:00Z",
                       headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["suspect_devices"] == [f"D-H-{k:02d}" for k in range(5)]
    assert report["suspect_batches"] == {"B-FAST": ["discharge_pct_per_h"]}
    rates = {d["device_id"]: d["discharge_pct_per_h"] for d in report["devices"]}
    for device, (_, rate) in population.items():
        assert rates[device] == pytest.approx(rate, rel=0.01)  # the rate each tag was simulated with
    fast = [d for d in report["devices"] if d["batch"] == "B-FAST"]
    slow = [d for d in report["devices"] if d["batch"] != "B-FAST"]
    assert min(d["charges_per_day"] for d in fast) > max(d["charges_per_day"] for d in slow)
    assert all(d["suspect"] == ["discharge_pct_per_h"] for d in fast) and all(not d["suspect"] for d in slow)
