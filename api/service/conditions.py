"""Conditions over time: the assignments and zones the service detects
against, and how they change.

A condition applies from when it is imposed. An admin who changes a zone,
or the zones of an assignment, changes them from that instant on: the
assignment is split there into segments (rows of `assignments`, each an
assignment of its own for detection, CONTRACT.md "Timeline": an episode
that spans the split is two episodes, each judged alone), the segment
before keeps the old zones at their old versions, the segment after gets
the new ones. So nobody can draw a grid of zones over a wearer's past and
read a location history out of the breach queue. The past changes only
through a `Correction`: one admin proposes it with a reason, a second admin
(never the same person) approves it with a reason, and only then is it
applied. Every zone version is kept (`zone_versions`) with the SHA-256 of
its canonical JSON, which the audit entry of the change also records.

Operators who load whole files (`tagtrail subjects load`, `tagtrail detect
--db`) state the conditions for the whole period of the file: that
replaces every segment (a new zone version where a zone changed), audited
as such.

Functions here change the session's objects and never commit: the router
commits the change with its audit entry.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import rfc8785
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from geofence.errors import SubjectsError, ZoneError
from geofence.model import Assignment, Zone, zone_key
from geofence.subjects import parse_subjects
from geofence.zones import parse_zones
from trails.errors import InputError
from trails.projection import STORE_CRS
from trails.timestamps import format_ms

from api.db.models import AssignmentRow, Correction, ZoneRow, ZoneVersion

__all__ = ["ConditionError", "CorrectionNeeded", "canonical_sha256", "load_assignments", "load_zones",
           "replace_all", "change_zone", "change_assignment", "apply_correction", "CORRECTION_KINDS"]

CORRECTION_KINDS: tuple[str, ...] = ("assignment", "zone")


class ConditionError(InputError):
    """A change that is invalid as the contract validates SUBJECTS.json and ZONES.geojson."""


class CorrectionNeeded(ConditionError):
    """A change that would alter conditions in the past: it needs a correction."""


def canonical_sha256(doc: dict) -> str:
    """SHA-256 of a JSON document's canonical form (RFC 8785): how the audit log names a
    zone version or a correction's payload without holding it."""
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


def _versions(row: AssignmentRow) -> dict[str, int]:
    return json.loads(row.zone_versions_json or "{}")


def _zones(row: AssignmentRow) -> list[str]:
    return json.loads(row.zones_json or "[]")


# ---------------------------------------------------------------- reading
def load_assignments(session: Session, subject_id: str | None = None) -> tuple[Assignment, ...]:
    """Every segment as an `Assignment` whose zones are versioned keys (`geofence.model.zone_key`),
    ordered by subject and start; records still name zones by their ids."""
    q = select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)
    if subject_id is not None:
        q = q.where(AssignmentRow.subject_id == subject_id)
    out = []
    for r in session.scalars(q):
        v = _versions(r)
        out.append(Assignment(r.subject_id, r.device_id, r.start_ms, r.end_ms,
                              tuple(zone_key(z, v.get(z, 1)) for z in _zones(r))))
    return tuple(out)


def load_zones(session: Session, keys: Sequence[str] | None = None, *, crs: str = STORE_CRS) -> tuple[Zone, ...]:
    """The zone versions `keys` name (default: every version a segment uses), as `Zone`s
    whose `zone_id` is the versioned key, ordered by key."""
    if keys is None:
        keys = sorted({k for a in load_assignments(session) for k in a.zones})
    wanted: dict[str, set[int]] = {}
    for k in keys:
        zid, _, ver = k.partition("\x1f")
        wanted.setdefault(zid, set()).add(int(ver or 1))
    if not wanted:
        return ()
    rows = session.scalars(select(ZoneVersion).where(ZoneVersion.zone_id.in_(list(wanted))))
    found = sorted(((r.zone_id, r.version), json.loads(r.feature_json)) for r in rows if r.version in wanted[r.zone_id])
    if not found:
        return ()
    # versions of one zone share its id: parse them under stand-in ids (unique by construction), then key them
    try:
        parsed = parse_zones({"type": "FeatureCollection", "features": [
            {**f, "id": f"v{n}"} for n, (_, f) in enumerate(found)]}, source="database zones", crs=crs)
    except ZoneError as exc:
        message = str(exc)
        for n, ((zid, ver), _) in enumerate(found):
            message = message.replace(f"'v{n}'", f"{zid!r} (version {ver})")
        raise ZoneError(message) from None
    by_tmp = {z.zone_id: z for z in parsed}
    return tuple(replace(by_tmp[f"v{n}"], zone_id=zone_key(zid, ver)) for n, ((zid, ver), _) in enumerate(found))


