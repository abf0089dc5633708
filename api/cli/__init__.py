"""The command-line way in: `tagtrail` and its subcommands (one module each)."""
from api.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
