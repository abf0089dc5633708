"""Validated inputs of detection: zones, assignments and policy.

Frozen dataclasses, validated once by their loaders (`geofence.zones`,
`geofence.subjects`, `geofence.policy`); everything downstream trusts them.
Times are integer milliseconds since the Unix epoch (UTC); durations are
integer milliseconds (CONTRACT.md, "Time").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trails.projection import STORE_CRS

__all__ = ["Window", "Zone", "Assignment", "Policy", "ZONE_KINDS", "DAY_NAMES", "VERSION_SEP", "zone_key", "zone_version",
           "zone_label"]

ZONE_KINDS: tuple[str, ...] = ("curfew", "inclusion", "exclusion")
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


#: Joins a zone id and a version into one key (`zone_key`). A control character, which
#: the contract forbids in zone ids, so a key can never be mistaken for an id.
VERSION_SEP = "\x1f"


def zone_key(zone_id: str, version: int) -> str:
    """The key of one version of a zone, for detection runs that hold several versions
    of it at once (the service: a condition changes from a given instant on, so the
    assignment is split there and each part is judged against its own version)."""
    return f"{zone_id}{VERSION_SEP}{int(version)}"


def zone_label(key: str) -> str:
    """The zone id a record carries: a versioned key without its version; an id unchanged."""
    return key.partition(VERSION_SEP)[0]


def zone_version(key: str) -> int:
    """The version a versioned key names; 1 for a plain id (as `zone_key` readers assume)."""
    return int(key.partition(VERSION_SEP)[2] or 1)


@dataclass(frozen=True)
class Window:
    """A weekly schedule window: starts on each of `days` (0 = Monday) at
    `start_min` minutes after local midnight and ends at `end_min` local time,
    the same day if ``end_min > start_min``, else the next day."""

    days: tuple[int, ...]
    start_min: int
    end_min: int


@dataclass(frozen=True)
class Zone:
    """One zone as given in ZONES.geojson (WGS84).

    Exactly one of `polygons` and (`center_lonlat`, `radius_m`) is set.
    `polygons` is a tuple of polygons, each a tuple of rings (shell first, then
    holes), each ring a tuple of ``(lon, lat)`` positions, closed (first ==
    last) as GeoJSON requires. `windows` is None when the zone has no schedule
    (always active).
    """

    zone_id: str
    kind: Literal["curfew", "inclusion", "exclusion"]
    polygons: tuple[tuple[tuple[tuple[float, float], ...], ...], ...] | None
    center_lonlat: tuple[float, float] | None
    radius_m: float | None
    windows: tuple[Window, ...] | None
    timezone: str = "Europe/London"

    @property
    def is_circle(self) -> bool:
        return self.center_lonlat is not None


@dataclass(frozen=True)
class Assignment:
    """The subject wears the device during ``[start_ms, end_ms)``; `end_ms`
    None means still worn."""

    subject_id: str
    device_id: str
    start_ms: int
    end_ms: int | None
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """POLICY.json with defaults applied; durations in whole milliseconds."""

    crs: str = STORE_CRS  # the contract's default is the store's CRS
    coverage_ms: int = 300_000
    gap_ms: int = 900_000
    curfew_grace_ms: int = 900_000
    curfew_missed_fraction: float = 0.5
    inclusion_grace_ms: int = 900_000
    exclusion_min_ms: int = 0
    battery_critical_pct: float = 5.0
    battery_low_pct: float = 20.0
    battery_policy: Literal["per_episode", "accumulated"] = "per_episode"
    accumulated_battery_ms: int = 43_200_000
    accumulated_window_ms: int = 604_800_000
    out_of_contact_ms: int = 604_800_000
    default_accuracy_m: float = 0.0
    #: Continuous intake only: how far a row's ts may run ahead of its receipt time
    #: (CONTRACT.md, "Continuous intake"); `tagtrail detect` ignores it.
    max_clock_ahead_ms: int = 300_000
