"""`tagtrail store`: maintenance of HOME's Parquet store (`migrate-buckets`)."""
from __future__ import annotations

import argparse

from trails.errors import InputError

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, existing_home

EPILOG = """\
examples:
  # a store written before device buckets, rewritten into the default 16
  tagtrail store migrate-buckets --home data
  # into 64 buckets (more, smaller bucket tasks for `tagtrail detect --home`)
  tagtrail store migrate-buckets --home data --buckets 64

migrate-buckets rewrites HOME/store's fix files as fixes/day=D/bucket=K/ files
(K = crc32(device_id) mod B), each sorted by device then time, so that
`tagtrail detect --home` can run one bucket at a time in bounded memory (and
on a Dask cluster with --cluster). It holds HOME/store.lock throughout (a
running ingest or service makes it refuse, exit 2), stages every new file,
and publishes them with one manifest replace: interrupted, it changes nothing.
Run again with the same B, it does nothing. Records are unchanged.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("store", help="store maintenance (migrate-buckets)", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION")
    m = ssub.add_parser("migrate-buckets", help="rewrite the store's fixes into B device buckets",
                        description="Rewrite HOME/store's fix files into B device buckets, atomically.",
                        epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    m.add_argument("--buckets", type=int, metavar="B", default=16, help="number of device buckets, 1..4096 (default 16)")
    add_home_option(m)
    m.set_defaults(func=run_migrate)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    raise InputError("tagtrail store: name an action (migrate-buckets); see tagtrail store --help")


def run_migrate(args: argparse.Namespace) -> int:
    from trails.migrate import migrate_buckets

    home = existing_home(args.home)
    s = migrate_buckets(home, args.buckets)
    before = "no buckets" if s.before is None else f"{s.before} buckets"
    if not s.changed:
        print(f"store {home / 'store'} already has {s.buckets} buckets: nothing to do ({s.fixes:,} fixes, "
              f"{s.files_before} files)")
        return 0
    print(f"store {home / 'store'}: {before} -> {s.buckets} buckets; {s.fixes:,} fixes over {s.days} days, "
          f"{s.files_before} files -> {s.files_after}")
    return 0
