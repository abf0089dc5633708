"""A plain geopandas / shapely 2 / pandas implementation of `tagtrail detect`.

This is the peer the detect benchmark compares against: the contract's rules
(CONTRACT.md) written the way a capable data scientist would write them with
the standard PyData stack, without Numba:

- pandas reads and validates the rows (``read_csv`` / ``read_parquet``, regex
  checks with the ``str`` accessor, ``pd.to_datetime(utc=True, errors="coerce")``
  with an explicit format, which parses at microsecond resolution and so
  covers the contract's years 0001..9999, ``pd.to_numeric``); device ids are
  checked with ``str.len`` and one regex character class of every Cc, Cf and
  Cs code point (built from `unicodedata` once);
- fixes and zones are projected with pyproj / ``GeoSeries.to_crs``;
- each (assignment, zone) pair is classified with vectorised shapely 2
  (``shapely.distance(points, zone.boundary)`` and ``shapely.contains_xy``);
  circles use the exact distance to the centre;
- coverage, runs, gaps and alerts use pandas ``groupby`` / ``shift`` /
  ``cumsum`` over all fixes at once; schedules are expanded with zoneinfo.

Python loops run per assignment-zone pair, per schedule day and per battery
gap (never per fix). Input *errors* (exit 2 cases) are not reproduced: the
loaders assume valid SUBJECTS/ZONES/POLICY files.

    baseline_detect(fixes_path, subjects_path, zones_path, policy_path=None,
                    events_path=None, as_of=None) -> list[dict]
"""
from __future__ import annotations

import hashlib
import json
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely
from pyproj import Transformer
from shapely.geometry import shape

__all__ = ["baseline_detect", "run_baseline", "BaselineResult", "POLICY_DEFAULTS"]

WS = " \t\r\n"
OUT, UNCERTAIN, IN = 0, 1, 2
NEG_INF = -(2**62)
POS_INF = 2**62
REASONS = ["missing_device", "bad_device", "bad_timestamp", "naive_timestamp", "bad_coordinates", "bad_accuracy",
           "bad_battery", "unknown_event", "after_as_of", "unassigned", "duplicate"]
NUMBER_RE = r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_TS_BODY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
TS_AWARE_RE = _TS_BODY + r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
TS_NAIVE_RE = _TS_BODY
#: the parts of a timestamp: date, time, fraction digits, offset
TS_PARTS_RE = (r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
               r"([Zz]|[+-][0-9]{2}:[0-9]{2})?")
#: 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z as epoch ms
FIRST_MS, LAST_MS = -62_135_596_800_000, 253_402_300_799_999
MAX_ID_CHARS = 128


