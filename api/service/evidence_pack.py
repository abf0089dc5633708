"""A breach's evidence pack: what a caseworker attaches to a warning letter
or a prosecution file, gathered once and rendered as HTML or PDF
(`api.service.evidence_render`).

It holds the record as written, the record in words (`record_words`: the
rule and the thresholds of the policy in force), its times in London time
and UTC, the zone and its schedule, the map and timeline pictures
(`evidence_images`) of exactly the fixes the console's evidence rule
allows (`breach_evidence`: the record's window plus coverage, nothing
wider), a data-quality statement, the policy and software versions, and
the SHA-256 of the data the record rests on: RFC 8785 JSON of the record's
contract fields, the zone as judged and every fix shown (ts, lat, lon,
accuracy, battery, classification), so anyone holding the same data can
recompute it. The same inputs give the same pack; only `generated_ms`
(printed on it) differs between two generations.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import rfc8785

from api.db.models import BreachRow
from api.service.breach_evidence import STATE_NAMES, Evidence
from api.service.evidence_images import map_png, timeline_png
from api.service.london import duration_text, london_time
from api.service.record_words import priority_text, rule_text, schedule_text, zone_kind_text, zone_shape_text
from geofence.model import Policy, Zone
from trails.timestamps import format_ms

__all__ = ["EvidencePack", "build_pack", "data_digest", "quality_statement", "software_version", "RECORD_FIELDS"]

#: The record's contract fields, as `breaches.jsonl` writes them (CONTRACT.md "Breach records").
RECORD_FIELDS = ("breach_id", "kind", "type", "subject_id", "device_id", "zone_id", "start", "end", "duration_s",
                 "priority")


@dataclass(frozen=True)
class EvidencePack:
    """Everything a pack shows, as text and pictures; `fixes` are table rows."""

    record: dict
    rule: list[str]
    priority: str
    times: dict[str, str]
    zone: dict | None
    fixes: list[dict]
    quality: list[str]
    policy: dict
    policy_sha256: str
    software: str
    data_sha256: str
    map_png: bytes
    timeline_png: bytes
    generated_ms: int


def software_version() -> str:
    try:
        return f"tagtrail {version('tagtrail')}"
    except PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
        return "tagtrail (not installed)"


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def data_digest(record: dict, zone: Zone | None, ev: Evidence) -> str:
    """SHA-256 of RFC 8785 JSON {"record", "zone", "fixes"} (see the module docstring)."""
    fixes = [[format_ms(int(t)), float(la), float(lo), _num(a), _num(b), STATE_NAMES[s] if s >= 0 else None]
             for t, la, lo, a, b, s in zip(ev.ts_ms.tolist(), ev.lat.tolist(), ev.lon.tolist(),
                                           ev.accuracy_m.tolist(), ev.battery_pct.tolist(), ev.state.tolist())]
    doc = {"record": record, "zone": dataclasses.asdict(zone) if zone is not None else None, "fixes": fixes}
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


def quality_statement(ev: Evidence, gap_ms: int) -> list[str]:
    """Fix count, accuracy, gaps longer than the policy's, battery, and device faults, in words."""
    n = len(ev)
    if n == 0:
        return ["No fix was received in the record's window: the record rests on their absence."]
    out = [f"{n} fix{'' if n == 1 else 'es'} from {london_time(int(ev.ts_ms[0])).text} to "
           f"{london_time(int(ev.ts_ms[-1])).text}."]
    acc = ev.accuracy_m[~np.isnan(ev.accuracy_m)]
    out.append("No fix stated its accuracy." if acc.size == 0 else
               f"Accuracy stated by {acc.size} of {n} fixes: median {np.median(acc):.1f} m, worst {acc.max():.1f} m.")
    gaps = np.diff(ev.ts_ms)
    long = gaps[gaps > gap_ms]
    out.append(f"No gap between fixes longer than the policy's {duration_text(gap_ms / 1000)}." if long.size == 0
               else f"{long.size} gap{'' if long.size == 1 else 's'} longer than the policy's "
                    f"{duration_text(gap_ms / 1000)}; the longest {duration_text(long.max() / 1000)}.")
    bat = ev.battery_pct[~np.isnan(ev.battery_pct)]
    out.append("No fix reported the battery level." if bat.size == 0 else
               f"Battery from {bat[0]:g}% to {bat[-1]:g}% (lowest {bat.min():g}%).")
    out.append("Device faults: tagtrail records none yet (device health is not tracked by this version), so "
               "none is shown; check the supplier's fault log for this device and period.")
    return out


def _time_labels(ev: Evidence) -> list[tuple[int, str]]:
    span = max(ev.end_ms - ev.start_ms, 1)
    return [(ms, london_time(ms).text.split(" ", 3)[3]) for ms in
            (ev.start_ms + span * k // 4 for k in range(5))]


def build_pack(b: BreachRow, zone: Zone | None, ev: Evidence, policy: Policy, *, generated_ms: int) -> EvidencePack:
    """The pack for record `b` judged against `zone` with the fixes `ev` (already read under the
    evidence rule) and the policy in force."""
    record = {k: getattr(b, k) for k in RECORD_FIELDS}
    times = {"start": london_time(b.start_ms).text, "start_utc": b.start, "end": london_time(b.end_ms).text,
             "end_utc": b.end, "duration": duration_text(b.duration_s),
             "window": f"{london_time(ev.start_ms).text} to {london_time(ev.end_ms).text}"}
    zone_doc = None if zone is None else {"id": b.zone_id, "kind": zone.kind, "kind_text": zone_kind_text(zone.kind),
                                          "shape": zone_shape_text(zone),
                                          "schedule": schedule_text(zone)}
    fixes = [{"n": i + 1, "time": london_time(t).text, "utc": format_ms(t),
              "state": STATE_NAMES[s] if s >= 0 else "", "lat": f"{la:.5f}", "lon": f"{lo:.5f}",
              "accuracy": "" if math.isnan(a) else f"{a:.1f} m", "battery": "" if math.isnan(bt) else f"{bt:g}%"}
             for i, (t, la, lo, a, bt, s) in enumerate(zip(ev.ts_ms.tolist(), ev.lat.tolist(), ev.lon.tolist(),
                                                          ev.accuracy_m.tolist(), ev.battery_pct.tolist(),
                                                          ev.state.tolist()))]
    policy_doc = dataclasses.asdict(policy)
    return EvidencePack(
        record=record, rule=rule_text(b, policy), priority=priority_text(b, policy), times=times, zone=zone_doc,
        fixes=fixes, quality=quality_statement(ev, policy.gap_ms), policy=policy_doc,
        policy_sha256=hashlib.sha256(rfc8785.dumps(policy_doc)).hexdigest(), software=software_version(),
        data_sha256=data_digest(record, zone, ev), map_png=map_png(zone, ev),
        timeline_png=timeline_png(ev, (b.start_ms, b.end_ms), policy.gap_ms, _time_labels(ev)),
        generated_ms=generated_ms)
