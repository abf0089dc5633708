"""The minimal extracts an approved access request downloads.

An approved request names a subject and a period ``[start_ms, end_ms)``; the
extract holds that period only, and only what the request kind allows
(governance.md: minimum necessary; attendance answers carry no coordinates;
per-fix quality so no one reads more into a point than it supports).

- `trail_extract` (geojson | csv | gpx): one item per fix, in time order:
  ``ts``, position (lon/lat WGS84 as stored), ``accuracy_m`` (null/empty when
  not given) and ``quality``. No battery, no device id, nothing else.
- `attendance_extract` (json | csv): one item per curfew window part, with its
  status and the seconds at home, absent and unknown. No coordinates,
  accuracies or anything else about positions.

Which fixes: only the subject's assignments are used, each clipped to the
period; a fix counts when its device is the assignment's device and its time
lies inside both the assignment and the period. A device's fixes while someone
else wore it are never read into another wearer's extract. A fix just before
the period is not used either, even though by the contract it would cover the
first minutes of the period: the extract stays inside what was approved.

Rules written down here (CONTRACT.md leaves them to us):

- ``quality`` is ``decisive`` when the fix is IN or OUT (CONTRACT.md
  "Geometry", accuracy-aware, ``policy.default_accuracy_m`` for a fix without
  accuracy) for every zone of its assignment that is active at the fix's
  instant (the zone's merged active intervals, CONTRACT.md "Zone activity"),
  or when no zone is active then; otherwise ``uncertain``.
- Attendance treats each clipped assignment as the contract's assignment A
  with ``A.start = max(assignment start, start_ms)`` and
  ``T_end = min(assignment end, as_of, end_ms)``. For each curfew zone and each
  merged active interval M meeting ``[A.start, T_end)``, the window part is
  ``W = M ∩ [A.start, T_end)``; a device swap inside M gives one item per
  assignment (the contract judges each assignment on its own).
  ``home_s`` is the time covered by IN fixes' pieces in W; ``absent_s`` the
  total length of the contract's absences in W (runs between OUT fixes,
  UNCERTAIN time inside counted) whatever their length; ``unknown_s`` the rest
  (uncertain or uncovered time), so the three add up to W's length.
  ``status`` is ``absent`` when the contract's rules, with the policy's grace
  and missed fraction, give a ``curfew_absence`` or ``curfew_missed`` breach
  in W (a window cut by the period, the assignment or ``as_of`` is never
  missed, as in the contract); else ``home`` when ``home_s`` is at least half
  of W; else ``unknown``. Shorter excursions therefore never make a window
  ``absent``: the wearer gets the benefit of the doubt.
- ``as_of_ms`` None means the analysis stands at the period's end (an
  approved period normally lies in the past; time after the latest fix is
  simply unknown).
- The rules are those of the detection engine (`geofence.rules`), not a
  re-implementation: absences are ``zone_episodes`` runs with minimum 0 (the
  must-be-inside run rule without the missed-window replacement), breaches
  are ``zone_episodes`` with the policy's curfew grace and missed fraction.
- Bytes are deterministic for the same inputs: fixed key order, floats by
  ``repr`` (shortest round-trip), no generation timestamp.
- CSV is written through `api.access.csvsafe`: a text cell starting with
  ``= + - @``, TAB or CR (a zone id from an admin, say) gets a leading ``'``
  so a spreadsheet never runs it as a formula; numbers stay numbers.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geofence import rules
from geofence.classify import IN, UNCERTAIN, classify_points
from geofence.compile import compile_zones
from geofence.model import Assignment, Policy, Zone, zone_label
from geofence.schedule import active_intervals
from trails.projection import project_lonlat
from trails.store import STORE_CRS, read_store_fixes
from trails.timestamps import POS_INF_MS, format_ms

from api.access import csvsafe

__all__ = [
    "TRAIL_FORMATS",
    "ATTENDANCE_FORMATS",
    "GPX_NS",
    "EXTENSIONS_NS",
    "Extract",
    "ExtractError",
    "clip_assignments",
    "trail_extract",
    "attendance_extract",
    "AttendanceWindow",
    "attendance_windows",
]

#: Formats per request kind; the first is the default the API offers.
TRAIL_FORMATS: tuple[str, ...] = ("geojson", "csv", "gpx")
ATTENDANCE_FORMATS: tuple[str, ...] = ("json", "csv")
GPX_NS = "http://www.topografix.com/GPX/1/1"
#: Namespace of the per-fix quality elements inside GPX ``<extensions>``.
EXTENSIONS_NS = "urn:tagtrail:gpx-extensions:1"

_MEDIA = {"geojson": "application/geo+json", "csv": "text/csv", "gpx": "application/gpx+xml",
          "json": "application/json"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
TRAIL_CSV_HEADER = ("ts", "lat", "lon", "accuracy_m", "quality")
ATTENDANCE_KEYS = ("zone_id", "window_start", "window_end", "status", "home_s", "absent_s", "unknown_s")


class ExtractError(ValueError):
    """An extract cannot be made as asked (format not allowed for the kind, empty period, unknown zone)."""


@dataclass(frozen=True)
class Extract:
    """One downloadable extract: its bytes and how to serve them."""

    content: bytes
    media_type: str
    filename: str
    sha256: str  # hex SHA-256 of `content`
    n_items: int  # fixes (trail) or window parts (attendance) included


# --------------------------------------------------------------------------
# Shared: arguments, the subject's fixes per clipped assignment
# --------------------------------------------------------------------------
def _check_args(kind: str, fmt: str, allowed: tuple[str, ...], start_ms: int, end_ms: int) -> None:
    if fmt not in allowed:
        raise ExtractError(f"format {fmt!r} is not available for a {kind} extract: use {' or '.join(allowed)}")
    if int(start_ms) >= int(end_ms):
        raise ExtractError(f"empty period: start {format_ms(start_ms)} is not before end {format_ms(end_ms)}")


@dataclass(frozen=True)
class _Clipped:
    """The subject's assignments clipped to the period, and their fixes (CSR by assignment, time order)."""

    assignments: tuple[Assignment, ...]  # start_ms/end_ms already clipped; end_ms never None
    t_end_ms: np.ndarray  # per assignment: min(clipped end, as_of)
    fix_offsets: np.ndarray
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    x: np.ndarray
    y: np.ndarray
    accuracy_m: np.ndarray  # NaN = not given