def _bad_id_char_class() -> str:
    """A regex character class of every code point of general category Cc or Cf.

    Written as literal characters (both Python's `re` and pandas' Arrow-backed
    RE2 read them). Cs (surrogates) cannot occur: text read as UTF-8 holds none.
    """
    cps = [c for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cf")]
    ranges, start = [], cps[0]
    for a, b in zip(cps, cps[1:] + [None]):
        if b != a + 1:
            ranges.append(chr(start) + ("-" + chr(a) if a > start else ""))
            start = b
    return "[" + "".join(ranges) + "]"


BAD_ID_CHAR_RE = _bad_id_char_class()
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

POLICY_DEFAULTS = {
    "crs": "EPSG:27700", "coverage_s": 300, "gap_s": 900, "curfew_grace_s": 900,
    "curfew_missed_fraction": 0.5, "inclusion_grace_s": 900, "exclusion_min_s": 0,
    "battery_critical_pct": 5, "battery_low_pct": 20, "battery_policy": "per_episode",
    "accumulated_battery_s": 43200, "accumulated_window_s": 604800, "out_of_contact_s": 604800,
    "default_accuracy_m": 0,
}


@dataclass
class BaselineResult:
    records: list[dict]
    quarantine: pd.DataFrame  # source, row, reason (sorted)
    as_of_ms: int | None
    n_fixes_kept: int
    timings: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- config files
def load_policy(path) -> dict:
    p = dict(POLICY_DEFAULTS)
    if path is not None:
        p.update(json.loads(Path(path).read_text(encoding="utf-8-sig")))
    for k in list(p):
        if k.endswith("_s"):
            p[k[:-2] + "_ms"] = int(round(float(p[k]) * 1000))
    return p


def _to_ms(values) -> np.ndarray:
    """RFC 3339 strings -> epoch ms (floored)."""
    t = pd.to_datetime(pd.Series(values, dtype=object).str.strip(WS), utc=True, format="ISO8601")
    return ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")).to_numpy(np.int64)


def load_subjects(path) -> pd.DataFrame:
    subj = pd.DataFrame(json.loads(Path(path).read_text(encoding="utf-8-sig"))["subjects"])
    if "end" not in subj:
        subj["end"] = None
    if "zones" not in subj:
        subj["zones"] = None
    out = pd.DataFrame({"subject_id": subj["subject_id"].astype(str), "device_id": subj["device_id"].astype(str)})
    out["start_ms"] = _to_ms(subj["start"])
    has_end = subj["end"].notna().to_numpy()
    end = np.full(len(subj), POS_INF, np.int64)
    if has_end.any():
        end[has_end] = _to_ms(subj["end"][has_end])
    out["end_ms"] = end
    out["zones"] = [list(z) if isinstance(z, list) else [] for z in subj["zones"]]
    return out


def load_zones(path, crs: str) -> gpd.GeoDataFrame:
    """ZONES.geojson -> GeoDataFrame in `crs` (Point zones keep their centre and radius)."""
    fc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    rows = []
    for f in fc["features"]:
        props = f.get("properties") or {}
        rows.append({
            "zone_id": f["id"], "kind": props["kind"],
            "radius_m": float(props["radius_m"]) if f["geometry"]["type"] == "Point" else np.nan,
            "schedule": props.get("schedule"), "timezone": props.get("timezone") or "Europe/London",
            "geometry": shapely.force_2d(shape(f["geometry"])),
        })
    cols = ["zone_id", "kind", "radius_m", "schedule", "timezone", "geometry"]
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows, columns=cols), geometry="geometry", crs="EPSG:4326").to_crs(crs)
    poly = ~gdf.geom_type.eq("Point")
    gdf["boundary"] = None
    gdf.loc[poly, "boundary"] = gdf.loc[poly].boundary.to_numpy()
    shapely.prepare(gdf.geometry.to_numpy())  # contains_xy on prepared polygons
    shapely.prepare(gdf["boundary"].to_numpy())
    return gdf.set_index("zone_id", drop=False)


