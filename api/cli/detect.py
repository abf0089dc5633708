"""`tagtrail detect`: breach records from fix files or from the store."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from geofence.detect import ChunkedColumn, EventInput, FixInput, battery_policy_counts, detect_columns
from geofence.policy import load_policy
from geofence.records import record_line, write_output_lines
from geofence.subjects import load_subjects
from geofence.zone_cache import load_compiled
from trails.errors import InputError
from trails.timestamps import parse_timestamp

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, audited_change, resolve_home
from api.cli.detect_store import STORE_HEADER, StoreRun, add_store_options, detect_store

EPILOG = """\
examples:
  # the contract's command, on CSV or Parquet files
  tagtrail detect --fixes fixes.csv --events events.csv --subjects subjects.json \\
                  --zones zones.geojson --out results/
  # stand the analysis at a given instant
  tagtrail detect --fixes fixes.parquet --subjects subjects.json --zones zones.geojson \\
                  --as-of 2024-04-01T19:00:00Z --out results/
  # on the store built by `tagtrail ingest`, one week only (a bare date is midnight UTC)
  tagtrail detect --home data --subjects subjects.json --zones zones.geojson \\
                  --from 2024-03-04 --to 2024-03-11 --out results/
  # what would the accumulated battery policy change?
  tagtrail detect --fixes fixes.csv --subjects subjects.json --zones zones.geojson \\
                  --out results/ --compare-battery-policies

Writes OUT/breaches.jsonl and OUT/quarantine.csv (see CONTRACT.md). Input errors
exit 2 with one line on stderr and write nothing.

Store mode (no --fixes): reads HOME/store, written by `tagtrail ingest`, using the
coordinates projected at ingest. --from/--to restrict the analysis to that period
(assignments are clipped to it) and only those day partitions are read. Rows
quarantined at ingest stay in the store's quarantine; quarantine.csv lists what
this run set aside (after_as_of, unassigned, duplicate) with a 4th column `file`
naming the ingested file the row came from. The summary counts both apart:
"quarantined by this run" and "quarantined at ingest".

