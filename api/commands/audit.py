"""`tagtrail audit verify`: check the audit log against every signed checkpoint.

Exit 0 when every entry hashes to what it says, the indexes run 0..n-1, and
every checkpoint in HOME/audit/checkpoints verifies (Ed25519) and commits to
the log's first `size` entries. Exit 1, naming the first bad entry, when a
row was edited, deleted, reordered or the log truncated, or a checkpoint was
altered or forged. Needs only the public key (HOME/audit/audit-ed25519.pub.pem).
"""
from __future__ import annotations

import argparse
import sys

from .common import EXAMPLES_FORMATTER, add_home_option, resolve_home

EPILOG = """\
examples:
  tagtrail audit verify                 # ./data (or $TAGTRAIL_HOME)
  tagtrail audit verify --home /tmp/tt && echo "log intact"

A copy of HOME/audit/checkpoints kept elsewhere (e.g. sent to the DPO) can be
put back in place to check the log against it: truncation and rewrites are
caught by anyone holding an earlier checkpoint.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("audit", help="verify the tamper-evident audit log", description=__doc__, epilog=EPILOG,
                       formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    v = verbs.add_parser("verify", help="check the log against its signed checkpoints", description=__doc__,
                         epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(v)
    v.set_defaults(func=run_verify)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_verify(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from api.audit import verify_log
    from api.db import make_engine, session_factory
    from api.settings import Settings
    from trails.errors import InputError

    home = resolve_home(args.home)
    settings = Settings.from_home(home)
    if settings.database_url.startswith("sqlite") and not (home / "tagtrail.db").exists():
        raise InputError(f"no database at {home / 'tagtrail.db'}: nothing to verify")
    engine = make_engine(settings.database_url)  # read-only: no migration, no key creation
    try:
        if not inspect(engine).has_table("audit_log"):
            raise InputError(f"{settings.database_url}: no audit_log table")
        with session_factory(engine)() as session:
            report = verify_log(settings, session)
    finally:
        engine.dispose()
    if report.ok:
        print(report.message)
        return 0
    print(f"FAILED: {report.message}", file=sys.stderr)
    return 1