# --------------------------------------------------------------------------- schedules
def _resolve_local(tz: ZoneInfo, d: date, minute: int) -> int:
    """Local wall time -> epoch ms: nonexistent -> the change instant; ambiguous -> first."""
    naive = datetime(d.year, d.month, d.day, minute // 60, minute % 60)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return int(first.timestamp()) * 1000
    second = naive.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    lo, hi = sorted((int(second.timestamp()), int(first.timestamp())))
    new_off = datetime.fromtimestamp(hi, tz).utcoffset()
    while hi - lo > 1:  # first second at which the new offset applies
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == new_off:
            hi = mid
        else:
            lo = mid
    return hi * 1000


_SCHEDULE_CACHE: dict = {}


def active_intervals(schedule, tz_name: str, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Merged active intervals (starts, ends) of a weekly schedule around [lo_ms, hi_ms).

    Expanded 8 local days either side, so every merged interval that meets the
    range is whole (a chain that does not cover the whole week breaks at least
    once a week); a schedule covering the whole time is one unbounded interval.
    """
    if not schedule:
        return np.array([NEG_INF], np.int64), np.array([POS_INF], np.int64)
    key = (json.dumps(schedule, sort_keys=True), tz_name, lo_ms, hi_ms)
    if key in _SCHEDULE_CACHE:
        return _SCHEDULE_CACHE[key]
    tz = ZoneInfo(tz_name)
    d0 = datetime.fromtimestamp(lo_ms / 1000, timezone.utc).date() - timedelta(days=8)
    d1 = datetime.fromtimestamp(hi_ms / 1000, timezone.utc).date() + timedelta(days=8)
    inst = []
    d = d0
    while d <= d1:
        for w in schedule:
            if DAYS[d.weekday()] not in w["days"]:
                continue
            sm = int(w["start"][:2]) * 60 + int(w["start"][3:])
            em = int(w["end"][:2]) * 60 + int(w["end"][3:])
            s = _resolve_local(tz, d, sm)
            e = _resolve_local(tz, d if em > sm else d + timedelta(days=1), em)
            if e > s:
                inst.append((s, e))
        d += timedelta(days=1)
    iv = pd.DataFrame(inst, columns=["s", "e"]).sort_values(["s", "e"], ignore_index=True)
    # merge overlapping or touching instances
    grp = (iv["s"] > iv["e"].cummax().shift(fill_value=NEG_INF)).cumsum()
    merged = iv.groupby(grp).agg(s=("s", "min"), e=("e", "max"))
    s, e = merged["s"].to_numpy(np.int64), merged["e"].to_numpy(np.int64)
    first_day = _resolve_local(tz, d0 + timedelta(days=1), 0)
    last_day = _resolve_local(tz, d1, 0)
    if len(s) == 1 and s[0] <= first_day and e[0] >= last_day:
        s, e = np.array([NEG_INF], np.int64), np.array([POS_INF], np.int64)
    _SCHEDULE_CACHE[key] = (s, e)
    return s, e


# --------------------------------------------------------------------------- reading rows
def _read_raw(path, wanted: list[str]) -> tuple[pd.DataFrame, dict]:
    """Wanted columns as a DataFrame plus per-column 'null' masks (Parquet) ."""
    path = Path(path)
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                         encoding="utf-8-sig", skip_blank_lines=True)
        df.columns = [c.strip(WS) for c in df.columns]
        df = df[[c for c in wanted if c in df.columns]]
        return df, {}
    table = pq.read_table(path, columns=[c for c in wanted if c in pq.read_schema(path).names])
    nulls = {c: table.column(c).is_null().to_numpy(zero_copy_only=False) for c in table.column_names}
    return table.to_pandas(), nulls


def _text(col: pd.Series) -> pd.Series:
    return col.astype(str).str.strip(WS)


def _epoch_ms(t: pd.Series) -> np.ndarray:
    """Datetimes (UTC, any unit) -> int64 epoch ms, floored; NaT -> 0."""
    epoch = pd.Timestamp(0, tz="UTC").as_unit(t.dt.unit)
    return ((t - epoch) // pd.Timedelta(1, "ms")).fillna(0).to_numpy(np.int64, copy=True)


def _parse_wide(s: pd.Series, *, aware: bool) -> pd.Series:
    """Timestamps outside pandas' nanosecond range (years 1677..2262), parsed at
    microsecond resolution through one canonical form (fraction floored to ms)."""
    parts = s.str.extract("^" + TS_PARTS_RE + "$")
    canon = parts[0] + "T" + parts[1] + "." + parts[2].fillna("").str.ljust(3, "0").str[:3]
    if not aware:
        return pd.to_datetime(canon, format="%Y-%m-%dT%H:%M:%S.%f", errors="coerce")
    offset = parts[3].str.upper().replace("Z", "+00:00")
    return pd.to_datetime(canon + offset, format="%Y-%m-%dT%H:%M:%S.%f%z", utc=True, errors="coerce")


def _parse_ts(col: pd.Series, nulls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (epoch ms, bad, naive) for a ts column (CSV text or Parquet timestamp/text).

    An instant outside 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z is not
    a timestamp (CONTRACT.md, "Time"). ``format="ISO8601"`` parses at nanosecond
    resolution (years 1677..2262); the rows it cannot place are parsed again at
    microsecond resolution (`_parse_wide`), so year 10000 after the offset is seen.
    """
    n = len(col)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        missing = col.isna().to_numpy()
        ms = _epoch_ms(col)
        bad = missing | (ms < FIRST_MS) | (ms > LAST_MS)
        return np.where(bad, 0, ms), bad, np.zeros(n, bool)
    if pd.api.types.is_datetime64_dtype(col.dtype):  # no time zone: every row is naive
        missing = col.isna().to_numpy()
        return np.zeros(n, np.int64), missing, ~missing
    s = _text(col)
    if nulls is not None:
        s = s.where(~nulls, "")
    aware = s.str.fullmatch(TS_AWARE_RE).to_numpy(bool)
    naive = s.str.fullmatch(TS_NAIVE_RE).to_numpy(bool)
    iso = s.where(aware, None).str.upper().str.replace(" ", "T", n=1)
    t = pd.to_datetime(iso, utc=True, format="ISO8601", errors="coerce")
    ok = t.notna().to_numpy().copy()
    ms = _epoch_ms(t).copy()
    wide = aware & ~ok
    if wide.any():
        tw = _parse_wide(s[wide], aware=True)
        ms[wide] = _epoch_ms(tw)
        ok[wide] = tw.notna().to_numpy()
    ok &= (ms >= FIRST_MS) & (ms <= LAST_MS)
    # an impossible date/time is not a timestamp, naive or not
    if naive.any():
        tn = pd.to_datetime(s.where(naive, None).str.replace(" ", "T", n=1).str.upper(),
                            format="ISO8601", errors="coerce")
        valid = tn.notna().to_numpy().copy()
        retry = naive & ~valid
        if retry.any():
            valid[retry] = _parse_wide(s[retry], aware=False).notna().to_numpy()
        naive = naive & valid
    return np.where(ok, ms, 0), ~(ok | naive), naive & ~ok


def _parse_number(col: pd.Series, nulls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (value, missing, not_a_number) following the contract's number grammar."""
    if pd.api.types.is_numeric_dtype(col.dtype):
        v = col.to_numpy(np.float64)
        missing = nulls if nulls is not None else np.zeros(len(col), bool)
        return v, missing, ~missing & ~np.isfinite(v)
    s = _text(col)
    if nulls is not None:
        s = s.where(~nulls, "")
    missing = (s == "").to_numpy(bool)
    is_num = s.str.fullmatch(NUMBER_RE).to_numpy(bool)
    v = pd.to_numeric(s.where(is_num, None), errors="coerce").to_numpy(np.float64)
    return v, missing, ~missing & ~(is_num & np.isfinite(v))


def _device(col: pd.Series, nulls) -> pd.Series:
    if pd.api.types.is_integer_dtype(col.dtype):
        s = col.astype("Int64").astype(str)
    else:
        s = _text(col)
    if nulls is not None:
        s = s.where(~nulls, "")
    return s


def _bad_device(device: pd.Series) -> np.ndarray:
    """Longer than 128 code points, or holding a Cc, Cf or Cs character."""
    return ((device.str.len() > MAX_ID_CHARS) | device.str.contains(BAD_ID_CHAR_RE, regex=True)).to_numpy(bool)


def read_fixes(path, policy: dict) -> pd.DataFrame:
    raw, nulls = _read_raw(path, ["device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct"])
    n = len(raw)
    df = pd.DataFrame({"row": np.arange(1, n + 1, dtype=np.int64)})
    df["device_id"] = _device(raw["device_id"], nulls.get("device_id")).to_numpy()
    ts, bad_ts, naive_ts = _parse_ts(raw["ts"], nulls.get("ts"))
    lat, lat_miss, lat_nan = _parse_number(raw["lat"], nulls.get("lat"))
    lon, lon_miss, lon_nan = _parse_number(raw["lon"], nulls.get("lon"))
    bad_coord = lat_miss | lat_nan | lon_miss | lon_nan | ~((np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if "accuracy_m" in raw:
        acc, acc_miss, acc_nan = _parse_number(raw["accuracy_m"], nulls.get("accuracy_m"))
        bad_acc = ~acc_miss & (acc_nan | ~(acc >= 0))
        acc = np.where(acc_miss, np.nan, acc)
    else:
        acc, bad_acc = np.full(n, np.nan), np.zeros(n, bool)
    if "battery_pct" in raw:
        bat, bat_miss, bat_nan = _parse_number(raw["battery_pct"], nulls.get("battery_pct"))
        bad_bat = ~bat_miss & (bat_nan | ~((bat >= 0) & (bat <= 100)))
        bat = np.where(bat_miss, np.nan, bat)
    else:
        bat, bad_bat = np.full(n, np.nan), np.zeros(n, bool)
    df["ts_ms"], df["lat"], df["lon"], df["accuracy_m"], df["battery_pct"] = ts, lat, lon, acc, bat
    conds = [(df["device_id"] == "").to_numpy(), _bad_device(df["device_id"]), bad_ts, naive_ts, bad_coord,
             bad_acc, bad_bat]
    df["reason"] = np.select(conds, REASONS[:7], default="")
    return df


def read_events(path) -> pd.DataFrame:
    raw, nulls = _read_raw(path, ["device_id", "ts", "event"])
    n = len(raw)
    df = pd.DataFrame({"row": np.arange(1, n + 1, dtype=np.int64)})
    df["device_id"] = _device(raw["device_id"], nulls.get("device_id")).to_numpy()
    ts, bad_ts, naive_ts = _parse_ts(raw["ts"], nulls.get("ts"))
    df["ts_ms"] = ts
    df["event"] = _device(raw["event"], nulls.get("event")).to_numpy()
    conds = [(df["device_id"] == "").to_numpy(), _bad_device(df["device_id"]), bad_ts, naive_ts,
             (df["event"] != "strap_tamper").to_numpy()]
    df["reason"] = np.select(conds, ["missing_device", "bad_device", "bad_timestamp", "naive_timestamp",
                                     "unknown_event"], default="")
    return df


def screen(df: pd.DataFrame, subjects: pd.DataFrame, as_of_ms, dup_keys: list[str]) -> pd.DataFrame:
    """Reasons 8-10 (after_as_of, unassigned, duplicate); adds the `assign` column."""
    df["assign"] = -1
    if as_of_ms is not None:
        df.loc[(df["reason"] == "") & (df["ts_ms"] > as_of_ms), "reason"] = "after_as_of"
    cand = df.loc[df["reason"] == "", ["device_id", "ts_ms"]].reset_index().sort_values("ts_ms", kind="stable")
    a = subjects[["device_id", "start_ms", "end_ms"]].reset_index(names="assign").sort_values("start_ms")
    m = pd.merge_asof(cand, a, left_on="ts_ms", right_on="start_ms", by="device_id", direction="backward")
    held = m["assign"].notna() & (m["ts_ms"] < m["end_ms"])
    df.loc[m.loc[~held, "index"].to_numpy(), "reason"] = "unassigned"
    df.loc[m.loc[held, "index"].to_numpy(), "assign"] = m.loc[held, "assign"].astype(np.int64).to_numpy()
    ok = df["reason"] == ""
    dup = df[ok].duplicated(subset=dup_keys, keep="first")  # rows are in file order
    df.loc[dup[dup].index, "reason"] = "duplicate"
    return df


# --------------------------------------------------------------------------- geometry
def classify(pts, x, y, acc, zone) -> np.ndarray:
    """IN/OUT/UNCERTAIN of points against one projected zone (accuracy-aware)."""
    geom = zone.geometry
    if geom.geom_type == "Point":
        d = zone.radius_m - shapely.distance(pts, geom)
    else:
        dist = shapely.distance(pts, zone.boundary)
        d = np.where(shapely.contains_xy(geom, x, y), dist, -dist)
    return np.select([(d > 0) & (d >= acc), (d < 0) & (-d >= acc)], [IN, OUT], UNCERTAIN).astype(np.int8)


# --------------------------------------------------------------------------- the rules
def _accumulated(gs: np.ndarray, ge: np.ndarray, r: int, window: int, need: int) -> list[tuple[int, int]]:
    """Accumulated battery breaches of one assignment from its battery gaps (sorted)."""
    cum = np.concatenate([[0], np.cumsum(ge - gs)])

    def upto(t):  # battery-gap time before instant t
        j = np.searchsorted(gs, t, side="left") - 1
        if j < 0:
            return 0
        return int(cum[j] + min(ge[j], t) - gs[j])

    def f(t, r):
        return upto(t) - upto(max(t - window, r))

    out = []
    for g in range(len(gs)):
        while f(int(ge[g]), r) >= need:
            lo, hi = max(int(gs[g]), r) + 1, int(ge[g])  # f is nondecreasing inside a gap
            while lo < hi:
                mid = (lo + hi) // 2
                if f(mid, r) >= need:
                    hi = mid
                else:
                    lo = mid + 1
            out.append((max(lo - window, r), lo))
            r = lo
    return out


def _fmt(ms: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(np.asarray(ms, np.int64).astype("datetime64[ms]"), unit="ms")]


def run_baseline(fixes_path, subjects_path, zones_path, policy_path=None, events_path=None,
                 as_of=None) -> BaselineResult:
    tm = {}
    t0 = time.perf_counter()
    pol = load_policy(policy_path)
    subjects = load_subjects(subjects_path)
    zones = load_zones(zones_path, pol["crs"])
    as_of_explicit = int(_to_ms([as_of])[0]) if as_of is not None else None
    tm["config"] = time.perf_counter() - t0

    t = time.perf_counter()
    fx = screen(read_fixes(fixes_path, pol), subjects, as_of_explicit, ["device_id", "ts_ms"])
    if events_path is not None:
        ev = screen(read_events(events_path), subjects, as_of_explicit, ["device_id", "ts_ms", "event"])
    else:
        ev = pd.DataFrame({"row": [], "device_id": [], "ts_ms": [], "event": [], "reason": [], "assign": []})
    q = pd.concat([ev.loc[ev["reason"] != "", ["row", "reason"]].assign(source="events"),
                   fx.loc[fx["reason"] != "", ["row", "reason"]].assign(source="fixes")])
    quarantine = q[["source", "row", "reason"]].astype({"row": np.int64}).sort_values(["source", "row"], ignore_index=True)
    fx = fx[fx["reason"] == ""].drop(columns="reason")
    ev = ev[ev["reason"] == ""]
    tm["read+screen"] = time.perf_counter() - t

    if as_of_explicit is not None:
        as_of_ms = as_of_explicit
    else:
        latest = [fx["ts_ms"].max() if len(fx) else None, ev["ts_ms"].max() if len(ev) else None]
        latest = [int(v) for v in latest if v is not None and not pd.isna(v)]
        as_of_ms = max(latest) if latest else None

    # per assignment, in time order
    t = time.perf_counter()
    fx = fx.sort_values(["assign", "ts_ms"], ignore_index=True)
    fx["accuracy_m"] = fx["accuracy_m"].fillna(float(pol["default_accuracy_m"]))
    tr = Transformer.from_crs("EPSG:4326", pol["crs"], always_xy=True)
    fx["x"], fx["y"] = tr.transform(fx["lon"].to_numpy(), fx["lat"].to_numpy())
    tm["project"] = time.perf_counter() - t

    a_start = subjects["start_ms"].to_numpy(np.int64)
    a_end = subjects["end_ms"].to_numpy(np.int64)
    recs = []  # DataFrames with assign, type, zone_id, s, e, priority, kind

    # tamper and low battery, from every kept event and fix
    tam = ev[ev["event"] == "strap_tamper"]
    recs.append(pd.DataFrame({"assign": tam["assign"].astype(np.int64), "type": "strap_tamper", "zone_id": None,
                              "s": tam["ts_ms"], "e": tam["ts_ms"], "priority": 1, "kind": "breach"}))
    known = fx[fx["battery_pct"].notna()]
    prev_b = known.groupby("assign")["battery_pct"].shift(1)
    low = known[(known["battery_pct"] <= pol["battery_low_pct"]) & (prev_b.isna() | (prev_b > pol["battery_low_pct"]))]
    recs.append(pd.DataFrame({"assign": low["assign"], "type": "low_battery", "zone_id": None,
                              "s": low["ts_ms"], "e": low["ts_ms"], "priority": 4, "kind": "alert"}))

    if as_of_ms is not None and len(subjects):
        t_end = np.minimum(a_end, as_of_ms)
        live = t_end > a_start
        fx = fx[live[fx["assign"].to_numpy()]].reset_index(drop=True)
        fa = fx["assign"].to_numpy(np.int64)
        ts = fx["ts_ms"].to_numpy(np.int64)
        nxt = fx.groupby("assign")["ts_ms"].shift(-1).fillna(POS_INF).to_numpy(np.int64)
        cov_end = np.minimum.reduce([nxt, ts + pol["coverage_ms"], t_end[fa]])
        cov_end = np.maximum(cov_end, ts)
        offsets = np.searchsorted(fa, np.arange(len(subjects) + 1))

        # ---- zones: classify each (assignment, zone) pair, explode fixes into windows
        t = time.perf_counter()
        pts = shapely.points(fx["x"].to_numpy(), fx["y"].to_numpy())
        x, y, acc = fx["x"].to_numpy(), fx["y"].to_numpy(), fx["accuracy_m"].to_numpy()
        pieces, windows = [], []
        wid0 = 0
        t_classify = 0.0
        for ai in np.flatnonzero(live):
            f0, f1 = offsets[ai], offsets[ai + 1]
            for zid in subjects.at[ai, "zones"]:
                zone = zones.loc[zid]
                ms, me = active_intervals(zone.schedule, zone.timezone, int(a_start.min()), int(t_end[live].max()))
                meet = (me > a_start[ai]) & (ms < t_end[ai])
                ms, me = ms[meet], me[meet]
                if len(ms) == 0:
                    continue
                windows.append(pd.DataFrame({
                    "wid": np.arange(wid0, wid0 + len(ms)), "assign": ai, "zone_id": zid, "kind": zone.kind,
                    "m_s": ms, "m_e": me, "w_s": np.maximum(ms, a_start[ai]), "w_e": np.minimum(me, t_end[ai]),
                    "whole": (ms >= a_start[ai]) & (me <= t_end[ai])}))
                if f1 > f0:
                    tc = time.perf_counter()
                    code = classify(pts[f0:f1], x[f0:f1], y[f0:f1], acc[f0:f1], zone)
                    t_classify += time.perf_counter() - tc
                    t_i, c_i = ts[f0:f1], cov_end[f0:f1]
                    ne = c_i > t_i
                    lo = np.searchsorted(me, t_i, side="right")
                    hi = np.searchsorted(ms, c_i, side="left")
                    n = np.where(ne, np.maximum(hi - lo, 0), 0)
                    fi = np.repeat(np.arange(f1 - f0), n)
                    wi = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
                    pieces.append(pd.DataFrame({
                        "wid": wid0 + wi, "t": t_i[fi], "code": code[fi],
                        "p_s": np.maximum(t_i[fi], np.maximum(ms[wi], a_start[ai])),
                        "p_e": np.minimum(c_i[fi], np.minimum(me[wi], t_end[ai]))}))
                wid0 += len(ms)
        tm["classify (shapely)"] = t_classify
        if windows:
            win = pd.concat(windows, ignore_index=True).set_index("wid")
            pc_ = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(
                {"wid": [], "t": [], "code": [], "p_s": [], "p_e": []})
            pc_ = pc_.sort_values(["wid", "t"], kind="stable", ignore_index=True)
            kind = win["kind"].reindex(pc_["wid"]).to_numpy()
            exclusion = kind == "exclusion"
            code = pc_["code"].to_numpy()
            good = np.where(exclusion, code == OUT, code == IN)
            bad = np.where(exclusion, code == IN, code == OUT)
            prev_w = pc_["wid"].shift(1, fill_value=-1).to_numpy()
            prev_t = pc_["t"].shift(1, fill_value=NEG_INF).to_numpy()
            prev_good = np.concatenate([[True], good[:-1]])
            new_run = (pc_["wid"].to_numpy() != prev_w) | (pc_["t"].to_numpy() - prev_t > pol["coverage_ms"]) \
                | good | prev_good
            pc_["run"] = np.cumsum(new_run)
            ep = pc_[bad].groupby("run").agg(wid=("wid", "first"), s=("p_s", "first"), e=("p_e", "last"))
            ep = ep.join(win[["assign", "zone_id", "kind"]], on="wid")
            min_ms = ep["kind"].map({"curfew": pol["curfew_grace_ms"], "inclusion": pol["inclusion_grace_ms"],
                                     "exclusion": pol["exclusion_min_ms"]})
            ep = ep[(ep["e"] - ep["s"]) >= min_ms]
            # missed curfews: whole windows with no IN, some OUT, enough OUT time
            cw = win[(win["kind"] == "curfew") & win["whole"]]
            pcw = pc_[pc_["wid"].isin(cw.index)].assign(out_ms=lambda d: np.where(d["code"] == OUT, d["p_e"] - d["p_s"], 0))
            g = pcw.groupby("wid").agg(n_in=("code", lambda c: (c == IN).sum()), n_out=("code", lambda c: (c == OUT).sum()),
                                       out_ms=("out_ms", "sum"))
            g = g.join(cw[["m_s", "m_e", "assign", "zone_id"]])
            missed = g[(g["n_in"] == 0) & (g["n_out"] > 0)
                       & (g["out_ms"].astype(np.float64) >= pol["curfew_missed_fraction"] * (g["m_e"] - g["m_s"]).astype(np.float64))]
            ep = ep[~ep["wid"].isin(missed.index)]
            recs.append(pd.DataFrame({"assign": ep["assign"], "type": ep["kind"].map(
                {"curfew": "curfew_absence", "inclusion": "inclusion_exit", "exclusion": "exclusion_entry"}),
                "zone_id": ep["zone_id"], "s": ep["s"], "e": ep["e"], "priority": 2, "kind": "breach"}))
            recs.append(pd.DataFrame({"assign": missed["assign"], "type": "curfew_missed", "zone_id": missed["zone_id"],
                                      "s": missed["m_s"], "e": missed["m_e"], "priority": 1, "kind": "breach"}))
        tm["zones (incl. classify)"] = time.perf_counter() - t

        # ---- gaps: contact points A.start, fixes, T_end
        t = time.perf_counter()
        crit = (fx["battery_pct"] <= pol["battery_critical_pct"]).to_numpy()  # NaN -> False
        prev_t = fx.groupby("assign")["ts_ms"].shift(1)
        first = prev_t.isna().to_numpy()
        u = np.where(first, a_start[fa], prev_t.fillna(0).to_numpy(np.int64))
        u_batt = np.where(first, False, pd.Series(crit).groupby(fa).shift(1, fill_value=False).to_numpy(bool))
        last_idx = fx.groupby("assign").tail(1).index.to_numpy()
        la = np.flatnonzero(live)
        last_u = a_start[la].copy()
        last_b = np.zeros(len(la), bool)
        has = np.isin(la, fa[last_idx])
        pos = np.searchsorted(fa[last_idx], la[has])
        last_u[has] = ts[last_idx][pos]
        last_b[has] = crit[last_idx][pos]
        gaps = pd.DataFrame({"assign": np.concatenate([fa, la]), "s": np.concatenate([u, last_u]),
                             "e": np.concatenate([ts, t_end[la]]), "batt": np.concatenate([u_batt, last_b])})
        gaps = gaps[(gaps["e"] - gaps["s"]) > pol["gap_ms"]].sort_values(["assign", "s"], ignore_index=True)
        ooc = (gaps["e"] - gaps["s"]) >= pol["out_of_contact_ms"]
        accumulated = pol["battery_policy"] == "accumulated"
        alert = gaps["batt"] & ~ooc & accumulated
        recs.append(pd.DataFrame({"assign": gaps["assign"], "type": np.where(gaps["batt"], "battery", "no_signal"),
                                  "zone_id": None, "s": gaps["s"], "e": gaps["e"],
                                  "priority": np.where(ooc, 1, np.where(alert, 4, 3)),
                                  "kind": np.where(alert, "alert", "breach")}))
        if accumulated:
            acc_rows = []
            for ai, g in gaps[gaps["batt"]].groupby("assign"):
                for s, e in _accumulated(g["s"].to_numpy(np.int64), g["e"].to_numpy(np.int64), int(a_start[ai]),
                                         pol["accumulated_window_ms"], pol["accumulated_battery_ms"]):
                    acc_rows.append((ai, s, e))
            acc_df = pd.DataFrame(acc_rows, columns=["assign", "s", "e"])
            recs.append(acc_df.assign(type="accumulated_battery", zone_id=None, priority=3, kind="breach"))
        tm["gaps"] = time.perf_counter() - t

    # ---- records
    t = time.perf_counter()
    recs = [r for r in recs if len(r)]
    if recs:
        r = pd.concat(recs, ignore_index=True)
    else:
        r = pd.DataFrame({"assign": [], "type": [], "zone_id": [], "s": [], "e": [], "priority": [], "kind": []})
    r["assign"] = r["assign"].astype(np.int64)
    s_ms, e_ms = r["s"].to_numpy(np.int64), r["e"].to_numpy(np.int64)
    r["subject_id"] = subjects["subject_id"].to_numpy()[r["assign"].to_numpy()]
    r["device_id"] = subjects["device_id"].to_numpy()[r["assign"].to_numpy()]
    r["start"], r["end"] = _fmt(s_ms), _fmt(e_ms)
    r["duration_s"] = (e_ms - s_ms) / 1000.0
    r["zone_id"] = r["zone_id"].astype(object).where(r["zone_id"].notna(), None)
    keys = r["subject_id"] + "|" + r["type"] + "|" + r["zone_id"].fillna("").astype(str) + "|" + r["start"]
    r["breach_id"] = [hashlib.sha256(k.encode("utf-8")).hexdigest()[:16] for k in keys]
    cols = ["breach_id", "kind", "type", "subject_id", "device_id", "zone_id", "start", "end", "duration_s", "priority"]
    records = [
        {"breach_id": b, "kind": k, "type": ty, "subject_id": su, "device_id": de, "zone_id": z,
         "start": st, "end": en, "duration_s": float(du), "priority": int(p)}
        for b, k, ty, su, de, z, st, en, du, p in zip(*(r[c].tolist() for c in cols))
    ]
    records.sort(key=lambda d: (d["subject_id"], d["start"], d["type"], d["zone_id"] or ""))
    tm["records"] = time.perf_counter() - t
    tm["total"] = time.perf_counter() - t0
    return BaselineResult(records, quarantine, as_of_ms, int(len(fx)), tm)


def baseline_detect(fixes_path, subjects_path, zones_path, policy_path=None, events_path=None,
                    as_of=None) -> list[dict]:
    """Breach records (contract dicts, contract order) for the same inputs as `tagtrail detect`."""
    return run_baseline(fixes_path, subjects_path, zones_path, policy_path, events_path, as_of).records


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="pandas/shapely baseline of `tagtrail detect`")
    ap.add_argument("--fixes", required=True)
    ap.add_argument("--events")
    ap.add_argument("--subjects", required=True)
    ap.add_argument("--zones", required=True)
    ap.add_argument("--policy")
    ap.add_argument("--as-of", dest="as_of")
    ap.add_argument("--out", help="write breaches.jsonl here (default: stdout)")
    ap.add_argument("--timings", action="store_true", help="print stage timings (JSON) on stderr")
    args = ap.parse_args()
    res = run_baseline(args.fixes, args.subjects, args.zones, args.policy, args.events, args.as_of)
    lines = "".join(json.dumps(rec) + "\n" for rec in res.records)
    if args.out:
        Path(args.out).write_text(lines, encoding="utf-8")
    else:
        print(lines, end="")
    if args.timings:
        import sys

        print(json.dumps({"n_fixes_kept": res.n_fixes_kept, "n_records": len(res.records), **res.timings}),
              file=sys.stderr)
