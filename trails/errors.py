"""Errors raised by `trails`.

Every error that reaches a user is an `InputError`: the CLI prints its message
as one line on stderr and exits 2, so the message must name the offending item
(file, column, zone, key) and say what is wrong.
"""
from __future__ import annotations

__all__ = ["TrailsError", "InputError"]


class TrailsError(Exception):
    """Base class for errors raised by `trails`."""


class InputError(TrailsError):
    """An input file or argument cannot be used at all (exit code 2)."""
