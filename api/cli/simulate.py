"""`tagtrail simulate`: write a synthetic caseload in the contract's input formats."""
from __future__ import annotations

import argparse

from api.cli.common import EXAMPLES_FORMATTER

__all__ = ["register", "run"]

EPILOG = """\
Writes into DIR (created if needed), in the formats of CONTRACT.md "Inputs":
  fixes.csv | fixes.parquet   device_id, ts, lat, lon, accuracy_m, battery_pct
  events.csv                  device_id, ts, event (strap_tamper)
  subjects.json               assignments (about 2% of wearers swap tags mid-run)
  zones.geojson               curfew, exclusion and inclusion zones

The same --seed gives the same files byte for byte. --bad-row-rate R adds about
R x (good fix rows) bad rows mixed in among the good ones, cycling through every
row-level quarantine reason (missing_device, bad_timestamp, naive_timestamp,
bad_coordinates, bad_accuracy, bad_battery, unknown_event [in events.csv],
unassigned, duplicate). With --format parquet and bad rows, `ts` is written as
RFC 3339 text (bad timestamps need text); otherwise it is timestamp[ms, UTC].

examples:
  tagtrail simulate --out /tmp/sim
  tagtrail simulate --wearers 2000 --days 7 --seed 42 --out /tmp/sim2k
  tagtrail simulate --wearers 50 --days 3 --start 2024-10-24 --format parquet --out /tmp/dst
  tagtrail simulate --wearers 20 --days 2 --bad-row-rate 0.01 --out /tmp/dirty
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]: {text!r}")
    return value


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "simulate",
        help="write a synthetic population (fixes, events, subjects, zones)",
        description="Simulate GPS ankle-tag wearers living around English towns:\n"
                    "one fix a minute, curfews, exclusion and inclusion zones,\n"
                    "battery and signal gaps, tampers and device swaps.",
        epilog=EPILOG,
        formatter_class=EXAMPLES_FORMATTER,
    )
    p.add_argument("--wearers", type=_positive_int, default=100, metavar="N",
                   help="number of wearers (default 100)")
    p.add_argument("--days", type=_positive_int, default=7, metavar="D",
                   help="days simulated, at most 366 (default 7)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--start", default="2024-03-04", metavar="DATE",
                   help="start of every assignment: YYYY-MM-DD (midnight UTC) "
                        "or an RFC 3339 timestamp (default 2024-03-04)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--format", dest="fmt", choices=("csv", "parquet"), default="csv",
                   help="fixes file format (default csv)")
    p.add_argument("--bad-row-rate", type=_rate, default=0.0, metavar="R",
                   help="extra bad rows as a fraction of good fix rows (default 0)")
    p.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                   help="wearers per write batch (memory only; never changes the output)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trails.sim.simulate import DEFAULT_BATCH_WEARERS, simulate

    summary = simulate(
        args.out,
        wearers=args.wearers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        fmt=args.fmt,
        bad_row_rate=args.bad_row_rate,
        progress=not args.quiet,
        batch_wearers=args.batch or DEFAULT_BATCH_WEARERS,
    )
    print(summary.line())
    return 0
