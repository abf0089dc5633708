"""The pictures in a breach's evidence pack: the zone and the record's fixes
on a map, and the timeline, drawn server-side with matplotlib (Agg) so the
pack needs no tiles, no browser and no network.

The map is drawn in the British National Grid (metres, `STORE_CRS`): a
circle zone is a true circle of its radius, each fix's accuracy circle is
its stated metres, and a scale bar gives the distance. Colours are the
console's (IN green, OUT red, UNCERTAIN orange) with a legend, and the
numbers match the fix table's. PNG bytes are the same for the same inputs
(no timestamp or software tag in the file), so the pack's bytes are too.
"""
from __future__ import annotations

import io

import numpy as np

from api.service.breach_evidence import STATE_NAMES, Evidence
from geofence.model import Zone
from trails.projection import STORE_CRS, project_lonlat

__all__ = ["COLOURS", "map_png", "timeline_png"]

#: Per classification (OUT, UNCERTAIN, IN) and for a fix with no zone to compare with.
COLOURS = {"OUT": "#d4351c", "UNCERTAIN": "#f47738", "IN": "#00703c", None: "#505a5f"}
_ZONE = "#1d70b8"
_DPI = 100


def _figure(width_in: float, height_in: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=_DPI)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None}, bbox_inches=None)
    return buf.getvalue()


def _zone_patches(zone: Zone):
    from matplotlib.patches import Circle, Polygon

    if zone.is_circle:
        cx, cy = project_lonlat(np.array([zone.center_lonlat[0]]), np.array([zone.center_lonlat[1]]), STORE_CRS)
        return [Circle((float(cx[0]), float(cy[0])), float(zone.radius_m), fill=False, edgecolor=_ZONE, lw=2)]
    patches = []
    for poly in zone.polygons:
        for k, ring in enumerate(poly):
            lon, lat = np.array([p[0] for p in ring]), np.array([p[1] for p in ring])
            x, y = project_lonlat(lon, lat, STORE_CRS)
            patches.append(Polygon(np.column_stack([x, y]), closed=True, fill=False, edgecolor=_ZONE,
                                   lw=2, ls="--" if k else "-"))
    return patches


def _scale_bar(ax, x0: float, x1: float, y0: float, y1: float) -> None:
    span = (x1 - x0) / 4
    length = float(10 ** np.floor(np.log10(span))) if span > 0 else 1.0
    for m in (5, 2):
        if length * m <= span:
            length *= m
            break
    bx, by = x0 + (x1 - x0) * 0.05, y0 + (y1 - y0) * 0.05
    ax.plot([bx, bx + length], [by, by], color="#0b0c0c", lw=3)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(bx + length / 2, by + (y1 - y0) * 0.02, label, ha="center", va="bottom", fontsize=8)


def map_png(zone: Zone | None, ev: Evidence) -> bytes:
    """The zone as its true geometry and each fix (numbered as in the table) with its accuracy circle."""
    from matplotlib.collections import PatchCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    fig = _figure(7.0, 5.0)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    xs, ys = project_lonlat(ev.lon, ev.lat, STORE_CRS) if len(ev) else (np.zeros(0), np.zeros(0))
    patches = _zone_patches(zone) if zone is not None else []
    for p in patches:
        ax.add_patch(p)
    names = [STATE_NAMES[s] if s >= 0 else None for s in ev.state.tolist()]
    acc = np.where(np.isnan(ev.accuracy_m), 0.0, ev.accuracy_m)
    circles = [Circle((x, y), r) for x, y, r in zip(xs.tolist(), ys.tolist(), acc.tolist()) if r > 0]
    ring_colours = [COLOURS[n] for n, r in zip(names, acc.tolist()) if r > 0]
    if circles:
        ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=ring_colours, lw=0.6, alpha=0.5))
    if len(ev):
        ax.scatter(xs, ys, s=18, c=[COLOURS[n] for n in names], edgecolors="#0b0c0c", linewidths=0.5, zorder=3)
    _fit(ax, xs, ys, acc, patches)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    _scale_bar(ax, x0, x1, y0, y1)
    handles = [Line2D([], [], marker="o", ls="", color=COLOURS[k], label=label) for k, label in
               (("IN", "inside the zone"), ("OUT", "outside the zone"),
                ("UNCERTAIN", "uncertain (accuracy circle crosses the boundary)"))]
    handles.append(Line2D([], [], color=_ZONE, lw=2, label="the zone"))
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=7, frameon=False)
    return _png(fig)


def _fit(ax, xs: np.ndarray, ys: np.ndarray, acc: np.ndarray, patches) -> None:
    """Show every fix with its accuracy circle and the whole zone, with a margin."""
    lo = [xs - acc, ys - acc] if xs.size else [np.zeros(0), np.zeros(0)]
    hi = [xs + acc, ys + acc] if xs.size else [np.zeros(0), np.zeros(0)]
    for p in patches:
        if hasattr(p, "get_radius"):
            (cx, cy), r = p.center, p.get_radius()
            v = np.array([[cx - r, cy - r], [cx + r, cy + r]])
        else:
            v = p.get_xy()
        lo = [np.append(lo[0], v[:, 0]), np.append(lo[1], v[:, 1])]
        hi = [np.append(hi[0], v[:, 0]), np.append(hi[1], v[:, 1])]
    if lo[0].size == 0:
        return
    x0, y0, x1, y1 = float(lo[0].min()), float(lo[1].min()), float(hi[0].max()), float(hi[1].max())
    pad = max(x1 - x0, y1 - y0, 20.0) * 0.1
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)


def timeline_png(ev: Evidence, record_ms: tuple[int, int], gap_ms: int, labels: list[tuple[int, str]]) -> bytes:
    """State per fix (OUT / UNCERTAIN / IN) and battery %, the record's own time shaded, gaps longer
    than the policy's marked; `labels` are (epoch ms, London time text) for the time axis."""
    fig = _figure(7.0, 2.6)
    ax = fig.add_axes((0.12, 0.22, 0.78, 0.7))
    t = (ev.ts_ms - ev.start_ms) / 60_000
    ax.axvspan((record_ms[0] - ev.start_ms) / 60_000, (record_ms[1] - ev.start_ms) / 60_000,
               color="#f3f2f1", zorder=0, label="the record")
    if len(ev):
        state = np.where(ev.state < 0, np.nan, ev.state.astype(float))
        ax.step(t, state, where="post", color="#0b0c0c", lw=1)
        ax.scatter(t, state, s=10, c=[COLOURS[STATE_NAMES[s] if s >= 0 else None] for s in ev.state.tolist()],
                   zorder=3)
        for i in np.flatnonzero(np.diff(ev.ts_ms) > gap_ms).tolist():
            ax.axvspan(t[i], t[i + 1], color="#b1b4b6", alpha=0.5, hatch="//", zorder=1)
    ax.set_yticks([0, 1, 2], ["OUT", "UNCERTAIN", "IN"], fontsize=7)
    ax.set_ylim(-0.5, 2.5)
    ax.set_xlim(0, (ev.end_ms - ev.start_ms) / 60_000)
    ax.set_xticks([(ms - ev.start_ms) / 60_000 for ms, _ in labels], [text for _, text in labels], fontsize=7)
    bat = ax.twinx()
    if len(ev) and not np.all(np.isnan(ev.battery_pct)):
        bat.plot(t, ev.battery_pct, color=_ZONE, lw=1, ls="--")
    bat.set_ylim(0, 105)
    bat.set_ylabel("battery % (dashed)", fontsize=7)
    bat.tick_params(labelsize=7)
    return _png(fig)
