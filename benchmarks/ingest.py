"""Ingest throughput: `trails.ingest.ingest` vs. the pandas pipeline a user would write.

    .venv/bin/python benchmarks/ingest.py [--sizes 1e6,1e7] [--repeat 1] [--no-write]

Input is simulator output (`trails.sim.simulate.simulate`: one fix a minute per
wearer, realistic UK tracks) when it is available, else a NumPy-generated CSV of
the same shape. Both pipelines read the same CSV and write a day-partitioned
Parquet dataset; each runs in a fresh output directory. The peer:

    df = pd.read_csv(csv)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True).transform(lon, lat)
    df.sort_values(["device_id", "ts"]).to_parquet(out, partition_cols=["day"])

(it validates nothing, quarantines nothing and does not deduplicate, so the
comparison flatters pandas). Results (fixes/s, ratio) are written to
benchmarks/RESULTS.md under ``## Ingest``, replacing only that section.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as the `tagtrail` CLI does (api/cli.py), for both pipelines

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
FIXES_PER_WEARER_WEEK = 1440 * 7


def make_input(n: int, out_dir: Path) -> Path:
    """A fixes CSV with about `n` fixes; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from trails.sim.simulate import simulate

        wearers = max(1, round(n / (FIXES_PER_WEARER_WEEK * 0.98)))
        simulate(out_dir, wearers=wearers, days=7, seed=2024, fmt="csv")
        return out_dir / "fixes.csv"
    except Exception as exc:  # simulator not ready: plausible NumPy data instead
        print(f"(simulator unavailable: {exc}; generating with NumPy)", file=sys.stderr)
        return _numpy_input(n, out_dir / "fixes.csv")


def _numpy_input(n: int, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(2024)
    n_dev = max(1, n // FIXES_PER_WEARER_WEEK)
    k = np.arange(n)
    dev, minute = k // (n // n_dev + 1), k % (n // n_dev + 1)
    ts = 1_709_510_400_000 + minute * 60_000 + rng.integers(0, 5_000, n)
    home_lat, home_lon = 50.5 + 4 * rng.random(n_dev), -4 + 4.5 * rng.random(n_dev)
    t = pa.table({
        "device_id": pc.binary_join_element_wise("D-", pc.cast(pa.array(dev + 100_000), pa.string()), ""),
        "ts": pc.strftime(pa.array(ts.astype("datetime64[ms]")), format="%Y-%m-%dT%H:%M:%SZ"),
        "lat": np.round(home_lat[dev] + rng.normal(0, 2e-3, n), 6),
        "lon": np.round(home_lon[dev] + rng.normal(0, 2e-3, n), 6),
        "accuracy_m": np.round(rng.gamma(2.0, 8.0, n), 1),
        "battery_pct": np.round(100 - (minute % 2000) / 25).clip(0, 100),
    })
    pacsv.write_csv(t, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


def run_tagtrail(csv: Path, work: Path) -> tuple[float, int]:
    from trails.ingest import ingest

    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    s = ingest(csv, home=home)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(home, ignore_errors=True)
    return dt, s.fixes_read, cpu


def run_pandas(csv: Path, work: Path) -> tuple[float, int]:
    import pandas as pd
    from pyproj import Transformer

    out = work / "pandas"
    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = time.process_time(), time.perf_counter()
    df = pd.read_csv(csv)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    tr = Transformer.from_crs("EPSG:4326", "EPSG:27700", always_xy=True)
    df["x"], df["y"] = tr.transform(df["lon"].to_numpy(), df["lat"].to_numpy())
    df["day"] = df["ts"].dt.strftime("%Y-%m-%d")
    df = df.sort_values(["device_id", "ts"])
    df.to_parquet(out, partition_cols=["day"], index=False)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(df)
    shutil.rmtree(out, ignore_errors=True)
    return dt, n, cpu


def machine() -> dict:
    import pandas as pd
    import pyarrow as pa

    from results import cpu_model

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "pyarrow": pa.__version__, "pandas": pd.__version__, "numpy": np.__version__, "load": load,
    }


def write_results(rows: list[dict], info: dict) -> None:
    lines = [
        "## Ingest",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}); Python {info['python']}, pyarrow {info['pyarrow']}, "
        f"pandas {info['pandas']}, NumPy {info['numpy']}; 1-min load average at start {info['load']:.2f} "
        "(a shared machine: other jobs inflate both columns alike).",
        "",
        "`tagtrail ingest` (validate reasons 1-7, dedup against the store, project to EPSG:27700, "
        "day-partitioned Parquet sorted by device and time, atomic) vs. pandas `read_csv` + "
        "`to_datetime(utc=True)` + pyproj + `to_parquet(partition_cols=['day'])` (no validation). "
        "Same CSV, best of 3 runs up to 2 M fixes, one run above; CPU s is process CPU time (all threads), "
        "`load` the 1-min load average after the row's runs. Run: `.venv/bin/python benchmarks/ingest.py --sizes 1e6,1e7`.",
        "",
        "| fixes | input | tagtrail s | tagtrail fixes/s | pandas s | pandas fixes/s | ratio | tagtrail CPU s | pandas CPU s | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['input']} | {r['ours_s']:.2f} | {r['ours_rate']:,.0f} | {r['pandas_s']:.2f} | "
            f"{r['pandas_rate']:,.0f} | {r['ratio']:.1f}x | {r['ours_cpu']:.2f} | {r['pandas_cpu']:.2f} | {r['load']:.1f} |"
        )
    lines.append("")
    section = "\n".join(lines) + "\n"
    from results import write_section

    write_section("Ingest", section, RESULTS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7", help="comma-separated fix counts (default 1e6,1e7)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per pipeline for sizes <= 2e6; the best is kept")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    info = machine()
    rows = []
    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tagtrail-bench-"))
    try:
        for n in sizes:
            work = base / f"n{n}"
            csv = make_input(n, work / "input")
            src = "simulate" if (work / "input" / "subjects.json").exists() else "numpy"
            reps = args.repeat if n <= 2_000_000 else 1  # big sizes once: minutes of pandas
            ours = min((run_tagtrail(csv, work) for _ in range(reps)), key=lambda r: r[0])
            peer = min((run_pandas(csv, work) for _ in range(reps)), key=lambda r: r[0])
            row = {
                "n": ours[1], "input": src, "ours_s": ours[0], "ours_rate": ours[1] / ours[0],
                "pandas_s": peer[0], "pandas_rate": peer[1] / peer[0],
                "ours_cpu": ours[2], "pandas_cpu": peer[2],
                "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
            }
            row["ratio"] = row["ours_rate"] / row["pandas_rate"]
            rows.append(row)
            print(f"{row['n']:>12,} fixes  tagtrail {row['ours_s']:6.2f} s {row['ours_rate']:>12,.0f}/s   "
                  f"pandas {row['pandas_s']:6.2f} s {row['pandas_rate']:>12,.0f}/s   ratio {row['ratio']:.1f}x", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(base, ignore_errors=True)
    if not args.no_write:
        write_results(rows, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
