"""`tagtrail subjects load`: the assignments and zones a running service detects against.

Both files are validated exactly as `tagtrail detect` validates them
(CONTRACT.md, "Subjects" and "Zones"; any error exits 2 naming the item) and
replace the ones in HOME's database in one transaction, with an audit entry.
A running service notices the change at its next pass and re-evaluates the
assignments from the data it holds (records no longer supported are
withdrawn with a reason, never deleted).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, audited_change, existing_home, require_database, \
    resolve_home

EPILOG = """\
examples:
  tagtrail subjects load --home data subjects.json zones.geojson
  tagtrail subjects show --home data

`load` creates HOME if it is missing; `show` needs an existing one.
"""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("subjects", help="load the subjects and zones a service detects against", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    load = verbs.add_parser("load", help="validate and load SUBJECTS.json and ZONES.geojson", epilog=EPILOG,
                            formatter_class=EXAMPLES_FORMATTER)
    add_home_option(load)
    load.add_argument("subjects", metavar="SUBJECTS.json", help="the assignments (CONTRACT.md, \"Subjects\")")
    load.add_argument("zones", metavar="ZONES.geojson", help="the zones they name (CONTRACT.md, \"Zones\")")
    load.set_defaults(func=run_load)
    show = verbs.add_parser("show", help="count what is loaded", epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(show)
    show.set_defaults(func=run_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def load_into(home: str | Path, subjects_path: str | Path, zones_path: str | Path) -> dict[str, int]:
    """Validate both files and replace the database's assignments and zones (audited)."""
    import json

    from geofence.policy import load_policy
    from geofence.subjects import load_subjects
    from geofence.zones import load_zones

    from api.service.detections import save_detection

    policy_path = Path(home) / "policy.json"
    crs = load_policy(policy_path if policy_path.exists() else None).crs  # zones must lie in the policy CRS's area
    zones = load_zones(zones_path, crs=crs)
    assignments = load_subjects(subjects_path, {z.zone_id for z in zones})
    features = json.loads(Path(zones_path).read_text(encoding="utf-8-sig"))["features"]
    with audited_change(Path(home)) as (session, audit):
        counts = save_detection(session, assignments=assignments, zone_features=features, zones=zones, records=[])
        audit.append(session, action="subjects.load", actor=None,
                     detail={"assignments": counts["assignments"], "zones": counts["zones"]})
    return counts


def run_load(args: argparse.Namespace) -> int:
    counts = load_into(resolve_home(args.home), args.subjects, args.zones)
    print(f"loaded {counts['assignments']} assignments and {counts['zones']} zones")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Read-only: needs an existing home and database, creates nothing."""
    from sqlalchemy import func, select

    from api.db.models import AssignmentRow, ZoneRow
    from api.db.session import open_database

    engine, factory = open_database(require_database(existing_home(args.home), "show"))
    try:
        with factory() as s:
            n_a = s.scalar(select(func.count()).select_from(AssignmentRow))
            n_s = s.scalar(select(func.count(func.distinct(AssignmentRow.subject_id))))
            n_z = s.scalar(select(func.count()).select_from(ZoneRow))
    finally:
        engine.dispose()
    print(f"{n_a} assignments of {n_s} subjects, {n_z} zones")
    return 0
