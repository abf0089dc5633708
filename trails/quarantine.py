"""Quarantine reasons, in the contract's order of precedence.

A row that cannot be used is never dropped: it is recorded with its source,
1-based row number and the *first* applicable reason from `REASONS`
(CONTRACT.md, "Quarantine"). Reasons are carried as small integer codes
(index into `REASONS`) so validation stays vectorised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "REASONS",
    "REASON_CODE",
    "OK",
    "Rejected",
]

REASONS: tuple[str, ...] = (
    "missing_device",
    "bad_timestamp",
    "naive_timestamp",
    "bad_coordinates",
    "bad_accuracy",
    "bad_battery",
    "unknown_event",
    "after_as_of",
    "unassigned",
    "duplicate",
)
REASON_CODE: dict[str, int] = {name: i for i, name in enumerate(REASONS)}
#: Code for a row that passed validation (larger than every reason code, so
#: ``np.minimum`` over per-check codes yields the first applicable reason).
OK: int = 127


@dataclass(frozen=True)
class Rejected:
    """Rows of one source that were quarantined.

    source: ``"fixes"`` or ``"events"``; row: int64 1-based record numbers;
    reason: int8 codes into `REASONS`.
    """

    source: str
    row: np.ndarray
    reason: np.ndarray

    @staticmethod
    def empty(source: str) -> "Rejected":
        return Rejected(source, np.zeros(0, np.int64), np.zeros(0, np.int8))

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def reason_names(self) -> list[str]:
        return [REASONS[int(c)] for c in self.reason]

    @staticmethod
    def concat(source: str, parts: "list[Rejected]") -> "Rejected":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Rejected.empty(source)
        return Rejected(
            source,
            np.concatenate([p.row for p in parts]).astype(np.int64),
            np.concatenate([p.reason for p in parts]).astype(np.int8),
        )

    def counts(self) -> dict[str, int]:
        """Rows by reason name, in contract order, omitting zero counts."""
        c = np.bincount(self.reason.astype(np.int64), minlength=len(REASONS))
        return {REASONS[i]: int(c[i]) for i in range(len(REASONS)) if c[i]}
