"""SUBJECTS.json -> validated `Assignment` objects.

CONTRACT.md, "Subjects": an object with a list ``subjects`` of objects, each an
assignment: ``subject_id`` and ``device_id`` non-empty strings (taken exactly
as written) of at most 128 characters with no Cc, Cf or Cs character
(`trails.validate.id_problem`, the rule rows' device ids follow), ``start`` a
timestamp (an instant in 0001..9999 UTC, `trails.timestamps.parse_timestamp`),
``end`` null/absent or a timestamp after ``start``, ``zones`` a list of
distinct zone ids (may be empty or absent; each obeys the id rule too);
other keys are ignored. Input errors: anything not of this shape, two
assignments of one device or of one subject that overlap in time (intervals
are half-open, so one ending exactly when the next starts is fine; a null end
is open-ended), and a zone id that ZONES.geojson does not define.

Messages name the assignment as ``subjects[i] (subject_id 'S-001')``.
Rules written down where the contract is silent: a naive timestamp is an
error, as everywhere outside fix rows; a null ``zones`` means none, like an
absent one.
"""
from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from trails.timestamps import NaiveTimestampError, TimestampRangeError, parse_timestamp
from trails.validate import id_problem

from .errors import SubjectsError
from .model import Assignment
from .zones import read_json

__all__ = ["load_subjects", "parse_subjects"]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _label(i: int, entry: Any) -> str:
    sid = entry.get("subject_id") if isinstance(entry, dict) else None
    if isinstance(sid, str) and sid and id_problem(sid) is None:  # a bad id is named by its index only
        return f"subjects[{i}] (subject_id {sid!r})"
    return f"subjects[{i}]"


def _timestamp(value: Any, where: str) -> int:
    if not isinstance(value, str):
        raise SubjectsError(f"{where} must be an RFC 3339 timestamp string, got {_describe(value)}")
    try:
        return parse_timestamp(value)
    except NaiveTimestampError:
        raise SubjectsError(f"{where} {_describe(value)} has no UTC offset (add Z or +HH:MM; it is never guessed)") from None
    except TimestampRangeError:
        raise SubjectsError(f"{where} {_describe(value)} is not a timestamp: its instant in UTC lies outside "
                            f"0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z") from None
    except ValueError:
        raise SubjectsError(f"{where} {_describe(value)} is not an RFC 3339 timestamp") from None


def _parse_one(i: int, entry: Any, zone_ids: Collection[str]) -> Assignment:
    label = _label(i, entry)
    if not isinstance(entry, dict):
        raise SubjectsError(f"{label}: must be an object, got {_describe(entry)}")
    for key in ("subject_id", "device_id"):
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            raise SubjectsError(f"{label}: {key} must be a non-empty string, got {_describe(value)}")
        problem = id_problem(value)
        if problem is not None:
            raise SubjectsError(f"{label}: {key} {_describe(value)} {problem}")
    if "start" not in entry:
        raise SubjectsError(f"{label}: start is missing")
    start_ms = _timestamp(entry["start"], f"{label}: start")
    end = entry.get("end")
    end_ms = None if end is None else _timestamp(end, f"{label}: end")
    if end_ms is not None and end_ms <= start_ms:
        raise SubjectsError(f"{label}: end {end!r} is not after start {entry['start']!r}")
    zones = entry.get("zones")
    if zones is None:
        zones = []
    if not isinstance(zones, list):
        raise SubjectsError(f"{label}: zones must be a list of zone ids, got {_describe(zones)}")
    seen: set[str] = set()
    for zid in zones:
        if not isinstance(zid, str) or not zid:
            raise SubjectsError(f"{label}: zones: {_describe(zid)} is not a zone id (a non-empty string)")
        problem = id_problem(zid)
        if problem is not None:
            raise SubjectsError(f"{label}: zones: zone id {_describe(zid)} {problem}")
        if zid in seen:
            raise SubjectsError(f"{label}: zones lists {zid!r} twice")
        seen.add(zid)
        if zid not in zone_ids:
            raise SubjectsError(f"{label}: zone {zid!r} is not defined in ZONES.geojson")
    return Assignment(
        subject_id=entry["subject_id"],
        device_id=entry["device_id"],
        start_ms=start_ms,
        end_ms=end_ms,
        zones=tuple(zones),
    )


def _check_overlaps(assignments: tuple[Assignment, ...], labels: list[str], attr: str) -> None:
    """Raise if two assignments sharing `attr` overlap (half-open, None = open end)."""
    groups: dict[str, list[int]] = {}
    for k, a in enumerate(assignments):
        groups.setdefault(getattr(a, attr), []).append(k)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        # Sorted by start, any overlap shows up between neighbours.
        idx.sort(key=lambda k: (assignments[k].start_ms, k))
        for prev, cur in zip(idx, idx[1:]):
            p_end = assignments[prev].end_ms
            if p_end is None or assignments[cur].start_ms < p_end:
                first, second = sorted((prev, cur))
                what = attr.replace("_id", "")
                raise SubjectsError(
                    f"{labels[second]}: overlaps {labels[first]} in time: "
                    f"one {what} ({getattr(assignments[cur], attr)!r}) in two assignments at once"
                )


def parse_subjects(obj: Any, zone_ids: Collection[str], *, source: str = "SUBJECTS.json") -> tuple[Assignment, ...]:
    """Validate a decoded SUBJECTS.json document; assignments in file order.

    Raises
    ------
    SubjectsError
        One line naming the assignment (index and subject_id) and what is wrong.
    """
    if not isinstance(obj, dict):
        raise SubjectsError(f"{source}: must be a JSON object with a list 'subjects'")
    entries = obj.get("subjects")
    if not isinstance(entries, list):
        raise SubjectsError(f"{source}: 'subjects' must be a list, got {_describe(entries)}")
    zone_ids = frozenset(zone_ids)
    assignments = tuple(_parse_one(i, e, zone_ids) for i, e in enumerate(entries))
    labels = [_label(i, e) for i, e in enumerate(entries)]
    _check_overlaps(assignments, labels, "device_id")
    _check_overlaps(assignments, labels, "subject_id")
    return assignments


def load_subjects(path: str | os.PathLike[str], zone_ids: Collection[str]) -> tuple[Assignment, ...]:
    """Read and validate SUBJECTS.json (CONTRACT.md, "Subjects").

    Parameters
    ----------
    path
        The SUBJECTS.json file.
    zone_ids
        The ids ZONES.geojson defines; any other zone id is an error.

    Returns
    -------
    tuple of Assignment
        In file order.

    Raises
    ------
    SubjectsError
        The file is missing, unreadable or not JSON (names the file), or an
        assignment breaks a rule (names the assignment).
    """
    return parse_subjects(read_json(path, error=SubjectsError), zone_ids, source=os.fspath(path))
