"""`tagtrail serve`: run the trail access service (HTTP API) on HOME."""
from __future__ import annotations

import argparse

from .common import EXAMPLES_FORMATTER, add_home_option, resolve_home

EPILOG = """\
examples:
  tagtrail serve                               # ./data (or $TAGTRAIL_HOME) on 127.0.0.1:8000
  tagtrail serve --home /tmp/tt --port 8080
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/v1/access-requests

Tokens come from `tagtrail demo` (HOME/demo-tokens.txt). The database is
HOME/tagtrail.db unless TAGTRAIL_DATABASE_URL says otherwise; audit
checkpoints go to HOME/audit.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("serve", help="serve the trail access API", description=__doc__, epilog=EPILOG,
                       formatter_class=EXAMPLES_FORMATTER)
    add_home_option(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--watch", metavar="DIR", default=None,
                   help="also take in fix and event files dropped into DIR (see `tagtrail watch --help`)")
    p.set_defaults(func=run)


def serve(home, *, host: str = "127.0.0.1", port: int = 8000, watch=None, watch_interval_s: float = 2.0) -> None:
    """Build the app for `home` and serve it until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    from trails.store import ServiceLock
    from trails.errors import InputError

    if ServiceLock.held(home):
        raise InputError(f"another tagtrail service (serve or watch) is running on {str(home)!r}")
    app = create_app(Settings.from_home(home))
    if watch is not None:
        from api.watch import FolderWatcher

        app.state.watcher = FolderWatcher(app.state.stream, app.state.session_factory, app.state.audit, watch,
                                          interval_s=watch_interval_s)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"API docs: http://{shown}:{port}/docs", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


def run(args: argparse.Namespace) -> int:
    serve(resolve_home(args.home), host=args.host, port=args.port, watch=args.watch)
    return 0
