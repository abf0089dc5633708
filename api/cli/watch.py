"""`tagtrail watch DIR`: take in fix and event files dropped into a folder.

Runs continuous intake and detection on HOME without the HTTP API (use
`tagtrail serve --watch DIR` for both): every file whose size has stopped
changing is moved out of DIR into HOME, validated and deduplicated exactly as
POST /v1/fixes does, and kept in HOME/watch/FEED/processed/ (unreadable files
in HOME/watch/FEED/failed/, with the reason in FILE.error.txt); breaches
appear in HOME's breach queue. FEED is DIR's name plus a short hash of its
full path (printed at start). Nothing is written into DIR.
"""
from __future__ import annotations

import argparse
import time

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, resolve_home

EPILOG = """\
examples:
  tagtrail watch /srv/feed --home data                # until interrupted
  tagtrail watch /srv/feed --home data --once         # what is there now, then exit
  tagtrail serve --home data --watch /srv/feed        # the same, inside the API server

Suppliers should write files under a name starting with '.' or ending in
.part or .tmp and rename them when complete; other files are taken once their
size has not changed for one scan interval.

Where files go: a taken file leaves DIR. It is kept under HOME, which only
tagtrail's account can read: HOME/watch/FEED/processed/NAME, or
HOME/watch/FEED/failed/NAME with NAME.error.txt if it could not be read
(FEED = DIR's name and a hash of its path, e.g. feed-1a2b3c4d). Suppliers
cannot see or change them there.

Symbolic links in DIR (to files or folders) are never followed or taken:
each is refused, reported once (a line here, a warning in the log) and left
where it is. Only regular files are read, opened without following links.
While the watch runs it holds HOME/store.lock: `tagtrail ingest` on the same
HOME refuses meanwhile.
"""
def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("watch", help="take in fix and event files dropped into a folder", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    p.add_argument("folder", metavar="DIR", help="the folder suppliers drop files into (taken files leave it)")
    add_home_option(p)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between scans (default 2)")
    p.add_argument("--once", action="store_true", help="take the files there now (two scans), process, exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from api.audit.log import AuditLog
    from api.db.session import open_database
    from api.settings import Settings
    from api.service.stream import StreamService
    from api.service.watch import FolderWatcher

    from trails.store import StoreLock

    home = resolve_home(args.home)
    with StoreLock(home, "service"):  # first, and for the service's whole life
        settings = Settings.from_home(home)
        engine, factory = open_database(settings)
        audit = AuditLog(settings)
        stream = StreamService(settings, factory, audit)
        stream.start()
        try:
            watcher = FolderWatcher(stream, factory, audit, args.folder, interval_s=args.interval)
            print(f"taken files go to {watcher.home_dir}/processed/ (unreadable ones to failed/)", flush=True)
            _scan(watcher, args)
            stream.flush()
            from trails.timestamps import format_ms

            print(f"breach queue up to date (as of {format_ms(stream.as_of())})" if stream.as_of() else "no rows yet")
        finally:
            stream.stop()
            engine.dispose()
    return 0


def _scan(watcher, args: argparse.Namespace) -> None:
    """Scan until interrupted (`--once`: two scans), one line per file taken or refused."""
    scans = 0
    while True:
        for c in watcher.scan_once():
            if "refused" in c:
                print(f"{c['file']}: refused: {c['refused']}", flush=True)
                continue
            extra = f", error: {c['error']}" if "error" in c else ""
            print(f"{c['file']}: {c['accepted']} rows accepted, {c['quarantined']} quarantined{extra}", flush=True)
        scans += 1
        if args.once and scans >= 2:
            break
        time.sleep(args.interval if not args.once else min(args.interval, 0.5))
