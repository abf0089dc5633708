"""Synthetic wearers for `trails.sim.simulate`: homes, places, zones and assignments.

Each wearer is drawn from its own random stream, so a wearer depends only on
``(seed, index)``, never on how many wearers are simulated or in what batches.
Positions are kept in local metres (``x`` east, ``y`` north) around the
wearer's home and converted to WGS84 with a local tangent-plane approximation
(good to well under a metre over the few kilometres used here).

Zone shapes follow CONTRACT.md, "Zones": circles are GeoJSON ``Point`` with
``properties.radius_m``; polygons are simple (star-shaped about their centre,
vertices in increasing angle, so counter-clockwise) and closed.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = [
    "Town",
    "Place",
    "Wearer",
    "load_towns",
    "make_wearer",
    "to_lonlat",
    "M_PER_DEG_LAT",
]

#: Metres per degree of latitude (mean, at British latitudes).
M_PER_DEG_LAT = 111_250.0
M_PER_DEG_LON_EQ = 111_320.0

_ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]

#: Curfew schedule templates and their weights.
_CURFEW_SCHEDULES: tuple[tuple[float, list[dict]], ...] = (
    (0.40, [{"days": _ALL_DAYS, "start": "19:00", "end": "07:00"}]),
    (0.20, [{"days": _ALL_DAYS, "start": "21:00", "end": "06:00"}]),
    (0.20, [
        {"days": ["sun", "mon", "tue", "wed", "thu"], "start": "19:00", "end": "07:00"},
        {"days": ["fri", "sat"], "start": "21:00", "end": "06:00"},
    ]),
    (0.10, [{"days": ["fri", "sat", "sun"], "start": "20:00", "end": "08:00"}]),
    (0.10, [{"days": _ALL_DAYS, "start": "22:00", "end": "05:00"}]),
)


@dataclass(frozen=True)
class Town:
    name: str
    lat: float
    lon: float
    weight: float


@dataclass(frozen=True)
class Place:
    """A point the wearer visits, in local metres; ``kind`` names its purpose."""

    x: float
    y: float
    kind: str  # "place", "exclusion", "inclusion_exit"


@dataclass
class Wearer:
    """Everything drawn once for a wearer (mutable only while being built)."""

    index: int
    subject_id: str
    device_ids: tuple[str, ...]
    home_lat: float
    home_lon: float
    town: str
    #: GeoJSON features of this wearer's zones.
    features: list[dict] = field(default_factory=list)
    zone_ids: list[str] = field(default_factory=list)
    #: Curfew windows ``(days, start_min, end_min)`` (local minutes of day).
    curfew: list[tuple[frozenset[int], int, int]] = field(default_factory=list)
    #: Exclusion zones as ``(x, y, radius_m)`` circles enclosing them (local metres).
    exclusions: list[tuple[float, float, float]] = field(default_factory=list)
    #: Points well inside each exclusion zone, to visit on an "entry" day.
    exclusion_spots: list[tuple[float, float, float]] = field(default_factory=list)
    inclusion: tuple[float, float, float] | None = None
    places: list[Place] = field(default_factory=list)
    is_neglectful_charger: bool = False
    #: Minute index of a device swap, or -1.
    swap_minute: int = -1


@lru_cache(maxsize=1)
def load_towns() -> tuple[Town, ...]:
    """The packaged table of English town centres (``trails/data/towns.csv``)."""
    text = resources.files("trails.sim").joinpath("data/towns.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(Town(r["name"], float(r["lat"]), float(r["lon"]), float(r["weight"])) for r in rows)


def to_lonlat(lat0: float, lon0: float, x: np.ndarray | float, y: np.ndarray | float):
    """Local metres around ``(lat0, lon0)`` -> ``(lon, lat)`` degrees."""
    lat = lat0 + np.asarray(y) / M_PER_DEG_LAT
    lon = lon0 + np.asarray(x) / (M_PER_DEG_LON_EQ * math.cos(math.radians(lat0)))
    return lon, lat


def _to_local(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    x = (lon - lon0) * M_PER_DEG_LON_EQ * math.cos(math.radians(lat0))
    y = (lat - lat0) * M_PER_DEG_LAT
    return x, y


def _ring(w: Wearer, xs: np.ndarray, ys: np.ndarray) -> list[list[float]]:
    lon, lat = to_lonlat(w.home_lat, w.home_lon, xs, ys)
    pts = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    pts.append(pts[0])
    return pts


def _star(rng: np.random.Generator, cx: float, cy: float, r_lo: float, r_hi: float, n: int):
    """A simple star-shaped polygon about ``(cx, cy)``, counter-clockwise."""
    ang = 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n
    rad = rng.uniform(r_lo, r_hi, n)
    return cx + rad * np.cos(ang), cy + rad * np.sin(ang)


def _circle_feature(w: Wearer, zid: str, kind: str, x: float, y: float, r: float, schedule) -> dict:
    lon, lat = to_lonlat(w.home_lat, w.home_lon, x, y)
    props: dict = {"kind": kind, "radius_m": round(r, 1)}
    if schedule is not None:
        props["schedule"] = schedule
    return {
        "type": "Feature",
        "id": zid,
        "geometry": {"type": "Point", "coordinates": [round(float(lon), 7), round(float(lat), 7)]},
        "properties": props,
    }


def _polygon_feature(w: Wearer, zid: str, kind: str, xs, ys, schedule) -> dict:
    props: dict = {"kind": kind}
    if schedule is not None:
        props["schedule"] = schedule
    return {
        "type": "Feature",
        "id": zid,
        "geometry": {"type": "Polygon", "coordinates": [_ring(w, xs, ys)]},
        "properties": props,
    }


def _hm(text: str) -> int:
    return int(text[:2]) * 60 + int(text[3:])


def _seg_point_dist(ax, ay, bx, by, px, py) -> float:
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(ax + t * dx - px, ay + t * dy - py)


def _clear_of(exclusions, ax, ay, bx, by, margin: float) -> bool:
    return all(_seg_point_dist(ax, ay, bx, by, cx, cy) > r + margin for cx, cy, r in exclusions)


def _add_curfew(w: Wearer, rng: np.random.Generator, subject_id: str) -> None:
    """Curfew (~80%): home circle or small rotated rectangle."""
    if rng.random() < 0.80:
        probs = np.array([p for p, _ in _CURFEW_SCHEDULES])
        schedule = _CURFEW_SCHEDULES[int(rng.choice(len(probs), p=probs))][1]
        zid = f"{subject_id}-home"
        if rng.random() < 0.6:
            w.features.append(_circle_feature(w, zid, "curfew", 0.0, 0.0, float(rng.uniform(30, 80)), schedule))
        else:
            a, b = rng.uniform(18, 22) , rng.uniform(13, 17)
            th = rng.uniform(0, np.pi)
            cx = np.array([-a, a, a, -a])
            cy = np.array([-b, -b, b, b])
            xs = cx * math.cos(th) - cy * math.sin(th)
            ys = cx * math.sin(th) + cy * math.cos(th)
            w.features.append(_polygon_feature(w, zid, "curfew", xs, ys, schedule))
        w.zone_ids.append(zid)
        w.curfew = [(frozenset(_ALL_DAYS.index(d) for d in win["days"]), _hm(win["start"]), _hm(win["end"]))
                    for win in schedule]


def _add_exclusions(w: Wearer, rng: np.random.Generator, subject_id: str, tcx: float, tcy: float) -> None:
    """Exclusions (~20%): a victim's home circle, or the town centre (at `tcx`, `tcy` from home)."""
    if rng.random() < 0.20:
        n_exc = 2 if rng.random() < 0.2 else 1
        far_from_centre = math.hypot(tcx, tcy) > 2000.0
        kinds = ["victim", "centre"] if n_exc == 2 and far_from_centre else [
            "centre" if far_from_centre and rng.random() < 0.4 else "victim"]
        for k, kind in enumerate(kinds, start=1):
            zid = f"{subject_id}-exc-{k}"
            schedule = ([{"days": _WEEKDAYS, "start": "08:00", "end": "18:00"}]
                        if rng.random() < 0.5 else None)
            if kind == "victim":
                d, ang = rng.uniform(1500, 5000), rng.uniform(0, 2 * np.pi)
                cx, cy, r = d * math.cos(ang), d * math.sin(ang), float(rng.uniform(200, 500))
                w.features.append(_circle_feature(w, zid, "exclusion", cx, cy, r, schedule))
                w.exclusions.append((cx, cy, r))
                w.exclusion_spots.append((cx, cy, 0.4 * r))
            else:
                xs, ys = _star(rng, tcx, tcy, 420.0, 600.0, 10)
                w.features.append(_polygon_feature(w, zid, "exclusion", xs, ys, schedule))
                w.exclusions.append((tcx, tcy, 600.0))
                w.exclusion_spots.append((tcx, tcy, 250.0))
            w.zone_ids.append(zid)


