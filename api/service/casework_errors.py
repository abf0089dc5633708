"""The errors of the casework services (mitigations, escalation, reviews,
devices): each carries the HTTP status the API answers with, so every
router maps them the same way."""
from __future__ import annotations

__all__ = ["CaseworkError", "CaseworkNotFound", "CaseworkConflict"]


class CaseworkError(Exception):
    """A casework call that cannot be done as asked (422)."""

    status = 422


class CaseworkNotFound(CaseworkError):
    status = 404


class CaseworkConflict(CaseworkError):
    status = 409