def clip_assignments(assignments: Sequence[Assignment], subject_id: str, start_ms: int,
                     end_ms: int) -> tuple[Assignment, ...]:
    """The assignments of `subject_id` clipped to ``[start_ms, end_ms)``, by start.

    Assignments of other subjects, and those that do not meet the period, are
    left out; each one kept gets ``start = max(start, start_ms)`` and
    ``end = min(end, end_ms)`` (never None). Clipping twice changes nothing,
    so a decision can store its clipped assignments and the extract clip them
    again. Inputs are not modified.
    """
    start_ms, end_ms = int(start_ms), int(end_ms)
    out = []
    for a in sorted((a for a in assignments if a.subject_id == subject_id), key=lambda a: a.start_ms):
        lo = max(int(a.start_ms), start_ms)
        hi = min(POS_INF_MS if a.end_ms is None else int(a.end_ms), end_ms)
        if lo < hi:
            out.append(Assignment(a.subject_id, a.device_id, lo, hi, tuple(a.zones)))
    return tuple(out)


def _subject_fixes(home, subject_id: str, assignments: Sequence[Assignment], policy: Policy,
                   start_ms: int, end_ms: int, as_of_ms: int | None) -> _Clipped:
    clipped = clip_assignments(assignments, subject_id, start_ms, end_ms)
    t_end: list[int] = []
    parts: list[tuple[np.ndarray, ...]] = []
    for a in clipped:
        lo, hi = a.start_ms, a.end_ms
        cap = hi if as_of_ms is None else min(hi, int(as_of_ms))
        f = read_store_fixes(home, start_ms=lo, end_ms=hi, devices=[a.device_id])
        keep = np.ones(len(f), np.bool_) if as_of_ms is None else f.ts_ms <= int(as_of_ms)
        order = np.argsort(f.ts_ms[keep], kind="stable")  # one device: already by time; be explicit
        parts.append(tuple(np.asarray(col)[keep][order] for col in
                           (f.ts_ms, f.lat, f.lon, f.x, f.y, f.accuracy_m)))
        t_end.append(cap)
    counts = [p[0].shape[0] for p in parts]
    fix_offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(np.asarray(counts, np.int64), out=fix_offsets[1:])

    def cat(i: int, dtype) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)

    ts, lat, lon, x, y, acc = (cat(0, np.int64), cat(1, np.float64), cat(2, np.float64),
                               cat(3, np.float64), cat(4, np.float64), cat(5, np.float64))
    if policy.crs != STORE_CRS:
        x, y = project_lonlat(lon, lat, policy.crs)
    return _Clipped(clipped, np.asarray(t_end, np.int64), fix_offsets, ts, lat, lon, x, y, acc)


