"""The evidence behind one breach record: the fixes it rests on, each
classified against the record's own zone, and that zone as it stood.

Minimal by construction (the issue's evidence rule): only fixes inside the
record's window widened by the policy's ``coverage`` either side (a fix
covers ``coverage_s`` around its instant, CONTRACT.md, so those are exactly
the fixes that can have a piece in the window), and only while the wearer
wore the device (`api.access.extracts.clip_assignments`: a device's fixes
while someone else wore it are never shown). Fixes are read with the store's
own reader (`trails.store.read_store_fixes`, after the caller has let the
service move received fixes into the store), and classified with the
project's geofence code (`geofence.classify.classify_points`), accuracy-aware
with the policy's ``default_accuracy_m`` for a fix without one: the colours
a caseworker sees are the engine's, not a second implementation.

The console page (`api.web.pages.breach`) audits the consultation; this
module only reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from api.access.extracts import clip_assignments
from api.db.models import BreachRow
from api.service.detections import load_assignments, load_zones_from_db
from geofence.classify import classify_points
from geofence.compile import compile_zones
from geofence.model import Assignment, Policy, Zone, zone_label
from trails.projection import STORE_CRS, project_lonlat
from trails.store import read_store_fixes

__all__ = ["EVIDENCE_GROUND", "Evidence", "evidence_window", "breach_assignment", "breach_zone", "read_evidence", "STATE_NAMES"]

#: The ground a record's evidence is consulted on (governance.md): the breach itself.
EVIDENCE_GROUND = "bail_breach"
#: Classification codes (DEVELOPERS.md: OUT 0, UNCERTAIN 1, IN 2) as the page names them.
STATE_NAMES: tuple[str, ...] = ("OUT", "UNCERTAIN", "IN")


@dataclass(frozen=True)
class Evidence:
    """The fixes shown for one record, in time order (parallel arrays)."""

    start_ms: int  # the window shown: record start - coverage
    end_ms: int  # record end + coverage (inclusive: a fix at the end instant still covers the record)
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray  # NaN = not given
    battery_pct: np.ndarray  # NaN = unknown
    state: np.ndarray  # int8 OUT/UNCERTAIN/IN for the record's zone; -1 when the record has no zone

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


def evidence_window(b: BreachRow, policy: Policy) -> tuple[int, int]:
    """``[start - coverage, end + coverage]``: the only fixes a record's page shows."""
    return int(b.start_ms) - int(policy.coverage_ms), int(b.end_ms) + int(policy.coverage_ms)


def breach_assignment(session: Session, b: BreachRow) -> Assignment | None:
    """The assignment segment the record was detected on: its wearer, its device, covering its start."""
    for a in load_assignments(session, b.subject_id):
        if a.device_id == b.device_id and a.start_ms <= b.start_ms and (a.end_ms is None or b.start_ms < a.end_ms):
            return a
    return None


def breach_zone(session: Session, b: BreachRow, policy: Policy) -> Zone | None:
    """The version of the record's zone that its assignment segment used (None: a record without a zone)."""
    if b.zone_id is None:
        return None
    a = breach_assignment(session, b)
    keys = [k for k in (a.zones if a is not None else ()) if zone_label(k) == b.zone_id] or [b.zone_id]
    zones = load_zones_from_db(session, keys[:1], crs=policy.crs)
    return zones[0] if zones else None


def _empty() -> tuple[np.ndarray, ...]:
    return (np.zeros(0, np.int64),) + tuple(np.zeros(0, np.float64) for _ in range(6))


def read_evidence(home, session: Session, b: BreachRow, zone: Zone | None, policy: Policy) -> Evidence:
    """The record's fixes (`evidence_window`), classified against `zone`."""
    lo, hi = evidence_window(b, policy)
    parts = [_empty()]
    for a in clip_assignments(load_assignments(session, b.subject_id), b.subject_id, lo, hi + 1):
        f = read_store_fixes(home, start_ms=a.start_ms, end_ms=a.end_ms, devices=[a.device_id])
        parts.append((f.ts_ms, f.lat, f.lon, f.x, f.y, f.accuracy_m, f.battery_pct))
    ts, lat, lon, x, y, acc, bat = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(7))
    order = np.argsort(ts, kind="stable")  # one wearer's assignments never overlap
    ts, lat, lon, x, y, acc, bat = (c[order] for c in (ts, lat, lon, x, y, acc, bat))
    state = np.full(ts.shape[0], -1, np.int8)
    if zone is not None and ts.size:
        if policy.crs != STORE_CRS:
            x, y = project_lonlat(lon, lat, policy.crs)
        compiled = compile_zones([zone], policy.crs)
        used = np.where(np.isnan(acc), float(policy.default_accuracy_m), acc)
        state = classify_points(x, y, used, compiled.index_of(zone.zone_id), compiled).astype(np.int8)
    return Evidence(start_ms=lo, end_ms=hi, ts_ms=ts.astype(np.int64), lat=lat, lon=lon, accuracy_m=acc,
                    battery_pct=bat, state=state)