# ---------------------------------------------------------------- validating
def _check(session: Session, rows: list[AssignmentRow], zone_ids: set[str]) -> None:
    """The segments must be valid as SUBJECTS.json entries together (no overlap, known zones)."""
    entries = [{"subject_id": r.subject_id, "device_id": r.device_id, "start": format_ms(r.start_ms),
                "end": None if r.end_ms is None else format_ms(r.end_ms), "zones": _zones(r)} for r in rows]
    try:
        parse_subjects({"subjects": entries}, zone_ids, source="assignments")
    except SubjectsError as exc:
        raise ConditionError(str(exc)) from None


def _segments(session: Session) -> list[AssignmentRow]:
    return list(session.scalars(select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)))


def _current(session: Session) -> dict[str, ZoneRow]:
    return {z.zone_id: z for z in session.scalars(select(ZoneRow))}


def _split(session: Session, row: AssignmentRow, at_ms: int) -> AssignmentRow:
    """Split `row` at `at_ms` (inside it): it ends there; returns the new segment from there on."""
    after = AssignmentRow(subject_id=row.subject_id, device_id=row.device_id, start_ms=at_ms, end_ms=row.end_ms,
                          zones_json=row.zones_json, chain_start_ms=row.chain_start_ms,
                          zone_versions_json=row.zone_versions_json)
    row.end_ms = at_ms
    session.add(after)
    return after


# ---------------------------------------------------------------- zones
@dataclass(frozen=True)
class ZoneChange:
    """What `change_zone` did: the new version (None if the feature was unchanged) and segments split."""

    zone_id: str
    kind: str
    version: int
    sha256: str
    added: bool
    changed: bool
    split: int


def _validated_zone(session: Session, zone_id: str, feature: dict, crs: str) -> Zone:
    current = _current(session)
    features = [json.loads(r.feature_json) for zid, r in sorted(current.items()) if zid != zone_id] + [feature]
    try:
        zones = parse_zones({"type": "FeatureCollection", "features": features}, source="zones", crs=crs)
    except ZoneError as exc:
        raise ConditionError(str(exc)) from None
    (z,) = [z for z in zones if z.zone_id == zone_id]
    return z


def change_zone(session: Session, zone_id: str, feature: dict, *, at_ms: int, user_id: int | None,
                crs: str = STORE_CRS, correction_id: int | None = None, now_ms: int | None = None) -> ZoneChange:
    """Make `feature` the zone's geometry and schedule from `at_ms` on (a new version);
    segments that use the zone and run across `at_ms` are split there.

    `at_ms` is now for an admin's change; an approved correction passes an
    earlier instant (`apply_correction`), and `now_ms` the time of approval."""
    z = _validated_zone(session, zone_id, feature, crs)
    digest = canonical_sha256(feature)
    row = _current(session).get(zone_id)
    if row is not None and canonical_sha256(json.loads(row.feature_json)) == digest and correction_id is None:
        return ZoneChange(zone_id, z.kind, row.version, digest, added=False, changed=False, split=0)
    version = 1 if row is None else max(v for v in session.scalars(
        select(ZoneVersion.version).where(ZoneVersion.zone_id == zone_id))) + 1
    text = json.dumps(feature, sort_keys=True)
    session.add(ZoneVersion(zone_id=zone_id, version=version, kind=z.kind, feature_json=text, sha256=digest,
                            effective_from_ms=at_ms, created_ms=at_ms if now_ms is None else now_ms,
                            created_by=user_id, correction_id=correction_id))
    if row is None:
        session.add(ZoneRow(zone_id=zone_id, kind=z.kind, feature_json=text, version=version))
    else:
        row.kind, row.feature_json, row.version = z.kind, text, version
    split = 0
    for seg in _segments(session):
        if zone_id not in _zones(seg) or (seg.end_ms is not None and seg.end_ms <= at_ms):
            continue
        if seg.start_ms < at_ms:
            seg = _split(session, seg, at_ms)
            split += 1
        seg.zone_versions_json = json.dumps({**_versions(seg), zone_id: version}, sort_keys=True)
    session.flush()
    return ZoneChange(zone_id, z.kind, version, digest, added=row is None, changed=True, split=split)