def _zone_table(zones: Sequence[Zone], clipped: _Clipped) -> dict[str, Zone]:
    by_id = {z.zone_id: z for z in zones}
    for a in clipped.assignments:
        for zid in a.zones:
            if zid not in by_id:
                raise ExtractError(f"zone {zid!r} of subject {a.subject_id!r} (device {a.device_id!r}) "
                                   f"is not among the zones given")
    return by_id


def _active_mask(zone: Zone, ts_ms: np.ndarray, lo_ms: int, hi_ms: int) -> np.ndarray:
    """True where `zone` is active at the instant (inside a merged active interval)."""
    iv = active_intervals(zone, lo_ms, hi_ms)
    if ts_ms.size == 0 or iv.shape[0] == 0:
        return np.zeros(ts_ms.shape[0], np.bool_)
    k = np.searchsorted(iv[:, 0], ts_ms, side="right") - 1
    ok = k >= 0
    return ok & (ts_ms < iv[np.maximum(k, 0), 1])


def _accuracy_for_rules(acc: np.ndarray, policy: Policy) -> np.ndarray:
    return np.where(np.isnan(acc), float(policy.default_accuracy_m), acc)


def _compact_ts(ms: int) -> str:
    s = format_ms(ms).replace("-", "").replace(":", "")
    return s.replace(".000Z", "Z")


def _filename(kind: str, subject_id: str, start_ms: int, end_ms: int, ext: str) -> str:
    safe = _UNSAFE_NAME.sub("_", subject_id) or "_"
    return f"{kind}-{safe}-{_compact_ts(start_ms)}-{_compact_ts(end_ms)}.{ext}"


def _make(content: bytes, fmt: str, kind: str, subject_id: str, start_ms: int, end_ms: int, n: int) -> Extract:
    return Extract(content=content, media_type=_MEDIA[fmt],
                   filename=_filename(kind, subject_id, start_ms, end_ms, fmt),
                   sha256=hashlib.sha256(content).hexdigest(), n_items=n)


def _num(v: float) -> str:
    return repr(float(v))


# --------------------------------------------------------------------------
# Trail
# --------------------------------------------------------------------------
def _fix_quality(clipped: _Clipped, zones_by_id: dict[str, Zone], policy: Policy) -> np.ndarray:
    """True where the fix is uncertain for some zone of its assignment active at its instant."""
    uncertain = np.zeros(clipped.ts_ms.shape[0], np.bool_)
    acc = _accuracy_for_rules(clipped.accuracy_m, policy)
    used = sorted({zid for a in clipped.assignments for zid in a.zones})
    if not used or clipped.ts_ms.size == 0:
        return uncertain
    compiled = compile_zones([zones_by_id[z] for z in used], policy.crs)
    for ai, a in enumerate(clipped.assignments):
        f0, f1 = int(clipped.fix_offsets[ai]), int(clipped.fix_offsets[ai + 1])
        if f1 == f0:
            continue
        ts = clipped.ts_ms[f0:f1]
        for zid in a.zones:
            active = _active_mask(zones_by_id[zid], ts, a.start_ms, a.end_ms)
            if not active.any():
                continue
            codes = classify_points(clipped.x[f0:f1], clipped.y[f0:f1], acc[f0:f1], compiled.index_of(zid), compiled)
            uncertain[f0:f1] |= active & (codes == UNCERTAIN)
    return uncertain


