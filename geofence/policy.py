"""POLICY.json -> `Policy`.

CONTRACT.md, "Policy": an object, every key optional, unknown keys an input
error. Durations are seconds, at most 10 years, converted to whole
milliseconds by rounding ``value x 1000`` to the nearest integer; all values
are finite numbers >= 0; ``curfew_missed_fraction`` in (0, 1];
``accumulated_battery_s`` > 0; ``crs`` a projected CRS in metres.

Rules written down where the contract is silent:

- "10 years" is ``10 x 365.25 days`` = 315,576,000 s (a Julian decade); a
  longer duration is an error.
- A value exactly halfway between two milliseconds rounds up (half away from
  zero; values are >= 0), not to even.
- Percentages (``battery_critical_pct``, ``battery_low_pct``) and
  ``default_accuracy_m`` need only be finite numbers >= 0, as the contract
  says; a threshold above 100 is allowed (every reading is then at or below
  it) and so is ``battery_critical_pct > battery_low_pct``.
- A JSON boolean is never a number; NaN/Infinity are not JSON.
- ``load_policy(None)`` is the all-defaults policy (no ``--policy`` given).
"""
from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Any

from trails.errors import InputError
from trails.projection import check_projected_crs

from .errors import PolicyError
from .model import Policy
from .zones import read_json

__all__ = ["load_policy", "parse_policy", "MAX_DURATION_S", "POLICY_KEYS"]

#: Ten Julian years in seconds: the longest duration a policy may give.
MAX_DURATION_S = 10 * 365.25 * 86400

#: Duration keys (seconds in the file) -> Policy field (ms).
_DURATIONS = {
    "coverage_s": "coverage_ms",
    "gap_s": "gap_ms",
    "curfew_grace_s": "curfew_grace_ms",
    "inclusion_grace_s": "inclusion_grace_ms",
    "exclusion_min_s": "exclusion_min_ms",
    "accumulated_battery_s": "accumulated_battery_ms",
    "accumulated_window_s": "accumulated_window_ms",
    "out_of_contact_s": "out_of_contact_ms",
    "max_clock_ahead_s": "max_clock_ahead_ms",  # continuous intake only (CONTRACT "Continuous intake")
}
_FLOATS = ("battery_critical_pct", "battery_low_pct", "default_accuracy_m", "curfew_missed_fraction")
_BATTERY_POLICIES = ("per_episode", "accumulated")

#: Every key POLICY.json may hold.
POLICY_KEYS: frozenset[str] = frozenset({"crs", "battery_policy", *_DURATIONS, *_FLOATS})

assert {f.name for f in fields(Policy)} == {"crs", "battery_policy", *_DURATIONS.values(), *_FLOATS}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(key: str, value: Any) -> float:
    """A finite number >= 0 (int or float, never bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"policy key {key!r} must be a number, got {_describe(value)}")
    try:
        as_float = float(value)
    except OverflowError:  # an integer too large for a double
        raise PolicyError(f"policy key {key!r} is too large: {_describe(value)}") from None
    if not math.isfinite(as_float):
        raise PolicyError(f"policy key {key!r} must be finite, got {_describe(value)}")
    if as_float < 0:
        raise PolicyError(f"policy key {key!r} must be >= 0, got {_describe(value)}")
    return as_float


def seconds_to_ms(value: float) -> int:
    """``value x 1000`` (IEEE double) rounded to the nearest integer, halves up."""
    scaled = value * 1000.0
    whole = math.floor(scaled)
    return int(whole) + (1 if scaled - whole >= 0.5 else 0)


def parse_policy(obj: Any, *, source: str = "POLICY.json") -> Policy:
    """Validate a decoded POLICY.json document and apply defaults.

    Raises
    ------
    PolicyError
        Names the key and what is wrong (or the file, if it is not an object).
    """
    if not isinstance(obj, dict):
        raise PolicyError(f"{source}: must be a JSON object, got {_describe(obj)}")
    unknown = sorted(obj.keys() - POLICY_KEYS)
    if unknown:
        raise PolicyError(f"policy key {unknown[0]!r} is not known (known keys: {', '.join(sorted(POLICY_KEYS))})")
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        if key in _DURATIONS:
            seconds = _number(key, value)
            if seconds > MAX_DURATION_S:
                raise PolicyError(f"policy key {key!r} is {value!r} s, more than 10 years ({MAX_DURATION_S:.0f} s)")
            ms = seconds_to_ms(seconds)
            if key == "accumulated_battery_s" and ms <= 0:
                raise PolicyError(f"policy key {key!r} must be > 0, got {value!r}")
            kwargs[_DURATIONS[key]] = ms
        elif key in _FLOATS:
            number = _number(key, value)
            if key == "curfew_missed_fraction" and not 0.0 < number <= 1.0:
                raise PolicyError(f"policy key {key!r} must be in (0, 1], got {value!r}")
            kwargs[key] = number
        elif key == "battery_policy":
            if value not in _BATTERY_POLICIES:
                raise PolicyError(f"policy key {key!r} must be 'per_episode' or 'accumulated', got {_describe(value)}")
            kwargs[key] = value
        else:  # crs
            if not isinstance(value, str) or not value.strip():
                raise PolicyError(f"policy key 'crs' must be a non-empty string, got {_describe(value)}")
            try:
                check_projected_crs(value)
            except InputError as exc:
                raise PolicyError(f"policy key 'crs': {exc}") from None
            kwargs[key] = value
    return Policy(**kwargs)


def load_policy(path: str | os.PathLike[str] | None) -> Policy:
    """Read and validate POLICY.json (CONTRACT.md, "Policy"); None gives the defaults.

    Raises
    ------
    PolicyError
        The file is missing, unreadable or not JSON (names the file), or a key
        is unknown or its value invalid (names the key).
    """
    if path is None:
        return Policy()
    return parse_policy(read_json(path, error=PolicyError), source=os.fspath(path))
