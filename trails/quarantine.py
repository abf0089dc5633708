"""Quarantine reasons, in the contract's order of precedence.

A row that cannot be used is never dropped: it is recorded with its source,
1-based row number and the *first* applicable reason from `REASONS`
(CONTRACT.md, "Quarantine"). Reasons are carried as small integer codes
(index into `REASONS`) so validation stays vectorised. Codes live only in
memory: everything written (store quarantine, intake database, quarantine.csv)
holds the reason *name*, so inserting a reason never changes stored data.

`bounded_text` is the one place that decides how much of a bad value is kept
when a quarantined row is recorded: a device id or timestamp field can be
megabytes long (issue 10: a 1 MiB device id repeated over 100,000 rows), and
the quarantine must not grow with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "REASONS",
    "REASON_CODE",
    "OK",
    "Rejected",
    "QUARANTINE_TEXT_CHARS",
    "bounded_text",
]

#: Contract order ("Quarantine" 1-10, with ``bad_device`` right after
#: ``missing_device``), plus ``future_timestamp``: an intake-only reason
#: ("Continuous intake": after reasons 1-7 and before ``duplicate``; `tagtrail
#: detect` never gives it). Its place after ``unknown_event`` keeps "first
#: applicable reason" = "smallest code" for intake too.
REASONS: tuple[str, ...] = (
    "missing_device",
    "bad_device",
    "bad_timestamp",
    "naive_timestamp",
    "bad_coordinates",
    "bad_accuracy",
    "bad_battery",
    "unknown_event",
    "future_timestamp",
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


#: A quarantined row keeps at most this many characters (code points) of a bad
#: field's text; the rest is replaced by a marker saying how much was cut.
QUARANTINE_TEXT_CHARS: int = 256


def bounded_text(values) -> pa.Array:
    """A column's values as text of at most `QUARANTINE_TEXT_CHARS` characters each.

    For recording quarantined rows (store quarantine, intake database): a
    value longer than the bound keeps its first `QUARANTINE_TEXT_CHARS` code
    points followed by ``…[+N characters]`` (N = code points cut), so a record
    always says that, and how much, was left out. Shorter values and nulls are
    unchanged; integers and timestamps become their text.

    A dictionary-encoded column is bounded on its dictionary before any row is
    decoded, so a 1 MiB value repeated over 100,000 rows costs one 1 MiB
    value, not 100 GB. Whole-column Arrow kernels; no loop per row.

    Examples: ``"D1"`` -> ``"D1"``; ``"D" * 300`` -> ``"D" * 256 + "…[+44 characters]"``.
    """
    if isinstance(values, pa.ChunkedArray):  # chunk by chunk: dictionaries may differ
        if values.num_chunks == 1:
            return bounded_text(values.chunk(0))
        return pa.concat_arrays([bounded_text(c) for c in values.chunks] or [pa.array([], pa.string())])
    if not isinstance(values, pa.Array):
        values = pa.array(values)
    if pa.types.is_dictionary(values.type):
        return bounded_text(values.dictionary).take(values.indices)
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    limit = QUARANTINE_TEXT_CHARS
    longest = pc.max(pc.binary_length(values)).as_py() if len(values) else None
    if longest is None or longest <= limit:  # bytes >= code points: nothing to cut
        return values
    n_chars = pc.utf8_length(values)
    long = pc.fill_null(pc.greater(n_chars, limit), False)
    cut = pc.cast(pc.subtract(n_chars, limit), pa.string())
    shortened = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(values, 0, limit), "…[+", cut, " characters]", "")
    return pc.if_else(long, shortened, values)
