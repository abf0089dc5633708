"""A breach record in words, for its console page and its evidence pack: which rule of
CONTRACT.md made it, with the thresholds of the policy in force, why it has
its priority, and the zone's schedule. Text only, from the record, the
policy and the zone: nothing here decides anything (detection did)."""
from __future__ import annotations

from api.db.models import BreachRow
from api.service.london import duration_text
from geofence.model import Policy, Zone

__all__ = ["rule_text", "priority_text", "schedule_text", "zone_shape_text", "zone_kind_text"]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _d(ms: int) -> str:
    return duration_text(ms / 1000)


def rule_text(b: BreachRow, p: Policy) -> list[str]:
    """What the record means and the thresholds it was judged by (CONTRACT.md, "Breaches and alerts")."""
    t = b.type
    if t == "curfew_absence":
        return ["The wearer was away from the curfew zone during a curfew window: fixes outside the zone "
                "(uncertain fixes between them counted) for at least the curfew grace.",
                f"Curfew grace in the policy in force: {_d(p.curfew_grace_ms)}."]
    if t == "curfew_missed":
        return ["A whole curfew window was missed: no fix in the window was inside the zone, at least one was "
                "outside, and the time outside was at least the policy's share of the window.",
                f"Missed share in the policy in force: {p.curfew_missed_fraction:.0%} of the window."]
    if t == "inclusion_exit":
        return ["The wearer left an inclusion zone while it was active, for at least the inclusion grace.",
                f"Inclusion grace in the policy in force: {_d(p.inclusion_grace_ms)}."]
    if t == "exclusion_entry":
        return ["The wearer entered an exclusion zone while it was active.",
                f"Shortest entry that counts in the policy in force: {_d(p.exclusion_min_ms)}."]
    if t in ("battery", "no_signal"):
        why = ("the last fix before it reported a battery at or below the critical level"
               if t == "battery" else "no fix arrived and the battery was not known to be critical")
        return [f"The tag was out of contact for longer than the gap limit: {why}.",
                f"Gap limit: {_d(p.gap_ms)}; critical battery: {p.battery_critical_pct:g}%; "
                f"out of contact after {_d(p.out_of_contact_ms)}."]
    if t == "accumulated_battery":
        return ["Time lost to a flat battery added up past the policy's limit within its rolling window.",
                f"Limit: {_d(p.accumulated_battery_ms)} within {_d(p.accumulated_window_ms)}."]
    if t == "strap_tamper":
        return ["The tag reported that its strap was tampered with."]
    if t == "low_battery":
        return ["The tag's battery fell to or below the low level.",
                f"Low battery level in the policy in force: {p.battery_low_pct:g}%."]
    return [f"Record type {t}."]


def priority_text(b: BreachRow, p: Policy) -> str:
    """Why the record has its priority (1 act first .. 4)."""
    t = b.type
    if t == "curfew_missed":
        return "Priority 1: a whole curfew window was missed."
    if t == "strap_tamper":
        return "Priority 1: a strap tamper is always priority 1."
    if t in ("battery", "no_signal"):
        if b.priority == 1:
            return f"Priority 1: out of contact for at least {_d(p.out_of_contact_ms)}."
        if b.kind == "alert":
            return "Priority 4: under the accumulated battery policy a battery gap on its own is an alert."
        return "Priority 3: a gap shorter than the out-of-contact limit."
    if t in ("curfew_absence", "inclusion_exit", "exclusion_entry"):
        return "Priority 2: an absence or entry long enough to count."
    if t == "accumulated_battery":
        return "Priority 3: accumulated battery time."
    return f"Priority {b.priority}: {'an alert' if b.kind == 'alert' else 'a breach'} of this type."


def schedule_text(zone: Zone) -> list[str]:
    """The zone's weekly windows in its own local time, one line each ("Always active" without)."""
    if not zone.windows:
        return ["Always active"]
    out = []
    for w in zone.windows:
        days = ", ".join(_DAYS[d] for d in sorted(w.days))
        start, end = divmod(w.start_min, 60), divmod(w.end_min, 60)
        nxt = " the next day" if w.end_min <= w.start_min else ""
        out.append(f"{days}: {start[0]:02d}:{start[1]:02d} to {end[0]:02d}:{end[1]:02d}{nxt} ({zone.timezone} time)")
    return out


def zone_shape_text(zone: Zone) -> str:
    if zone.is_circle:
        lon, lat = zone.center_lonlat
        return f"Circle of radius {zone.radius_m:g} m around {lat:.5f}, {lon:.5f}"
    n = len(zone.polygons or ())
    return f"{n} polygon{'' if n == 1 else 's'}"


def zone_kind_text(kind: str) -> str:
    """``a curfew zone``, ``an inclusion zone``, ``an exclusion zone``."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} zone"
