"""`tagtrail demo`: what `make run` does.

On first start (no `HOME/demo/.ingested`) it simulates a small population
into `HOME/demo`, ingests it into the store; every time, it runs detection on
the store into `HOME/demo/results` and into the database, and prints the
store and breach summaries. On first start it also creates one demo user per
role (caseworker, approver, auditor, admin, and two requesters: police and
probation) and writes their tokens to `HOME/demo-tokens.txt` (mode 600;
tokens are never printed). Then it serves the API on 127.0.0.1:8000 (or
`--port`) unless `--no-serve`. The port is checked first: if it is taken,
the demo says so and stops before doing any work.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, audited_change, check_port, resolve_home

EPILOG = """\
examples:
  tagtrail demo                      # ./data (or $TAGTRAIL_HOME), 200 wearers x 7 days on first start
  tagtrail demo --home /tmp/tt --wearers 20 --days 2
  tagtrail demo --home /tmp/tt --no-serve   # set up and detect, do not serve
  tagtrail demo --port 8080          # serve on another port (make run PORT=8080)
  rm -rf data && tagtrail demo       # start over with fresh demo data
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("demo", help="set up demo data on first start, then detect and summarise",
                       description=__doc__, epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(p)
    p.add_argument("--wearers", type=int, default=200, help="wearers to simulate on first start (default 200)")
    p.add_argument("--days", type=int, default=7, help="days to simulate on first start (default 7)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--start", default="2024-03-25", help="first simulated day (default 2024-03-25: spans a clock change)")
    p.add_argument("--no-serve", dest="serve", action="store_false",
                   help="stop after detection instead of serving the API")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    p.add_argument("--boundaries", type=Path, default=None, metavar="FILE",
                   help="a boundary GeoJSON to load for map context when none is loaded yet (make run gives "
                        "../shared/data/england_lad_2024_buc.geojson when it is there: the demo's towns are English)")
    p.add_argument("--boundaries-name-property", default="name", metavar="NAME",
                   help="the property naming each boundary (default: name)")
    p.set_defaults(func=run)


def _print_store(summary: dict) -> None:
    print(f"store: {summary['home']}/store")
    print(f"  devices: {summary.get('devices', 0):,}   fixes: {summary['fixes']:,}   "
          f"events: {summary['events']:,}")
    if summary.get("days"):
        print(f"  days: {summary['days']} ({summary['first_day']} .. {summary['last_day']})")
    q = summary.get("quarantined") or {}
    by_reason = "" if not q else "   " + ", ".join(f"{k}={v:,}" for k, v in q.items())
    print(f"  quarantined at ingest: {sum(q.values()):,} rows{by_reason}")


def run(args: argparse.Namespace) -> int:
    from trails.ingest import ingest
    from trails.sim.simulate import simulate
    from trails.store import store_summary

    from api.cli.main import main as cli_main

    home = resolve_home(args.home)
    if args.serve:  # before minutes of work, not after them
        check_port("127.0.0.1", args.port)
    demo = home / "demo"
    t0 = time.perf_counter()
    ready = demo / ".ingested"  # written last, so an interrupted first start is redone
    if not ready.exists():
        print(f"first start: simulating {args.wearers} wearers x {args.days} days into {demo}", flush=True)
        sim = simulate(demo, wearers=args.wearers, days=args.days, seed=args.seed, start=args.start,
                       fmt="csv", bad_row_rate=0.001, progress=True)
        ingest(sim.fixes_path, home=home, events_path=demo / "events.csv", progress=True)
        ready.write_text("ok\n")
    _print_store(store_summary(home))
    print("detecting breaches on the store:", flush=True)
    code = cli_main(["detect", "--home", str(home), "--subjects", str(demo / "subjects.json"),
                     "--zones", str(demo / "zones.geojson"), "--out", str(demo / "results"),
                     "--compare-battery-policies", "--db"])
    print(f"done in {time.perf_counter() - t0:.1f} s; records in {demo / 'results' / 'breaches.jsonl'}")
    if code != 0:
        return code
    tokens = _demo_users(home)
    _demo_boundaries(home, args.boundaries, args.boundaries_name_property)
    print(f"API tokens (one per role) in {tokens}: each signs in to the console at "
          f"http://127.0.0.1:{args.port}/login")
    if args.serve:
        from api.cli.serve import serve

        serve(home, host="127.0.0.1", port=args.port)
    else:
        print(f"API docs: http://127.0.0.1:{args.port}/docs (after `tagtrail serve --home {home}`)")
    return 0


def _demo_boundaries(home: Path, path: Path | None, name_property: str) -> None:
    """Load `path` as the maps' context boundaries unless some are loaded (never copied into the repo:
    HOME keeps its own simplified copy)."""
    from api.cli.main import main as cli_main
    from api.service.boundaries import boundaries_path

    if boundaries_path(home).exists():
        print(f"map context: the boundaries in {boundaries_path(home)}")
    elif path is None:
        print("map context: no boundaries loaded (tagtrail boundaries load FILE) and no tiles: maps have no background")
    elif cli_main(["boundaries", "load", "--home", str(home), str(path), "--name-property", name_property]) != 0:
        print(f"map context: {path} was not loaded (see above); maps have no background")


#: Demo users created on first start: (name, role, org).
DEMO_USERS: tuple[tuple[str, str, str | None], ...] = (
    ("demo-caseworker", "caseworker", "home office"),
    ("demo-approver", "approver", "home office"),
    ("demo-auditor", "auditor", "home office"),
    ("demo-admin", "admin", "home office"),
    ("demo-police", "requester", "police"),
    ("demo-probation", "requester", "probation"),
)


def _demo_users(home: Path) -> Path:
    """Create the demo users unless they exist; their tokens go to
    HOME/demo-tokens.txt with mode 600 and are never printed."""
    from sqlalchemy import select

    from api.access.users import add_user
    from api.db.models import User

    path = Path(home) / "demo-tokens.txt"
    with audited_change(Path(home)) as (session, audit):
        names = [n for n, _, _ in DEMO_USERS]
        if session.scalars(select(User).where(User.name.in_(names))).first() is not None:
            if not path.exists():
                print(f"note: demo users exist but {path} is gone; tokens are shown only once "
                      f"(start over with a fresh home to get new ones)")
            return path
        lines = ["# tagtrail demo API tokens: send as 'Authorization: Bearer TOKEN'", "# name\trole\torg\ttoken"]
        for name, role, org in DEMO_USERS:
            _user, token = add_user(session, audit, name=name, role=role, org=org)
            lines.append(f"{name}\t{role}\t{org or '-'}\t{token}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # the tokens are on disk before the users exist
            fh.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)
    return path
