"""The `tagtrail` command line.

Each subcommand lives in its own module under `api.commands` and exposes
``register(subparsers)``, which adds a parser whose ``func`` default takes the
parsed arguments and returns an exit code. Input errors (`InputError`) become
one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from trails.errors import InputError

__all__ = ["main", "build_parser"]

#: Subcommand modules, in the order `tagtrail --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "api.commands.simulate",
    "api.commands.ingest",
    "api.commands.detect",
    "api.commands.zones",
    "api.commands.demo",
    "api.commands.serve",
    "api.commands.users",
    "api.commands.audit",
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"tagtrail {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
