"""`tagtrail audit verify|export-checkpoints|resume`: the tamper-evident audit log.

verify: exit 0 when every entry hashes to what it says, every query column
says what its entry says, every entry MAC verifies (when HOME/keys is here),
the indexes run 0..n-1, every checkpoint verifies (Ed25519) and commits to
the log's first `size` entries, and no entry has gone unsigned for longer
than the bound. Exit 1, naming the first bad entry, column or checkpoint,
otherwise. Needs only the public key (HOME/audit/audit-ed25519.pub.pem).

export-checkpoints: copy every checkpoint and the public key to DEST (another
disk, the DPO's share), incrementally; `verify --against DEST` then checks
the log against those copies, which catches the newest rows removed together
with their checkpoints here.

resume: after the service detected tampering (it then signs nothing more
and refuses to release or change data), resume once `verify` passes again,
or accept the break on the record with --accept-break.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, require_database, resolve_home

EPILOG = """\
examples:
  tagtrail audit verify                 # ./data (or $TAGTRAIL_HOME)
  tagtrail audit verify --home /tmp/tt && echo "log intact"
  tagtrail audit export-checkpoints --home /tmp/tt /mnt/dpo-share/tagtrail
  tagtrail audit verify --home /tmp/tt --against /mnt/dpo-share/tagtrail
  tagtrail audit resume --home /tmp/tt --reason "database restored from the 02:00 backup"
  tagtrail audit resume --home /tmp/tt --accept-break --reason "INC-4711: rows lost with disk 2, no backup"
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("audit", help="verify, export and resume the tamper-evident audit log", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    v = verbs.add_parser("verify", help="check the log against its signed checkpoints", description=__doc__,
                         epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(v)
    v.add_argument("--against", metavar="DIR", type=Path, default=None,
                   help="also check the log against checkpoints exported to DIR (export-checkpoints)")
    v.add_argument("--max-unsigned-age", metavar="SECONDS", type=float, default=None,
                   help="fail when the newest entry no checkpoint covers is older than this "
                        "(default: audit_unsigned_max_s in HOME/settings.json, 3600)")
    v.set_defaults(func=run_verify)
    e = verbs.add_parser("export-checkpoints", help="copy every checkpoint and the public key to DEST",
                         description=__doc__, epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(e)
    e.add_argument("dest", metavar="DEST", type=Path, help="folder on another disk or share")
    e.set_defaults(func=run_export)
    r = verbs.add_parser("resume", help="serve again after a detected break", description=__doc__,
                         epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(r)
    r.add_argument("--reason", required=True, help="why (recorded in the log with your OS user name)")
    r.add_argument("--accept-break", action="store_true",
                   help="keep the log as it is, record the break in it and start a new checkpoint series")
    r.set_defaults(func=run_resume)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _settings(args: argparse.Namespace):
    """Settings of a home with a database: verify and resume create nothing."""
    return require_database(resolve_home(args.home), args.verb.split("-")[0])


def run_verify(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from api.audit.verify import verify_log
    from api.db.session import make_engine, session_factory
    from trails.errors import InputError

    settings = _settings(args)
    if args.max_unsigned_age is not None and not args.max_unsigned_age >= 0:
        raise InputError(f"--max-unsigned-age must be seconds >= 0, got {args.max_unsigned_age}")
    engine = make_engine(settings.database_url)  # read-only: no migration, no key creation
    try:
        if not inspect(engine).has_table("audit_log"):
            raise InputError(f"{settings.database_url}: no audit_log table")
        with session_factory(engine)() as session:
            report = verify_log(settings, session, against=args.against, max_unsigned_age_s=args.max_unsigned_age)
    finally:
        engine.dispose()
    if report.ok:
        print(report.message)
        return 0
    print(f"FAILED: {report.message}", file=sys.stderr)
    return 1


def run_export(args: argparse.Namespace) -> int:
    from api.audit.files import PUBLIC_KEY_FILE, AuditIntegrityError, export_checkpoints
    from api.settings import Settings
    from trails.errors import InputError

    audit_dir = Settings.from_home(resolve_home(args.home)).audit_dir
    if not (audit_dir / PUBLIC_KEY_FILE).exists():
        raise InputError(f"no {audit_dir / PUBLIC_KEY_FILE}: nothing to export")
    try:
        report = export_checkpoints(audit_dir, args.dest)
    except AuditIntegrityError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"exported {report.copied} new checkpoint file(s) to {args.dest} ({report.present} already there, "
          f"{report.moved} moved to series/ after an accepted break)")
    for path in report.conflicts:
        print(f"FAILED: {path} differs from this home's copy and was kept (the log rewritten here?); "
              f"run `tagtrail audit verify --against {args.dest}`", file=sys.stderr)
    for path in report.missing_here:
        print(f"FAILED: {path} is no longer in this home (deleted here?); "
              f"run `tagtrail audit verify --against {args.dest}`", file=sys.stderr)
    return 1 if report.conflicts or report.missing_here else 0


def _os_user() -> str:
    """The operator, as the OS knows them (recorded in the log)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def run_resume(args: argparse.Namespace) -> int:
    from api.audit.log import AuditLog, resume
    from api.db.session import open_database
    from trails.errors import InputError

    settings = _settings(args)
    if not args.reason.strip():
        raise InputError("--reason must say why")
    engine, factory = open_database(settings)
    try:
        audit = AuditLog(settings)
        with factory() as session:
            result = resume(audit, session, reason=args.reason.strip(), operator=_os_user(),
                            accept_break=args.accept_break)
    finally:
        engine.dispose()
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1
