"""The device-health report: which tags misbehave, from their own fixes.

Per device over a period: battery discharge rate (% per hour while not
charging: the battery drops between consecutive fixes no further apart than
the policy's gap), charges per day (the starts of rising runs), the share of
fixes with poor accuracy (over `poor_accuracy_m`), and gaps per day (fixes
further apart than the policy's gap). A device is suspect on a measure when
its value is above the `percentile` (default 99) of the same measure over
the devices of *other* batches: a batch that drains twice as fast cannot
hide inside a population it dominates, and a healthy device is never
judged against its own faulty batch-mates. A batch is suspect on a measure
when at least half of its devices are. Per wearer, charging compliance: the
share of observed days on which the battery reached `full_pct`.

Pure NumPy over the store's columns (sorted by device, then time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow, Device
from api.service.stream.detector_state import home_policy
from trails.store import read_store_fixes
from trails.timestamps import DAY_MS, format_ms

__all__ = ["MEASURES", "device_measures", "health_report", "read_health_report"]

#: The measures a device can be suspect on (higher is worse for each).
MEASURES = ("discharge_pct_per_h", "gaps_per_day", "poor_accuracy_share")


@dataclass(frozen=True)
class _Segment:
    device_id: str
    ts: np.ndarray
    battery: np.ndarray
    accuracy: np.ndarray


def _segments(fx) -> list[_Segment]:
    ids = np.asarray(fx.device_id.to_pylist() if hasattr(fx.device_id, "to_pylist") else fx.device_id, dtype=object)
    if ids.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size]
    return [_Segment(str(ids[a]), fx.ts_ms[a:b], fx.battery_pct[a:b], fx.accuracy_m[a:b]) for a, b in zip(starts, ends)]


def device_measures(seg: _Segment, *, gap_ms: int, poor_accuracy_m: float, full_pct: float) -> dict:
    """One device's measures over its fixes (module docstring)."""
    days = max((seg.ts[-1] - seg.ts[0]) / DAY_MS, 1 / 24) if seg.ts.size else 1.0
    dt = np.diff(seg.ts)
    db = np.diff(seg.battery)
    near = (dt > 0) & (dt <= gap_ms) & ~np.isnan(db)
    down = near & (db < 0)
    hours = dt[down].sum() / 3_600_000
    rising = near & (db > 0)
    charges = int(np.sum(rising & ~np.r_[False, rising[:-1]]))
    acc = seg.accuracy[~np.isnan(seg.accuracy)]
    day_index = (seg.ts - seg.ts[0]) // DAY_MS
    full_days = [bool(np.nanmax(seg.battery[day_index == d]) >= full_pct) if np.any(~np.isnan(
        seg.battery[day_index == d])) else False for d in np.unique(day_index)]
    return {"device_id": seg.device_id, "fixes": int(seg.ts.size), "days": round(float(days), 2),
            "discharge_pct_per_h": round(float(-db[down].sum() / hours), 3) if hours > 0 else None,
            "charges_per_day": round(charges / days, 3),
            "poor_accuracy_share": round(float(np.mean(acc > poor_accuracy_m)), 4) if acc.size else None,
            "gaps_per_day": round(float(np.sum(dt > gap_ms) / days), 3),
            "full_charge_share": round(sum(full_days) / len(full_days), 4) if full_days else None}


def _flag(rows: list[dict], batch_of: dict[str, str], percentile: float) -> None:
    for m in MEASURES:
        for r in rows:
            if r[m] is None:
                continue
            others = [o[m] for o in rows if o[m] is not None and batch_of[o["device_id"]] != batch_of[r["device_id"]]]
            if others and r[m] > float(np.percentile(others, percentile)):
                r["suspect"].append(m)


def health_report(session: Session, home, *, start_ms: int, end_ms: int, gap_ms: int, percentile: float = 99.0,
                  poor_accuracy_m: float = 50.0, full_pct: float = 95.0) -> dict:
    """Devices (with their batch, measures and the measures they are suspect on), suspect batches, and
    charging compliance per wearer, over [start_ms, end_ms)."""
    fx = read_store_fixes(home, start_ms=start_ms, end_ms=end_ms)
    rows = [{**device_measures(s, gap_ms=gap_ms, poor_accuracy_m=poor_accuracy_m, full_pct=full_pct),
             "suspect": []} for s in _segments(fx)]
    registered = dict(session.execute(select(Device.device_id, Device.batch)).all())
    batch_of = {r["device_id"]: registered.get(r["device_id"], f"(unregistered {r['device_id']})") for r in rows}
    for r in rows:
        r["batch"] = registered.get(r["device_id"])
    _flag(rows, batch_of, percentile)
    batches = {}
    for b in sorted({v for v in registered.values()}):
        members = [r for r in rows if r["batch"] == b]
        hits = [m for m in MEASURES if members and sum(m in r["suspect"] for r in members) * 2 >= len(members)]
        if hits:
            batches[b] = hits
    wearer_of = dict(session.execute(select(AssignmentRow.device_id, AssignmentRow.subject_id)
                                     .where(AssignmentRow.start_ms < end_ms,
                                            (AssignmentRow.end_ms.is_(None)) | (AssignmentRow.end_ms > start_ms))).all())
    charging = {wearer_of[r["device_id"]]: r["full_charge_share"] for r in rows if r["device_id"] in wearer_of}
    return {"from": format_ms(start_ms), "to": format_ms(end_ms), "percentile": percentile,
            "devices": rows, "suspect_devices": sorted(r["device_id"] for r in rows if r["suspect"]),
            "suspect_batches": batches, "charging_compliance": dict(sorted(charging.items()))}


def read_health_report(session: Session, audit, user, home, *, start_ms: int | None, end_ms: int | None,
                       percentile: float, now_ms: int) -> dict:
    """The report as oversight reads it (API and console): the period defaults to the 28 days to now;
    audited ``report.read``."""
    end_ms = now_ms if end_ms is None else end_ms
    start_ms = end_ms - 28 * DAY_MS if start_ms is None else start_ms
    report = health_report(session, home, start_ms=start_ms, end_ms=end_ms, gap_ms=home_policy(home).gap_ms,
                           percentile=percentile)
    audit.append(session, action="report.read", actor=user, now_ms=now_ms,
                 detail={"report": "device-health", "from": report["from"], "to": report["to"]})
    return report
