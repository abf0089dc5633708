"""geofence.policy: POLICY.json loading and every contract input error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from geofence.errors import PolicyError
from geofence.model import Policy
from geofence.policy import MAX_DURATION_S, load_policy, seconds_to_ms

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"


def write(tmp_path, obj):
    path = tmp_path / "policy.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def test_none_and_empty_object_give_defaults(tmp_path):
    assert load_policy(None) == Policy()
    assert load_policy(write(tmp_path, {})) == Policy()


@pytest.mark.parametrize("example", sorted(p.parent.name for p in EXAMPLES.glob("*/policy.json")))
def test_contract_examples_load(example):
    raw = json.loads((EXAMPLES / example / "policy.json").read_text())
    policy = load_policy(EXAMPLES / example / "policy.json")
    for key, value in raw.items():
        if key.endswith("_s"):
            assert getattr(policy, key[:-2] + "_ms") == round(value * 1000)
        else:
            assert getattr(policy, key) == value


def test_every_key(tmp_path):
    doc = {
        "crs": "EPSG:32630", "coverage_s": 60, "gap_s": 600.5, "curfew_grace_s": 0,
        "curfew_missed_fraction": 1, "inclusion_grace_s": 1.0004, "exclusion_min_s": 0.0005,
        "battery_critical_pct": 0, "battery_low_pct": 150, "battery_policy": "accumulated",
        "accumulated_battery_s": 0.001, "accumulated_window_s": MAX_DURATION_S,
        "out_of_contact_s": 86400, "default_accuracy_m": 12.5,
    }
    p = load_policy(write(tmp_path, doc))
    assert p == Policy(
        crs="EPSG:32630", coverage_ms=60_000, gap_ms=600_500, curfew_grace_ms=0,
        curfew_missed_fraction=1.0, inclusion_grace_ms=1000, exclusion_min_ms=1,
        battery_critical_pct=0.0, battery_low_pct=150.0, battery_policy="accumulated",
        accumulated_battery_ms=1, accumulated_window_ms=315_576_000_000,
        out_of_contact_ms=86_400_000, default_accuracy_m=12.5,
    )
    assert isinstance(p.battery_critical_pct, float) and isinstance(p.coverage_ms, int)


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(0, 0), (0.0004, 0), (0.0005, 1), (0.0015, 2), (2.5e-4, 0), (1.2345, 1235), (300, 300_000), (MAX_DURATION_S, 315_576_000_000)],
    ids=["zero", "below-half", "half-up", "half-up-odd", "quarter", "round", "whole", "max"],
)
def test_seconds_to_ms_rounds_to_nearest(seconds, ms):
    assert seconds_to_ms(seconds) == ms


BAD = [
    ("not-object", [1], "must be a JSON object"),
    ("unknown-key", {"gap": 900}, "policy key 'gap' is not known"),
    ("duration-negative", {"gap_s": -1}, "policy key 'gap_s' must be >= 0"),
    ("duration-string", {"coverage_s": "300"}, "policy key 'coverage_s' must be a number"),
    ("duration-bool", {"curfew_grace_s": True}, "policy key 'curfew_grace_s' must be a number"),
    ("duration-null", {"inclusion_grace_s": None}, "policy key 'inclusion_grace_s' must be a number"),
    ("duration-over-10-years", {"out_of_contact_s": MAX_DURATION_S + 1}, "policy key 'out_of_contact_s' is"),
    ("duration-huge-int", {"accumulated_window_s": 10**400}, "policy key 'accumulated_window_s' is too large"),
    ("accumulated-battery-zero", {"accumulated_battery_s": 0}, "policy key 'accumulated_battery_s' must be > 0"),
    ("accumulated-battery-rounds-to-zero", {"accumulated_battery_s": 0.0001}, "policy key 'accumulated_battery_s' must be > 0"),
    ("fraction-zero", {"curfew_missed_fraction": 0}, "policy key 'curfew_missed_fraction' must be in (0, 1]"),
    ("fraction-above-one", {"curfew_missed_fraction": 1.01}, "policy key 'curfew_missed_fraction' must be in (0, 1]"),
    ("fraction-string", {"curfew_missed_fraction": "0.5"}, "policy key 'curfew_missed_fraction' must be a number"),
    ("battery-critical-negative", {"battery_critical_pct": -1}, "policy key 'battery_critical_pct' must be >= 0"),
    ("battery-low-bool", {"battery_low_pct": False}, "policy key 'battery_low_pct' must be a number"),
    ("accuracy-negative", {"default_accuracy_m": -0.5}, "policy key 'default_accuracy_m' must be >= 0"),
    ("battery-policy-unknown", {"battery_policy": "daily"}, "policy key 'battery_policy' must be 'per_episode' or 'accumulated'"),
    ("battery-policy-case", {"battery_policy": "Accumulated"}, "policy key 'battery_policy'"),
    ("crs-geographic", {"crs": "EPSG:4326"}, "policy key 'crs': crs 'EPSG:4326' is not a projected CRS"),
    ("crs-feet", {"crs": "EPSG:2263"}, "policy key 'crs': crs 'EPSG:2263' has horizontal axes in"),
    ("crs-garbage", {"crs": "EPSG:nope"}, "policy key 'crs': crs 'EPSG:nope' is not a CRS pyproj accepts"),
    ("crs-number", {"crs": 27700}, "policy key 'crs' must be a non-empty string"),
    ("crs-empty", {"crs": ""}, "policy key 'crs' must be a non-empty string"),
]


@pytest.mark.parametrize(("doc", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_input_errors_name_the_key(tmp_path, doc, fragment):
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, doc))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [('{"gap_s": NaN}', "NaN is not valid JSON"), ('{"gap_s": Infinity}', "Infinity is not valid JSON"),
     ('{"gap_s": 1e400}', "policy key 'gap_s' must be finite"), ("", "not valid JSON")],
    ids=["nan", "infinity", "overflow-to-inf", "empty-file"],
)
def test_non_finite_values(tmp_path, text, fragment):
    with pytest.raises(PolicyError, match=None) as info:
        load_policy(write(tmp_path, text))
    assert fragment in str(info.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(PolicyError, match="nope.json: file not found"):
        load_policy(tmp_path / "nope.json")