File mode: when every fix row of --fixes is quarantined, a warning line on
stderr says so (the exit code is still 0: the quarantine is the answer).
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("detect", help="detect breaches (CONTRACT.md)", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    p.add_argument("--fixes", metavar="FIXES", help="fixes file (.csv or .parquet); without it, store mode (--home)")
    p.add_argument("--events", metavar="EVENTS", help="events file (.csv or .parquet); only with --fixes")
    p.add_argument("--subjects", metavar="SUBJECTS.json", required=True,
                   help="who wears which tag, when, with which zones (CONTRACT.md, \"Subjects\")")
    p.add_argument("--zones", metavar="ZONES.geojson", required=True,
                   help="the zones SUBJECTS.json names (CONTRACT.md, \"Zones\")")
    p.add_argument("--policy", metavar="POLICY.json",
                   help="thresholds and the CRS (CONTRACT.md, \"Policy\"); default: the contract's defaults")
    p.add_argument("--as-of", metavar="TS", dest="as_of", help="RFC 3339 instant the analysis stands at")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder for breaches.jsonl and quarantine.csv (created if needed)")
    add_home_option(p)
    p.add_argument("--from", dest="from_ts", metavar="TS",
                   help="store mode: first instant to read (RFC 3339, or YYYY-MM-DD for midnight UTC)")
    p.add_argument("--to", dest="to_ts", metavar="TS",
                   help="store mode: instant to read up to, exclusive (RFC 3339, or YYYY-MM-DD for midnight UTC)")
    add_store_options(p)
    p.add_argument("--compare-battery-policies", action="store_true",
                   help="also print gap breach counts under per_episode and accumulated")
    p.add_argument("--db", action="store_true",
                   help="also upsert the records (and the subjects and zones used) into HOME's database")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    p.add_argument("--timings", action="store_true", help="also print seconds per stage (on stderr)")
    p.add_argument("--zone-cache", metavar="DIR",
                   help="folder of the zone cache (zones parsed and compiled once per content of ZONES.geojson, "
                        "the CRS and the code); default HOME/cache/zones when the home exists, else no cache")
    p.add_argument("--no-zone-cache", action="store_true",
                   help="parse and compile ZONES.geojson afresh, neither reading nor writing the zone cache")
    p.set_defaults(func=run)


def _zone_cache_dir(args: argparse.Namespace) -> Path | None:
    """Where parsed and compiled zones are cached (`geofence.zone_cache`): --zone-cache DIR if
    given; else HOME/cache/zones when the home (--home, $TAGTRAIL_HOME, else ./data) exists; else
    nowhere (the folders of the input files are never written to). None with --no-zone-cache."""
    if args.no_zone_cache:
        return None
    if args.zone_cache:
        return Path(args.zone_cache)
    home = resolve_home(args.home)
    return home / "cache" / "zones" if home.is_dir() else None


def _timestamp_arg(name: str, value: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{name} {value!r} is not a valid timestamp: {exc}") from None


def _combine(arr) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def run(args: argparse.Namespace) -> int:
    """The cyclic garbage collector is paused for the run: loading a national
    ZONES.geojson and SUBJECTS.json creates millions of small objects and no
    cycles, and the collector's repeated passes over them cost more than the
    parsing itself (measured: 0.5 s of 1.1 s for 20,000 wearers)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if enabled:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    policy = load_policy(args.policy)
    # positions must lie in the policy CRS's area of use; parsed and compiled once per content (zone_cache)
    zones, compiled, zone_cache = load_compiled(args.zones, policy.crs, cache_dir=_zone_cache_dir(args))
    t_zones = time.perf_counter()
    assignments = load_subjects(args.subjects, {z.zone_id for z in zones})
    t_subjects = time.perf_counter()
    assignments_all = assignments
    as_of = _timestamp_arg("--as-of", args.as_of) if args.as_of is not None else None

    if args.fixes and (args.from_ts or args.to_ts):
        raise InputError("--from/--to select days of the store (--home); with --fixes use --as-of")
    if args.events and not args.fixes:
        raise InputError("--events needs --fixes (in store mode, events come from the store)")
    if args.fixes and (args.cluster or args.single_pass or args.store_url):
        raise InputError("--cluster, --store-url and --single-pass are for store mode (--home), not --fixes")
    if args.store_url and not args.cluster:
        raise InputError("--store-url says where cluster workers find the store: it needs --cluster")
    t_read = time.perf_counter()
    if args.fixes:
        run_ = _file_mode(args, policy, assignments, zones, as_of, compiled)
    else:
        run_ = detect_store(args, policy, assignments, zones, as_of, compiled)
    t_detected = time.perf_counter()
    write_output_lines(args.out, run_.lines, run_.quarantine,
                       **({} if args.fixes else {"header": STORE_HEADER}))
    t_written = time.perf_counter()
    if args.db:
        _save_to_db(args, assignments_all, zones, run_.records())
    elapsed = time.perf_counter() - t0
    if args.timings:
        stages = {f"load+compile zones ({zone_cache})": t_zones - t0, "load subjects": t_subjects - t_zones,
                  **run_.timings, "read and detect (all)": t_detected - t_read,
                  "write outputs": t_written - t_detected}
        print("seconds per stage:", file=sys.stderr)
        for name, sec in stages.items():
            print(f"  {name:<30} {sec:8.3f}", file=sys.stderr)
        print(f"  {'total in process':<30} {elapsed:8.3f}", file=sys.stderr)
    if args.fixes:
        _warn_all_quarantined(args.fixes, run_.n_rows, run_.quarantine, args.out)
    if not args.quiet:
        at_ingest = None if args.fixes else _ingest_quarantined(resolve_home(args.home))
        _print_summary(run_, elapsed, args.out, at_ingest=at_ingest)
    if args.compare_battery_policies:
        _print_policy_comparison(run_.policy_counts)
    return 0


def _file_mode(args: argparse.Namespace, policy, assignments, zones, as_of: int | None, compiled=None) -> StoreRun:
    """The contract's command on --fixes (and --events) files, in one pass."""
    from trails.readers import read_events

    fixes, f_rej, n_rows = _from_file(args.fixes, sorted({a.device_id for a in assignments}), policy.crs)
    if args.events:
        ev, e_rej = read_events(args.events)
        events = EventInput(row=ev.row, device_id=_combine(ev.device_id), ts_ms=ev.ts_ms, event=_combine(ev.event))
    else:
        events, e_rej = None, None
    result = detect_columns(fixes, events, assignments, zones, policy, as_of_ms=as_of,
                            rejected_fixes=f_rej, rejected_events=e_rej, compiled=compiled)
    return StoreRun(lines=[record_line(r) for r in result.records], quarantine=result.quarantine,
                    counts=Counter((r["kind"], r["type"], r["priority"]) for r in result.records), n_rows=n_rows,
                    policy_counts=battery_policy_counts(result, policy) if args.compare_battery_policies else {},
                    timings=result.timings)


def _from_file(path, devices: list[str], crs: str):
    """File mode: validated batches kept as they are, not concatenated.

    Device ids become codes batch by batch (their strings are dropped at
    once); each batch is projected (in a worker thread, while the next batch
    is read) as soon as it is validated; positions and readings are handed to
    detection batch by batch and each batch's array is released as soon as it
    has been placed, so the whole file is never held twice. Projecting rows
    that detection later quarantines (unassigned, duplicate) costs a little
    work and changes nothing: each fix is still projected exactly once.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from trails.projection import project_lonlat
    import pyarrow.compute as pc

    from trails.quarantine import Rejected
    from trails.readers import iter_fix_batches

    value_set = pa.array(devices, pa.string())
    cols: list[dict[str, np.ndarray]] = []
    codes: list[np.ndarray] = []
    rejected: list = []
    n_rows = 0
    projected = []
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)), thread_name_prefix="tagtrail-project") as ex:
        for fx, rej in iter_fix_batches(path):
            n_rows += len(fx) + len(rej)
            rejected.append(rej)
            codes.append(pc.index_in(fx.device_id, value_set=value_set).fill_null(-1)
                         .to_numpy(zero_copy_only=False).astype(np.int32))
            projected.append(ex.submit(project_lonlat, fx.lon, fx.lat, crs))
            cols.append({"row": fx.row, "ts_ms": fx.ts_ms, "accuracy_m": fx.accuracy_m,
                         "battery_pct": fx.battery_pct})
        for c, fut in zip(cols, projected):
            c["x"], c["y"] = fut.result()
    starts = np.concatenate([[0], np.cumsum([len(c) for c in codes])]).astype(np.int64)

    def whole(name: str) -> np.ndarray:
        parts = [c[name] for c in cols]
        return np.concatenate(parts) if parts else np.zeros(0, np.float64 if name not in ("row", "ts_ms") else np.int64)

    def chunked(name: str) -> ChunkedColumn:
        def chunks(fn) -> None:
            for k, c in enumerate(cols):
                fn(int(starts[k]), c.pop(name))  # handed over once, then released
        return ChunkedColumn(load=lambda: whole(name), chunks=chunks)

    fixes = FixInput(row=ChunkedColumn(load=lambda: whole("row")), ts_ms=ChunkedColumn(load=lambda: whole("ts_ms")),
                     accuracy_m=chunked("accuracy_m"), battery_pct=chunked("battery_pct"),
                     device_code=ChunkedColumn(load=lambda: np.concatenate(codes) if codes else np.zeros(0, np.int32)),
                     device_names=devices, x=chunked("x"), y=chunked("y"))
    return fixes, Rejected.concat("fixes", rejected), n_rows


def _save_to_db(args, assignments, zones, records) -> None:
    import json as _json

    from api.service.detections import save_detection

    features = _json.loads(Path(args.zones).read_text(encoding="utf-8-sig"))["features"]
    with audited_change(resolve_home(args.home)) as (session, audit):
        counts = save_detection(session, assignments=assignments, zone_features=features, zones=zones,
                                records=records)
        # DPA 2018 s.62: collection and alteration are logged too (counts only, no subjects)
        audit.append(session, action="breaches.upsert", actor=None, detail=dict(counts))
        database = audit.settings.database_url.split("://")[0]
    if not args.quiet:
        print(f"database: {counts['inserted']} records added, {counts['updated']} updated ({database})")


def _print_summary(run_: StoreRun, elapsed: float, out: str, *, at_ingest: int | None) -> None:
    """The run's summary on stdout. `at_ingest` (store mode) is the number of rows
    the store's ingests quarantined: counted apart from this run's quarantine,
    so a store whose ingest set rows aside never reads "quarantined rows: 0"."""
    by = run_.counts
    n_breach = sum(v for (k, _, _), v in by.items() if k == "breach")
    n_alert = sum(v for (k, _, _), v in by.items() if k == "alert")
    print(f"breaches: {n_breach}   alerts: {n_alert}   (written to {Path(out) / 'breaches.jsonl'})")
    for (kind, type_, prio), n in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        print(f"  {kind:<6} P{prio}  {type_:<20} {n:>8}")
    q = Counter(row[2] for row in run_.quarantine)
    by_reason = "" if not q else "   " + ", ".join(f"{k}={v}" for k, v in sorted(q.items()))
    if at_ingest is None:
        print(f"quarantined rows: {sum(q.values())}{by_reason}")
    else:
        print(f"quarantined by this run: {sum(q.values())} rows (after_as_of, unassigned, duplicate; "
              f"in {Path(out) / 'quarantine.csv'}){by_reason}")
        print(f"quarantined at ingest: {at_ingest:,} rows (every ingest into this store; HOME/store/quarantine)")
    rate = run_.n_rows / elapsed if elapsed > 0 else 0.0
    tasks = f" in {run_.n_tasks} bucket tasks" if run_.n_tasks > 1 else ""
    print(f"{run_.n_rows:,} fix rows in {elapsed:.2f} s ({rate:,.0f} fixes/s){tasks}")


def _ingest_quarantined(home: Path) -> int:
    """Rows the store's ingests quarantined, from its manifest (no quarantine file is read)."""
    from trails.manifest import Manifest
    from trails.store import store_root

    _files, rows = Manifest.read(store_root(home)).files("quarantine")
    return int(rows.sum())


def _warn_all_quarantined(path: str, n_rows: int, quarantine, out: str) -> None:
    """File mode: a fixes file none of whose rows could be used is worth a line on
    stderr (the exit code stays 0: quarantining rows is a normal outcome)."""
    n_fix = sum(1 for source, _, _ in quarantine if source == "fixes")
    if n_rows > 0 and n_fix >= n_rows:
        print(f"warning: every one of the {n_rows:,} rows of {path} was quarantined: no fix was analysed "
              f"(reasons in {Path(out) / 'quarantine.csv'})", file=sys.stderr)


def _print_policy_comparison(counts: dict[str, dict[str, int]]) -> None:
    counts = {"per_episode": {}, "accumulated": {}, **counts}  # no assignment, no task: nothing counted
    keys = sorted(set(counts["per_episode"]) | set(counts["accumulated"]))
    print("battery policy comparison (gap records):")
    print(f"  {'record':<34} {'per_episode':>12} {'accumulated':>12}")
    for k in keys:
        print(f"  {k:<34} {counts['per_episode'].get(k, 0):>12} {counts['accumulated'].get(k, 0):>12}")

    def breaches(c: dict[str, int]) -> int:
        return sum(v for k, v in c.items() if k.endswith("breach") and (k.startswith("battery") or k.startswith("accumulated")))

    pe, ac = breaches(counts["per_episode"]), breaches(counts["accumulated"])
    change = f"{(ac - pe) / pe * 100:+.0f}%" if pe else "n/a"
    print(f"  battery breaches: per_episode {pe}, accumulated {ac} ({change})")
