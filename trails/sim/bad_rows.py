"""Bad rows for `tagtrail simulate --bad-row-rate`: one of each quarantine kind.

Each injected row has exactly one defect, so the contract's first applicable
reason (CONTRACT.md, "Quarantine") is the kind it was made as:

=================  ==========================================================
missing_device     ``device_id`` empty or only spaces (Parquet: null or empty)
bad_timestamp      ``2024-02-30T10:00:00Z``, ``yesterday``, ``...T24:00:00Z``,
                   an offset of ``+25:00``
naive_timestamp    a good row's time without its ``Z``
bad_coordinates    lat ``123``, lon empty, lat ``nan``, lon ``200``
bad_accuracy       ``-5``, ``inf``
bad_battery        ``150``, ``abc`` (Parquet: ``101``), ``-3``
unknown_event      an ``events`` row with event ``battery_swap``
unassigned         a device no assignment holds (``D-X`` + subject number)
duplicate          an exact copy of an earlier good row (same device and ts)
=================  ==========================================================

Rows are drawn per wearer from the wearer's own stream (independent of
batching) and placed among that wearer's good rows; a duplicate always comes
after the row it copies. In Parquet, bad timestamps need a string ``ts``
column, and numeric columns hold numbers (or null), so ``abc`` becomes 101.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "FIX_KINDS", "BadRows", "draw_bad_rows", "render_bad_fix"]

KINDS: tuple[str, ...] = (
    "missing_device",
    "bad_timestamp",
    "naive_timestamp",
    "bad_coordinates",
    "bad_accuracy",
    "bad_battery",
    "unknown_event",
    "unassigned",
    "duplicate",
)
FIX_KINDS = tuple(k for k in KINDS if k != "unknown_event")
UNKNOWN_EVENT = KINDS.index("unknown_event")
UNKNOWN_EVENT_NAME = "battery_swap"


@dataclass(frozen=True)
class BadRows:
    """Bad rows planned for one wearer (indices into its good fixes)."""

    kind: np.ndarray        # int8 index into KINDS
    variant: np.ndarray     # int8, which bad value of the kind
    base_idx: np.ndarray    # int64, good row the bad row is made from
    insert_pos: np.ndarray  # int64, the bad row goes before good row `insert_pos`

    @property
    def n(self) -> int:
        return int(self.kind.size)


def draw_bad_rows(n_good: int, rate: float, rng: np.random.Generator, kind_offset: int) -> BadRows:
    """Plan about ``rate * n_good`` bad rows, cycling through `KINDS` from ``kind_offset``."""
    empty = np.zeros(0, dtype=np.int64)
    if rate <= 0.0 or n_good == 0:
        return BadRows(empty.astype(np.int8), empty.astype(np.int8), empty, empty)
    expected = rate * n_good
    n_bad = int(math.floor(expected + rng.random()))
    kind = ((kind_offset + np.arange(n_bad)) % len(KINDS)).astype(np.int8)
    variant = rng.integers(0, 4, n_bad).astype(np.int8)
    base_idx = rng.integers(0, n_good, n_bad)
    insert_pos = rng.integers(0, n_good + 1, n_bad)
    is_dup = kind == KINDS.index("duplicate")
    insert_pos[is_dup] = np.minimum(base_idx[is_dup] + 1 + rng.integers(0, 30, int(is_dup.sum())), n_good)
    return BadRows(kind, variant, base_idx, insert_pos)


def render_bad_fix(kind: str, variant: int, row: list, *, unassigned_device: str, is_csv: bool) -> list:
    """Turn a copy of a good row ``[device_id, ts, lat, lon, accuracy_m, battery_pct]`` bad.

    ``row`` holds CSV text (``is_csv``) or Parquet values (str ts, float numbers).
    """
    row = list(row)
    if kind == "missing_device":
        row[0] = ("", "  ")[variant % 2] if is_csv else (None, "")[variant % 2]
    elif kind == "bad_timestamp":
        ts = row[1]
        row[1] = ("2024-02-30T10:00:00Z", "yesterday", ts[:10] + "T24:00:00Z", ts[:19] + "+25:00")[variant]
    elif kind == "naive_timestamp":
        row[1] = row[1].rstrip("Z")
    elif kind == "bad_coordinates":
        col, csv_val, pq_val = ((2, "123", 123.0), (3, "", None), (2, "nan", float("nan")), (3, "200", 200.0))[variant]
        row[col] = csv_val if is_csv else pq_val
    elif kind == "bad_accuracy":
        csv_val, pq_val = (("-5", -5.0), ("inf", float("inf")))[variant % 2]
        row[4] = csv_val if is_csv else pq_val
    elif kind == "bad_battery":
        csv_val, pq_val = (("150", 150.0), ("abc", 101.0), ("-3", -3.0), ("150", 150.0))[variant]
        row[5] = csv_val if is_csv else pq_val
    elif kind == "unassigned":
        row[0] = unassigned_device
    elif kind == "duplicate":
        pass
    else:  # pragma: no cover - unknown_event is an events row
        raise ValueError(f"not a fixes kind: {kind=}")
    return row
