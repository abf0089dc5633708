"""`tagtrail zones`: import polygon layers as ZONES.geojson, and check zone files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geofence.errors import ZoneError
from geofence.importer import import_zones, write_zones
from geofence.model import ZONE_KINDS
from geofence.policy import load_policy
from geofence.zones import load_zones

from trails.errors import InputError

from api.cli.common import EXAMPLES_FORMATTER, EXIT_FAILED

__all__ = ["register"]

_IMPORT_EPILOG = """\
examples:
  # Liverpool wards as exclusion zones, ids from the ward code
  tagtrail zones import wards.geojson --kind exclusion --id-field WD13CD --out zones.geojson

  # a curfew zone from a British National Grid GeoPackage, with a nightly window
  tagtrail zones import home.gpkg --kind curfew --id-field case_ref \\
      --schedule '[{"days": ["mon","tue","wed","thu","fri","sat","sun"], "start": "19:00", "end": "07:00"}]' \\
      --out zones.geojson

  # merge adjacent parcels that share a `site` value into one zone each
  tagtrail zones import parcels.shp --kind inclusion --dissolve-by site --out zones.geojson

  # schedule from a file, windows in New York time
  tagtrail zones import area.gpkg --kind curfew --schedule schedule.json \\
      --timezone America/New_York --out zones.geojson

Geometry is never repaired: an invalid feature is refused, named by id and row.
Every position must lie inside the area of use of the policy CRS (--policy's
crs, default EPSG:27700), so a layer with a wrong CRS or swapped axes is refused.
Exit 0 on success; 2 with one line on stderr for any input error.
"""

_CHECK_EPILOG = """\
examples:
  tagtrail zones check zones.geojson
  tagtrail zones check zones.geojson --policy policy.json   # zones for a policy with another crs

Exit 0 and one line per zone when the file is a valid ZONES.geojson; 1 with
one line on stderr naming the zone when it is not (the check ran and failed);
2 when there is nothing to check (no such file) or --policy is bad.
"""


def _run_import(args: argparse.Namespace) -> int:
    crs = load_policy(args.policy).crs
    collection = import_zones(
        args.file,
        kind=args.kind,
        id_field=args.id_field,
        schedule=args.schedule,
        dissolve_by=args.dissolve_by,
        timezone=args.timezone,
        layer=args.layer,
        crs=crs,
    )
    zones = write_zones(collection, args.out, crs=crs)
    print(f"wrote {len(zones)} {args.kind} zone(s) to {args.out}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    """A file that fails the check is exit 1 (what `check` is for), unlike a
    missing file or a bad --policy, which are input errors (exit 2)."""
    crs = load_policy(args.policy).crs
    if not Path(args.file).is_file():
        raise InputError(f"{args.file}: no such file to check")
    try:
        zones = load_zones(args.file, crs=crs)
    except ZoneError as exc:
        print(f"tagtrail zones check: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for z in zones:
        shape = f"circle r={z.radius_m:g} m" if z.is_circle else f"{len(z.polygons)} polygon(s)"
        sched = "always active" if z.windows is None else f"{len(z.windows)} window(s), {z.timezone}"
        print(f"{z.zone_id}\t{z.kind}\t{shape}\t{sched}")
    print(f"{len(zones)} zone(s) valid")
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "zones",
        help="import polygon layers as ZONES.geojson; check zone files",
        description="Build and check ZONES.geojson files (CONTRACT.md, 'Zones').",
        epilog="Run `tagtrail zones import --help` or `tagtrail zones check --help` for examples.",
    )
    zsub = p.add_subparsers(dest="zones_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    imp = zsub.add_parser(
        "import",
        help="convert a Shapefile/GeoPackage/GeoJSON layer (any CRS) to ZONES.geojson",
        description="Read a polygon layer, reproject it to WGS84, check it, and write ZONES.geojson.",
        epilog=_IMPORT_EPILOG,
        formatter_class=EXAMPLES_FORMATTER,
    )
    imp.add_argument("file", metavar="FILE", help="any vector file geopandas reads")
    imp.add_argument("--kind", required=True, choices=ZONE_KINDS, help="zone kind for every feature")
    imp.add_argument("--id-field", metavar="F", default=None,
                     help="field holding zone ids (default: a field named id, else zone-<row>)")
    imp.add_argument("--schedule", metavar="JSON", default=None,
                     help="weekly windows as JSON text or a JSON file (required for curfew)")
    imp.add_argument("--dissolve-by", metavar="FIELD", default=None,
                     help="merge features sharing this field into one zone each (ids from the field)")
    imp.add_argument("--timezone", metavar="TZ", default=None,
                     help="IANA timezone of the schedule (default Europe/London)")
    imp.add_argument("--layer", metavar="NAME", default=None, help="layer of a multi-layer source (default: first)")
    imp.add_argument("--out", metavar="ZONES.geojson", required=True, help="file to write (replaced atomically)")
    imp.add_argument("--policy", metavar="POLICY.json", default=None,
                     help="the policy the zones are for: positions must lie in its crs's area of use (default EPSG:27700)")
    imp.set_defaults(func=_run_import)

    chk = zsub.add_parser(
        "check",
        help="validate a ZONES.geojson and list its zones",
        description="Validate a ZONES.geojson file exactly as `tagtrail detect` does.",
        epilog=_CHECK_EPILOG,
        formatter_class=EXAMPLES_FORMATTER,
    )
    chk.add_argument("file", metavar="ZONES.geojson", help="the zones file to validate")
    chk.add_argument("--policy", metavar="POLICY.json", default=None,
                     help="check against this policy's crs (as `tagtrail detect --policy` does; default EPSG:27700)")
    chk.set_defaults(func=_run_check)