def trail_extract(home, *, subject_id: str, assignments: Sequence[Assignment], zones: Sequence[Zone],
                  policy: Policy, start_ms: int, end_ms: int, fmt: str) -> Extract:
    """The subject's fixes in ``[start_ms, end_ms)``, one item per fix with its quality.

    Parameters
    ----------
    home
        tagtrail home (the store is ``home/store``).
    subject_id
        Whose trail; only assignments of this subject are used.
    assignments, zones, policy
        As for detection; zones must include every zone of the subject's assignments.
    start_ms, end_ms
        The approved period, half-open.
    fmt
        ``geojson`` (FeatureCollection of Points, properties exactly ``ts``,
        ``accuracy_m``, ``quality``), ``csv`` (``ts,lat,lon,accuracy_m,quality``)
        or ``gpx`` (GPX 1.1, one ``trk``/``trkseg``; accuracy and quality in
        each ``trkpt``'s ``<extensions>``, namespace `EXTENSIONS_NS`).

    Raises
    ------
    ExtractError
        `fmt` not a trail format (the message lists them), empty period, or a
        zone of the subject's assignments missing from `zones`.
    """
    _check_args("trail", fmt, TRAIL_FORMATS, start_ms, end_ms)
    start_ms, end_ms = int(start_ms), int(end_ms)
    clipped = _subject_fixes(home, subject_id, assignments, policy, start_ms, end_ms, None)
    zones_by_id = _zone_table(zones, clipped)
    uncertain = _fix_quality(clipped, zones_by_id, policy)
    order = np.argsort(clipped.ts_ms, kind="stable")  # assignments of one subject never overlap
    items = [
        (format_ms(int(clipped.ts_ms[i])), float(clipped.lat[i]), float(clipped.lon[i]),
         None if np.isnan(clipped.accuracy_m[i]) else float(clipped.accuracy_m[i]),
         "uncertain" if uncertain[i] else "decisive")
        for i in order.tolist()
    ]
    if fmt == "geojson":
        content = _trail_geojson(items, subject_id, start_ms, end_ms)
    elif fmt == "csv":
        content = _trail_csv(items)
    else:
        content = _trail_gpx(items, subject_id)
    return _make(content, fmt, "trail", subject_id, start_ms, end_ms, len(items))


