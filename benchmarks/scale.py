"""Scale: `tagtrail detect --home` over 1, 4 and 16 weeks of one population, in bounded memory.

One simulated population (`trails.sim`, seed 1) of WEARERS wearers for 16
weeks is ingested once into a store of 16 device buckets; `detect --home`
then runs over its first 1, 4 and 16 weeks (`--from/--to`), bucket by bucket
(the default) and in one pass (`--single-pass`), each as its own process.
Recorded: wall time, fixes/s and peak RSS (the process's ``ru_maxrss``), and
whether both modes wrote the same bytes. Target: the bucketed peak RSS flat
within 20% from 1 to 16 weeks.

With ``--cluster``, also the bulk policy run of issue 14: ``detect
--compare-battery-policies --cluster local:N`` over the 16 weeks for N = 1
and 2 worker processes, with the scaling efficiency (time(1) / time(2) / 2).

Run: ``.venv/bin/python benchmarks/scale.py [--wearers 250] [--cluster]``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import cpu_model, write_section  # noqa: E402

BIN = Path(sys.executable).parent
START = "2024-03-04"
WEEKS = (1, 4, 16)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(cmd: list[str]) -> tuple[float, int, str]:
    """(wall s, peak RSS in MiB from the kernel's ``wait4``, stdout) of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: exit {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss // 1024, out


def _prepare(work: Path, wearers: int) -> tuple[Path, Path, float, float]:
    """The simulated input and the ingested store (made once, kept in `work`)."""
    sim, home = work / f"sim-{wearers}", work / f"home-{wearers}"
    t_sim = t_ingest = 0.0
    if not (sim / "fixes.parquet").exists():
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "tagtrail"), "simulate", "--wearers", str(wearers), "--days", str(7 * WEEKS[-1]),
                        "--seed", "1", "--start", START, "--out", str(sim), "--format", "parquet", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        t_sim = time.perf_counter() - t0
    if not (home / "store" / "manifest.parquet").exists():
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "tagtrail"), "ingest", str(sim / "fixes.parquet"), "--events",
                        str(sim / "events.csv"), "--home", str(home), "--buckets", "16", "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
        t_ingest = time.perf_counter() - t0
    return sim, home, t_sim, t_ingest


def _detect(sim: Path, home: Path, out: Path, weeks: int, *extra: str) -> dict:
    to = str(date.fromisoformat(START) + timedelta(weeks=weeks))
    cmd = [str(BIN / "tagtrail"), "detect", "--home", str(home), "--subjects", str(sim / "subjects.json"),
           "--zones", str(sim / "zones.geojson"), "--from", START, "--to", to, "--out", str(out), *extra]
    load = _load()
    wall, rss, stdout = _timed(cmd)
    m = re.search(r"([\d,]+) fix rows in", stdout)
    fixes = int(m.group(1).replace(",", "")) if m else 0
    return {"weeks": weeks, "wall": wall, "rss": rss, "fixes": fixes, "load": load, "out": out, "stdout": stdout}


def _same(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("breaches.jsonl", "quarantine.csv"))


def _scale_rows(sim: Path, home: Path, work: Path) -> tuple[list[dict], list[dict]]:
    bucketed, single = [], []
    for w in WEEKS:
        bucketed.append(_detect(sim, home, work / f"out-b-{w}", w))
        single.append(_detect(sim, home, work / f"out-s-{w}", w, "--single-pass"))
        print(f"{w:>2} weeks: bucketed {bucketed[-1]['wall']:.1f} s {bucketed[-1]['rss']} MiB; "
              f"single pass {single[-1]['wall']:.1f} s {single[-1]['rss']} MiB", flush=True)
    return bucketed, single


def _cluster_rows(sim: Path, home: Path, work: Path) -> list[dict]:
    """local:1 and local:2 with one Numba thread per worker, so that N workers use N cores."""
    rows = []
    os.environ["NUMBA_NUM_THREADS"] = "1"
    for n in (1, 2):
        r = _detect(sim, home, work / f"out-c-{n}", WEEKS[-1], "--compare-battery-policies", "--cluster", f"local:{n}")
        r["workers"] = n
        rows.append(r)
        print(f"cluster local:{n}: {r['wall']:.1f} s, client peak RSS {r['rss']} MiB", flush=True)
    return rows