def _add_inclusion(w: Wearer, rng: np.random.Generator, subject_id: str) -> None:
    """Inclusion (~5%): a big area around the home town, no schedule."""
    if rng.random() < 0.05:
        zid = f"{subject_id}-inc-1"
        ang, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 3000)
        cx, cy = d * math.cos(ang), d * math.sin(ang)
        if rng.random() < 0.5:
            r = float(rng.uniform(10_000, 20_000))
            w.features.append(_circle_feature(w, zid, "inclusion", cx, cy, r, None))
            w.inclusion = (cx, cy, r)
        else:
            r_lo = float(rng.uniform(10_000, 14_000))
            xs, ys = _star(rng, cx, cy, r_lo, r_lo + 6000.0, 16)
            w.features.append(_polygon_feature(w, zid, "inclusion", xs, ys, None))
            w.inclusion = (cx, cy, r_lo)
        w.zone_ids.append(zid)


def _add_places(w: Wearer, rng: np.random.Generator, tcx: float, tcy: float) -> None:
    """Places visited by day: half near the town centre (at `tcx`, `tcy` from home), half near
    home, clear of exclusions; at least one."""
    n_places = int(rng.integers(3, 6))
    tries = 0
    while len(w.places) < n_places and tries < 60:
        tries += 1
        if rng.random() < 0.5 and math.hypot(tcx, tcy) < 8000.0:
            px, py = tcx + rng.normal(0, 1200), tcy + rng.normal(0, 1200)
        else:
            d, ang = rng.uniform(300, 3500), rng.uniform(0, 2 * np.pi)
            px, py = d * math.cos(ang), d * math.sin(ang)
        dist = math.hypot(px, py)
        if not 300.0 <= dist <= 5000.0:
            continue
        legs = [(0.0, 0.0)] + [(p.x, p.y) for p in w.places]
        if all(_clear_of(w.exclusions, ax, ay, px, py, 150.0) for ax, ay in legs):
            w.places.append(Place(float(px), float(py), "place"))
    if not w.places:  # fall back: a nearby corner shop away from any zone
        for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            px, py = 400 * math.cos(ang), 400 * math.sin(ang)
            if _clear_of(w.exclusions, 0.0, 0.0, px, py, 150.0):
                w.places.append(Place(px, py, "place"))
                break
        else:
            w.places.append(Place(0.0, 350.0, "place"))