def _trail_geojson(items, subject_id: str, start_ms: int, end_ms: int) -> bytes:
    doc = {
        "type": "FeatureCollection",
        "subject_id": subject_id,
        "period": {"start": format_ms(start_ms), "end": format_ms(end_ms)},
        "features": [
            {"type": "Feature",
             "geometry": {"type": "Point", "coordinates": [lon, lat]},
             "properties": {"ts": ts, "accuracy_m": acc, "quality": q}}
            for ts, lat, lon, acc, q in items
        ],
    }
    return (json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def _trail_csv(items) -> bytes:
    # numbers go in as floats (written by repr, like `_num`), so only text cells are neutralised
    buf = io.StringIO(newline="")
    w = csvsafe.writer(buf, lineterminator="\r\n")
    w.writerow(TRAIL_CSV_HEADER)
    w.writerows((ts, float(lat), float(lon), "" if acc is None else float(acc), q) for ts, lat, lon, acc, q in items)
    return buf.getvalue().encode("utf-8")


def _trail_gpx(items, subject_id: str) -> bytes:
    # Prefixed names with explicit xmlns attributes: ElementTree's global
    # namespace registry is left alone, and the output is namespace-correct.
    root = ET.Element("gpx", {"version": "1.1", "creator": "tagtrail", "xmlns": GPX_NS, "xmlns:tt": EXTENSIONS_NS})
    trk = ET.SubElement(root, "trk")
    ET.SubElement(trk, "name").text = subject_id
    seg = ET.SubElement(trk, "trkseg")
    for ts, lat, lon, acc, q in items:
        pt = ET.SubElement(seg, "trkpt", {"lat": _num(lat), "lon": _num(lon)})
        ET.SubElement(pt, "time").text = ts
        ext = ET.SubElement(pt, "extensions")
        if acc is not None:
            ET.SubElement(ext, "tt:accuracy_m").text = _num(acc)
        ET.SubElement(ext, "tt:quality").text = q
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# --------------------------------------------------------------------------
# Attendance
# --------------------------------------------------------------------------
def _clip_sum(s: np.ndarray, e: np.ndarray, ws: int, we: int) -> int:
    """Total length of the intervals [s, e) clipped to [ws, we)."""
    if s.size == 0:
        return 0
    return int(np.maximum(np.minimum(e, we) - np.maximum(s, ws), 0).sum())


def attendance_extract(home, *, subject_id: str, assignments: Sequence[Assignment], zones: Sequence[Zone],
                       policy: Policy, start_ms: int, end_ms: int, fmt: str,
                       as_of_ms: int | None = None) -> Extract:
    """Curfew attendance of the subject in ``[start_ms, end_ms)``: one item per curfew window part.

    Each item: ``zone_id``, ``window_start``, ``window_end`` (the part W, UTC),
    ``status`` (``absent`` | ``home`` | ``unknown``), and ``home_s``,
    ``absent_s``, ``unknown_s`` adding up to W's length (module docstring for
    the rules). Items are ordered by window start, then zone id. No
    coordinates, accuracies or other position data.

    Parameters
    ----------
    fmt
        ``json`` (``{"subject_id", "period", "as_of", "windows": [...]}``) or
        ``csv`` (header ``zone_id,window_start,window_end,status,home_s,absent_s,unknown_s``).
    as_of_ms
        The instant the analysis stands at (CONTRACT.md "Time"); None means the period's end.

    Raises
    ------
    ExtractError
        `fmt` not an attendance format (geojson and gpx carry coordinates),
        empty period, or a zone of the subject's assignments missing from `zones`.
    """
    _check_args("attendance", fmt, ATTENDANCE_FORMATS, start_ms, end_ms)
    start_ms, end_ms = int(start_ms), int(end_ms)
    windows = [w.row() for w in attendance_windows(home, subject_id=subject_id, assignments=assignments, zones=zones,
                                                   policy=policy, start_ms=start_ms, end_ms=end_ms,
                                                   as_of_ms=as_of_ms)]
    if fmt == "json":
        doc = {
            "subject_id": subject_id,
            "period": {"start": format_ms(start_ms), "end": format_ms(end_ms)},
            "as_of": None if as_of_ms is None else format_ms(int(as_of_ms)),
            "windows": [dict(zip(ATTENDANCE_KEYS, w)) for w in windows],
        }
        content = (json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
    else:
        buf = io.StringIO(newline="")
        wr = csvsafe.writer(buf, lineterminator="\r\n")  # zone ids are text from admins: neutralised
        wr.writerow(ATTENDANCE_KEYS)
        wr.writerows(windows)
        content = buf.getvalue().encode("utf-8")
    return _make(content, fmt, "attendance", subject_id, start_ms, end_ms, len(windows))


@dataclass(frozen=True)
class AttendanceWindow:
    """One curfew window part W and how the wearer kept it (module docstring for the rules)."""

    zone_id: str  # the zone's id (not the versioned key)
    start_ms: int
    end_ms: int
    status: str  # absent | home | unknown
    home_s: int | float
    absent_s: int | float
    unknown_s: int | float

    def row(self) -> tuple:
        """The extract's item, in `ATTENDANCE_KEYS` order (times as UTC text)."""
        return (self.zone_id, format_ms(self.start_ms), format_ms(self.end_ms), self.status, self.home_s,
                self.absent_s, self.unknown_s)


def attendance_windows(home, *, subject_id: str, assignments: Sequence[Assignment], zones: Sequence[Zone],
                       policy: Policy, start_ms: int, end_ms: int,
                       as_of_ms: int | None = None) -> list[AttendanceWindow]:
    """The curfew window parts of the subject in ``[start_ms, end_ms)``, by start then zone id:
    what an attendance extract holds (`attendance_extract`) and what the console's compliance
    summary counts (`api.service.subjects`), computed once, here. No coordinates.

    Raises `ExtractError` for an empty period or a zone of the subject's assignments missing from `zones`."""
    if int(start_ms) >= int(end_ms):
        raise ExtractError(f"empty period: start {format_ms(start_ms)} is not before end {format_ms(end_ms)}")
    clipped = _subject_fixes(home, subject_id, assignments, policy, int(start_ms), int(end_ms), as_of_ms)
    return _attendance_windows(clipped, _zone_table(zones, clipped), policy)


def _seconds(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _curfew_pairs(assignments: Sequence[Assignment], zones_by_id: dict[str, Zone], a_start: np.ndarray,
                  t_end: np.ndarray) -> tuple[list[int], list[str]]:
    """(assignment index, curfew zone id) pairs, for live assignments only (contract: T_end > A.start)."""
    pair_a: list[int] = []
    pair_zid: list[str] = []
    for ai, a in enumerate(assignments):
        if t_end[ai] <= a_start[ai]:
            continue
        for zid in a.zones:
            if zones_by_id[zid].kind == "curfew":
                pair_a.append(ai)
                pair_zid.append(zid)
    return pair_a, pair_zid


def _attendance_windows(clipped: _Clipped, zones_by_id: dict[str, Zone], policy: Policy) -> list[AttendanceWindow]:
    a_start = np.array([a.start_ms for a in clipped.assignments], np.int64)
    t_end = clipped.t_end_ms
    pair_a, pair_zid = _curfew_pairs(clipped.assignments, zones_by_id, a_start, t_end)
    if not pair_a:
        return []
    ts = np.ascontiguousarray(clipped.ts_ms, np.int64)
    fix_offsets = clipped.fix_offsets
    acc = _accuracy_for_rules(clipped.accuracy_m, policy)
    used = sorted(set(pair_zid))
    compiled = compile_zones([zones_by_id[z] for z in used], policy.crs)
    cov_end = rules.coverage_ends(ts, fix_offsets, t_end, policy.coverage_ms)

    code_chunks: list[np.ndarray] = []
    code_offsets = [0]
    iv_chunks: list[np.ndarray] = []
    iv_offsets = [0]
    for ai, zid in zip(pair_a, pair_zid):
        f0, f1 = int(fix_offsets[ai]), int(fix_offsets[ai + 1])
        codes = classify_points(clipped.x[f0:f1], clipped.y[f0:f1], acc[f0:f1], compiled.index_of(zid), compiled)
        code_chunks.append(codes)
        code_offsets.append(code_offsets[-1] + codes.shape[0])
        iv = np.asarray(active_intervals(zones_by_id[zid], int(a_start[ai]), int(t_end[ai])), np.int64).reshape(-1, 2)
        iv_chunks.append(iv)
        iv_offsets.append(iv_offsets[-1] + iv.shape[0])
    codes_all = np.concatenate(code_chunks).astype(np.int8)
    iv_all = np.concatenate(iv_chunks)
    n_pairs = len(pair_a)
    pa_arr = np.asarray(pair_a, np.int64)
    common = dict(
        pair_assignment=pa_arr, pair_code_offsets=np.asarray(code_offsets[:-1], np.int64),
        pair_iv_offsets=np.asarray(iv_offsets, np.int64),
        iv_start_ms=np.ascontiguousarray(iv_all[:, 0]), iv_end_ms=np.ascontiguousarray(iv_all[:, 1]),
        a_start_ms=a_start, t_end_ms=t_end, coverage_ms=policy.coverage_ms,
        missed_fraction=policy.curfew_missed_fraction,
    )
    # every absence (the must-be-inside run rule, minimum 0, no missed-window replacement)
    ab_pair, _, ab_s, ab_e = rules.zone_episodes(
        ts, cov_end, codes_all, fix_offsets, pair_kind=np.full(n_pairs, rules.KIND_INCLUSION, np.int8),
        pair_min_ms=np.zeros(n_pairs, np.int64), **common)
    # breaches under the policy: curfew_absence >= grace, curfew_missed
    br_pair, _, br_s, br_e = rules.zone_episodes(
        ts, cov_end, codes_all, fix_offsets, pair_kind=np.full(n_pairs, rules.KIND_CURFEW, np.int8),
        pair_min_ms=np.full(n_pairs, policy.curfew_grace_ms, np.int64), **common)

    out: list[tuple] = []
    for p, (ai, zid) in enumerate(zip(pair_a, pair_zid)):
        f0, f1 = int(fix_offsets[ai]), int(fix_offsets[ai + 1])
        codes = code_chunks[p]
        is_in = codes == IN
        in_s, in_e = ts[f0:f1][is_in], cov_end[f0:f1][is_in]
        ab_sel = ab_pair == p
        br_sel = br_pair == p
        p_ab_s, p_ab_e = ab_s[ab_sel], ab_e[ab_sel]
        p_br_s, p_br_e = br_s[br_sel], br_e[br_sel]
        for ms, me in iv_chunks[p].tolist():
            ws, we = max(ms, int(a_start[ai])), min(me, int(t_end[ai]))
            if ws >= we:
                continue
            length = we - ws
            home_ms = _clip_sum(in_s, in_e, ws, we)
            absent_ms = _clip_sum(p_ab_s, p_ab_e, ws, we)
            unknown_ms = length - home_ms - absent_ms
            breach = bool(((p_br_s < we) & (p_br_e > ws)).any())  # episodes are never empty
            if breach:
                status = "absent"
            elif 2 * home_ms >= length:
                status = "home"
            else:
                status = "unknown"
            out.append(AttendanceWindow(zone_label(zid), ws, we, status, _seconds(home_ms), _seconds(absent_ms),
                                        _seconds(unknown_ms)))
    out.sort(key=lambda w: (w.start_ms, w.zone_id))
    return out
