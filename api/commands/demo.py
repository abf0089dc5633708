"""`tagtrail demo`: what `make run` does.

On first start (no `HOME/demo/.ingested`) it simulates a small population
into `HOME/demo`, ingests it into the store; every time, it runs detection on
the store into `HOME/demo/results` and prints the store and breach summaries.
Later releases serve the API here.
"""
from __future__ import annotations

import argparse
import time

from .common import EXAMPLES_FORMATTER, add_home_option, resolve_home

EPILOG = """\
examples:
  tagtrail demo                      # ./data (or $TAGTRAIL_HOME), 200 wearers x 7 days on first start
  tagtrail demo --home /tmp/tt --wearers 20 --days 2
  rm -rf data && tagtrail demo       # start over with fresh demo data
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="set up demo data on first start, then detect and summarise",
                       description=__doc__, epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(p)
    p.add_argument("--wearers", type=int, default=200, help="wearers to simulate on first start (default 200)")
    p.add_argument("--days", type=int, default=7, help="days to simulate on first start (default 7)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--start", default="2024-03-25", help="first simulated day (default 2024-03-25: spans a clock change)")
    p.set_defaults(func=run)


def _print_store(summary: dict) -> None:
    print(f"store: {summary['home']}/store")
    print(f"  devices: {summary.get('devices', 0):,}   fixes: {summary['fixes']:,}   "
          f"events: {summary['events']:,}")
    if summary.get("days"):
        print(f"  days: {summary['days']} ({summary['first_day']} .. {summary['last_day']})")
    q = summary.get("quarantined") or {}
    print(f"  quarantined rows: {sum(q.values()):,}" + ("" if not q else "   " + ", ".join(f"{k}={v:,}" for k, v in q.items())))


def run(args: argparse.Namespace) -> int:
    from trails.ingest import ingest
    from trails.simulate import simulate
    from trails.store import store_summary

    from api.cli import main as cli_main

    home = resolve_home(args.home)
    demo = home / "demo"
    t0 = time.perf_counter()
    ready = demo / ".ingested"  # written last, so an interrupted first start is redone
    if not ready.exists():
        print(f"first start: simulating {args.wearers} wearers x {args.days} days into {demo}", flush=True)
        sim = simulate(demo, wearers=args.wearers, days=args.days, seed=args.seed, start=args.start,
                       fmt="csv", bad_row_rate=0.001, progress=True)
        ingest(sim.fixes_path, home=home, events_path=demo / "events.csv", progress=True)
        ready.write_text("ok\n")
    _print_store(store_summary(home))
    print("detecting breaches on the store:", flush=True)
    code = cli_main(["detect", "--home", str(home), "--subjects", str(demo / "subjects.json"),
                     "--zones", str(demo / "zones.geojson"), "--out", str(demo / "results"),
                     "--compare-battery-policies"])
    print(f"done in {time.perf_counter() - t0:.1f} s; records in {demo / 'results' / 'breaches.jsonl'}")
    return code
