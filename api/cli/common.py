"""Options shared by several subcommands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_home_option", "resolve_home", "EXAMPLES_FORMATTER"]

EXAMPLES_FORMATTER = argparse.RawDescriptionHelpFormatter


def resolve_home(value: str | None) -> Path:
    """`--home`, else `$TAGTRAIL_HOME`, else `./data`."""
    if value:
        return Path(value)
    return Path(os.environ.get("TAGTRAIL_HOME") or "data")


def add_home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        metavar="DIR",
        default=None,
        help="tagtrail home (store, database, audit); default $TAGTRAIL_HOME, else ./data",
    )
