"""`tagtrail retention run [--dry-run]`: erase what the retention rules
(HOME/retention.json, or the documented defaults) say is due, except what
legal holds keep: a wearer's casework, their open extract downloads, and
at the end the link from the audit log to them (their pseudonym key).
Each erasure is one audit entry. The service runs the same pass daily.
"""
from __future__ import annotations

import argparse
import sys

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, existing_home, require_database
from trails.errors import InputError

EPILOG = """\
examples:
  tagtrail retention run --home /srv/tagtrail --dry-run     # what is due, nothing erased
  tagtrail retention run --home /srv/tagtrail
  tagtrail retention run --home /tmp/tt --now 2031-01-01T00:00:00Z --dry-run

Each line: wearer, class, when it fell due, and what was erased (rows per
table) or why not (a legal hold, or a class this version cannot erase yet).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retention", help="erase what the retention rules say is due", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    run = verbs.add_parser("run", help="plan and (unless --dry-run) erase", epilog=EPILOG,
                           formatter_class=EXAMPLES_FORMATTER)
    add_home_option(run)
    run.add_argument("--dry-run", action="store_true", help="list what is due; erase nothing")
    run.add_argument("--now", default=None, metavar="RFC3339", help="the instant to judge at (default: now)")
    run.set_defaults(func=run_retention_cli)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_retention_cli(args: argparse.Namespace) -> int:
    import time

    from api.audit.log import AuditLog
    from api.db.session import open_database
    from api.service.retention.rules import RetentionError
    from api.service.retention.run import run_retention
    from trails.timestamps import format_ms, parse_timestamp

    home = existing_home(args.home)
    settings = require_database(home, "erase")
    try:
        now = parse_timestamp(args.now) if args.now else time.time_ns() // 1_000_000
    except ValueError as exc:
        raise InputError(f"--now: {exc}") from None
    engine, factory = open_database(settings)
    try:
        result = run_retention(factory, AuditLog(settings), home, now_ms=now, dry_run=args.dry_run)
    except RetentionError as exc:
        raise InputError(str(exc)) from None
    finally:
        engine.dispose()
    done = {(d.subject_id, d.data_class): (c, h) for d, c, h in result.erased}
    why = {(d.subject_id, d.data_class): w for d, w in result.skipped}
    for d in result.due:
        key = (d.subject_id, d.data_class)
        what = ("due (dry run)" if args.dry_run else
                f"erased {', '.join(f'{t} {n}' for t, n in done[key][0].items()) or 'nothing left'}" if key in done
                else f"not erased: {why.get(key, '')}")
        held = f"; held {len(d.held)} period(s)" if d.held else ""
        print(f"{d.subject_id}\t{d.data_class}\tdue {format_ms(d.due_ms)}\t{what}{held}")
    print(f"{len(result.due)} due, {len(result.erased)} erased, {len(result.skipped)} not erased"
          + (" (dry run)" if args.dry_run else ""), file=sys.stderr)
    return 0
