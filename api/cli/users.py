"""`tagtrail users`: add, revoke and list API users.

`users add` prints the new token alone on stdout, once: only its SHA-256 is
stored, so it cannot be shown again. Every change is audited (as the local
operator: no API user acts) and checkpointed.

A name names a person for good: adding a name a revoked user had (compared
case-blind, ignoring invisible characters and extra spaces) makes a new
account for the same person, who still never decides a request made from
an earlier account; `users add` says so on stderr. A name an active user has
is refused.
"""
from __future__ import annotations

import argparse
import sys

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, audited_change, existing_home, require_database, \
    resolve_home
from api.db.models import ROLES

EPILOG = """\
examples:
  tagtrail users add --name "A. Approver" --role approver --org "home office"
  tagtrail users add --name "C. Caseworker" --role caseworker --email c.caseworker@example.gov.uk
  TOKEN=$(tagtrail users add --home /tmp/tt --name pc-4021 --role requester --org police)
  FEED=$(tagtrail users add --home /tmp/tt --name supplier --role feed)
  tagtrail users revoke --home /tmp/tt --name pc-4021
  tagtrail users list --home /tmp/tt

Roles: caseworker, approver, auditor, admin, requester (external: --org police
or probation), feed (the monitoring supplier's system: it may only send fixes
and events, POST /v1/fixes). Send the token as 'Authorization: Bearer TOKEN'.
`users add` creates HOME if it is missing; `revoke` and `list` need an
existing one.
A name is a person: re-adding a revoked user's name gives that person a new
account (they still never approve requests made from the old one).
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("users", help="add, revoke and list API users", description=__doc__, epilog=EPILOG,
                       formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    add = verbs.add_parser("add", help="add a user and print their token (once)", epilog=EPILOG,
                           formatter_class=EXAMPLES_FORMATTER)
    add_home_option(add)
    add.add_argument("--name", required=True, help="who this is (appears in the audit log)")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--org", default=None, help="organisation; police or probation for a requester")
    add.add_argument("--email", default=None, help="a caseworker's address: urgent records of the wearers they own "
                                                  "are emailed there")
    add.set_defaults(func=run_add)
    rev = verbs.add_parser("revoke", help="revoke a user's token", epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(rev)
    who = rev.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", help="the active user with this name")
    who.add_argument("--id", type=int, dest="user_id", help="the user with this id")
    rev.set_defaults(func=run_revoke)
    ls = verbs.add_parser("list", help="list users (never their tokens)", epilog=EPILOG,
                          formatter_class=EXAMPLES_FORMATTER)
    add_home_option(ls)
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_add(args: argparse.Namespace) -> int:
    from api.access.users import accounts_of, add_user

    with audited_change(resolve_home(args.home)) as (session, audit):
        user, token = add_user(session, audit, name=args.name, role=args.role, org=args.org,
                               email=args.email)
        earlier = [u for u in accounts_of(session, user.person) if u.id != user.id]
    print(f"added user {user.id} ({user.name}, {user.role}); token on stdout, shown only this once", file=sys.stderr)
    if earlier:
        listed = ", ".join(f"{u.id} ({u.name}, {u.role})" for u in earlier)
        print(f"note: {user.name!r} is the same person as revoked user(s) {listed}: they may never decide "
              f"or confirm a request made from those accounts", file=sys.stderr)
    print(token)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from api.access.users import revoke_user

    home = existing_home(args.home)
    require_database(home, "revoke")
    with audited_change(home) as (session, audit):
        user = revoke_user(session, audit, name=args.name, user_id=args.user_id)
    print(f"revoked user {user.id} ({user.name}, {user.role})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Read-only: needs an existing home and database, creates nothing (no audit key either)."""
    from api.access.users import list_users
    from api.db.session import open_database
    from trails.timestamps import format_ms

    engine, factory = open_database(require_database(existing_home(args.home), "list"))
    try:
        with factory() as session:
            users = list_users(session)
    finally:
        engine.dispose()
    print(f"{'id':>4}  {'name':<24} {'role':<11} {'org':<12} {'created':<25} revoked")
    for u in users:
        print(f"{u.id:>4}  {u.name:<24} {u.role:<11} {(u.org or '-'):<12} {format_ms(u.created_ms):<25} "
              f"{format_ms(u.revoked_ms) if u.revoked_ms is not None else '-'}")
    return 0
