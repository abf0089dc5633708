"""Breach trends that are safe to publish: counts of distinct wearers, never a person.

Issue 15 ("Trends without exposing anyone"). With about 2,000 wearers and
minute-level fixes, pseudonymised trails single people out; trends therefore
come from counts that are safe by construction. This module is the whole rule,
as pure functions over plain tuples, so it can be property-tested without a
database (`api.service.trends_source` reads the database; the router is an edge).

Input: one tuple per breach onset ``(month, area, wearer, type, start_ms)``.

The release, per UTC month, is a table area x breach type (plus a national
total per type), each cell holding two counts:

- ``wearers``: distinct wearers with at least one breach of that type;
- ``onsets``: breach onsets of that type, counting at most `ONSET_CAP` per
  wearer (a contribution bound: one wearer with 40 battery alarms would
  otherwise dominate a cell and be recognisable by it).

Rules (in this order):

1. **Placement.** A wearer is placed, for a month, in ONE area: the area of
   their earliest onset that month (ties by area name). All their onsets of
   that month count there. So the national total of a type is exactly the
   sum of its area cells, and a wearer adds at most 1 to any wearer count.
2. **Primary suppression.** A cell with fewer than `THRESHOLD` (10) distinct
   wearers is suppressed, zeros included (a reader cannot tell a zero from a
   small count). A national total under 10 is suppressed.
3. **Secondary suppression.** The only published sums are the national totals
   (month x type, over areas); no area total, no all-types total, no
   all-months total is published, so each (month, type) column is its own
   system. In a column with exactly one suppressed cell, the published cell
   with the fewest wearers (ties by area name) is suppressed too. Then the
   column is audited (`feasible_ranges`, and the coupling onsets >= wearers
   >= onsets / ONSET_CAP): if any suppressed cell, for wearers or onsets, has
   fewer than two values consistent with everything published,
   the column's national total is suppressed as well (it is then the column's
   only constraint, so every suppressed cell keeps its full range).
4. **Rounding.** Every published count is rounded to the nearest multiple of
   `BASE` (5): remainders 0-2 down, 3-4 up (integers never tie). Totals are
   rounded true totals, not sums of rounded cells.

What is never released: a wearer id, a coordinate, an hour or day, an area
smaller than the loaded release geography, a cell or total covering fewer than
10 wearers. Missing cells in a release are "suppressed or zero", on purpose
not told apart.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["BASE", "ONSET_CAP", "THRESHOLD", "Cell", "Column", "Onset", "Release", "feasible_ranges", "place_and_count",
           "protect_column", "release", "round_to_base"]

#: Fewest distinct wearers a published cell or total may cover.
THRESHOLD = 10
#: Published counts are multiples of this.
BASE = 5
#: Most onsets one wearer adds to one (month, type): one wearer moves a published onset count by one step at most.
ONSET_CAP = 5
#: Largest onset count a primary-suppressed cell can hold (9 wearers x the cap): what an attacker knows.
_PRIMARY_ONSETS_MAX = (THRESHOLD - 1) * ONSET_CAP

Onset = tuple[str, str, str, str, int]  # (month, area, wearer, type, start_ms)
Box = tuple[int, float]  # an integer interval [lo, hi]; hi may be math.inf


def round_to_base(n: int, base: int = BASE) -> int:
    """`n` rounded to the nearest multiple of `base`; remainders below base/2 round down.

    >>> [round_to_base(n) for n in (0, 2, 3, 10, 12, 13, 17, 18)]
    [0, 0, 5, 10, 10, 15, 15, 20]
    """
    if n < 0:
        raise ValueError(f"counts are never negative: {n=}")
    low = n - n % base
    return low + base if 2 * (n % base) > base else low


@dataclass(frozen=True)
class Cell:
    """True counts of one (month, area, type): distinct wearers and capped onsets."""

    wearers: int
    onsets: int


def place_and_count(onsets: Iterable[Onset]) -> dict[tuple[str, str], dict[str, Cell]]:
    """True counts, {(month, type): {area: Cell}}, after placing each wearer-month in one area (rule 1).

    Only areas with an onset appear; `release` fills in the rest of the geography with zeros.
    """
    first: dict[tuple[str, str], tuple[int, str]] = {}
    per: dict[tuple[str, str, str], int] = {}  # (month, wearer, type) -> onsets
    for month, area, wearer, type_, start_ms in onsets:
        key = (month, wearer)
        if key not in first or (start_ms, area) < first[key]:
            first[key] = (start_ms, area)
        per[(month, wearer, type_)] = per.get((month, wearer, type_), 0) + 1
    counts: dict[tuple[str, str], dict[str, list[int]]] = {}
    for (month, wearer, type_), n in per.items():
        area = first[(month, wearer)][1]
        cell = counts.setdefault((month, type_), {}).setdefault(area, [0, 0])
        cell[0] += 1
        cell[1] += min(n, ONSET_CAP)
    return {k: {a: Cell(w, o) for a, (w, o) in v.items()} for k, v in counts.items()}


def feasible_ranges(boxes: Sequence[Box], total: Box | None) -> list[Box]:
    """The values each cell can take given every cell's box and the column total's box.

    Each cell j is known to lie in ``boxes[j]`` (a published cell: its rounding
    interval; a suppressed one: what the rule says of it), and the cells sum to
    a value in `total` (None: the total is not published, no constraint). Sums
    of integer intervals are integer intervals, so the answer is exact, cell i:
    ``[max(lo_i, T_lo - sum hi_j), min(hi_i, T_hi - sum lo_j)]`` over j != i.
    O(n): the sums are taken once (an infinite upper end is counted, not summed).
    An empty answer (lo > hi) means the boxes are inconsistent.
    """
    if total is None:
        return list(boxes)
    sum_lo = sum(b[0] for b in boxes)
    finite_hi = sum(b[1] for b in boxes if b[1] != math.inf)
    n_inf = sum(1 for b in boxes if b[1] == math.inf)
    out = []
    for lo, hi in boxes:
        others_inf = n_inf - (hi == math.inf)
        others_hi = math.inf if others_inf else finite_hi - (hi if hi != math.inf else 0)
        out.append((max(lo, total[0] - others_hi), min(hi, total[1] - (sum_lo - lo))))
    return out


def _published_box(n: int) -> Box:
    """What a reader knows of a published count of true value n: its rounding interval, and >= THRESHOLD."""
    r = round_to_base(n)
    return max(THRESHOLD, r - BASE // 2), r + BASE // 2


@dataclass(frozen=True)
class Column:
    """One (month, type) column as released: published cells and the national total (None: suppressed)."""

    cells: dict[str, Cell]  # area -> rounded counts, published cells only
    total: Cell | None
    suppressed: frozenset[str]  # areas whose cell is not published (for tests and the audit; never released)
    secondary: frozenset[str]


def _field_ranges(true: dict[str, Cell], areas: list[str], field: str, suppressed: set[str],
                  secondary: set[str], total: Cell) -> list[Box]:
    """Feasible ranges of one field (wearers or onsets) per area, for a reader who knows the rule."""
    primary_box: Box = (0, THRESHOLD - 1) if field == "wearers" else (0, _PRIMARY_ONSETS_MAX)
    boxes: list[Box] = [(THRESHOLD, math.inf) if a in secondary else primary_box if a in suppressed
                        else _published_box(getattr(true[a], field)) for a in areas]
    return feasible_ranges(boxes, _published_box(getattr(total, field)))


def _audit_ok(true: dict[str, Cell], suppressed: set[str], secondary: set[str], total: Cell) -> bool:
    """True when every suppressed cell keeps at least two feasible values, for wearers and for onsets.

    A reader knows each field's range from the published total and the rounding
    (`feasible_ranges`), and that a cell's onsets lie between its wearers and
    `ONSET_CAP` x its wearers: one round of that coupling narrows the ranges
    further (onsets in 3..20 mean at least one wearer) before they are judged.
    """
    areas = sorted(true)
    wearers = _field_ranges(true, areas, "wearers", suppressed, secondary, total)
    onsets = _field_ranges(true, areas, "onsets", suppressed, secondary, total)
    for a, (w_lo, w_hi), (o_lo, o_hi) in zip(areas, wearers, onsets):
        if a not in suppressed:
            continue
        w = (max(w_lo, -(-o_lo // ONSET_CAP)), min(w_hi, o_hi))
        o = (max(o_lo, w_lo), min(o_hi, ONSET_CAP * w_hi))
        if w[1] - w[0] < 1 or o[1] - o[0] < 1:
            return False
    return True


def protect_column(true: dict[str, Cell]) -> Column:
    """Rules 2-4 for one column: `true` maps EVERY area of the geography (zeros included) to its counts."""
    suppressed = {a for a, c in true.items() if c.wearers < THRESHOLD}
    secondary: set[str] = set()
    if len(suppressed) == 1 and len(true) > 1:
        smallest = min((a for a in true if a not in suppressed), key=lambda a: (true[a].wearers, a))
        secondary.add(smallest)
        suppressed.add(smallest)
    total = Cell(sum(c.wearers for c in true.values()), sum(c.onsets for c in true.values()))
    publish_total = total.wearers >= THRESHOLD and (not suppressed or _audit_ok(true, suppressed, secondary, total))
    cells = {a: Cell(round_to_base(c.wearers), round_to_base(c.onsets)) for a, c in true.items() if a not in suppressed}
    return Column(cells=cells,
                  total=Cell(round_to_base(total.wearers), round_to_base(total.onsets)) if publish_total else None,
                  suppressed=frozenset(suppressed), secondary=frozenset(secondary))


@dataclass(frozen=True)
class Release:
    """A whole release: {(month, type): Column} over every month, type and area asked for."""

    months: tuple[str, ...]
    areas: tuple[str, ...]
    types: tuple[str, ...]
    columns: dict[tuple[str, str], Column]

    def as_dict(self) -> dict:
        """The JSON body: published cells and totals only; nothing about a suppressed cell."""
        cells, totals = [], []
        for m in self.months:
            for t in self.types:
                col = self.columns[(m, t)]
                cells += [{"month": m, "area": a, "type": t, "wearers": c.wearers, "onsets": c.onsets}
                          for a, c in sorted(col.cells.items())]
                tot = col.total
                totals.append({"month": m, "type": t, "wearers": tot.wearers if tot else None,
                               "onsets": tot.onsets if tot else None, "suppressed": tot is None})
        return {"months": list(self.months), "types": list(self.types), "areas": list(self.areas),
                "cells": cells, "totals": totals}


def release(onsets: Iterable[Onset], *, months: Sequence[str], areas: Sequence[str],
            types: Sequence[str]) -> Release:
    """The release for `months` x `areas` x `types` (fixed by the caller, never by the data, so the
    table's shape says nothing about who had a breach). Onsets outside them are ignored.

    Raises ValueError when an onset's area is not in `areas` (the caller places every record).
    """
    wanted_m, wanted_t, known = set(months), set(types), set(areas)
    kept = [o for o in onsets if o[0] in wanted_m and o[3] in wanted_t]
    stray = sorted({o[1] for o in kept} - known)
    if stray:
        raise ValueError(f"onsets placed in areas outside the release geography: {stray[:5]}")
    counts = place_and_count(kept)
    zero = Cell(0, 0)
    columns = {}
    for m in months:
        for t in types:
            have = counts.get((m, t), {})
            columns[(m, t)] = protect_column({a: have.get(a, zero) for a in areas})
    return Release(tuple(months), tuple(areas), tuple(types), columns)