def _section(args, bucketed: list[dict], single: list[dict], cluster: list[dict], t_sim: float, t_ingest: float) -> str:
    import numpy as np

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rss = [r["rss"] for r in bucketed]
    spread = max(rss) / min(rss) - 1
    lines = [
        "## Scale", "",
        f"Run {now} by `benchmarks/scale.py --wearers {args.wearers}{' --cluster' if args.cluster else ''}` "
        f"(each figure one run). Machine: nproc {os.cpu_count()}, {cpu_model()}; Python "
        f"{sys.version.split()[0]}, numpy {np.__version__}. **The machine was shared with other jobs throughout** "
        f"(load average at each run in the table): walls and rates are pessimistic and noisy, peak RSS is not.", "",
        f"Data: one population, `trails.sim` seed 1, {args.wearers} wearers for 16 weeks from {START} "
        f"(one fix a minute), ingested once into a store of 16 device buckets"
        + (f" (simulate {t_sim:.0f} s, ingest {t_ingest:.0f} s)" if t_sim or t_ingest else "")
        + "; each run is `tagtrail detect --home --from " + START + " --to START + N weeks` in its own process "
        "(interpreter, imports and Numba cache load included). Bucketed = the default (tasks of about 250 k fixes: a "
        "bucket split into runs of devices); single pass = `--single-pass` (every fix of the period at once).", "",
        "| weeks | fixes | bucketed wall | bucketed fixes/s | bucketed peak RSS | single-pass wall | "
        "single-pass peak RSS | same bytes | load (1, 5, 15 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for b, s in zip(bucketed, single):
        lines.append(f"| {b['weeks']} | {b['fixes']:,} | {b['wall']:.1f} s | {b['fixes'] / b['wall']:,.0f} | "
                     f"{b['rss']:,} MiB | {s['wall']:.1f} s | {s['rss']:,} MiB | "
                     f"{'yes' if _same(b['out'], s['out']) else 'NO'} | {b['load']} |")
    verdict = "met" if spread <= 0.20 else "MISSED"
    lines += ["", f"Bucketed peak RSS from 1 to 16 weeks: {min(rss):,} .. {max(rss):,} MiB, spread "
              f"{spread * 100:.0f}% (target: flat within 20%): **{verdict}**. The single pass grows with the "
              f"history ({single[0]['rss']:,} -> {single[-1]['rss']:,} MiB).", "",
              f"Time is the price: at 16 weeks the bucketed run takes {bucketed[-1]['wall'] / single[-1]['wall']:.1f}x "
              f"the single pass's wall. With {args.wearers} wearers in 16 buckets a bucket-day file holds about "
              f"{args.wearers // 16 * 1440:,} fixes, so opening files (one per bucket-day per task) weighs more than "
              f"decoding them; and a bucket of 16 weeks is split into tasks of 250 k fixes, each of which reads "
              f"the row groups (8,192 rows) that hold its devices, so each file is opened by every task of its "
              f"bucket and read two to three times over. A national caseload (20,000 wearers: ~1.8 M fixes per "
              f"bucket-day at B = 16) has the opposite balance; a larger `--task-rows` trades memory for time "
              f"(500 k: 1.5x the single pass's wall, memory spread 22%, in the run before this one)."]
    if cluster:
        t1, t2 = cluster[0]["wall"], cluster[1]["wall"]
        eff = t1 / t2 / 2
        lines += ["", "Bulk policy run: `detect --compare-battery-policies --cluster local:N` over the 16 weeks "
                  f"({cluster[0]['fixes']:,} fixes), whole process (LocalCluster start included).", "",
                  "| workers | wall | fixes/s | client peak RSS | load (1, 5, 15 min) |", "|---:|---:|---:|---:|---|"]
        for r in cluster:
            lines.append(f"| {r['workers']} | {r['wall']:.1f} s | {r['fixes'] / r['wall']:,.0f} | {r['rss']:,} MiB | "
                         f"{r['load']} |")
        lines += ["", f"Scaling efficiency 1 -> 2 workers: {eff:.2f} of linear (target >= 0.8 on a quiet 2-core "
                  f"machine): **{'met' if eff >= 0.8 else 'MISSED'}** on this busy machine; outputs of both runs "
                  f"{'identical' if _same(cluster[0]['out'], cluster[1]['out']) else 'DIFFERENT'} and "
                  f"{'identical' if _same(cluster[1]['out'], bucketed[-1]['out']) else 'DIFFERENT'} to the in-process "
                  f"run. Worker memory is not in the client's RSS. Each worker runs Numba on one thread "
                  f"(`NUMBA_NUM_THREADS=1`), so local:1 uses one core and local:2 two."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wearers", type=int, default=250)
    p.add_argument("--work", type=Path, default=Path("/tmp/tagtrail-scale"))
    p.add_argument("--cluster", action="store_true", help="also the bulk policy run on local:1 and local:2")
    p.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sim, home, t_sim, t_ingest = _prepare(args.work, args.wearers)
    bucketed, single = _scale_rows(sim, home, args.work)
    cluster = _cluster_rows(sim, home, args.work) if args.cluster else []
    section = _section(args, bucketed, single, cluster, t_sim, t_ingest)
    print(section)
    if not args.no_write:
        write_section("Scale", section)


if __name__ == "__main__":
    main()
