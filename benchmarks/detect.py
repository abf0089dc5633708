"""Detect benchmark: tagtrail against shapely 2 and a pandas/geopandas baseline.

Inputs come from the simulator (`trails.sim.simulate`, Parquet), cached under
benchmarks/_work/ with a store built by `tagtrail ingest`:

- ``sim_1m``: 250 wearers x 3 days (~1.0 M fixes),
- ``sim_10m``: 2000 wearers x 4 days (~11.2 M fixes),
- ``sim_national``: 20,000 wearers x 1 day (~27.5 M fixes: the MoJ caseload's day).

Measured in one run and written to benchmarks/RESULTS.md under ``## Detect``:

(a) classification kernel alone (`classify_assignments` on the projected,
    CSR-laid-out fixes, warm, best of 3, 1 and 2 Numba threads) vs shapely 2's
    accuracy-aware classification vectorised per (assignment, zone);
(b) ``tagtrail detect --home`` end to end vs `benchmarks.baseline.baseline_detect`
    on the same data, and whether their records are identical; and on a national day;
(c) ``tagtrail detect --fixes fixes.parquet`` end to end vs shapely's
    classification alone on the same (already projected) fixes;
(d) peak RSS of detect on the 10 M set vs the size of the fix columns;
(e) Numba compile time with a cold and a warm cache;
(f) ``tagtrail detect --fixes`` on many small per-wearer zones (`benchmarks/small_zones.py`: the
    10 M set's fixes, a 50 m home circle and two exclusion polygons per wearer, ~6,000 zones)
    vs shapely's classification alone on the same, already projected, fixes; written to its own
    section, ``## Detect --fixes, many small zones``.

    nice .venv/bin/python benchmarks/detect.py [--shapely-assignments N] [--skip-baseline-10m] [--skip-national]
    nice .venv/bin/python benchmarks/detect.py --only-small-zones [--small-zones 1m|10m]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
PY = str(REPO / ".venv" / "bin" / "python")
TAGTRAIL = str(REPO / ".venv" / "bin" / "tagtrail")
EXAMPLE = REPO.parent / "shared" / "contract" / "examples" / "curfew_basic"
SETS = {"1m": ("sim_1m", 250, 3), "10m": ("sim_10m", 2000, 4), "national": ("sim_national", 20000, 1)}
SEED = 1

sys.path.insert(0, str(HERE))

from results import cpu_model, write_section  # noqa: E402


# --------------------------------------------------------------------------- data
def prepare(key: str) -> dict:
    name, wearers, days = SETS[key]
    d = WORK / name
    home = WORK / f"home_{name}"
    if not (d / "fixes.parquet").exists():
        from trails.sim.simulate import simulate

        print(simulate(d, wearers=wearers, days=days, seed=SEED, fmt="parquet").line(), flush=True)
    if not (home / "store").exists():
        subprocess.run([TAGTRAIL, "ingest", str(d / "fixes.parquet"), "--events", str(d / "events.csv"),
                        "--home", str(home), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    import pyarrow.parquet as pq

    n = pq.ParquetFile(d / "fixes.parquet").metadata.num_rows
    return {"dir": d, "home": home, "n": n, "wearers": wearers, "days": days,
            "fixes": d / "fixes.parquet", "events": d / "events.csv",
            "subjects": d / "subjects.json", "zones": d / "zones.geojson"}


def layout(ds: dict) -> dict:
    """Projected fixes (from the store) laid out per assignment, as detect does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from geofence import rules
    from geofence.compile import compile_zones
    from geofence.policy import load_policy
    from geofence.subjects import load_subjects
    from geofence.zones import load_zones
    from trails.store import read_store_fixes

    policy = load_policy(None)
    zones = load_zones(ds["zones"])
    asg = load_subjects(ds["subjects"], {z.zone_id for z in zones})
    sf = read_store_fixes(ds["home"])
    devices = pa.array(sorted({a.device_id for a in asg}), pa.string())
    dev = pc.index_in(sf.device_id, value_set=devices).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    a_dev = np.array([devices.to_pylist().index(a.device_id) for a in asg], np.int64)
    a_start = np.array([a.start_ms for a in asg], np.int64)
    a_end = np.array([2**62 if a.end_ms is None else a.end_ms for a in asg], np.int64)
    assign = rules.assign_fixes(dev, np.asarray(sf.ts_ms), a_dev, a_start, a_end)
    keep = np.flatnonzero(assign >= 0)
    order = keep[np.argsort(assign[keep], kind="stable")]
    fa = assign[order]
    n_a = len(asg)
    fix_offsets = np.zeros(n_a + 1, np.int64)
    np.cumsum(np.bincount(fa, minlength=n_a), out=fix_offsets[1:])
    acc = np.asarray(sf.accuracy_m)[order]
    acc = np.where(np.isnan(acc), policy.default_accuracy_m, acc)
    zone_pos = {z.zone_id: i for i, z in enumerate(zones)}
    pair_a = np.array([ai for ai, a in enumerate(asg) for _ in a.zones], np.int64)
    pair_z = np.array([zone_pos[z] for a in asg for z in a.zones], np.int64)
    used = np.unique(pair_z)
    compiled = compile_zones([zones[i] for i in used], policy.crs)
    zone_offsets = np.zeros(n_a + 1, np.int64)
    np.cumsum(np.bincount(pair_a, minlength=n_a), out=zone_offsets[1:])
    return {"x": np.ascontiguousarray(np.asarray(sf.x)[order]), "y": np.ascontiguousarray(np.asarray(sf.y)[order]),
            "acc": np.ascontiguousarray(acc), "fix_offsets": fix_offsets, "zone_offsets": zone_offsets,
            "zone_idx": np.searchsorted(used, pair_z), "compiled": compiled, "pair_a": pair_a,
            "zone_ids": [zones[i].zone_id for i in pair_z], "n_assign": n_a,
            "device_bytes": sf.device_id.nbytes, "n_store": len(sf)}