# ---------------------------------------------------------------- assignments
@dataclass(frozen=True)
class AssignmentChange:
    action: str  # assignment.add | assignment.change | assignment.unchanged
    segments: tuple[AssignmentRow, ...]  # the assignment's segments after the change
    split: bool


def _chain(session: Session, subject_id: str, device_id: str, chain_start_ms: int) -> list[AssignmentRow]:
    return list(session.scalars(select(AssignmentRow).where(
        AssignmentRow.subject_id == subject_id, AssignmentRow.device_id == device_id,
        AssignmentRow.chain_start_ms == chain_start_ms).order_by(AssignmentRow.start_ms)))


def _needs_correction(what: str, at_ms: int) -> CorrectionNeeded:
    return CorrectionNeeded(f"{what}, before now ({format_ms(at_ms)}): a condition applies from when it is imposed. "
                            f"To change the past, propose a correction (POST /v1/admin/corrections) for a second "
                            f"admin to approve")


def change_assignment(session: Session, new: Assignment, *, at_ms: int) -> AssignmentChange:
    """Add an assignment starting now or later, or change the end or zones of the one
    that started at `new.start_ms` (same subject and device), from `at_ms` on.

    Raises
    ------
    CorrectionNeeded
        The change reaches before `at_ms`: a new assignment starting in the
        past, an end in the past, re-opening or re-zoning an assignment that
        has ended.
    ConditionError
        The result overlaps another assignment, or names an unknown zone.
    """
    current = _current(session)
    chain = _chain(session, new.subject_id, new.device_id, new.start_ms)
    if not chain:
        if new.start_ms < at_ms:
            raise _needs_correction(f"assignment of {new.device_id!r} would start at {format_ms(new.start_ms)}", at_ms)
        row = AssignmentRow(subject_id=new.subject_id, device_id=new.device_id, start_ms=new.start_ms,
                            end_ms=new.end_ms, zones_json=json.dumps(list(new.zones)), chain_start_ms=new.start_ms,
                            zone_versions_json=json.dumps({z: current[z].version for z in new.zones if z in current},
                                                          sort_keys=True))
        session.add(row)
        session.flush()
        _check(session, _segments(session), set(current))
        return AssignmentChange("assignment.add", (row,), split=False)
    last = chain[-1]
    old_end = last.end_ms
    ended = old_end is not None and old_end <= at_ms
    new_zones = list(new.zones) != _zones(last)
    if new.end_ms != old_end and (ended or (new.end_ms is not None and new.end_ms < at_ms)):
        raise _needs_correction(f"the end of this assignment would move to "
                                f"{'none' if new.end_ms is None else format_ms(new.end_ms)} from "
                                f"{'none' if old_end is None else format_ms(old_end)}", at_ms)
    if new_zones and ended:
        raise _needs_correction("the zones of an assignment that has ended would change", at_ms)
    split = False
    if new_zones:
        if last.start_ms < at_ms:
            last = _split(session, last, at_ms)
            chain.append(last)
            split = True
        last.zones_json = json.dumps(list(new.zones))
        last.zone_versions_json = json.dumps({z: current[z].version for z in new.zones if z in current},
                                             sort_keys=True)
    last.end_ms = new.end_ms
    if not new_zones and new.end_ms == old_end:
        return AssignmentChange("assignment.unchanged", tuple(chain), split=False)
    session.flush()
    _check(session, _segments(session), set(current))
    return AssignmentChange("assignment.change", tuple(chain), split=split)


