"""`tagtrail detect` (placeholder: being built)."""
from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("detect", help="(not built yet)")
    p.set_defaults(func=lambda args: 2)
