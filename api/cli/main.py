"""The `tagtrail` command line.

Each subcommand lives in its own module under `api.cli` and exposes
``register(subparsers)``, which adds a parser whose ``func`` default takes the
parsed arguments and returns an exit code. Exit codes are the same for every
command (`api.cli.common`): 0 done, 1 a check failed, 2 bad input (an
`InputError`: one line on stderr, never a traceback), 3 an internal error
(one line on stderr; the traceback too with ``tagtrail --debug``). The umask
is 077 and a command's HOME is made private (`trails.home.secure_home`)
before it runs.
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

from api.cli.common import EXAMPLES_FORMATTER, EXIT_INPUT, EXIT_INTERNAL, resolve_home  # noqa: E402

__all__ = ["main", "build_parser"]

#: Subcommand modules, in the order `tagtrail --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "api.cli.simulate",
    "api.cli.ingest",
    "api.cli.detect",
    "api.cli.store",
    "api.cli.zones",
    "api.cli.demo",
    "api.cli.serve",
    "api.cli.users",
    "api.cli.subjects",
    "api.cli.watch",
    "api.cli.audit",
    "api.cli.boundaries",
    "api.cli.retention",
)


EPILOG = """\
Run `tagtrail COMMAND --help` for a command's options and examples.

exit codes (every command):
  0  done
  1  a check ran and failed (audit verify, audit export-checkpoints, audit resume, zones check)
  2  bad input: options, files, a missing home, a port in use (one line on stderr naming it)
  3  internal error (one line on stderr; `tagtrail --debug COMMAND ...` adds the traceback)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagtrail",
        description="Electronic monitoring engine for GPS ankle tags.",
        epilog=EPILOG,
        formatter_class=EXAMPLES_FORMATTER,
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error, print the traceback as well as the one-line message")
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
        return EXIT_INPUT
    try:
        if hasattr(args, "home"):  # every command that opens a home makes it private first
            from trails.home import secure_home

            secure_home(resolve_home(args.home))
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"tagtrail {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line (and exit 3), not a traceback
        return _internal_error(args, exc)


#: Longest exception message shown on the internal-error line.
_MESSAGE_CHARS = 500


def _internal_error(args: argparse.Namespace, exc: Exception) -> int:
    """Report an unexpected exception as one line on stderr (its type and the first
    line of its message), the traceback before it only with ``--debug``."""
    import traceback

    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    message = message if len(message) <= _MESSAGE_CHARS else message[:_MESSAGE_CHARS] + "..."
    hint = "" if args.debug else "; run `tagtrail --debug ...` for the traceback"
    print(f"tagtrail {args.command}: internal error: {type(exc).__name__}"
          f"{': ' + message if message else ''} (a bug or a problem with this machine{hint})", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
