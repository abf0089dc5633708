"""`tagtrail ingest`: validate fixes (and events) and append them to the store."""
from __future__ import annotations

import argparse
import sys

from trails.errors import InputError

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, resolve_home

EPILOG = """\
examples:
  tagtrail ingest fixes.csv
  tagtrail ingest fixes.parquet --events events.csv --home /srv/tagtrail
  TAGTRAIL_HOME=/srv/tagtrail tagtrail ingest day-2024-06-01.csv
  tagtrail ingest fixes.parquet --home big --buckets 64    # a new store in 64 device buckets

Rows that cannot be used (CONTRACT.md, "Quarantine") are recorded under
HOME/store/quarantine/ with their file, row and reason; rows already in the
store are quarantined as `duplicate`, so ingesting a file twice adds nothing.
A missing or unreadable file, or a missing required column, changes nothing
and exits 2. A file none of whose rows could be stored (every row quarantined,
duplicates included) exits 0 with a warning line on stderr. An ingest holds
HOME/store.lock from start to end: it refuses (exit 2) while another ingest
or a tagtrail service (serve, watch) runs on HOME, and they refuse while it
runs. Staging folders left by an ingest that was killed are removed by
whoever takes the lock next.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "ingest",
        help="validate fixes/events and append them to the Parquet store",
        description="Validate a fixes file (CSV or Parquet), project it to EPSG:27700 and "
        "append it to HOME/store, partitioned by UTC day.",
        epilog=EPILOG,
        formatter_class=EXAMPLES_FORMATTER,
    )
    p.add_argument("fixes", metavar="FIXES", help="fixes file (.csv or .parquet)")
    p.add_argument("--events", metavar="EVENTS", default=None, help="events file (.csv or .parquet)")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.add_argument("--buckets", type=int, metavar="B", default=None,
                   help="device buckets of a store this ingest creates (default 16; an existing store keeps its "
                        "own: `tagtrail store migrate-buckets` changes it)")
    add_home_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trails.ingest import ingest

    home = resolve_home(args.home)
    if args.buckets is not None and not 1 <= args.buckets <= 4096:
        raise InputError(f"--buckets {args.buckets}: must be a whole number from 1 to 4096")
    s = ingest(args.fixes, home=home, events_path=args.events, progress=not args.no_progress, buckets=args.buckets)
    print(f"fixes: {s.fixes_read} read, {s.fixes_stored} stored")
    if s.events_path is not None:
        print(f"events: {s.events_read} read, {s.events_stored} stored")
    if s.quarantined:
        print("quarantined: " + ", ".join(f"{k} {v}" for k, v in s.quarantined.items()))
    else:
        print("quarantined: none")
    if s.days:
        print(f"days: {s.days[0]} .. {s.days[-1]} ({len(s.days)})")
    print(f"{s.fixes_read + s.events_read} rows in {s.seconds:.2f} s ({s.rows_per_s:,.0f} rows/s)")
    sys.stdout.flush()
    for path, read, stored in ((args.fixes, s.fixes_read, s.fixes_stored),
                               (args.events, s.events_read, s.events_stored)):
        if path is not None and read > 0 and stored == 0:
            print(f"warning: every one of the {read:,} rows of {path} was quarantined: nothing from it was stored "
                  f"(reasons above; rows in {home / 'store' / 'quarantine'})", file=sys.stderr)
    return 0
