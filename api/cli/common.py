"""What several subcommands share: the exit codes, the home option, finding
an existing home, one audited change to HOME's database, and checking a port.

Exit codes (every command; `api.cli.main` maps exceptions to them):

- `EXIT_OK` 0: done;
- `EXIT_FAILED` 1: a check ran and failed (`audit verify`, `audit
  export-checkpoints`, `audit resume`, `zones check`);
- `EXIT_INPUT` 2: bad input (options, files, a missing home, a port in use):
  one line on stderr naming the item, nothing changed;
- `EXIT_INTERNAL` 3: anything unexpected (a bug, or the machine: disk full,
  permissions): one line on stderr, the traceback only with ``tagtrail --debug``.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from trails.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - types only: the CLI imports the database layer lazily
    from sqlalchemy.orm import Session

    from api.audit.log import AuditLog

__all__ = ["add_home_option", "resolve_home", "existing_home", "require_database", "audited_change", "check_port",
           "EXAMPLES_FORMATTER", "EXIT_OK", "EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERNAL"]

EXAMPLES_FORMATTER = argparse.RawDescriptionHelpFormatter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3

#: Commands that create a home when it is missing (the others refuse one: `existing_home`).
CREATING_COMMANDS = "`tagtrail demo`, `tagtrail ingest`, `tagtrail subjects load` or `tagtrail users add`"


def resolve_home(value: str | None) -> Path:
    """`--home`, else `$TAGTRAIL_HOME`, else `./data`."""
    if value:
        return Path(value)
    return Path(os.environ.get("TAGTRAIL_HOME") or "data")


def _home_source(value: str | None) -> str:
    if value:
        return "--home"
    if os.environ.get("TAGTRAIL_HOME"):
        return "$TAGTRAIL_HOME"
    return "the default: no --home given and $TAGTRAIL_HOME is not set"


def existing_home(value: str | None) -> Path:
    """The home `value` names (`resolve_home`), which must already exist.

    Commands that only read a home, or serve one, refuse a missing home
    rather than create an empty one (a mistyped or forgotten ``--home`` would
    otherwise leave a new database and signing key in ``./data``).

    Raises
    ------
    InputError
        No folder at that path, naming it and where the path came from.
    """
    home = resolve_home(value)
    if not home.is_dir():
        raise InputError(f"no tagtrail home at {str(home)!r} ({_home_source(value)}): pass --home DIR for an existing "
                         f"home; {CREATING_COMMANDS} create one")
    return home


def require_database(home: Path, what: str):
    """Settings for `home`, whose database must exist: a read-only command never
    creates one. Only SQLite is checked (HOME/tagtrail.db); another database
    named by TAGTRAIL_DATABASE_URL is the operator's to provide.

    Raises
    ------
    InputError
        No HOME/tagtrail.db: "nothing to `what`".
    """
    from api.settings import Settings

    settings = Settings.from_home(home)
    if settings.database_url.startswith("sqlite") and not (home / "tagtrail.db").exists():
        raise InputError(f"no database at {home / 'tagtrail.db'}: nothing to {what}")
    return settings


@contextmanager
def audited_change(home: Path) -> Iterator[tuple["Session", "AuditLog"]]:
    """HOME's database and audit log for one change a command makes.

    Yields ``(session, audit)``; the caller makes its change and appends its
    audit entries in that session. On a clean exit both are committed
    together, then a checkpoint is forced, so the change is covered by a
    signature when the command returns (the service may not run again for
    hours). On an error nothing is committed. The engine is disposed either
    way. Commands use this rather than opening the database themselves: one
    place decides how a CLI change is recorded.
    """
    from api.audit.log import AuditLog
    from api.db.session import open_database
    from api.settings import Settings

    settings = Settings.from_home(home)
    engine, factory = open_database(settings)
    try:
        audit = AuditLog(settings)
        with factory() as session:
            try:
                yield session, audit
            except BaseException:
                session.rollback()
                raise
            session.commit()
            audit.write_checkpoint(session, force=True)
            session.commit()
    finally:
        engine.dispose()


def check_port(host: str, port: int) -> None:
    """Refuse at once when `host`:`port` cannot be listened on (another
    service has it), rather than after the work that precedes serving.

    The probe binds with SO_REUSEADDR, as uvicorn does, so a port left in
    TIME_WAIT by a server just stopped counts as free.

    Raises
    ------
    InputError
        The port is taken or not ours to bind, naming host, port and the cause.
    """
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r}: not an address this machine has ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is already in use (another tagtrail serve or demo?): "
                                 f"stop it, or choose another port with --port N (make run PORT=N)") from None
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def add_home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        metavar="DIR",
        default=None,
        help="tagtrail home (store, database, audit); default $TAGTRAIL_HOME, else ./data",
    )
