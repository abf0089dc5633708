"""The `tagtrail` command line.

Each subcommand lives in its own module under `api.cli` and exposes
``register(subparsers)``, which adds a parser whose ``func`` default takes the
parsed arguments and returns an exit code. Input errors (`InputError`) become
one line on stderr and exit code 2, never a traceback. The umask is 077 and a
command's HOME is made private (`trails.home.secure_home`) before it runs.
"""
from __future__ import annotations

import os

# Before NumPy is imported: no transparent huge pages for NumPy's large
# arrays. On the 2-core VMs tagtrail is benchmarked on, a first touch of
# huge-page memory ran at ~0.4 GB/s against ~1.6 GB/s for 4 KiB pages, and
# `detect --home` on 19.7 M fixes took ~4.9 s instead of ~3.8 s with them
# (measured when this was added). Set NUMPY_MADVISE_HUGEPAGE=1 to measure
# the other way on your own hardware.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from trails.errors import InputError  # noqa: E402

__all__ = ["main", "build_parser"]

#: Subcommand modules, in the order `tagtrail --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "api.cli.simulate",
    "api.cli.ingest",
    "api.cli.detect",
    "api.cli.zones",
    "api.cli.demo",
    "api.cli.serve",
    "api.cli.users",
    "api.cli.subjects",
    "api.cli.watch",
    "api.cli.audit",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagtrail",
        description="Electronic monitoring engine for GPS ankle tags.",
        epilog="Run `tagtrail COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything tagtrail creates is its account's alone (trails.home): files 0600,
    # folders 0700, whichever command and library call creates them.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if hasattr(args, "home"):  # every command that opens a home makes it private first
            from trails.home import secure_home

            from api.cli.common import resolve_home

            secure_home(resolve_home(args.home))
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"tagtrail {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