# --------------------------------------------------------------------------- (a) kernel
def bench_kernel(lay: dict, repeat: int = 3) -> dict:
    import numba

    from geofence.classify import classify_assignments

    args = (lay["x"], lay["y"], lay["acc"], lay["fix_offsets"], lay["zone_offsets"], lay["zone_idx"], lay["compiled"])
    out = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        codes, off = classify_assignments(*args)  # warm
        best = min(_timed(lambda: classify_assignments(*args)) for _ in range(repeat))
        out[threads] = {"pairs": int(codes.size), "seconds": best, "rate": codes.size / best}
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    out["codes"], out["code_offsets"] = codes, off
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def shapely_classify(lay: dict, zones_gdf, assignments) -> tuple[np.ndarray, float, float]:
    """shapely 2 accuracy-aware classification per (assignment, zone), vectorised over fixes.

    Polygons: ``shapely.distance(points, boundary)`` + ``shapely.contains_xy`` (prepared);
    circles: exact ``radius - shapely.distance(points, centre)``. Returns codes in
    tagtrail's layout order for `assignments` (a range from 0), the seconds spent in
    all (building the Point geometries included), and the seconds spent building points.
    """
    import shapely

    from baseline import classify

    fo, zo = lay["fix_offsets"], lay["zone_offsets"]
    x, y, acc = lay["x"], lay["y"], lay["acc"]
    rows = {zid: zones_gdf.loc[zid] for zid in set(lay["zone_ids"])}
    t = time.perf_counter()
    t_pts = 0.0
    out = []
    for a in assignments:
        f0, f1 = fo[a], fo[a + 1]
        if f1 == f0 or zo[a + 1] == zo[a]:
            continue
        tp = time.perf_counter()
        pts = shapely.points(x[f0:f1], y[f0:f1])
        t_pts += time.perf_counter() - tp
        for j in range(zo[a], zo[a + 1]):
            out.append(classify(pts, x[f0:f1], y[f0:f1], acc[f0:f1], rows[lay["zone_ids"][j]]))
    secs = time.perf_counter() - t
    return (np.concatenate(out) if out else np.zeros(0, np.int8)), secs, t_pts


# --------------------------------------------------------------------------- CLI runs
_RSS_WRAPPER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); w = time.perf_counter() - t; "
                "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); "
                "print('@@', w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


