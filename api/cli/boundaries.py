"""`tagtrail boundaries load FILE`: the boundaries maps draw for context when
there is no tile background (`api.service.boundaries`): local authorities,
wards, any GeoJSON FeatureCollection of polygons in longitude/latitude, each
named by one of its properties. Every feature is checked; one bad feature and
nothing is loaded (each problem is listed, one per line). A load replaces the
boundaries loaded before and is audited (``boundaries.load``, as the local
operator).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from api.cli.common import EXAMPLES_FORMATTER, add_home_option, audited_change, existing_home
from trails.errors import InputError

EPILOG = """\
examples:
  tagtrail boundaries load ../shared/data/england_lad_2024_buc.geojson
  tagtrail boundaries load wards.geojson --name-property WD13NM --home /tmp/tt

The file stays where it is; HOME/boundaries/boundaries.geojson keeps each
feature's name and its (simplified) polygon. The console's /admin page loads
a file the same way.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("boundaries", help="load the boundaries maps show for context", description=__doc__,
                       epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    load = verbs.add_parser("load", help="check a boundary file and load it (replacing the boundaries loaded)",
                            epilog=EPILOG, formatter_class=EXAMPLES_FORMATTER)
    add_home_option(load)
    load.add_argument("file", type=Path, help="GeoJSON FeatureCollection of Polygon/MultiPolygon features")
    load.add_argument("--name-property", default="name", metavar="NAME",
                      help="the property holding each boundary's name (default: name)")
    load.set_defaults(func=run_load)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_load(args: argparse.Namespace) -> int:
    from api.service.boundaries import BoundaryError, audit_load, parse_boundaries, store_boundaries

    home = existing_home(args.home)
    try:
        doc = json.loads(args.file.read_bytes())
    except OSError as exc:
        raise InputError(f"{args.file}: cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{args.file}: not JSON: {exc}") from None
    try:
        items = parse_boundaries(doc, args.name_property)
    except BoundaryError as exc:
        for item, why in exc.problems:
            print(f"{args.file}: {item}: {why}", file=sys.stderr)
        raise InputError(f"{args.file}: not loaded ({len(exc.problems)} problem(s) above)") from None
    with audited_change(home) as (session, audit):
        load = store_boundaries(home, items, lambda ld: audit_load(session, audit, None, ld, args.name_property))
    print(f"loaded {load.n_features} boundaries from {args.file} (names from {args.name_property!r}; "
          f"{load.vertices_kept:,} of {load.vertices_given:,} vertices kept) into {load.path}")
    return 0
