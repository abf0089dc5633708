"""Errors raised by `geofence`; all input errors are `trails.errors.InputError`
so the CLI maps every one of them to exit code 2."""
from __future__ import annotations

from trails.errors import InputError

__all__ = ["ZoneError", "SubjectsError", "PolicyError"]


class ZoneError(InputError):
    """ZONES.geojson (or an imported layer) is invalid; the message names the zone."""


class SubjectsError(InputError):
    """SUBJECTS.json is invalid; the message names the assignment."""


class PolicyError(InputError):
    """POLICY.json is invalid; the message names the key."""