def run_cli(cmd: list[str], env=None) -> dict:
    """Run a command in a fresh wrapper process: wall seconds, peak RSS (KiB) of the child, stdout."""
    p = subprocess.run([PY, "-c", _RSS_WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    tail = p.stdout.strip().splitlines()[-1].split()
    if tail[3] != "0":
        raise RuntimeError(f"{cmd} failed: {p.stderr[-2000:]}")
    m = re.search(r"fix rows in ([0-9.]+) s", p.stdout)
    return {"wall": float(tail[1]), "rss_kib": int(tail[2]), "inproc": float(m.group(1)) if m else None,
            "stdout": p.stdout, "stderr": p.stderr}


def detect_cmd(ds: dict, mode: str, out: Path) -> list[str]:
    cmd = [TAGTRAIL, "detect", "--subjects", str(ds["subjects"]), "--zones", str(ds["zones"]), "--out", str(out)]
    if mode == "home":
        return cmd + ["--home", str(ds["home"])]
    return cmd + ["--fixes", str(ds["fixes"]), "--events", str(ds["events"])]


def best_run(cmd, runs: int = 2) -> dict:
    res = [run_cli(cmd) for _ in range(runs)]
    best = min(res, key=lambda r: r["wall"])
    best["rss_kib"] = max(r["rss_kib"] for r in res)
    return best


def run_baseline_cli(ds: dict, out: Path) -> dict:
    cmd = [PY, str(HERE / "baseline.py"), "--fixes", str(ds["fixes"]), "--events", str(ds["events"]),
           "--subjects", str(ds["subjects"]), "--zones", str(ds["zones"]), "--out", str(out), "--timings"]
    r = run_cli(cmd)
    r["timings"] = json.loads(r["stderr"].strip().splitlines()[-1])
    return r


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- (e) compile time
_COMPILE_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from api.cli.main import main
import api.cli.detect, geofence.detect, geofence.kernels, geofence.rules  # noqa: F401
t1 = time.perf_counter()
rc = main(sys.argv[1:])
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_detect": t2 - t1, "rc": rc}))
"""


def bench_compile() -> dict:
    args = ["detect", "--fixes", str(EXAMPLE / "fixes.csv"), "--subjects", str(EXAMPLE / "subjects.json"),
            "--zones", str(EXAMPLE / "zones.geojson"), "--quiet"]
    out = {}
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as res:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            t = time.perf_counter()
            p = subprocess.run([PY, "-c", _COMPILE_SNIPPET, *args, "--out", res], capture_output=True, text=True,
                               env=env, check=True, cwd=str(REPO))
            wall = time.perf_counter() - t
            out[label] = {**json.loads(p.stdout.strip().splitlines()[-1]), "wall": wall}
    return out


# --------------------------------------------------------------------------- machine
def machine() -> dict:
    import numba
    import numpy
    import pandas
    import shapely

    cpu = cpu_model()
    ram = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram, "python": platform.python_version(),
            "numba": numba.__version__, "numpy": numpy.__version__, "shapely": shapely.__version__,
            "pandas": pandas.__version__, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "unset")
            + f" (numba uses {numba.config.NUMBA_NUM_THREADS})",
            "load": os.getloadavg()}


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapely-assignments", type=int, default=400,
                    help="assignments of the 10 M set classified by shapely in (a)")
    ap.add_argument("--skip-baseline-10m", action="store_true", help="run the pandas baseline on 1 M only")
    ap.add_argument("--skip-national", action="store_true", help="no national-day (20,000 wearers) run")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--small-zones", choices=("1m", "10m"), default="10m",
                    help="fixes of (f), the many-small-zones case: the 1 M or the 10 M set")
    ap.add_argument("--only-small-zones", action="store_true", help="run (f) only")
    ap.add_argument("--tagtrail-src", help="(f): run tagtrail from this source tree (e.g. a worktree of an older commit)")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    from small_zones import bench_small_zones

    text = bench_small_zones(args.small_zones, machine(), prepare=prepare, layout=layout,
                             shapely_classify=shapely_classify, run=run_cli, stages=_stages,
                             src=args.tagtrail_src)
    print(text)
    if not args.no_write:
        write_section("Detect --fixes, many small zones", text)
    if args.only_small_zones:
        return
    WORK.mkdir(exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []  # (measure, value, target, met)
    notes: list[str] = []
    mach = machine()

    d1, d10 = prepare("1m"), prepare("10m")
    from baseline import load_zones as bl_zones

    # (a) kernel
    lay = layout(d10)
    k = bench_kernel(lay)
    gdf = bl_zones(d10["zones"], "EPSG:27700")
    sub = range(min(args.shapely_assignments, lay["n_assign"]))
    ref, t_shp, t_pts = shapely_classify(lay, gdf, sub)
    rate_shp = ref.size / t_shp
    mine = k["codes"][: k["code_offsets"][len(sub)]]
    agree = int((mine == ref).sum()) if mine.size == ref.size else -1
    r2 = k[2]["rate"]
    rows += [
        ("(a) kernel, 2 threads", f"{r2 / 1e6:,.0f} M class./s ({k[2]['pairs']:,} pairs in {k[2]['seconds'] * 1e3:.1f} ms)",
         ">= 200 M/s", _ok(r2 >= 200e6)),
        ("(a) kernel, 1 thread", f"{k[1]['rate'] / 1e6:,.0f} M class./s ({k[1]['seconds'] * 1e3:.1f} ms)", "", ""),
        ("(a) shapely 2 vectorised, 1 thread", f"{rate_shp / 1e6:,.2f} M class./s ({ref.size:,} pairs, "
         f"{len(sub)} assignments, {t_shp:.2f} s, of which building Point geometries {t_pts:.2f} s; "
         f"without that {ref.size / (t_shp - t_pts) / 1e6:,.2f} M/s)", "", ""),
        ("(a) kernel 2 threads / shapely", f"{r2 / rate_shp:,.0f}x ({r2 * (t_shp - t_pts) / ref.size:,.0f}x against "
         "shapely without building points)", ">= 20x", _ok(r2 / rate_shp >= 20)),
        ("(a) codes equal to shapely's", f"{agree:,} / {ref.size:,}", "all", _ok(agree == ref.size)),
    ]
    dev_bytes = lay["device_bytes"]
    del lay, k, ref, mine

    # (b) detect --home end to end, and the baseline
    res = {}
    for key, ds in (("1m", d1), ("10m", d10)):
        out = WORK / f"out_home_{key}"
        r = best_run(detect_cmd(ds, "home", out))
        res[key] = r
        rows.append((f"(b) tagtrail detect --home, {ds['n'] / 1e6:.1f} M fixes",
                     f"{r['wall']:.2f} s wall = {ds['n'] / r['wall'] / 1e6:.2f} M fixes/s "
                     f"(in-process {r['inproc']:.2f} s = {ds['n'] / r['inproc'] / 1e6:.2f} M/s)",
                     ">= 10 M fixes/s", _ok(ds["n"] / r["wall"] >= 10e6)))
    if not args.skip_national:
        dn = prepare("national")
        r = best_run(detect_cmd(dn, "home", WORK / "out_home_national") + ["--timings"])
        rss = r["rss_kib"] * 1024
        rows.append((f"(b) tagtrail detect --home, national day: {dn['wearers']:,} wearers, {dn['n'] / 1e6:.1f} M fixes",
                     f"{r['wall']:.2f} s wall = {dn['n'] / r['wall'] / 1e6:.2f} M fixes/s (in-process {r['inproc']:.2f} s "
                     f"= {dn['n'] / r['inproc'] / 1e6:.2f} M/s); peak RSS {rss / 2**20:,.0f} MiB",
                     "~3 s (>= 10 M fixes/s)", _ok(dn["n"] / r["wall"] >= 10e6)))
        notes.append("national day, seconds per stage (`--timings`): " + _stages(r["stderr"]))
    notes.append("10 M --home, seconds per stage (`--timings`): " + _stages(best_run(
        detect_cmd(d10, "home", WORK / "out_home_10m") + ["--timings", "--quiet"], runs=1)["stderr"]))
    bl = {}
    for key, ds in (("1m", d1), ("10m", d10)):
        if key == "10m" and args.skip_baseline_10m:
            continue
        out = WORK / f"baseline_{key}.jsonl"
        b = run_baseline_cli(ds, out)
        bl[key] = b
        same = load_jsonl(out) == load_jsonl(WORK / f"out_home_{key}" / "breaches.jsonl")
        ratio = b["wall"] / res[key]["wall"]
        rows += [
            (f"(b) baseline (pandas/shapely), {ds['n'] / 1e6:.1f} M fixes",
             f"{b['wall']:.2f} s wall = {ds['n'] / b['wall'] / 1e6:.2f} M fixes/s "
             f"(in-process {b['timings']['total']:.2f} s)", "", ""),
            (f"(b) tagtrail --home vs baseline, {ds['n'] / 1e6:.1f} M", f"{ratio:.1f}x (wall)", ">= 20x", _ok(ratio >= 20)),
            (f"(b) records identical, {ds['n'] / 1e6:.1f} M", f"{'yes' if same else 'NO'} "
             f"({b['timings']['n_records']:,} records)", "identical", _ok(same)),
        ]
        notes.append(f"baseline stages, {key}: " + ", ".join(f"{k_} {v:.2f} s" for k_, v in b["timings"].items()
                                                            if isinstance(v, float)))

    # (c) detect --fixes end to end vs shapely classification alone (all pairs)
    r_fix = best_run(detect_cmd(d10, "fixes", WORK / "out_fixes_10m"))
    lay = layout(d10)
    _, t_all, t_all_pts = shapely_classify(lay, gdf, range(lay["n_assign"]))
    del lay
    same_fix = load_jsonl(WORK / "out_fixes_10m" / "breaches.jsonl") == load_jsonl(WORK / "out_home_10m" / "breaches.jsonl")
    rows += [
        (f"(c) tagtrail detect --fixes fixes.parquet, {d10['n'] / 1e6:.1f} M",
         f"{r_fix['wall']:.2f} s wall = {d10['n'] / r_fix['wall'] / 1e6:.2f} M fixes/s (in-process {r_fix['inproc']:.2f} s)",
         "", ""),
        ("(c) shapely classification alone (projected fixes, all pairs)",
         f"{t_all:.2f} s (of which building Point geometries {t_all_pts:.2f} s)", "", ""),
        ("(c) shapely alone / tagtrail end to end", f"{t_all / r_fix['wall']:.2f}x", ">= 3x", _ok(t_all / r_fix["wall"] >= 3)),
        ("(c) --fixes records == --home records", "yes" if same_fix else "NO", "", ""),
    ]

    # (d) peak RSS, 10 M
    cols = d10["n"] * 5 * 8 + dev_bytes
    for label, r in (("--home", res["10m"]), ("--fixes", r_fix)):
        rss = r["rss_kib"] * 1024
        rows.append((f"(d) peak RSS detect {label}, {d10['n'] / 1e6:.1f} M", f"{rss / 2**20:,.0f} MiB = {rss / cols:.2f}x "
                     f"fix columns ({cols / 2**20:,.0f} MiB)", "<= 2x", _ok(rss <= 2 * cols)))

    # (e) compile time
    c = bench_compile()
    rows += [
        ("(e) cold Numba cache: import + first detect (tiny case)",
         f"{c['cold']['import']:.2f} + {c['cold']['first_detect']:.2f} s (process {c['cold']['wall']:.2f} s)", "", ""),
        ("(e) warm Numba cache: import + first detect (tiny case)",
         f"{c['warm']['import']:.2f} + {c['warm']['first_detect']:.2f} s (process {c['warm']['wall']:.2f} s)", "", ""),
    ]

    text = render(mach, d1, d10, rows, notes)
    print(text)
    if not args.no_write:
        write_section("Detect", text)


def _stages(stderr: str) -> str:
    """`--timings` lines -> 'stage 0.123, ...' (stages over 0.05 s)."""
    out = []
    for line in stderr.splitlines():
        m = re.match(r"\s+(.+?)\s+([0-9.]+)$", line)
        if m and (float(m.group(2)) >= 0.05 or m.group(1).startswith("total")):
            out.append(f"{m.group(1)} {float(m.group(2)):.2f}")
    return ", ".join(out)


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def render(mach, d1, d10, rows, notes) -> str:
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Detect",
        "",
        f"Run {today} by `benchmarks/detect.py` (one run, all figures below).",
        "",
        f"Machine: nproc {mach['nproc']}, {mach['cpu']}, RAM {mach['ram']}; Python {mach['python']}, "
        f"numba {mach['numba']}, numpy {mach['numpy']}, shapely {mach['shapely']}, pandas {mach['pandas']}; "
        f"NUMBA_NUM_THREADS {mach['NUMBA_NUM_THREADS']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in mach['load'])} (machine shared).",
        "",
        f"Data: `trails.sim.simulate` seed {SEED}, Parquet; 1 M set = {d1['wearers']} wearers x {d1['days']} days "
        f"({d1['n']:,} fixes), 10 M set = {d10['wearers']} wearers x {d10['days']} days ({d10['n']:,} fixes); "
        "stores built by `tagtrail ingest`. Walls are whole processes (interpreter start, imports, "
        "Numba cache load, reading, writing), best of 2; 'in-process' is the time tagtrail reports itself.",
        "",
        "| measure | result | target | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {v} | {t} | {ok} |" for m, v, t, ok in rows]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