# ---------------------------------------------------------------- files and corrections
def replace_all(session: Session, assignments: Sequence[Assignment], zone_features: Sequence[dict],
                zones: Sequence[Zone], *, at_ms: int) -> None:
    """An operator's files state the conditions for their whole period: every segment is
    replaced (one per assignment, its zones at their current versions); a zone whose
    feature differs from its current version gets a new version."""
    current = _current(session)
    kinds = {z.zone_id: z.kind for z in zones}
    for f in zone_features:
        zid, digest, text = f["id"], canonical_sha256(f), json.dumps(f, sort_keys=True)
        row = current.get(zid)
        if row is not None and canonical_sha256(json.loads(row.feature_json)) == digest:
            continue
        version = 1 if row is None else max(session.scalars(
            select(ZoneVersion.version).where(ZoneVersion.zone_id == zid))) + 1
        session.add(ZoneVersion(zone_id=zid, version=version, kind=kinds[zid], feature_json=text, sha256=digest,
                                effective_from_ms=None, created_ms=at_ms, created_by=None))
        if row is None:
            row = ZoneRow(zone_id=zid, kind=kinds[zid], feature_json=text, version=version)
            session.add(row)
            current[zid] = row
        else:
            row.kind, row.feature_json, row.version = kinds[zid], text, version
    for zid in set(current) - {f["id"] for f in zone_features}:  # zones the files no longer hold (versions stay)
        session.delete(current.pop(zid))
    session.execute(delete(AssignmentRow))
    session.add_all(AssignmentRow(subject_id=a.subject_id, device_id=a.device_id, start_ms=a.start_ms,
                                  end_ms=a.end_ms, zones_json=json.dumps(list(a.zones)), chain_start_ms=a.start_ms,
                                  zone_versions_json=json.dumps({z: current[z].version for z in a.zones},
                                                                sort_keys=True))
                    for a in assignments)
    session.flush()


def apply_correction(session: Session, correction: Correction, *, now_ms: int, crs: str = STORE_CRS) -> dict:
    """Apply an approved correction (the caller has checked the second admin); returns what it did.

    - ``zone``: ``{"zone_id", "feature", "from"}``: the feature applies from
      ``from`` (in the past) on, replacing every later version.
    - ``assignment``: ``{"assignment": {subject_id, device_id, start, end, zones},
      "replaces": {"subject_id", "device_id", "start"} | null}``: the assignment
      (all its segments) named by ``replaces`` goes, and the given one is put in
      as one segment over its whole period.
    """
    from trails.timestamps import parse_timestamp

    payload = json.loads(correction.payload_json)
    if correction.kind == "zone":
        ch = change_zone(session, payload["zone_id"], payload["feature"], at_ms=parse_timestamp(payload["from"]),
                         user_id=correction.decided_by, crs=crs, correction_id=correction.id, now_ms=now_ms)
        return {"zone_id": ch.zone_id, "version": ch.version, "sha256": ch.sha256, "split": ch.split}
    new = payload["assignment"]
    try:
        (a,) = parse_subjects({"subjects": [new]}, set(_current(session)), source="correction")
    except SubjectsError as exc:
        raise ConditionError(str(exc)) from None
    old = payload.get("replaces")
    removed = 0
    if old:
        for seg in _chain(session, old["subject_id"], old["device_id"], parse_timestamp(old["start"])):
            session.delete(seg)
            removed += 1
        session.flush()
    current = _current(session)
    session.add(AssignmentRow(subject_id=a.subject_id, device_id=a.device_id, start_ms=a.start_ms, end_ms=a.end_ms,
                              zones_json=json.dumps(list(a.zones)), chain_start_ms=a.start_ms,
                              zone_versions_json=json.dumps({z: current[z].version for z in a.zones}, sort_keys=True)))
    session.flush()
    _check(session, _segments(session), set(current))
    return {"removed_segments": removed, "start": format_ms(a.start_ms)}