def make_wearer(index: int, rng: np.random.Generator, towns: tuple[Town, ...], n_minutes: int) -> Wearer:
    """Draw wearer ``index`` (home, zones, places, habits) from its own stream ``rng``."""
    weights = np.array([t.weight for t in towns])
    town = towns[int(rng.choice(len(towns), p=weights / weights.sum()))]
    sigma_m = float(np.clip(150.0 * math.sqrt(town.weight), 1500.0, 9000.0))
    off = rng.normal(0.0, sigma_m, 2)
    norm = math.hypot(*off)
    if norm > 2.5 * sigma_m:
        off *= 2.5 * sigma_m / norm
    home_lon, home_lat = to_lonlat(town.lat, town.lon, off[0], off[1])
    subject_id = f"S-{index:06d}"
    devices = [f"D-{index:06d}"]
    w = Wearer(index, subject_id, (), float(home_lat), float(home_lon), town.name)
    tcx, tcy = _to_local(w.home_lat, w.home_lon, town.lat, town.lon)

    _add_curfew(w, rng, subject_id)
    _add_exclusions(w, rng, subject_id, tcx, tcy)
    _add_inclusion(w, rng, subject_id)
    _add_places(w, rng, tcx, tcy)

    w.is_neglectful_charger = bool(rng.random() < 0.13)
    if rng.random() < 0.02 and n_minutes >= 2 * 1440:
        w.swap_minute = int(rng.integers(int(0.25 * n_minutes), int(0.85 * n_minutes)))
        devices.append(f"D-{index:06d}-R1")
    w.device_ids = tuple(devices)
    return w
