"""`tagtrail serve`: run the trail access service (HTTP API) on HOME."""
from __future__ import annotations

import argparse
from pathlib import Path

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, check_port, existing_home

EPILOG = """\
examples:
  tagtrail serve                               # ./data (or $TAGTRAIL_HOME) on 127.0.0.1:8000
  tagtrail serve --home /tmp/tt --port 8080
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/v1/access-requests

Tokens come from `tagtrail demo` (HOME/demo-tokens.txt). The database is
HOME/tagtrail.db unless TAGTRAIL_DATABASE_URL says otherwise; audit
checkpoints go to HOME/audit.

HOME must exist (`tagtrail demo`, `ingest`, `subjects load` or `users add`
create one); serve prints the home it serves. A port already in use is
refused at once (exit 2).

The service holds HOME/store.lock while it runs: `tagtrail ingest` on the same
HOME refuses meanwhile (send fixes to POST /v1/fixes or the watched folder),
and `serve` refuses to start while an ingest or another service holds it.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("serve", help="serve the trail access API", description=__doc__, epilog=EPILOG,
                       formatter_class=EXAMPLES_FORMATTER)
    add_home_option(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--watch", metavar="DIR", default=None,
                   help="also take in fix and event files dropped into DIR; taken files are moved out of DIR "
                        "into HOME/watch/ (see `tagtrail watch --help`)")
    p.set_defaults(func=run)


def serve(home: str | Path, *, host: str = "127.0.0.1", port: int = 8000, watch: str | Path | None = None,
          watch_interval_s: float = 2.0) -> None:
    """Build the app for `home` and serve it until interrupted, holding the home's
    store lock (`trails.store.StoreLock`) throughout.

    Raises
    ------
    InputError
        An ingest or another service holds the store lock on `home`, or
        `host`:`port` cannot be listened on.
    """
    import uvicorn

    from api.http.app import create_app
    from api.settings import Settings

    from trails.store import StoreLock

    # the store lock first, for the service's whole life: an ingest (or another
    # service) on this home makes us refuse before anything is opened
    with StoreLock(home, "service"):
        check_port(host, port)  # before the database is opened and migrated
        settings = Settings.from_home(home)
        app = create_app(settings)
        if watch is not None:
            from api.service.watch import FolderWatcher

            app.state.watcher = FolderWatcher(app.state.stream, app.state.session_factory, app.state.audit, watch,
                                              interval_s=watch_interval_s)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"serving {Path(home).resolve()} (database: {settings.database_url.split('://')[0]})", flush=True)
        print(f"API docs: http://{shown}:{port}/docs", flush=True)
        print(f"console: http://{shown}:{port}/login (sign in with a token `tagtrail users add` printed)", flush=True)
        # uvicorn's access log prints raw paths (subject ids): off; api.http.access_log logs route templates
        _log_to_stderr()
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def _log_to_stderr() -> None:
    """tagtrail's own loggers (access lines, detection and intake errors) to stderr at INFO."""
    import logging

    logger = logging.getLogger("tagtrail")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    serve(existing_home(args.home), host=args.host, port=args.port, watch=args.watch)
    return 0
